"""Decoded images at training speed: pixmo-stream's read-ahead decode against peers that decode
in DataLoader workers (as their docs show), and against the machine's own decode limit.

    python -m benches.decode_stream                 # ~2,000 PixMo-sized photos, a few minutes
    python -m benches.decode_stream --records 600   # quicker

Everything is measured in the same run on the same images (``pixmo_stream.synthetic``'s
``pixmo-cap`` preset: 1024-2048 px photos, ~0.5 MB JPEGs):

- **limit**: the same decoder (``pixmo_stream.image.decode_many``, same options) over the
  same encoded images held in memory, on 2 threads, with nothing else: what 2 cores can decode;
- **pixmo-stream**: ``StreamingDataset(decode=Decode(resize=...), batch_size=32)``, shuffled,
  through ``pixmo_stream.DataLoader`` with 0 and 2 workers;
- **peers**: MosaicML Streaming (MDS) and WebDataset, shuffled, decoding with PIL and resizing
  with PIL in a ``torch`` DataLoader with 2 workers (and 0), as their docs show;
- **GPU** (only where CUDA is available): ``Decode(resize=..., device="cuda")`` (torchvision's
  batched nvJPEG decoder in the iterating process) through the DataLoader with 0 and 2 workers,
  and its limit: nvJPEG and the resize on the same images in memory, batches of 32;
- **Molmo preprocessing** (when ``pixmo_stream.image`` has it): ``decode="molmo"`` against a
  peer loader (MDS, 2 workers) doing what Molmo's loader does in Python: PIL decode, torch
  antialiased bilinear resize (what torchvision's ``resize`` runs on tensors), numpy crops.

- **workers** (what most training scripts run): ``decode="rgb"``, ``Decode(resize=...)``,
  ``decode="molmo"`` (float32 crops) and Molmo's fast mode (uint8 crops) through
  ``pixmo_stream.DataLoader`` with 0 workers, 2 workers with the default collate, and 2
  workers with a ``collate_fn`` of the user's that returns the records, each set against its
  0-worker row measured right before it (best of two rounds each), and the two worker rows
  again with ``PIXMO_STREAM_WORKER_IPC=copy`` (arrays pickled, tensors through torch's shared
  memory: the transport before shared-memory arenas); with the CPU time an image of the
  loader's processes, which other work on the machine moves much less than rates.

    python -m benches.decode_stream --preset small --only-workers   # 0.5 MP photos, workers only

Rates count images after the first batch. Results: ``benches/results/decode_stream.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from benches.common import ROOT, load_synthetic

RESULTS = ROOT / "benches" / "results"
DATA = ROOT / "benches" / "out" / "decode_stream"
BATCH = 32


# ---- data --------------------------------------------------------------------------------
def make_data(n: int, preset: str, seed: int) -> dict[str, Path]:
    """The same records written as pixmo-stream, MDS and WebDataset (cached between runs)."""
    import pixmo_stream as ps

    root = DATA / f"{preset}-{n}-{seed}"
    done = root / "done"
    paths = {"pixmo": root / "pixmo", "mds": root / "mds", "wds": root / "wds"}
    if done.exists():
        return paths
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    synthetic = load_synthetic()
    records = list(synthetic.generate_records(n, seed, preset, workers=2))
    with ps.Writer(str(paths["pixmo"]), schema=synthetic.pixmo_schema()) as w:
        w.write_many(records)
    from benches.contenders.mds import MDSContender
    from benches.contenders.wds import WebDatasetContender

    for name, c in (("mds", MDSContender()), ("wds", WebDatasetContender())):
        if c.missing() is None:
            c.write(records, paths[name])
    done.write_text("ok")
    return paths


def encoded_images(path: Path, n: int) -> list[bytes]:
    import pixmo_stream as ps

    ds = ps.Dataset(str(path))
    return [bytes(r["image"]) for r in ds.iter(columns=["image"])][:n]


# ---- timing ------------------------------------------------------------------------------
def tree_cpu_s(pids: list[int] | None = None) -> tuple[list[int], float]:
    """CPU seconds used so far by `pids` (default: this process and its child processes, the
    DataLoader workers), all threads: the work a loader costs, whatever else the machine runs.
    Returns the pids too, to read the same processes again."""
    import multiprocessing

    if pids is None:
        pids = [os.getpid()] + [c.pid for c in multiprocessing.active_children()]
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return pids, total / tick


def rate(
    batches: Iterable[Any],
    count: Callable[[Any], int],
    limit: int,
    cpu: Callable[..., tuple[list[int], float]] | None = None,
) -> dict[str, float]:
    """Images per second over up to `limit` images, timed from the first quarter on: by then
    every loader's queues (read-ahead, worker prefetch) are as full as they stay, so the
    images taken after it were made after it (timing from the first batch would credit a
    loader with images its workers decoded while the first batch was awaited)."""
    t0 = time.perf_counter()
    it = iter(batches)
    n = count(next(it))
    t_first = time.perf_counter() - t0
    while n < limit // 4:
        n += count(next(it))
    t1, n1 = time.perf_counter(), n
    pids, c1 = cpu() if cpu is not None else ([], 0.0)
    for b in it:
        n += count(b)
        if n >= limit:
            break
    t2 = time.perf_counter()
    extra = {} if cpu is None else {"cpu_ms_per_image": 1000 * (cpu(pids)[1] - c1) / (n - n1)}
    return {
        **extra,
        "images_per_s": (n - n1) / (t2 - t1),
        "overall_images_per_s": n / (t2 - t0),
        "first_batch_s": t_first,
        "images": n,
    }


GPU_KEY = "pixmo-stream, decode='cuda' (nvJPEG)"


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# Decode(resize=...) as it comes: a JPEG this much larger than 224 px is decoded at 1/4 scale.
FAST_KEY = "pixmo-stream, 0 workers, default (reduced-scale decodes)"


def best_rate(images: list[bytes], decode_all: Callable[[list[bytes]], object]) -> dict[str, float]:
    """`decode_all` over the images in memory, warmed on a few first: the best of two runs
    (other processes on the machine only slow it down)."""
    decode_all(images[:BATCH])
    best = 0.0
    for _ in range(2):
        t = time.perf_counter()
        decode_all(images)
        best = max(best, len(images) / (time.perf_counter() - t))
    return {"images_per_s": best, "images": len(images)}


def limit_rate(images: list[bytes], size: int, fast: bool) -> dict[str, float]:
    """The same decoder on the same images held in memory, 2 threads, nothing else."""
    from pixmo_stream import image

    return best_rate(
        images, lambda b: image.decode_many(b, resize=(size, size), fast=fast, threads=2)
    )


def ours(path: Path, size: int, workers: int, fast: bool, limit: int) -> dict[str, float]:
    import pixmo_stream as ps

    ds = ps.StreamingDataset(
        str(path),
        seed=0,
        batch_size=BATCH,
        columns=["image", "captions"],
        decode=ps.Decode(resize=(size, size), fast=fast),
    )
    loader = ps.DataLoader(ds, num_workers=workers)
    out = rate(loader, lambda b: len(b["image"]), limit)
    shape = tuple(next(iter(loader))["image"].shape)
    assert shape == (BATCH, size, size, 3), shape
    return out


def gpu_limit(images: list[bytes], size: int, device: str = "cuda") -> dict[str, float]:
    """nvJPEG and the GPU resize on the encoded images in memory, batches of 32, as
    `decode="cuda"` runs them (the warm-up also sets up nvJPEG's handles and buffers)."""
    import torch

    import pixmo_stream as ps
    from pixmo_stream.decoding import decode_on_gpu

    spec = ps.Decode(resize=(size, size), device="cuda")

    def one_pass(batch_images: list[bytes]) -> None:
        for i in range(0, len(batch_images), BATCH):
            decode_on_gpu({"image": batch_images[i : i + BATCH]}, spec, "raise", device)
        if device == "cuda":
            torch.cuda.synchronize()

    return best_rate(images, one_pass)


def ours_gpu(path: Path, size: int, workers: int, limit: int) -> dict[str, float]:
    import torch

    import pixmo_stream as ps

    ds = ps.StreamingDataset(
        str(path),
        seed=0,
        batch_size=BATCH,
        columns=["image", "captions"],
        decode=ps.Decode(resize=(size, size), device="cuda"),
    )

    def count(b: Any) -> int:
        torch.cuda.synchronize()  # the batch's pixels are there, as a training step needs them
        return len(b["image"])

    out = rate(ps.DataLoader(ds, num_workers=workers), count, limit)
    out["device"] = torch.cuda.get_device_name()
    return out


def pil_resized(data: bytes, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))


