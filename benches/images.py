"""Image decoding and Molmo preprocessing: pixmo-stream's Rust path against the usual ones.

    python -m benches.images --quick                 # a few images, under a minute
    python -m benches.images --preset pixmo-cap      # PixMo-sized photos (~0.5 MB JPEGs)

Every row is timed in this run, on the same encoded images (``pixmo_stream.synthetic``),
single-threaded unless it says otherwise (torch is held to one thread too): images per
second of CPU time (``cpu``) or of wall time (``wall``, for thread scaling, which needs idle
cores), over a pass through all images, the best of ``--repeats`` passes run round-robin.
Ratios are against the row named in their column. Build with ``maturin develop --release``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def timed(fn: Callable[[], Any], clock: Callable[[], float]) -> float:
    t0 = clock()
    fn()
    return clock() - t0


class Task:
    """Contenders for one task, timed round-robin (each repeat runs every contender once, so
    a burst of load from elsewhere hits them alike); each keeps its best pass.

    Single-threaded rows are timed in CPU seconds of this process (``time.process_time``:
    all its threads, so a decoder's helper threads count), which other processes' load does
    not inflate; thread-scaling rows need wall time and idle cores."""

    def __init__(self, name: str, images: list[bytes], wall: bool = False) -> None:
        self.name, self.images, self.wall = name, images, wall
        self.entries: list[tuple[str, Callable[[], Any], str | None]] = []

    def per_image(self, name: str, fn: Callable[[bytes], Any], vs: str | None = None) -> None:
        self.entries.append((name, lambda: [fn(d) for d in self.images], vs))

    def batch(self, name: str, fn: Callable[[list[bytes]], Any], vs: str | None = None) -> None:
        self.entries.append((name, lambda: fn(self.images), vs))

    def run(self, repeats: int) -> dict[str, float]:
        clock = time.perf_counter if self.wall else time.process_time
        for _, fn, _ in self.entries:
            fn()  # warm caches and lazy imports
        best = {n: float("inf") for n, _, _ in self.entries}
        for _ in range(repeats):
            for n, fn, _ in self.entries:
                best[n] = min(best[n], timed(fn, clock))
        return {n: len(self.images) / t for n, t in best.items()}


def pil_decode(data: bytes) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def view_size(w: int, h: int, side: int = 336) -> tuple[int, int]:
    if max(w, h) <= side:
        return w, h
    return (side, max(1, round(h * side / w))) if w >= h else (max(1, round(w * side / h)), side)


def pil_view(data: bytes, draft: bool = False) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        size = view_size(*im.size)
        if draft:
            im.draft("RGB", size)
        return np.asarray(im.convert("RGB").resize(size, Image.Resampling.BILINEAR))


def run(preset: str, n: int, n_molmo: int, repeats: int) -> list[dict[str, Any]]:
    import pixmo_stream as ps
    from pixmo_stream import synthetic

    images = [r["image"] for r in synthetic.generate_records(n, seed=7, preset=preset)]
    mean_kb = sum(map(len, images)) / len(images) / 1e3
    sizes = [ps.image.probe(d) for d in images]
    mean_mp = sum(i.width * i.height for i in sizes) / len(sizes) / 1e6
    print(f"\n## preset {preset}: {n} JPEGs, mean {mean_kb:.0f} KB, {mean_mp:.2f} MP", flush=True)
    rows: list[dict[str, Any]] = []
    print(f"| {'task':<24} | {'implementation':<36} | {'images/s':>9} | ratio")
    print(f"|{'-' * 26}|{'-' * 38}|{'-' * 11}|------")

    def report(task: Task) -> None:
        rates = task.run(repeats)
        for name, _, vs in task.entries:
            rate, ref = rates[name], rates.get(vs) if vs else None
            rows.append(
                {
                    "preset": preset,
                    "task": task.name,
                    "name": name,
                    "images_per_s": rate,
                    "clock": "wall" if task.wall else "cpu",
                    "vs": vs,
                    "ratio": rate / ref if ref else None,
                }
            )
            ratio = f"{rate / ref:6.2f}x vs {vs}" if ref else ""
            print(f"| {task.name:<24} | {name:<36} | {rate:9.1f} | {ratio}", flush=True)

    decode = Task("decode (cpu)", images)
    base = "PIL"
    try:
        import simplejpeg

        decode.per_image("simplejpeg (libjpeg-turbo)", lambda d: simplejpeg.decode_jpeg(d, "RGB"))
        base = "simplejpeg (libjpeg-turbo)"
    except ImportError:
        print("| simplejpeg not installed (pip install simplejpeg): PIL is the baseline |")
    decode.per_image("PIL", pil_decode)
    decode.per_image("ps.image.decode", ps.image.decode, base)
    report(decode)

    view = Task("336 px view (cpu)", images)
    pil = "PIL decode + resize"
    view.per_image(pil, pil_view)
    view.per_image("PIL draft + resize", lambda d: pil_view(d, True), pil)
    view.per_image(
        "ps decode(max_side=336, fast=False)",
        lambda d: ps.image.decode(d, max_side=336, fast=False),
        pil,
    )
    view.per_image(
        "ps decode(max_side=336) (scaled)", lambda d: ps.image.decode(d, max_side=336), pil
    )
    report(view)

    many = Task("decode_many (wall)", images, wall=True)
    many.batch("threads=1", lambda b: ps.image.decode_many(b, threads=1))
    many.batch("threads=2", lambda b: ps.image.decode_many(b, threads=2), "threads=1")
    report(many)

    try:
        import torch

        from benches import molmo_reference
    except ImportError:
        print("| molmo: torch/torchvision not installed, no Python baseline |")
        return rows
    torch.set_num_threads(1)
    molmo = Task("molmo (cpu)", images[:n_molmo])
    py = "Python (PIL, torchvision, numpy)"
    fast = ps.image.MolmoConfig(exact=False)
    fast_u8 = ps.image.MolmoConfig(exact=False, normalize=False)
    molmo.per_image(py, molmo_reference.preprocess)
    molmo.per_image("ps exact", ps.image.molmo_preprocess, py)
    molmo.per_image("ps fast", lambda d: ps.image.molmo_preprocess(d, fast), py)
    molmo.per_image("ps fast, uint8 crops", lambda d: ps.image.molmo_preprocess(d, fast_u8), py)
    report(molmo)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=["small", "pixmo-cap", "both"], default="both")
    p.add_argument("--images", type=int, default=60, help="images per pass (default 60)")
    p.add_argument("--molmo-images", type=int, default=12, help="images for the Molmo rows")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="10 images, 3 for Molmo, 2 repeats")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args(argv)
    if a.quick:
        a.images, a.molmo_images, a.repeats = 10, 3, 2
    sys.path.insert(0, str(ROOT))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    import pixmo_stream as ps

    print(f"# images benchmark: {os.cpu_count()} CPUs, load average {load}")
    print(f"# full-size JPEG decoder: {ps.image.jpeg_decoder()}")
    rows = []
    for preset in ["small", "pixmo-cap"] if a.preset == "both" else [a.preset]:
        rows += run(preset, a.images, min(a.molmo_images, a.images), a.repeats)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
