"""An HTTP server on 127.0.0.1 that misbehaves per URL path, for the fetcher's tests and bench.

Runs aiohttp.web on its own event loop in a daemon thread, counts every request per path,
and shuts itself down after ``lifetime`` seconds so no test can leave it running. Every
request first waits ``delay`` plus, with ``latency=(low, high)``, a per-path amount between
the two (the same for a path on every run, so contenders in a bench see the same latencies).

A test that must act while a client is mid-run (interrupt it, kill it) holds the server
instead of racing it: with ``hold_after=N`` every request after the first N to this server
waits, unanswered, until ``release()``; ``wait_for_requests(n)`` blocks until n requests
have arrived. Whatever the machine's load, the client cannot finish before the test acts.

Paths (``<k>`` is any token, so each URL is distinct):
  /img/<k>            a small JPEG, different per path (every path waits ``delay`` first)
  /404/<k>, /410/<k>  not found / gone                     /503-once/<k>   503 first, then JPEG
  /429-days/<k>       429, Retry-After three days ahead    /429-once/<k>   429 (1 s), then JPEG
  /throttle/<k>       429 (Retry-After 1) for the first ``throttle_first`` requests to this
                      server, a JPEG after that
  /drip/<k>           promises 1000 bytes, sends one every ``drip_interval`` s
  /reset/<k>          half the body, then a TCP reset     /truncated/<k>  Content-Length > sent
  /html/<k>           an HTML page labelled image/jpeg    /loop/<k>       redirects to itself
  /huge/<k>           2 MB, chunked (no Content-Length)   /huge-cl/<k>    2 MB with its length
  /noai/<k>           a JPEG with ``X-Robots-Tag: noai``  /broken/<k>     a JPEG cut in half
  /hops/<n>-<k>       a chain of exactly n redirects (to /hops/<n-1>-<k>), then a JPEG
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import io
import random
import socket
import struct
import threading
import time
from collections import Counter

from aiohttp import web
from PIL import Image


def jpeg_bytes(key: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small JPEG whose pixels (and so bytes) depend on ``key``."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:3], "big")
    base = Image.new("RGB", size, (seed & 255, (seed >> 8) & 255, (seed >> 16) & 255))
    # Noise makes the JPEG as large as a photo of that size; its seed comes from ``key``.
    grain = random.Random(seed).randbytes(size[0] * size[1])
    noise = Image.frombytes("L", size, grain).convert("RGB")
    img = Image.blend(base, noise, 0.25)
    for x in range(0, size[0], 4):
        img.putpixel((x, x % size[1]), (255 - (seed & 255), 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _path_hash(path: str) -> int:
    return int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "big")


def image_for(path: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """The JPEG the server sends for ``path`` (tests compute expected sha256 from this)."""
    return jpeg_bytes(path, size)


class FaultServer:
    def __init__(
        self,
        *,
        delay: float = 0.0,
        throttle_first: int = 0,
        lifetime: float = 120.0,
        image_size: tuple[int, int] = (64, 48),
        latency: tuple[float, float] | None = None,
        image_pool: int = 0,
        drip_interval: float = 0.2,
        hosts: int = 1,
        hold_after: int | None = None,
    ) -> None:
        self.hosts = hosts
        self.ports: list[int] = []
        self.delay = delay
        self.latency = latency
        self.drip_interval = drip_interval
        # A pool of distinct images reused across paths: a bench can serve 100,000 URLs
        # without encoding 100,000 JPEGs first.
        self._pool = [jpeg_bytes(f"pool-{i}", image_size) for i in range(image_pool)]
        self.throttle_first = throttle_first
        self.lifetime = lifetime
        self.image_size = image_size
        self.requests: Counter[str] = Counter()
        self.user_agents: Counter[str] = Counter()
        self._served = 0  # sum(self.requests.values()), kept as a count: O(1) per request
        self.arrivals: list[tuple[float, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # notified on every request
        self.hold_after = hold_after
        self._gate: asyncio.Event | None = None  # made on the server's loop
        self._seen_once: set[str] = set()
        self._images: dict[str, bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FaultServer:
        thread = threading.Thread(target=self._serve, name="fault-server", daemon=True)
        thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault server did not start")
        self._thread = thread
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not self._stopped.is_set():
            loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str, host: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[host]}{path}"

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests[path]

    def total_requests(self) -> int:
        with self._lock:
            return self._served

    def wait_for_requests(self, n: int, timeout: float = 60.0) -> bool:
        """Blocks until ``n`` requests have arrived (False if ``timeout`` s pass first)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self._served >= n, timeout)

    def release(self) -> None:
        """Answers the requests ``hold_after`` holds, and every later one at once."""
        loop, gate = self._loop, self._gate
        if loop is not None and gate is not None:
            loop.call_soon_threadsafe(gate.set)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._gate = asyncio.Event()
        app = web.Application()
        app.router.add_get("/{kind}/{key}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        # Each port is a separate host to a client's per-host limits: ``hosts`` ports serve
        # the same paths, as the many hosts of a real URL list would.
        for _ in range(self.hosts):
            site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
            await site.start()
            server = site._server
            assert server is not None
            self.ports.append(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        self.port = self.ports[0]
        self._ready.set()
        deadline = time.monotonic() + self.lifetime
        while not self._stopped.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self._runner.cleanup()

    # -- behaviour ------------------------------------------------------------------------------
    def _image(self, path: str) -> bytes:
        path = path.split("?", 1)[0]
        if self._pool:
            return self._pool[_path_hash(path) % len(self._pool)]
        body = self._images.get(path)
        if body is None:
            body = self._images[path] = image_for(path, self.image_size)
        return body

    def _first_time(self, path: str) -> bool:
        with self._lock:
            first = path not in self._seen_once
            self._seen_once.add(path)
            return first

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # Counts and once-only faults go by path and query (a bench gives each contender its
        # own ?run=), latency and image bytes by path alone (so every contender gets the same).
        path = request.path_qs
        kind = request.match_info["kind"]
        with self._lock:
            self.requests[path] += 1
            self.user_agents[request.headers.get("User-Agent", "")] += 1
            self._served += 1
            served = self._served
            self.arrivals.append((time.monotonic(), path))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._arrived.notify_all()
        try:
            if self.hold_after is not None and served > self.hold_after:
                assert self._gate is not None
                await self._gate.wait()
            delay = self.delay
            if self.latency is not None:
                low, high = self.latency
                delay += low + (high - low) * (_path_hash(request.path) % 10_007) / 10_006
            if delay:
                await asyncio.sleep(delay)
            return await self._respond(request, kind, path, served)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _respond(
        self, request: web.Request, kind: str, path: str, served: int
    ) -> web.StreamResponse:
        jpeg = {"Content-Type": "image/jpeg"}
        if kind == "img":
            return web.Response(body=self._image(path), headers=jpeg)
        if kind in ("404", "410"):
            return web.Response(status=int(kind), text="gone")
        if kind == "503-once":
            if self._first_time(path):
                return web.Response(status=503, text="busy")
            return web.Response(body=self._image(path), headers=jpeg)
        if kind == "429-once":
            if self._first_time(path):
                return web.Response(status=429, headers={"Retry-After": "1"})
            return web.Response(body=self._image(path), headers=jpeg)
        if kind == "429-days":
            when = email.utils.formatdate(time.time() + 3 * 86400, usegmt=True)
            return web.Response(status=429, headers={"Retry-After": when})
        if kind == "throttle":
            if served <= self.throttle_first:
                return web.Response(status=429, headers={"Retry-After": "1"})
            return web.Response(body=self._image(path), headers=jpeg)
        if kind == "html":
            page = b"<!DOCTYPE html><html><body>Image not available</body></html>"
            return web.Response(body=page, headers=jpeg)
        if kind == "loop":
            raise web.HTTPFound(location=path)
        if kind == "hops":
            left, _, key = request.match_info["key"].partition("-")
            if int(left) > 0:
                raise web.HTTPFound(location=f"/hops/{int(left) - 1}-{key}")
            return web.Response(body=self._image(path), headers=jpeg)
        if kind == "noai":
            return web.Response(body=self._image(path), headers={**jpeg, "X-Robots-Tag": "noai"})
        if kind == "broken":
            body = self._image(path)
            return web.Response(body=body[: len(body) // 2], headers=jpeg)
        if kind in ("huge", "huge-cl"):
            return await self._huge(request, with_length=kind == "huge-cl")
        if kind == "drip":
            return await self._drip(request)
        if kind in ("reset", "truncated"):
            return await self._cut(request, path, reset=kind == "reset")
        return web.Response(status=404)

    async def _huge(self, request: web.Request, *, with_length: bool) -> web.StreamResponse:
        total = 2_000_000
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        if with_length:
            resp.content_length = total
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        block = b"\xff" * 65536
        sent = 0
        try:
            while sent < total:
                await resp.write(block[: total - sent])
                sent += len(block)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = 1000
        await resp.prepare(request)
        try:
            for _ in range(1000):
                await resp.write(b"\xff")
                await asyncio.sleep(self.drip_interval)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def _cut(self, request: web.Request, path: str, *, reset: bool) -> web.StreamResponse:
        body = self._image(path)
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = len(body) + (0 if reset else 5000)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2] if reset else body)
        transport = request.transport
        assert transport is not None
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
        return resp
