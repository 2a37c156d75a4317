"""Object operations of ``S3Server``: GET/HEAD (ranges, conditions), PUT (checksums,
aws-chunked), CopyObject, DELETE, and the files under the root they map to."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import shutil
import urllib.parse
import urllib.request
import uuid
import zlib
from pathlib import Path

from aiohttp import web

from .protocol import (
    CHUNK,
    TMP_DIR,
    S3Error,
    _Ctx,
    _cut,
    _decoded_body,
    _el,
    _etag_in,
    _http_date,
    _iso_date,
    _object_headers,
    _parse_http_date,
    _xml,
    parse_range,
)


class ObjectHandlers:
    """Mixed into ``S3Server``, which sets ``root``, ``_lock``, ``_meta`` and counters and
    provides ``_ok_xml`` and ``_count_sent``."""

    # ---- paths ----
    def _bucket_dir(self, bucket: str) -> Path:
        if bucket.startswith(".") or bucket in ("..", "") or "\\" in bucket:
            raise S3Error(400, "InvalidBucketName", BucketName=bucket)
        return self.root / bucket

    def _object_path(self, bucket: str, key: str) -> Path:
        parts = key.split("/")
        if any(p in ("..", ".") for p in parts) or "\x00" in key:
            raise S3Error(400, "InvalidArgument", "keys with '.' or '..' segments are refused")
        return self._bucket_dir(bucket).joinpath(*[p for p in parts if p])

    def _etag(self, path: Path, st: os.stat_result) -> str:
        meta = self._meta.get(path)
        if meta is not None and meta["stamp"] == (st.st_size, st.st_mtime_ns):
            return str(meta["etag"])
        # A file written behind the server's back: a cheap ETag that changes when it does.
        stamp = f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}".encode()
        return f'"{hashlib.md5(stamp).hexdigest()}"'

    def _remember(self, path: Path, etag: str, headers: dict[str, str]) -> None:
        st = path.stat()
        self._meta[path] = {"stamp": (st.st_size, st.st_mtime_ns), "etag": etag, **headers}

    def _stored_headers(self, path: Path, st: os.stat_result) -> dict[str, str]:
        meta = self._meta.get(path)
        if meta is None or meta["stamp"] != (st.st_size, st.st_mtime_ns):
            return {"Content-Type": "binary/octet-stream"}
        return {k: v for k, v in meta.items() if k not in ("stamp", "etag")}

    def _stat_object(self, bucket: str, key: str) -> tuple[Path, os.stat_result]:
        path = self._object_path(bucket, key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None or not path.is_file() or key.endswith("/"):
            if not self._bucket_dir(bucket).is_dir():
                raise S3Error(404, "NoSuchBucket", BucketName=bucket)
            raise S3Error(404, "NoSuchKey", Key=key, BucketName=bucket)
        return path, st

    def _tmp_file(self) -> Path:
        d = self.root / TMP_DIR
        d.mkdir(exist_ok=True)
        return d / uuid.uuid4().hex

    # ---- objects ----
    def _check_conditions(self, ctx: _Ctx, etag: str, mtime: float) -> None:
        h = ctx.request.headers
        mtime = float(int(mtime))  # HTTP dates have whole seconds
        if "If-Match" in h and not _etag_in(etag, h["If-Match"]):
            raise S3Error(412, "PreconditionFailed", Condition="If-Match")
        if "If-Unmodified-Since" in h and "If-Match" not in h:
            since = _parse_http_date(h["If-Unmodified-Since"])
            if since is not None and mtime > since:
                raise S3Error(412, "PreconditionFailed", Condition="If-Unmodified-Since")
        if "If-None-Match" in h and _etag_in(etag, h["If-None-Match"]):
            raise S3Error(304, "NotModified")
        if "If-Modified-Since" in h and "If-None-Match" not in h:
            since = _parse_http_date(h["If-Modified-Since"])
            if since is not None and mtime <= since:
                raise S3Error(304, "NotModified")

    async def _get(self, ctx: _Ctx, head: bool) -> web.StreamResponse:
        r = ctx.request
        path, st = self._stat_object(ctx.bucket, ctx.key)
        etag = self._etag(path, st)
        self._check_conditions(ctx, etag, st.st_mtime)
        size = st.st_size
        start, stop, status = 0, size, 200
        if "Range" in r.headers and "uploadId" not in r.rel_url.query:
            span = parse_range(r.headers["Range"], size)
            if span is not None:
                (start, stop), status = span, 206
        if r.rel_url.query.get("partNumber") not in (None, "1"):
            raise S3Error(416, "InvalidPartNumber", "The requested partnumber is not satisfiable")
        headers = {
            "x-amz-request-id": ctx.request_id,
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": _http_date(st.st_mtime),
            "Content-Length": str(stop - start),
            **self._stored_headers(path, st),
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = stop - start
        if head:
            await resp.prepare(r)
            await resp.write_eof()
            return resp
        await self._send_file(ctx, resp, path, start, stop - start)
        return resp

    async def _send_file(
        self, ctx: _Ctx, resp: web.StreamResponse, path: Path, offset: int, count: int
    ) -> None:
        r = ctx.request
        fault = ctx.fault
        cut_at: int | None = None
        if fault is not None and (
            fault.kind == "drop" or (fault.kind == "stall" and fault.fraction is not None)
        ):
            frac = 0.5 if fault.fraction is None else fault.fraction
            cut_at = int(count * frac)
            if fault.kind == "drop" and count > 0:
                cut_at = min(cut_at, count - 1)  # always short of the promised length
        await resp.prepare(r)
        transport = r.transport
        loop = asyncio.get_running_loop()
        sent = 0
        with open(path, "rb") as f:

            async def send(n: int) -> None:
                nonlocal sent
                if n <= 0:
                    return
                assert transport is not None
                try:
                    await loop.sendfile(transport, f, offset + sent, n)
                except RuntimeError as e:  # "Transport is closing": the client went away
                    raise ConnectionResetError(str(e)) from e
                except NotImplementedError:  # no sendfile on this transport: copy
                    f.seek(offset + sent)
                    left = n
                    while left:
                        data = f.read(min(CHUNK, left))
                        await resp.write(data)
                        left -= len(data)
                sent += n
                self._count_sent(ctx.name, n)

            if transport is None:
                raise ConnectionResetError("connection lost")
            if cut_at is not None:
                await send(cut_at)
                assert fault is not None
                if fault.kind == "drop":
                    ctx.entry["bytes"] = sent
                    _cut(r)
                    return
                await asyncio.sleep(fault.seconds)
            await send(count - sent)
        ctx.entry["bytes"] = sent
        await resp.write_eof()

    async def _receive(self, ctx: _Ctx, dest: Path) -> tuple[str, int]:
        """Write the request body to ``dest``; return its quoted MD5 ETag and size. Checks
        ``Content-MD5``, a hex ``x-amz-content-sha256``, ``x-amz-decoded-content-length`` and
        CRC32 / SHA-1 / SHA-256 checksums (headers or aws-chunked trailers)."""
        h = ctx.request.headers
        trailers: dict[str, str] = {}
        md5, sha256, sha1 = hashlib.md5(), hashlib.sha256(), hashlib.sha1()
        crc = 0
        size = 0
        try:
            with open(dest, "wb") as out:
                async for data in _decoded_body(ctx.request, trailers):
                    out.write(data)
                    md5.update(data)
                    sha256.update(data)
                    if "x-amz-checksum-sha1" in h or "x-amz-trailer" in h:
                        sha1.update(data)
                    crc = zlib.crc32(data, crc)
                    size += len(data)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        with self._lock:
            self.bytes_received += size
        sums = {k: v for k, v in h.items() if k.lower().startswith("x-amz-checksum-")}
        sums.update(trailers)
        sums = {k.lower(): v for k, v in sums.items()}
        expected = {
            "content-md5": base64.b64encode(md5.digest()).decode(),
            "x-amz-checksum-crc32": base64.b64encode(crc.to_bytes(4, "big")).decode(),
            "x-amz-checksum-sha256": base64.b64encode(sha256.digest()).decode(),
            "x-amz-checksum-sha1": base64.b64encode(sha1.digest()).decode(),
        }
        problems = []
        if "Content-MD5" in h and h["Content-MD5"] != expected["content-md5"]:
            problems.append("Content-MD5")
        for name in ("x-amz-checksum-crc32", "x-amz-checksum-sha256", "x-amz-checksum-sha1"):
            if name in sums and sums[name] != expected[name]:
                problems.append(name)
        declared = h.get("x-amz-decoded-content-length")
        if declared is not None and int(declared) != size:
            dest.unlink(missing_ok=True)
            raise S3Error(400, "IncompleteBody")
        sha_header = h.get("x-amz-content-sha256", "")
        if re.fullmatch(r"[0-9a-f]{64}", sha_header) and sha_header != sha256.hexdigest():
            dest.unlink(missing_ok=True)
            raise S3Error(400, "XAmzContentSHA256Mismatch")
        if problems:
            dest.unlink(missing_ok=True)
            raise S3Error(400, "BadDigest", f"checksum mismatch: {', '.join(problems)}")
        ctx.checksums = {k: v for k, v in sums.items() if k.startswith("x-amz-checksum-")}
        return f'"{md5.hexdigest()}"', size

    def _check_write_conditions(self, ctx: _Ctx, path: Path) -> None:
        h = ctx.request.headers
        exists = path.is_file()
        if h.get("If-None-Match", "").strip() == "*" and exists:
            raise S3Error(412, "PreconditionFailed", Condition="If-None-Match")
        if "If-Match" in h:
            if not exists:
                raise S3Error(404, "NoSuchKey", Key=ctx.key)
            if not _etag_in(self._etag(path, path.stat()), h["If-Match"]):
                raise S3Error(412, "PreconditionFailed", Condition="If-Match")

    def _publish(self, tmp: Path, path: Path, etag: str, headers: dict[str, str]) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            tmp.unlink(missing_ok=True)
            raise S3Error(409, "InvalidRequest", "a key is a prefix of this key") from None
        if path.is_dir():
            tmp.unlink(missing_ok=True)
            raise S3Error(409, "InvalidRequest", "this key is a prefix of other keys")
        os.replace(tmp, path)
        self._remember(path, etag, headers)

    async def _put(self, ctx: _Ctx) -> web.Response:
        path = self._object_path(ctx.bucket, ctx.key)
        self._check_write_conditions(ctx, path)
        tmp = self._tmp_file()
        etag, _ = await self._receive(ctx, tmp)
        self._check_write_conditions(ctx, path)  # a racing writer may have won meanwhile
        self._publish(tmp, path, etag, _object_headers(ctx.request.headers))
        headers = {"ETag": etag, "x-amz-request-id": ctx.request_id, **ctx.checksums}
        return web.Response(status=200, headers=headers)

    def _copy_source(self, ctx: _Ctx) -> tuple[Path, os.stat_result]:
        src = urllib.parse.unquote(ctx.request.headers["x-amz-copy-source"].split("?", 1)[0])
        bucket, _, key = src.lstrip("/").partition("/")
        return self._stat_object(bucket, key)

    def _copy(self, ctx: _Ctx) -> web.Response:
        src, st = self._copy_source(ctx)
        dest = self._object_path(ctx.bucket, ctx.key)
        self._check_write_conditions(ctx, dest)
        etag = self._etag(src, st)
        h = ctx.request.headers
        if h.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE":
            headers = _object_headers(h)
        else:
            headers = self._stored_headers(src, st)
        tmp = self._tmp_file()
        shutil.copyfile(src, tmp)
        self._publish(tmp, dest, etag, headers)
        body = _el("LastModified", _iso_date(dest.stat().st_mtime)) + _el("ETag", etag)
        return self._ok_xml(ctx, _xml("CopyObjectResult", body))

    def _delete(self, ctx: _Ctx) -> web.Response:
        path = self._object_path(ctx.bucket, ctx.key)
        if path.is_file():
            path.unlink()
            self._meta.pop(path, None)
            self._prune(path.parent)
        return web.Response(status=204, headers={"x-amz-request-id": ctx.request_id})

    def _prune(self, d: Path) -> None:
        """Remove directories left empty under a bucket (S3 has no directories)."""
        while d.parent != self.root and self.root in d.parents:
            try:
                d.rmdir()
            except OSError:
                return
            d = d.parent
