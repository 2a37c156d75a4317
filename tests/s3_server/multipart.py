"""Multipart uploads of ``S3Server``: create, part, part copy, complete, abort."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any
from xml.etree import ElementTree

from aiohttp import web

from .protocol import (
    CHUNK,
    MAX_PART_NUMBER,
    UPLOADS_DIR,
    S3Error,
    _Ctx,
    _el,
    _find_text,
    _iso_date,
    _local,
    _object_headers,
    _xml,
    parse_range,
)


class MultipartHandlers:
    """Mixed into ``S3Server``; uses its ``_uploads``, ``min_part_size`` and the object
    helpers of ``ObjectHandlers``."""

    # ---- multipart ----
    def _create_upload(self, ctx: _Ctx) -> web.Response:
        upload_id = uuid.uuid4().hex
        d = self.root / UPLOADS_DIR / upload_id
        d.mkdir(parents=True)
        self._uploads[upload_id] = {
            "bucket": ctx.bucket,
            "key": ctx.key,
            "dir": d,
            "parts": {},
            "headers": _object_headers(ctx.request.headers),
        }
        body = _el("Bucket", ctx.bucket) + _el("Key", ctx.key) + _el("UploadId", upload_id)
        return self._ok_xml(ctx, _xml("InitiateMultipartUploadResult", body))

    def _upload(self, ctx: _Ctx) -> dict[str, Any]:
        upload_id = ctx.request.rel_url.query.get("uploadId", "")
        up = self._uploads.get(upload_id)
        if up is None or (up["bucket"], up["key"]) != (ctx.bucket, ctx.key):
            raise S3Error(404, "NoSuchUpload", UploadId=upload_id)
        return up

    async def _upload_part(self, ctx: _Ctx) -> web.Response:
        up = self._upload(ctx)
        try:
            number = int(ctx.request.rel_url.query.get("partNumber", ""))
        except ValueError:
            number = 0
        if not 1 <= number <= MAX_PART_NUMBER:
            raise S3Error(400, "InvalidArgument", "Part number must be between 1 and 10000")
        part = up["dir"] / f"{number:05d}"
        tmp = up["dir"] / f"{number:05d}.{uuid.uuid4().hex}"
        h = ctx.request.headers
        if "x-amz-copy-source" in h:
            src, st = self._copy_source(ctx)
            start, stop = 0, st.st_size
            if "x-amz-copy-source-range" in h:
                span = parse_range(h["x-amz-copy-source-range"], st.st_size)
                if span is None:
                    raise S3Error(400, "InvalidArgument", "bad x-amz-copy-source-range")
                start, stop = span
            md5 = hashlib.md5()
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                fin.seek(start)
                left = stop - start
                while left:
                    data = fin.read(min(CHUNK, left))
                    fout.write(data)
                    md5.update(data)
                    left -= len(data)
            etag, size = f'"{md5.hexdigest()}"', stop - start
        else:
            etag, size = await self._receive(ctx, tmp)
        if self._uploads.get(ctx.request.rel_url.query["uploadId"]) is not up:
            tmp.unlink(missing_ok=True)  # aborted while the part was coming in
            raise S3Error(404, "NoSuchUpload")
        os.replace(tmp, part)
        up["parts"][number] = {"etag": etag, "size": size, "path": part}
        if "x-amz-copy-source" in h:
            body = _el("ETag", etag) + _el("LastModified", _iso_date(time.time()))
            return self._ok_xml(ctx, _xml("CopyPartResult", body))
        headers = {"ETag": etag, "x-amz-request-id": ctx.request_id, **ctx.checksums}
        return web.Response(status=200, headers=headers)

    async def _complete_upload(self, ctx: _Ctx) -> web.Response:
        up = self._upload(ctx)
        try:
            doc = ElementTree.fromstring(await ctx.request.read())
        except ElementTree.ParseError:
            raise S3Error(400, "MalformedXML") from None
        listed: list[tuple[int, str]] = []
        for node in doc:
            if _local(node.tag) != "Part":
                continue
            number, etag = _find_text(node, "PartNumber"), _find_text(node, "ETag")
            if number is None or etag is None:
                raise S3Error(400, "MalformedXML")
            listed.append((int(number), etag.strip()))
        if not listed:
            raise S3Error(400, "MalformedXML", "no parts listed")
        numbers = [n for n, _ in listed]
        if numbers != sorted(set(numbers)):
            raise S3Error(400, "InvalidPartOrder")
        parts = []
        for number, etag in listed:
            part = up["parts"].get(number)
            if part is None or part["etag"].strip('"') != etag.strip('"'):
                raise S3Error(400, "InvalidPart", PartNumber=str(number), ETag=etag)
            parts.append(part)
        for part in parts[:-1]:
            if part["size"] < self.min_part_size:
                raise S3Error(
                    400,
                    "EntityTooSmall",
                    ProposedSize=str(part["size"]),
                    MinSizeAllowed=str(self.min_part_size),
                )
        path = self._object_path(ctx.bucket, ctx.key)
        self._check_write_conditions(ctx, path)
        tmp = self._tmp_file()
        digests = b""
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part["path"], "rb") as f:
                    shutil.copyfileobj(f, out, CHUNK)
                digests += bytes.fromhex(part["etag"].strip('"'))
        etag = f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'
        self._publish(tmp, path, etag, up["headers"])
        self._drop_upload(ctx.request.rel_url.query["uploadId"])
        body = (
            _el("Location", f"{self.endpoint}/{ctx.bucket}/{urllib.parse.quote(ctx.key)}")
            + _el("Bucket", ctx.bucket)
            + _el("Key", ctx.key)
            + _el("ETag", etag)
        )
        return self._ok_xml(ctx, _xml("CompleteMultipartUploadResult", body))

    def _drop_upload(self, upload_id: str) -> None:
        up = self._uploads.pop(upload_id, None)
        if up is not None:
            shutil.rmtree(up["dir"], ignore_errors=True)

    def _abort_upload(self, ctx: _Ctx) -> web.Response:
        self._upload(ctx)
        self._drop_upload(ctx.request.rel_url.query["uploadId"])
        return web.Response(status=204, headers={"x-amz-request-id": ctx.request_id})
