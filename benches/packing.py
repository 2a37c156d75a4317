"""Packing: token fill, planning time and memory of pixmo-stream's packing plan, against
Molmo2's buffered 2-D knapsack (`olmo/data/dynamic_packer.py`, buffer 48) on the same
example sequence. No data is read: examples are costs.

    python -m benches.packing [--examples 1000000] [--molmo2-examples 20000]

Costs are PixMo-like: an image of a realistic size (widths 300-2,000 px, the aspect ratios
of web photos and screenshots) costs Molmo's image tokens and crops (`overlap-and-resize-c2`,
at most 12 crops plus the global view: computed by `pixmo_stream.image.molmo_preprocess` once
per tiling), plus the text of its dataset: long captions ~250 tokens, short QA 30-60 tokens a
turn (1-4 turns), points 100-400. Fill = real tokens / (rows x 16,384).

Molmo2's packer, re-implemented from its description (buffer of `buffer` examples; once full,
each new example triggers a 0/1 knapsack over the buffer on tokens quantised to 32 and crops,
maximising tokens + crops; the chosen examples make a row and leave the buffer; at the end
the buffer is emptied the same way).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time

import numpy as np

from pixmo_stream import _native
from pixmo_stream.image import molmo_geometry, molmo_preprocess

MAX_TOKENS = 16384

# ---- costs -------------------------------------------------------------------------------


def _tokens_per_tiling() -> dict[tuple[int, int], int]:
    """Molmo's image tokens for each tiling (they depend on nothing else)."""
    from PIL import Image

    out: dict[tuple[int, int], int] = {}
    for h in range(1, 13):
        for w in range(1, 13):
            if h * w > 12:
                continue
            # An image whose geometry has tiling (h, w): crops of ~224 px of stride.
            size = (max(32, 224 * w + 50), max(32, 224 * h + 50))
            geo = molmo_geometry(size[1], size[0])
            if geo.tiling in out:
                continue
            buf = io.BytesIO()
            Image.new("RGB", size).save(buf, "PNG")
            out[tuple(geo.tiling)] = len(molmo_preprocess(buf.getvalue()).image_tokens)
    return out


