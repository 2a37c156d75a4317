"""The S3 wire protocol as the server speaks it: constants, errors, dates, XML, byte
ranges, ``aws-chunked`` bodies, and what a request is (``_Ctx``, ``_operation``)."""

from __future__ import annotations

import email.utils
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from aiohttp import web

from .faults import Fault

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum size of every part but the last
MAX_PART_NUMBER = 10_000
CHUNK = 1 << 20
TMP_DIR = ".s3-tmp"  # under the root: not a valid bucket name, never listed
UPLOADS_DIR = ".s3-uploads"

_MESSAGES = {
    "AccessDenied": "Access Denied",
    "BadDigest": "The Content-MD5 or checksum you specified did not match what we received.",
    "BucketNotEmpty": "The bucket you tried to delete is not empty",
    "EntityTooSmall": "Your proposed upload is smaller than the minimum allowed object size.",
    "IncompleteBody": "You did not provide the number of bytes specified by the Content-Length.",
    "InternalError": "We encountered an internal error. Please try again.",
    "InvalidArgument": "Invalid Argument",
    "InvalidBucketName": "The specified bucket is not valid.",
    "InvalidPart": "One or more of the specified parts could not be found.",
    "InvalidPartOrder": "The list of parts was not in ascending order.",
    "InvalidRange": "The requested range is not satisfiable",
    "InvalidRequest": "Invalid Request",
    "MalformedXML": "The XML you provided was not well-formed.",
    "MethodNotAllowed": "The specified method is not allowed against this resource.",
    "NoSuchBucket": "The specified bucket does not exist",
    "NoSuchKey": "The specified key does not exist.",
    "NoSuchUpload": "The specified upload does not exist.",
    "NotImplemented": "A header you provided implies functionality that is not implemented",
    "PreconditionFailed": "At least one of the pre-conditions you specified did not hold",
    "SlowDown": "Please reduce your request rate.",
    "TooManyRequests": "Too many requests.",
    "XAmzContentSHA256Mismatch": "The provided 'x-amz-content-sha256' header does not match.",
}


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str | None = None, **extra: str) -> None:
        super().__init__(code)
        self.status, self.code = status, code
        self.message = message or _MESSAGES.get(code, code)
        self.extra = extra


def _http_date(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def _iso_date(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _parse_http_date(value: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _xml(root: str, body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{NS}">{body}</{root}>'


def _el(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find_text(node: ElementTree.Element, name: str) -> str | None:
    for child in node:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, stop)`` of a ``Range`` header for an object of ``size`` bytes; ``None`` when
    the header is to be ignored (not ``bytes=``, several ranges, bad syntax: S3 then sends the
    whole object). Raises ``S3Error`` 416 when the range cannot be satisfied."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise S3Error(416, "InvalidRange", ActualObjectSize=str(size))
        return max(0, size - n), size
    start = int(first)
    stop = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        return None  # an invalid range is ignored, as HTTP says
    if start >= size:
        raise S3Error(416, "InvalidRange", ActualObjectSize=str(size))
    return start, stop


async def _decoded_body(request: web.Request, trailers: dict[str, str]) -> AsyncIterator[bytes]:
    """The request body, with ``aws-chunked`` framing (boto3's default for uploads: chunk sizes
    in hex, optional chunk signatures, trailing checksum headers) taken off."""
    sha = request.headers.get("x-amz-content-sha256", "")
    encoding = request.headers.get("Content-Encoding", "")
    reader = request.content
    if "aws-chunked" not in encoding and not sha.startswith("STREAMING-"):
        async for data in reader.iter_chunked(CHUNK):
            yield data
        return
    while True:
        line = await reader.readline()
        if not line:
            raise S3Error(400, "IncompleteBody")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise S3Error(400, "InvalidRequest", "bad aws-chunked framing") from None
        if size == 0:
            while True:
                line = await reader.readline()
                if not line.strip():
                    return
                name, _, value = line.decode("latin-1").partition(":")
                trailers[name.strip().lower()] = value.strip()
        left = size
        while left:
            data = await reader.read(min(left, CHUNK))
            if not data:
                raise S3Error(400, "IncompleteBody")
            left -= len(data)
            yield data
        if (await reader.readline()).strip():
            raise S3Error(400, "InvalidRequest", "bad aws-chunked framing")


class _Ctx:
    """One request as the handlers see it."""

    def __init__(
        self, request: web.Request, bucket: str, key: str, name: str, op: str, entry: dict
    ) -> None:
        self.request, self.bucket, self.key, self.name, self.op = request, bucket, key, name, op
        self.entry = entry
        self.fault: Fault | None = None
        self.request_id = uuid.uuid4().hex[:16].upper()
        self.checksums: dict[str, str] = {}


def _operation(method: str, bucket: str, key: str, q: Any, h: Any) -> str:
    """The S3 operation a request is, by S3's names (what the ``ops`` counter counts)."""
    if not bucket:
        return "ListBuckets"
    if method in ("PROPFIND", "MKCOL"):
        return method
    if not key:
        if method == "GET":
            if "location" in q:
                return "GetBucketLocation"
            return "ListObjectsV2" if q.get("list-type") == "2" else "ListObjects"
        if method == "POST" and "delete" in q:
            return "DeleteObjects"
        return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(
            method, method
        )
    if method == "GET":
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "partNumber" in q or "uploadId" in q:
            return "UploadPartCopy" if "x-amz-copy-source" in h else "UploadPart"
        return "CopyObject" if "x-amz-copy-source" in h else "PutObject"
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        return "CompleteMultipartUpload" if "uploadId" in q else "PostObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
    return method


def _object_headers(h: Any) -> dict[str, str]:
    """The headers S3 stores with an object and sends back on GET / HEAD."""
    out = {"Content-Type": h.get("Content-Type") or "binary/octet-stream"}
    for name in ("Cache-Control", "Content-Disposition", "Content-Language", "Expires"):
        if name in h:
            out[name] = h[name]
    encoding = ",".join(
        e.strip() for e in h.get("Content-Encoding", "").split(",") if e.strip() != "aws-chunked"
    )
    if encoding:
        out["Content-Encoding"] = encoding
    for k, v in h.items():
        if k.lower().startswith("x-amz-meta-"):
            out[k.lower()] = v
    return out


def _etag_in(etag: str, header: str) -> bool:
    wanted = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    return "*" in wanted or etag.strip('"') in wanted


def _cut(request: web.Request) -> None:
    """Close the connection at once, mid-response: the client sees a reset / short body."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def storage_options(endpoint: str) -> dict[str, str]:
    """What ``object_store``'s ``AmazonS3Builder`` (pixmo-stream's ``storage_options``,
    obstore's ``S3Store``) needs to talk to the server at ``endpoint``."""
    return {
        "endpoint": endpoint,
        "allow_http": "true",
        "region": "us-east-1",
        "access_key_id": "test",
        "secret_access_key": "test",
    }
