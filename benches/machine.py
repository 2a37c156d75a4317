"""What the machine itself can do, measured in the same run: the ceilings the contenders are
read against (a scan cannot beat reading its bytes from the page cache)."""

from __future__ import annotations

import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benches.common import stats

PACKAGES = (
    "pixmo-stream",
    "torch",
    "webdataset",
    "mosaicml-streaming",
    "litdata",
    "datasets",
    "pyarrow",
    "numpy",
    "pillow",
    "simplejpeg",
)


def describe() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "packages": versions,
    }


def memcpy(repeats: int, size: int = 256 << 20) -> dict[str, Any]:
    src = np.ones(size, np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # untimed: fault the destination's pages in first
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t)
    return {"bytes": size, "seconds": stats(times), "gb_per_s": size / min(times) / 1e9}


def file_write(chunks: Sequence[bytes], where: Path, repeats: int) -> dict[str, Any]:
    """Writes `chunks` to one file in `where`, one write call each, no fsync (as the peers
    write): a writer cannot be faster than writing its bytes through the page cache."""
    times = []
    path = where / "file-write-probe"
    for _ in range(repeats):
        os.sync()  # the disk idle at the start, as for every writer measured
        t = time.perf_counter()
        with open(path, "wb") as f:
            for c in chunks:
                f.write(c)
        times.append(time.perf_counter() - t)
        path.unlink()
    size = sum(map(len, chunks))
    return {"bytes": size, "seconds": stats(times), "gb_per_s": size / stats(times)["median"] / 1e9}


def jpeg_decode(images: Sequence[bytes], repeats: int) -> dict[str, Any]:
    """Single-core decode to RGB of the same JPEGs, with PIL and (if installed) simplejpeg."""
    from PIL import Image

    out: dict[str, Any] = {"images": len(images), "bytes": sum(map(len, images))}

    def pil() -> int:
        px = 0
        for b in images:
            with Image.open(io.BytesIO(b)) as im:
                a = np.asarray(im.convert("RGB"))
            px += a.shape[0] * a.shape[1]
        return px

    decoders = {"pil": pil}
    try:
        import simplejpeg

        def sj() -> int:
            px = 0
            for b in images:
                a = simplejpeg.decode_jpeg(b, colorspace="RGB")
                px += a.shape[0] * a.shape[1]
            return px

        decoders["simplejpeg"] = sj
    except ImportError:
        out["simplejpeg"] = "not installed"
    for name, fn in decoders.items():
        times, px = [], 0
        for _ in range(repeats):
            t = time.perf_counter()
            px = fn()
            times.append(time.perf_counter() - t)
        best = statistics.median(times)
        out[name] = {
            "seconds": stats(times),
            "images_per_s": len(images) / best,
            "megapixels_per_s": px / best / 1e6,
            "mb_per_s": out["bytes"] / best / 1e6,
        }
    return out
