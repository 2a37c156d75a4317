"""Shared helpers: timing, memory sampling, page-cache eviction, the synthetic data."""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import io
import mmap
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class NotSupported(Exception):
    """The contender has no way to do this; the message says why (shown in the table)."""


def load_synthetic() -> Any:
    """``pixmo_stream.synthetic``, or the same file loaded by path when the package (its native
    module) is not importable: peers can then be benchmarked before the core is built."""
    try:
        from pixmo_stream import synthetic

        return synthetic
    except ImportError:
        name = "_pixmo_synthetic"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(
            name, ROOT / "python" / "pixmo_stream" / "synthetic.py"
        )
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod


def stats(samples: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }


def repeat(fn: Callable[[], Any], n: int, before: Callable[[], None] | None = None) -> list[float]:
    """Seconds taken by ``fn``, ``n`` times (``before`` runs untimed before each)."""
    out = []
    for _ in range(n):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def files_under(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


# --- memory -------------------------------------------------------------------------------


def _rss_anon() -> int:
    """Anonymous resident memory of this process, bytes (mapped file pages are not counted:
    a reader that maps its file is not charged for the page cache)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak anonymous RSS above the level at entry, sampled every few ms in a thread."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        self.base = _rss_anon()
        self.peak = self.base
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_anon())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_anon())

    @property
    def delta(self) -> int:
        return self.peak - self.base


# --- page cache ---------------------------------------------------------------------------

_libc = None


def _resident_fraction(paths: Iterable[Path]) -> float:
    """Share of the files' pages that sit in the page cache (mincore(2))."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        _libc.mmap.restype = ctypes.c_void_p
        _libc.mmap.argtypes = (
            [ctypes.c_void_p, ctypes.c_size_t] + [ctypes.c_int] * 3 + [ctypes.c_long]
        )
        _libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    page = mmap.PAGESIZE
    total = resident = 0
    for p in paths:
        size = p.stat().st_size
        if size == 0:
            continue
        n = (size + page - 1) // page
        vec = (ctypes.c_ubyte * n)()
        with open(p, "rb") as f:
            ptr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, f.fileno(), 0)
        if ptr is None or ptr == ctypes.c_void_p(-1).value:
            return 1.0
        try:
            if _libc.mincore(ptr, size, vec) != 0:
                return 1.0
            resident += sum(b & 1 for b in bytes(vec))
        finally:
            _libc.munmap(ptr, size)
        total += n
    return resident / total if total else 0.0


def evict(path: Path) -> str:
    """Push ``path``'s files out of the page cache. Returns the method that worked, or raises
    NotSupported. Tries the targeted way first (fadvise DONTNEED on each file, which leaves
    everyone else's cache alone), then the global ``drop_caches``."""
    files = files_under(path)
    os.sync()
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    if _resident_fraction(files) < 0.02:
        return "posix_fadvise(DONTNEED)"
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
    except OSError as e:
        raise NotSupported(f"cannot evict the page cache ({e})") from e
    if _resident_fraction(files) < 0.02:
        return "drop_caches"
    raise NotSupported("the page cache would not let go of the files")


def warm(path: Path) -> None:
    """Read every byte of ``path`` once so that it sits in the page cache."""
    buf = bytearray(8 << 20)
    for p in files_under(path):
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def jpeg_to_rgb(data: bytes) -> Any:
    """The decode every contender's loader does when asked to decode (PIL, RGB, numpy)."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def collate_list(batch: list[Any]) -> list[Any]:
    """Keep a batch as a list of records (bytes and ragged annotations do not stack)."""
    return batch