def stack_images(batch: list[dict[str, Any]]) -> Any:
    import torch

    return torch.from_numpy(np.stack([r["image"] for r in batch]))


def peer_mds(path: Path, transform: Callable[[bytes], Any], workers: int, collate: Any) -> Any:
    from streaming import StreamingDataLoader, StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()

    class Decoding(StreamingDataset):
        def get_item(self, idx: int) -> Any:
            rec = super().get_item(idx)
            return {"image": transform(rec["image"]), "captions": rec["captions"]}

    ds = Decoding(local=str(path), remote=None, shuffle=True, shuffle_seed=0, batch_size=BATCH)
    return StreamingDataLoader(ds, batch_size=BATCH, num_workers=workers, collate_fn=collate)


def peer_wds(path: Path, transform: Callable[[bytes], Any], workers: int, collate: Any) -> Any:
    import webdataset as wds
    from torch.utils.data import DataLoader

    shards = [str(p) for p in sorted(path.glob("*.tar"))]
    ds = (
        wds.WebDataset(shards, shardshuffle=len(shards), seed=0, empty_check=False)
        .shuffle(1000, seed=0)
        .map(
            lambda s: {"image": transform(s["jpg"]), "captions": json.loads(s["json"])["captions"]}
        )
    )
    return DataLoader(ds, batch_size=BATCH, num_workers=workers, collate_fn=collate)