def image_costs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Image tokens and crops of `n` images of PixMo-like sizes."""
    per_tiling = _tokens_per_tiling()
    width = np.clip(rng.lognormal(np.log(900), 0.45, n), 300, 2000)
    aspect = rng.choice(
        [0.75, 1.0, 1.33, 1.5, 1.78, 0.56, 2.2], n, p=[0.15, 0.1, 0.3, 0.15, 0.2, 0.05, 0.05]
    )
    height = np.clip(width / aspect, 200, 2500)
    # Sizes in buckets of 16 px share a geometry lookup.
    keys = np.stack([(height // 16).astype(int), (width // 16).astype(int)], 1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    tok, crp = np.empty(len(uniq), np.uint32), np.empty(len(uniq), np.uint16)
    for k, (h, w) in enumerate(uniq):
        geo = molmo_geometry(int(h) * 16 + 8, int(w) * 16 + 8)
        tiling = tuple(geo.tiling)
        if tiling not in per_tiling:  # a tiling the probe above missed
            per_tiling[tiling] = _probe(int(h) * 16 + 8, int(w) * 16 + 8)
        tok[k] = per_tiling[tiling]
        crp[k] = tiling[0] * tiling[1] + 1
    inv = inv.reshape(-1)
    return tok[inv], crp[inv]


def _probe(h: int, w: int) -> int:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h)).save(buf, "PNG")
    return len(molmo_preprocess(buf.getvalue()).image_tokens)


def text_tokens(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "captions":
        t = rng.normal(250, 70, n)
    elif kind == "qa":
        turns = rng.integers(1, 5, n)
        t = (
            np.array([rng.integers(30, 61, k).sum() for k in turns])
            if n < 50_000
            else (turns * rng.integers(30, 61, n))
        )
    elif kind == "points":
        t = rng.uniform(100, 400, n)
    else:
        raise ValueError(kind)
    return np.clip(t, 10, None).astype(np.uint32)


MIXES = {
    "captions": {"captions": 1.0},
    "short QA": {"qa": 1.0},
    "points": {"points": 1.0},
    "Molmo-like mix": {"captions": 0.35, "qa": 0.4, "points": 0.25},
}


def mix_costs(mix: dict[str, float], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img_t, crops = image_costs(n, rng)
    kinds = rng.choice(list(mix), n, p=list(mix.values()))
    text = np.zeros(n, np.uint32)
    for k in mix:
        sel = kinds == k
        text[sel] = text_tokens(k, int(sel.sum()), rng)
    return (img_t + text).astype(np.uint32), crops


# ---- the two packers -----------------------------------------------------------------------


def plan(
    tokens: np.ndarray, crops: np.ndarray, max_crops: int, window: int
) -> tuple[object, float]:
    groups = [4096] * (len(tokens) // 4096) + ([len(tokens) % 4096] if len(tokens) % 4096 else [])
    t0 = time.perf_counter()
    p = _native.PackPlan(
        groups,
        tokens,
        crops,
        seed=0,
        max_tokens=MAX_TOKENS,
        max_crops=max_crops,
        pack_window=window,
    )
    return p, time.perf_counter() - t0


def epoch_order(n: int) -> np.ndarray:
    groups = [4096] * (n // 4096) + ([n % 4096] if n % 4096 else [])
    return _native.EpochPlan(groups, seed=0).all_rows()


def knapsack_2d(
    t: list[int], c: list[int], max_t: int, max_c: int, value: list[float]
) -> list[int]:
    """0/1 knapsack over (quantised tokens, crops) maximising `value` (Molmo2's solver)."""
    m = len(t)
    dp = np.zeros((m + 1, max_t + 1, max_c + 1), np.float32)
    for k in range(1, m + 1):
        tk, ck = t[k - 1], c[k - 1]
        dp[k] = dp[k - 1]
        if tk <= max_t and ck <= max_c:
            take = dp[k - 1, : max_t + 1 - tk, : max_c + 1 - ck] + value[k - 1]
            np.maximum(dp[k, tk:, ck:], take, out=dp[k, tk:, ck:])
    chosen, rt, rc = [], max_t, max_c
    for k in range(m, 0, -1):
        tk, ck = t[k - 1], c[k - 1]
        if tk <= rt and ck <= rc and dp[k, rt, rc] != dp[k - 1, rt, rc]:
            chosen.append(k - 1)
            rt, rc = rt - tk, rc - ck
    return chosen


def molmo2_rows(tokens: np.ndarray, crops: np.ndarray, max_crops: int, buffer: int = 48) -> int:
    """Rows Molmo2's buffered knapsack makes of the sequence (all examples packed)."""
    gran = max(1, MAX_TOKENS // 512)
    qmax = -(-MAX_TOKENS // gran)
    buf: list[tuple[int, int, float]] = []
    rows = 0

    def solve() -> None:
        nonlocal buf, rows
        idx = knapsack_2d(
            [b[0] for b in buf], [b[1] for b in buf], qmax, max_crops, [b[2] for b in buf]
        )
        if not idx:
            raise RuntimeError("knapsack chose nothing")
        keep = set(idx)
        buf = [b for i, b in enumerate(buf) if i not in keep]
        rows += 1

    for t, c in zip(tokens.tolist(), crops.tolist(), strict=True):
        item = (-(-t // gran), c, float(t + c))
        if -(-t // gran) >= qmax:  # Molmo2's shortcut: a full example is a row at once
            rows += 1
            continue
        if len(buf) < buffer:
            buf.append(item)
            continue
        solve()
        buf.append(item)
    while buf:
        solve()
    return rows


# ---- measurement ---------------------------------------------------------------------------


_CHILD = """
import sys, time, numpy as np
from pixmo_stream import _native

def vm(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

tokens, crops = np.load(sys.argv[1]), np.load(sys.argv[2])
window, max_crops = int(sys.argv[3]), int(sys.argv[4])
groups = [4096] * (len(tokens) // 4096) + ([len(tokens) % 4096] if len(tokens) % 4096 else [])
# A small plan first, so the native code's pages are resident before measuring.
_native.PackPlan([100], tokens[:100], crops[:100], max_tokens=16384, max_crops=max_crops)
base = vm("VmHWM")
plan = _native.PackPlan(groups, tokens, crops, max_tokens=16384, max_crops=max_crops,
                        pack_window=window)
print(vm("VmHWM") - base)
"""


def peak_growth(tokens: np.ndarray, crops: np.ndarray, window: int, max_crops: int) -> int:
    """Growth of the peak resident memory of a fresh process while it plans the epoch (the
    costs already loaded; the plan copies them once)."""
    with tempfile.TemporaryDirectory() as d:
        np.save(f"{d}/t.npy", tokens)
        np.save(f"{d}/c.npy", crops)
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, f"{d}/t.npy", f"{d}/c.npy", str(window), str(max_crops)],
            capture_output=True,
            text=True,
            check=True,
        )
    return int(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=1_000_000)
    ap.add_argument("--molmo2-examples", type=int, default=20_000)
    ap.add_argument("--max-crops", type=int, default=192, help="the loose crop budget")
    ap.add_argument("--tight-crops", type=int, default=128, help="a crop budget that binds")
    ap.add_argument("--window", type=int, default=16384)
    args = ap.parse_args()
    mc = mc_loose = args.max_crops
    mc_tight = args.tight_crops

    print(f"Token budget {MAX_TOKENS}, pack window {args.window}.\n")
    print(
        f"Fill on the same {args.molmo2_examples:,} examples (the epoch order), "
        "pixmo-stream vs Molmo2's knapsack (buffer 48):\n"
    )
    print(
        "| cost mix | crop budget | mean tokens, crops | pixmo-stream fill | Molmo2 fill | ratio "
        "| rows (ours / Molmo2 / lower bound) | Molmo2 time |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for seed, (name, mix) in enumerate(MIXES.items()):
        tokens, crops = mix_costs(mix, args.molmo2_examples, seed)
        order = epoch_order(len(tokens))
        total = int(tokens.sum())
        for budget in (mc_loose, mc_tight):
            p, _ = plan(tokens, crops, budget, args.window)
            ours = total / (p.num_rows * MAX_TOKENS)
            t0 = time.perf_counter()
            theirs_rows = molmo2_rows(tokens[order], crops[order], budget)
            t_m2 = time.perf_counter() - t0
            theirs = total / (theirs_rows * MAX_TOKENS)
            bound = max(-(-total // MAX_TOKENS), -(-int(crops.sum()) // budget))
            print(
                f"| {name} | {budget} | {tokens.mean():.0f}, {crops.mean():.1f} | {ours:.2%} "
                f"| {theirs:.2%} | {ours / theirs:.3f}x | {p.num_rows:,} / {theirs_rows:,} / "
                f"{bound:,} | {t_m2:.1f} s |"
            )

    print(
        f"\nPlanning a whole epoch of {args.examples:,} examples (one thread), Molmo-like mix, "
        f"crop budget {mc}:\n"
    )
    print(
        "| pack window | plan time (best of 3) | fill | rows | peak memory growth "
        "| of which the costs' copy |"
    )
    print("|---|---|---|---|---|---|")
    tokens, crops = mix_costs(MIXES["Molmo-like mix"], args.examples, 7)
    total = int(tokens.sum())
    for window in (4096, args.window, 65536):
        times = []
        for _ in range(3):
            p, dt = plan(tokens, crops, mc, window)
            times.append(dt)
        grow = peak_growth(tokens, crops, window, mc)
        fill = total / (p.num_rows * MAX_TOKENS)
        print(
            f"| {window:,} | {min(times):.2f} s | {fill:.2%} | {p.num_rows:,} | "
            f"{grow / 2**20:.1f} MiB | {6 * len(tokens) / 2**20:.1f} MiB |"
        )

    print(f"\nMemory against the epoch's size (pack window {args.window}, crop budget {mc}):\n")
    print("| examples | plan time | peak memory growth | the costs' copy | the rest |")
    print("|---|---|---|---|---|")
    for n in (args.examples // 4, args.examples, args.examples * 4):
        tokens, crops = mix_costs(MIXES["Molmo-like mix"], n, 7)
        p, dt = plan(tokens, crops, mc, args.window)
        grow = peak_growth(tokens, crops, args.window, mc)
        copy = 6 * n
        print(
            f"| {n:,} | {dt:.2f} s | {grow / 2**20:.1f} MiB | {copy / 2**20:.1f} MiB "
            f"| {(grow - copy) / 2**20:.1f} MiB |"
        )


if __name__ == "__main__":
    main()
