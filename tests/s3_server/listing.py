"""Bucket operations of ``S3Server``: ListBuckets, Create/Head/DeleteBucket,
DeleteObjects, ListObjectsV2 and v1, and the WebDAV PROPFIND/MKCOL of ``HttpStore``."""

from __future__ import annotations

import base64
import os
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

from aiohttp import web

from .protocol import (
    S3Error,
    _Ctx,
    _el,
    _find_text,
    _http_date,
    _iso_date,
    _local,
    _xml,
)


class BucketHandlers:
    """Mixed into ``S3Server``; uses its ``root`` and the object helpers of
    ``ObjectHandlers``."""

    # ---- buckets ----
    def _list_buckets(self) -> web.Response:
        items = ""
        for d in sorted(self.root.iterdir()):
            if d.is_dir() and not d.name.startswith("."):
                items += (
                    "<Bucket>"
                    + _el("Name", d.name)
                    + _el("CreationDate", _iso_date(d.stat().st_mtime))
                    + "</Bucket>"
                )
        body = (
            "<Owner><ID>local</ID><DisplayName>local</DisplayName></Owner>"
            + f"<Buckets>{items}</Buckets>"
        )
        return web.Response(
            body=_xml("ListAllMyBucketsResult", body), content_type="application/xml"
        )

    async def _bucket_op(self, ctx: _Ctx, d: Path) -> web.Response:
        m, q = ctx.request.method, ctx.request.rel_url.query
        if m == "PUT":
            d.mkdir(exist_ok=True)
            return web.Response(headers={"Location": "/" + ctx.bucket})
        if not d.is_dir():
            raise S3Error(404, "NoSuchBucket", BucketName=ctx.bucket)
        if m == "HEAD":
            return web.Response(headers={"x-amz-bucket-region": "us-east-1"})
        if m == "DELETE":
            if any(p.is_file() for p in d.rglob("*")):
                raise S3Error(409, "BucketNotEmpty", BucketName=ctx.bucket)
            shutil.rmtree(d)
            return web.Response(status=204)
        if m == "POST" and "delete" in q:
            return await self._delete_many(ctx)
        if m == "GET":
            if "location" in q:
                return self._ok_xml(ctx, _xml("LocationConstraint", ""))
            if "uploads" in q:
                raise S3Error(501, "NotImplemented", "ListMultipartUploads is not implemented")
            return self._list(ctx, d)
        raise S3Error(405, "MethodNotAllowed")

    async def _delete_many(self, ctx: _Ctx) -> web.Response:
        try:
            doc = ElementTree.fromstring(await ctx.request.read())
        except ElementTree.ParseError:
            raise S3Error(400, "MalformedXML") from None
        quiet = (_find_text(doc, "Quiet") or "").lower() == "true"
        out = ""
        for node in doc:
            if _local(node.tag) != "Object":
                continue
            key = _find_text(node, "Key") or ""
            path = self._object_path(ctx.bucket, key)
            if path.is_file():
                path.unlink()
                self._meta.pop(path, None)
                self._prune(path.parent)
            if not quiet:
                out += f"<Deleted>{_el('Key', key)}</Deleted>"
        return self._ok_xml(ctx, _xml("DeleteResult", out))

    def _keys(self, d: Path, prefix: str) -> Iterator[tuple[str, Path]]:
        """``(key, path)`` of every object in bucket dir ``d`` whose key starts with ``prefix``,
        in S3's order (UTF-8 bytes, which is code-point order)."""
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = d.joinpath(*base.split("/")) if base else d
        found: list[tuple[str, Path]] = []
        if start.is_dir():
            for dirpath, _, files in os.walk(start):
                rel = os.path.relpath(dirpath, d).replace(os.sep, "/")
                rel = "" if rel == "." else rel + "/"
                for f in files:
                    key = rel + f
                    if key.startswith(prefix):
                        found.append((key, Path(dirpath, f)))
        found.sort()
        return iter(found)

    def _list(self, ctx: _Ctx, d: Path) -> web.Response:
        q = ctx.request.rel_url.query
        v2 = q.get("list-type") == "2"
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        try:
            max_keys = min(int(q.get("max-keys", "1000")), 1000)
        except ValueError:
            raise S3Error(400, "InvalidArgument", "max-keys must be an integer") from None
        url = q.get("encoding-type") == "url"

        def enc(s: str) -> str:
            return urllib.parse.quote_plus(s, safe="/") if url else s

        token = q.get("continuation-token")
        if v2:
            after = q.get("start-after", "")
            if token:
                try:
                    after = max(after, base64.urlsafe_b64decode(token.encode()).decode())
                except (ValueError, UnicodeDecodeError):
                    raise S3Error(400, "InvalidArgument", "bad continuation-token") from None
        else:
            after = q.get("marker", "")
        contents, prefixes = "", ""
        count, last, truncated = 0, "", False
        seen_prefix = ""
        for key, path in self._keys(d, prefix):
            if key <= after or (after.endswith(delimiter or "\0") and key.startswith(after)):
                continue  # at or before the marker, or inside the common prefix it names
            if delimiter:
                i = key.find(delimiter, len(prefix))
                if i >= 0:
                    common = key[: i + len(delimiter)]
                    if common == seen_prefix:
                        continue
                    if count == max_keys:
                        truncated = True
                        break
                    seen_prefix = common
                    prefixes += f"<CommonPrefixes>{_el('Prefix', enc(common))}</CommonPrefixes>"
                    count += 1
                    last = common
                    continue
            if count == max_keys:
                truncated = True
                break
            st = path.stat()
            contents += (
                "<Contents>"
                + _el("Key", enc(key))
                + _el("LastModified", _iso_date(st.st_mtime))
                + _el("ETag", self._etag(path, st))
                + _el("Size", st.st_size)
                + _el("StorageClass", "STANDARD")
                + "</Contents>"
            )
            count += 1
            last = key
        head = _el("Name", ctx.bucket) + _el("Prefix", enc(prefix))
        if v2:
            head += _el("KeyCount", count)
            if token:
                head += _el("ContinuationToken", token)
            if "start-after" in q:
                head += _el("StartAfter", enc(q["start-after"]))
        else:
            head += _el("Marker", enc(q.get("marker", "")))
        head += _el("MaxKeys", max_keys)
        if delimiter:
            head += _el("Delimiter", enc(delimiter))
        if url:
            head += _el("EncodingType", "url")
        head += _el("IsTruncated", "true" if truncated else "false")
        if truncated and v2:
            next_token = base64.urlsafe_b64encode(last.encode()).decode()
            head += _el("NextContinuationToken", next_token)
        elif truncated and delimiter:
            head += _el("NextMarker", enc(last))
        return self._ok_xml(ctx, _xml("ListBucketResult", head + contents + prefixes))

    # ---- WebDAV, for object_store's HttpStore ----
    def _propfind(self, ctx: _Ctx) -> web.Response:
        target = self._bucket_dir(ctx.bucket)
        if ctx.key.strip("/"):
            target = self._object_path(ctx.bucket, ctx.key)
        if not target.exists():
            raise S3Error(404, "NoSuchKey", Key=ctx.key)
        depth = ctx.request.headers.get("Depth", "infinity")
        entries = [target]
        if target.is_dir() and depth != "0":
            if depth == "1":
                entries += sorted(target.iterdir())
            else:
                entries += sorted(target.rglob("*"))
        out = ""
        for p in entries:
            rel = p.relative_to(self.root).as_posix()
            st = p.stat()
            href = "/" + urllib.parse.quote(rel) + ("/" if p.is_dir() else "")
            prop = _el("getlastmodified", _http_date(st.st_mtime))
            if p.is_dir():
                prop += "<resourcetype><collection/></resourcetype>"
            else:
                prop += "<resourcetype/>" + _el("getcontentlength", st.st_size)
                prop += _el("getetag", self._etag(p, st))
            out += (
                f"<response>{_el('href', href)}<propstat><prop>{prop}</prop>"
                "<status>HTTP/1.1 200 OK</status></propstat></response>"
            )
        body = (
            f'<?xml version="1.0" encoding="utf-8"?>\n<multistatus xmlns="DAV:">{out}</multistatus>'
        )
        return web.Response(status=207, body=body.encode(), content_type="application/xml")

    def _mkcol(self, ctx: _Ctx) -> web.Response:
        self._object_path(ctx.bucket, ctx.key).mkdir(parents=True, exist_ok=True)
        return web.Response(status=201)
