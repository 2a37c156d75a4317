"""The server in another process: ``S3ServerProcess`` and the ``python -m tests.s3_server``
command line (``main``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .protocol import MIN_PART_SIZE, storage_options
from .server import S3Server

ROOT = Path(__file__).resolve().parent.parent.parent


class S3ServerProcess:
    """``python -m tests.s3_server`` in a child process, driven over ``/_admin``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        latency: float = 0.0,
        port: int = 0,
        min_part_size: int = MIN_PART_SIZE,
        lifetime: float = 3600.0,
    ) -> None:
        self.root = Path(root)
        self.argv = [
            sys.executable,
            "-m",
            "tests.s3_server",
            "--root",
            str(self.root),
            "--port",
            str(port),
            "--latency",
            str(latency),
            "--min-part-size",
            str(min_part_size),
            "--lifetime",
            str(lifetime),
        ]
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def storage_options(self) -> dict[str, str]:
        return storage_options(self.endpoint)

    def start(self) -> S3ServerProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"s3_server did not start (first line {line!r})")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def __enter__(self) -> S3ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, method: str, what: str, doc: Any = None) -> Any:
        data = None if doc is None else json.dumps(doc).encode()
        req = urllib.request.Request(f"{self.endpoint}/_admin/{what}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def stats(self, log: bool = False) -> dict[str, Any]:
        return self._call("GET", "stats?log=1" if log else "stats")  # type: ignore[no-any-return]

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def configure(self, doc: dict[str, Any]) -> None:
        self._call("POST", "faults", doc)

    def inject(self, kind: str, count: int = 1, match: str = "*", **kw: Any) -> None:
        self.configure({"faults": [{"kind": kind, "count": count, "match": match, **kw}]})

    def set_latency(self, seconds: float) -> None:
        self.configure({"latency": seconds})

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")


def main(argv: list[str] | None = None) -> None:
    from . import __doc__ as package_doc  # the package docstring, as before the split

    ap = argparse.ArgumentParser(description=(package_doc or "").split("\n")[0])
    ap.add_argument("--root", required=True, help="directory served: ROOT/bucket/key")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to each request")
    ap.add_argument("--min-part-size", type=int, default=MIN_PART_SIZE)
    ap.add_argument(
        "--lifetime", type=float, default=3600.0, help="exit after this many seconds (0: never)"
    )
    args = ap.parse_args(argv)
    server = S3Server(
        args.root,
        host=args.host,
        port=args.port,
        latency=args.latency,
        min_part_size=args.min_part_size,
    )
    parent = os.getppid()

    async def serve() -> None:
        await server.start_async()
        print(f"PORT {server.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        deadline = time.monotonic() + args.lifetime if args.lifetime > 0 else float("inf")
        # An orphaned server (its parent killed) ends itself instead of lingering.
        while not stop.is_set() and time.monotonic() < deadline and os.getppid() == parent:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        await server.stop_async()

    asyncio.run(serve())