# ---- Molmo -------------------------------------------------------------------------------
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def molmo_in_python(data: bytes) -> np.ndarray:
    """What Molmo's loader does per image (``overlap-and-resize-c2``, 12 crops of 336, stride
    224), in Python: PIL decode, torch antialiased bilinear resize, numpy normalise and crops.
    Returns the crops ``[n, 336, 336, 3]`` float32 (the global view first)."""
    import torch
    import torch.nn.functional as F
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        rgb = np.array(ImageOps.exif_transpose(im.convert("RGB")))
    h, w = rgb.shape[:2]
    cands = sorted(
        ((i, j) for i in range(1, 13) for j in range(1, 13) if i * j <= 12),
        key=lambda t: (t[0] * t[1], t[0]),
    )
    scales = [
        min(np.float32(224 * i) / np.float32(h - 112), np.float32(224 * j) / np.float32(w - 112))
        for i, j in cands
    ]
    ok = [k for k, s in enumerate(scales) if s >= 1]
    k = min(ok, key=lambda k: scales[k]) if ok else max(range(len(cands)), key=lambda k: scales[k])
    ti, tj = cands[k]

    def resize_and_pad(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
        s = min(np.float32(out_h) / np.float32(h), np.float32(out_w) / np.float32(w))
        sh, sw = int(h * s), int(w * s)
        t = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
        t = F.interpolate(t, size=(sh, sw), mode="bilinear", antialias=True)
        canvas = np.zeros((out_h, out_w, 3), np.float32)
        top, left = (out_h - sh) // 2, (out_w - sw) // 2
        canvas[top : top + sh, left : left + sw] = t[0].permute(1, 2, 0).numpy()
        return (canvas - MEAN) / STD

    glob = resize_and_pad(rgb, 336, 336)
    big = resize_and_pad(rgb, 224 * ti + 112, 224 * tj + 112)
    crops = [glob]
    for i in range(ti):
        for j in range(tj):
            crops.append(big[224 * i : 224 * i + 336, 224 * j : 224 * j + 336])
    return np.stack(crops)


def molmo_rows(args: argparse.Namespace, paths: dict[str, Path]) -> dict[str, Any]:
    import pixmo_stream as ps
    from pixmo_stream import image

    if not hasattr(image, "molmo_preprocess"):
        return {"skipped": "pixmo_stream.image has no Molmo preprocessing in this build"}
    n = max(64, args.records // 8)
    out: dict[str, Any] = {}
    fast = ps.Decode(molmo=image.MolmoConfig(exact=False, normalize=False))
    for name, workers, decode in (
        ("pixmo-stream, 0 workers", 0, "molmo"),
        ("pixmo-stream, 2 workers", 2, "molmo"),
        ("pixmo-stream, 0 workers, fast mode (uint8 crops)", 0, fast),
    ):
        ds = ps.StreamingDataset(
            str(paths["pixmo"]), seed=0, batch_size=8, columns=["image"], decode=decode
        )
        out[name] = rate(ps.DataLoader(ds, num_workers=workers), lambda b: len(b["image"]), n)
        print(f"molmo, {name}: {out[name]['images_per_s']:.1f} images/s")
    peer = "MDS, PIL + torch resize + numpy crops, 2 workers"
    out[peer] = rate(peer_mds(paths["mds"], molmo_in_python, 2, list), len, n)
    print(f"molmo, {peer}: {out[peer]['images_per_s']:.1f} images/s")
    return out


# ---- DataLoader workers --------------------------------------------------------------------
def records_as_they_are(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A user's collate_fn (module level, so that spawned workers can import it)."""
    return records


def worker_decodes(size: int) -> dict[str, tuple[Any, int]]:
    """The decodes of the worker rows, with their batch sizes (13 float32 Molmo crops are
    17.6 MB an image: batches of 8)."""
    import pixmo_stream as ps
    from pixmo_stream import image

    out: dict[str, tuple[Any, int]] = {
        '"rgb"': ("rgb", BATCH),
        f"Decode(resize=({size}, {size}))": (ps.Decode(resize=(size, size)), BATCH),
    }
    if hasattr(image, "molmo_preprocess"):
        out['"molmo" (float32)'] = ("molmo", 8)
        fast = ps.Decode(molmo=image.MolmoConfig(exact=False, normalize=False))
        out["Molmo fast mode (uint8)"] = (fast, 8)
    return out


# (workers, the user's collate_fn, arrays pickled as before: PIXMO_STREAM_WORKER_IPC=copy)
# (workers, a collate_fn of the user's, IPC=copy, in_process): in_process=None is what
# pixmo_stream.DataLoader does by default (with the default collate: read in this process).
WORKER_SETUPS = {
    "0 workers": (0, False, False, None),
    "num_workers=2 as the loader chooses (default collate: in process)": (2, False, False, None),
    "2 worker processes, default collate": (2, False, False, False),
    "2 workers, collate_fn returning the records": (2, True, False, None),
    "2 worker processes, default collate, IPC=copy": (2, False, True, False),
    "2 workers, collate_fn returning the records, IPC=copy": (2, True, True, None),
}


def ours_workers(
    path: Path,
    decode: Any,
    batch: int,
    setup: tuple[int, bool, bool, bool | None],
    limit: int,
) -> dict[str, float]:
    import pixmo_stream as ps

    workers, user, copy, in_process = setup
    ds = ps.StreamingDataset(
        str(path),
        seed=0,
        batch_size=batch,
        columns=["image", "captions"],
        decode=decode,
        collate_fn=records_as_they_are if user else None,
    )

    def count(b: Any) -> int:
        return len(b) if isinstance(b, list) else len(b["image"])

    cpu = tree_cpu_s if os.path.exists("/proc/self/stat") else None
    before = os.environ.pop("PIXMO_STREAM_WORKER_IPC", None)
    if copy:  # (read by the workers, which inherit this process's environment)
        os.environ["PIXMO_STREAM_WORKER_IPC"] = "copy"
    try:
        loader = ps.DataLoader(ds, num_workers=workers, in_process=in_process)
        return rate(loader, count, limit, cpu)
    finally:
        os.environ.pop("PIXMO_STREAM_WORKER_IPC", None)
        if before is not None:
            os.environ["PIXMO_STREAM_WORKER_IPC"] = before


def worker_rows(args: argparse.Namespace, paths: dict[str, Path]) -> dict[str, Any]:
    """Each decode with 0 and 2 workers, rates and ratios against the 0-worker row of the same
    round; two rounds, the best rate of each row kept (other processes only slow a run)."""
    out: dict[str, Any] = {}
    for name, (decode, batch) in worker_decodes(args.size).items():
        # (short of the whole epoch, whose end drains the queues)
        n = args.records * 9 // 10 if batch == BATCH else max(96, args.records // 8)
        best: dict[str, dict[str, float]] = {}
        for _ in range(2):
            for setup, how in WORKER_SETUPS.items():
                r = ours_workers(paths["pixmo"], decode, batch, how, n)
                if setup not in best or r["images_per_s"] > best[setup]["images_per_s"]:
                    best[setup] = r
        base = best["0 workers"]["images_per_s"]
        for setup, r in best.items():
            r["vs_0_workers"] = r["images_per_s"] / base
            cpu = r.get("cpu_ms_per_image")
            print(
                f"workers, {name}, {setup}: {r['images_per_s']:.1f} images/s "
                f"({r['vs_0_workers']:.2f}x)" + (f", {cpu:.2f} CPU-ms an image" if cpu else "")
            )
        out[name] = {"batch": batch, **best}
    return out


def worker_markdown(rows: dict[str, Any]) -> list[str]:
    """Rates (and against 0 workers), then CPU time an image of the loader's processes: on a
    machine shared with other work, rates move with the others' load, CPU time much less."""
    setups = list(WORKER_SETUPS)
    lines = [
        "| decode (batch) | " + " | ".join(setups) + " |",
        "|---|" + "---|" * len(setups),
    ]
    for name, row in rows.items():
        cells = [f"{row['0 workers']['images_per_s']:,.1f}"] + [
            f"{row[s]['images_per_s']:,.1f} ({row[s]['vs_0_workers']:.2f}x)" for s in setups[1:]
        ]
        lines.append(f"| {name} ({row['batch']}) | " + " | ".join(cells) + " |")
    if all("cpu_ms_per_image" in row[s] for row in rows.values() for s in setups):
        lines += ["", "CPU milliseconds an image (all processes and threads of the loader):", ""]
        lines += ["| decode | " + " | ".join(setups) + " |", "|---|" + "---|" * len(setups)]
        for name, row in rows.items():
            base = row["0 workers"]["cpu_ms_per_image"]
            cells = [f"{base:.2f}"] + [
                f"{row[s]['cpu_ms_per_image']:.2f} ({row[s]['cpu_ms_per_image'] / base:.2f}x)"
                for s in setups[1:]
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


# ---- report ------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--preset", default="pixmo-cap")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only-workers", action="store_true", help="only the DataLoader worker rows")
    args = ap.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    t = time.perf_counter()
    paths = make_data(args.records, args.preset, args.seed)
    images = encoded_images(paths["pixmo"], args.records)
    mean_kb = sum(map(len, images)) / len(images) / 1e3
    print(f"data: {len(images)} images, {mean_kb:.0f} KB mean ({time.perf_counter() - t:.0f} s)")
    from pixmo_stream import image

    print(f"full-size JPEG decoder: {image.jpeg_decoder()}")
    if args.only_workers:
        workers = worker_rows(args, paths)
        lines = [
            f"# DataLoader workers ({args.records} {args.preset} images, {mean_kb:.0f} KB mean "
            "JPEG, shuffled; images/s, and against 0 workers in the same round)",
            "",
            *worker_markdown(workers),
        ]
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "decode_stream_workers.md").write_text("\n".join(lines) + "\n")
        (RESULTS / "decode_stream_workers.json").write_text(json.dumps(workers, indent=2))
        print("\n".join(lines))
        return
    size, n = args.size, args.records
    rows: dict[str, dict[str, float]] = {}

    def run(name: str, fn: Callable[[], dict[str, float]]) -> None:
        try:
            rows[name] = fn()
            print(f"{name}: {rows[name]['images_per_s']:.0f} images/s")
        except Exception as e:  # a peer that is not installed or fails: say so, go on
            print(f"{name}: failed ({type(e).__name__}: {e})")

    sample = images[:600]
    run("limit: same decoder, 2 threads, in memory", lambda: limit_rate(sample, size, False))
    run("limit, reduced-scale decodes", lambda: limit_rate(sample, size, True))
    # Other processes on a shared machine move every rate; each of our runs is also set
    # against the limit measured right before and right after it.
    against_limit: dict[str, float] = {}

    def ours_row(name: str, workers: int, fast: bool) -> None:
        before = limit_rate(sample, size, fast)["images_per_s"]
        run(name, lambda: ours(paths["pixmo"], size, workers, fast, n))
        after = limit_rate(sample, size, fast)["images_per_s"]
        if name in rows:
            against_limit[name] = rows[name]["images_per_s"] / ((before + after) / 2)
            print(f"  {against_limit[name]:.2f} of the limit around it ({before:.0f}, {after:.0f})")

    for w in (0, 2):
        ours_row(f"pixmo-stream, {w} workers, fast=False", w, False)
    ours_row(FAST_KEY, 0, True)

    if _cuda():
        run("limit, nvJPEG on the GPU, in memory", lambda: gpu_limit(sample, size))
        for w in (0, 2):
            run(f"{GPU_KEY}, {w} workers", lambda w=w: ours_gpu(paths["pixmo"], size, w, n))
    else:
        print("no CUDA device: no decode='cuda' rows")

    def resize(b: bytes) -> np.ndarray:
        return pil_resized(b, size)

    for w in (0, 2):
        run(
            f"MDS, PIL decode + resize, {w} workers",
            lambda w=w: rate(peer_mds(paths["mds"], resize, w, stack_images), len, n),
        )
        run(
            f"WebDataset, PIL decode + resize, {w} workers",
            lambda w=w: rate(peer_wds(paths["wds"], resize, w, stack_images), len, n),
        )
    molmo = molmo_rows(args, paths)
    workers = worker_rows(args, paths)

    peers = {k: v for k, v in rows.items() if k.startswith(("MDS", "WebDataset"))}
    best_peer = max(peers, key=lambda k: peers[k]["images_per_s"]) if peers else None
    best_ours = max(
        (k for k in rows if k.startswith("pixmo-stream") and k.endswith("fast=False")),
        key=lambda k: rows[k]["images_per_s"],
    )
    ratios = {}
    if best_peer:
        ratios["vs fastest peer"] = (
            rows[best_ours]["images_per_s"] / peers[best_peer]["images_per_s"]
        )
    for name, r in against_limit.items():
        ratios[f"{name}, of the decode limit measured around it"] = r
    if best_peer and FAST_KEY in rows:
        ratios["reduced-scale decodes vs fastest peer"] = (
            rows[FAST_KEY]["images_per_s"] / peers[best_peer]["images_per_s"]
        )
    gpu_rows = [k for k in rows if k.startswith(GPU_KEY)]
    if best_peer and gpu_rows:
        best_gpu = max(gpu_rows, key=lambda k: rows[k]["images_per_s"])
        ratios["decode='cuda' vs fastest peer"] = (
            rows[best_gpu]["images_per_s"] / peers[best_peer]["images_per_s"]
        )
    peer_molmo = molmo.get("MDS, PIL + torch resize + numpy crops, 2 workers")
    if peer_molmo:
        for key in ("pixmo-stream, 0 workers", "pixmo-stream, 0 workers, fast mode (uint8 crops)"):
            if key in molmo:
                ratios[f"Molmo, {key[14:]} vs peer"] = (
                    molmo[key]["images_per_s"] / peer_molmo["images_per_s"]
                )
    crop_bytes = 13 * 336 * 336 * 3
    result = {
        "records": n,
        "preset": args.preset,
        "mean_jpeg_kb": mean_kb,
        "jpeg_decoder": image.jpeg_decoder(),
        "size": size,
        "rows": rows,
        "best_ours": best_ours,
        "best_peer": best_peer,
        "ratios": ratios,
        "molmo": molmo,
        "workers": workers,
        "bytes_per_image_13_crops": {"float32": crop_bytes * 4, "uint8": crop_bytes},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "decode_stream.json").write_text(json.dumps(result, indent=2))
    write_markdown(result)
    plot(result)
    print(json.dumps(ratios, indent=2))


def write_markdown(r: dict[str, Any]) -> None:
    lines = [
        f"# Decoded streaming ({r['records']} {r['preset']} images, {r['mean_jpeg_kb']:.0f} KB "
        f"mean JPEG, resized to {r['size']}x{r['size']}, batches of {BATCH}, shuffled)",
        "",
        "| setup | images/s |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v['images_per_s']:,.0f} |" for k, v in r["rows"].items()]
    lines += ["", f"Best pixmo-stream row: {r['best_ours']}; fastest peer: {r['best_peer']}."]
    lines += [f"- {k}: {v:.2f}x" for k, v in r["ratios"].items()]
    m = r["molmo"]
    if "skipped" in m:
        lines += ["", f"Molmo preprocessing: {m['skipped']}."]
    else:
        lines += ["", "| Molmo preprocessing | images/s |", "|---|---|"]
        lines += [f"| {k} | {v['images_per_s']:,.1f} |" for k, v in m.items()]
    lines += ["", "DataLoader workers (images/s, and against 0 workers in the same round):", ""]
    lines += worker_markdown(r["workers"])
    b = r["bytes_per_image_13_crops"]
    lines += [
        "",
        f"13 crops of 336x336x3 are {b['float32'] / 1e6:.1f} MB an image as float32 "
        f"({b['uint8'] / 1e6:.1f} MB as uint8): 1,000 images/s need "
        f"{b['float32'] * 1000 / 1e9:.1f} GB/s of writes as float32, "
        f"{b['uint8'] * 1000 / 1e9:.1f} GB/s as uint8.",
    ]
    (RESULTS / "decode_stream.md").write_text("\n".join(lines) + "\n")


def plot(r: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    names = list(r["rows"])
    values = [r["rows"][k]["images_per_s"] for k in names]
    colors = [
        "tab:green"
        if k.startswith("pixmo")
        else "tab:gray"
        if k.startswith("limit")
        else "tab:blue"
        for k in names
    ]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.2))
    ax.barh(names[::-1], values[::-1], color=colors[::-1])
    ax.set_xlabel(f"images/s (decoded, resized to {r['size']}x{r['size']})")
    ax.set_title(f"Shuffled decoded streaming, {r['preset']} ({r['mean_jpeg_kb']:.0f} KB JPEGs)")
    fig.tight_layout()
    fig.savefig(RESULTS / "decode_stream.png", dpi=110)


if __name__ == "__main__":
    main()
