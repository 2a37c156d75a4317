"""``S3Server``: lifecycle (its own event loop in a thread, or ``start_async`` in one's
own), dispatch of each request to its operation, errors, and the ``/_admin`` endpoints."""

from __future__ import annotations

import asyncio
import collections
import fnmatch
import os
import ssl
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

from .faults import Fault, Gate, Instrumentation
from .listing import BucketHandlers
from .multipart import MultipartHandlers
from .objects import ObjectHandlers
from .protocol import (
    MIN_PART_SIZE,
    S3Error,
    _Ctx,
    _cut,
    _el,
    _operation,
    storage_options,
)


class S3Server(Instrumentation, ObjectHandlers, MultipartHandlers, BucketHandlers):
    """An S3-compatible server over ``root``; see the package docstring.

    Counters (``requests``, ``bytes_sent``, ``bytes_received``, ``ops``, ``keys``) count every
    request but ``/_admin`` ones; read them directly or as one dict with ``stats()``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        min_part_size: int = MIN_PART_SIZE,
        log_requests: int = 100_000,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.host, self.port = host, port
        self.latency = latency
        self.min_part_size = min_part_size
        self.ssl_context = ssl_context
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._gates: list[Gate] = []
        self.forbidden: list[str] = []
        self._uploads: dict[str, dict[str, Any]] = {}
        # What a file cannot hold: the S3 ETag (an MD5) and headers of objects put through the
        # server, valid while the file's (size, mtime) is the one recorded.
        self._meta: dict[Path, dict[str, Any]] = {}
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=log_requests)
        self.reset()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ---- lifecycle ----
    @property
    def endpoint(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def url(self, bucket: str, key: str = "") -> str:
        return f"{self.endpoint}/{bucket}/{urllib.parse.quote(key)}"

    def storage_options(self) -> dict[str, str]:
        """What ``object_store``'s ``AmazonS3Builder`` (obstore's ``S3Store``) needs here."""
        return storage_options(self.endpoint)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 40)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def start_async(self) -> None:
        self._runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=0.25
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.port, backlog=1024, ssl_context=self.ssl_context
        )
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop_async(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> S3Server:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as e:  # reported to start()'s caller
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
                loop.run_until_complete(self.stop_async())
                # Handlers still waiting (a stall fault) past the shutdown timeout end here.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="s3-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._thread = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- instrumentation ----
    # ---- dispatch ----
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = request.rel_url.raw_path
        if raw.startswith("/_admin/"):
            return await self._admin(request, raw[len("/_admin/") :])
        path = urllib.parse.unquote(raw)[1:]
        bucket, _, key = path.partition("/")
        name = f"{bucket}/{key}" if key else bucket
        q = request.rel_url.query
        op = _operation(request.method, bucket, key, q, request.headers)
        entry: dict[str, Any] = {"t": time.time(), "method": request.method, "op": op, "key": name}
        if "Range" in request.headers:
            entry["range"] = request.headers["Range"]
        for h in ("If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"):
            if h in request.headers:
                entry[h.lower()] = request.headers[h]
        sha = request.headers.get("x-amz-content-sha256", "")
        if sha.startswith("STREAMING-") or "aws-chunked" in request.headers.get(
            "Content-Encoding", ""
        ):
            entry["aws_chunked"] = sha or True
        with self._lock:
            self.requests += 1
            self.ops[op] += 1
            self.keys.setdefault(name, {"requests": 0, "bytes": 0})["requests"] += 1
            self._log.append(entry)
        ctx = _Ctx(request, bucket, key, name, op, entry)
        try:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            with self._lock:
                denied = any(fnmatch.fnmatchcase(name, p) for p in self.forbidden)
            if denied:
                raise S3Error(403, "AccessDenied")
            gate = self._gate_of(name)
            if gate is not None:
                await gate.wait()
            ctx.fault = self._take_fault(request.method, name)
            if ctx.fault is not None:
                entry["fault"] = ctx.fault.kind
                early = await self._early_fault(ctx)
                if early is not None:
                    return early
            resp = await self._dispatch(ctx)
        except S3Error as e:
            resp = self._error(ctx, e)
        except ConnectionError:  # the client hung up (a timeout, or it had all it wanted)
            resp = web.Response(status=499)  # never sent: aiohttp finds the connection gone
        entry["status"] = resp.status
        with self._lock:
            self.statuses[resp.status] += 1
        return resp

    async def _early_fault(self, ctx: _Ctx) -> web.StreamResponse | None:
        fault = ctx.fault
        assert fault is not None
        if fault.kind == "503":
            raise S3Error(503, "SlowDown")
        if fault.kind == "429":
            raise S3Error(429, "TooManyRequests")
        if fault.kind == "500":
            raise S3Error(500, "InternalError")
        if fault.kind == "close" or (fault.kind == "drop" and ctx.op != "GetObject"):
            _cut(ctx.request)
            return web.Response(status=499)  # never sent: the connection is gone
        if fault.kind == "stall" and fault.fraction is None:
            await asyncio.sleep(fault.seconds)
        return None  # drop / stall part-way through a body happen while it is sent

    async def _dispatch(self, ctx: _Ctx) -> web.StreamResponse:
        r, q = ctx.request, ctx.request.rel_url.query
        m = r.method
        if not ctx.bucket:
            if m in ("GET", "HEAD"):
                return self._list_buckets()
            raise S3Error(405, "MethodNotAllowed")
        if m == "PROPFIND":
            return self._propfind(ctx)
        if m == "MKCOL":
            return self._mkcol(ctx)
        bucket_dir = self._bucket_dir(ctx.bucket)
        if not ctx.key:
            return await self._bucket_op(ctx, bucket_dir)
        if not bucket_dir.is_dir():
            raise S3Error(404, "NoSuchBucket", BucketName=ctx.bucket)
        if m in ("GET", "HEAD"):
            if "uploadId" in q:
                raise S3Error(501, "NotImplemented", "ListParts is not implemented")
            return await self._get(ctx, head=m == "HEAD")
        if m == "PUT":
            if "partNumber" in q or "uploadId" in q:
                return await self._upload_part(ctx)
            if "x-amz-copy-source" in r.headers:
                return self._copy(ctx)
            return await self._put(ctx)
        if m == "POST":
            if "uploads" in q:
                return self._create_upload(ctx)
            if "uploadId" in q:
                return await self._complete_upload(ctx)
            raise S3Error(405, "MethodNotAllowed")
        if m == "DELETE":
            if "uploadId" in q:
                return self._abort_upload(ctx)
            return self._delete(ctx)
        raise S3Error(405, "MethodNotAllowed")

    # ---- responses ----
    def _error(self, ctx: _Ctx, e: S3Error) -> web.Response:
        headers = {"x-amz-request-id": ctx.request_id, "x-amz-id-2": ctx.request_id}
        if e.code == "SlowDown" or e.status == 429:
            headers["Retry-After"] = "1"
        if e.status == 416:
            headers["Content-Range"] = f"bytes */{e.extra.get('ActualObjectSize', '*')}"
        if ctx.request.method == "HEAD" or e.status == 304:
            return web.Response(status=e.status, headers=headers)
        extra = "".join(_el(k, v) for k, v in e.extra.items())
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
            + _el("Code", e.code)
            + _el("Message", e.message)
            + extra
            + _el("Resource", "/" + ctx.name)
            + _el("RequestId", ctx.request_id)
            + "</Error>"
        )
        return web.Response(
            status=e.status, body=body.encode(), content_type="application/xml", headers=headers
        )

    def _ok_xml(self, ctx: _Ctx, body: str, status: int = 200) -> web.Response:
        return web.Response(
            status=status,
            body=body.encode(),
            content_type="application/xml",
            headers={"x-amz-request-id": ctx.request_id},
        )

    # ---- admin ----
    async def _admin(self, request: web.Request, what: str) -> web.Response:
        if what == "stats" and request.method == "GET":
            return web.json_response(self.stats(log=request.query.get("log") == "1"))
        if what == "reset" and request.method == "POST":
            self.reset()
            return web.json_response({"ok": True})
        if what == "faults" and request.method == "POST":
            try:
                self.configure(await request.json())
            except (ValueError, KeyError, TypeError) as e:
                return web.json_response({"error": str(e)}, status=400)
            return web.json_response({"ok": True})
        if what == "faults" and request.method == "DELETE":
            self.clear_faults()
            return web.json_response({"ok": True})
        return web.json_response(
            {"error": f"no admin endpoint {request.method} {what}"}, status=404
        )
