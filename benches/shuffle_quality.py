"""Shuffle quality of the epoch plan vs a full random permutation (no data is read).

    python benches/shuffle_quality.py [--rows 200000] [--group 1024] [--window 16384]

Metrics (for an order `o` of N rows stored in row groups of G rows):
- mean |displacement| / N: how far samples move from storage order (full permutation: ~1/3);
- adjacent kept: fraction of storage neighbours (i, i+1) that end up within 8 positions of
  each other (full permutation: ~16/N);
- same-batch rate: fraction of storage neighbours that land in the same batch of 256
  (full permutation: ~256/N);
- rank correlation (Spearman) between storage position and epoch position (full: ~0).
"""

from __future__ import annotations

import argparse

import numpy as np

from pixmo_stream import _native


def metrics(order: np.ndarray, batch: int = 256) -> dict[str, float]:
    n = len(order)
    pos = np.empty(n, dtype=np.int64)
    pos[order.astype(np.int64)] = np.arange(n)
    gaps = np.abs(np.diff(pos))
    return {
        "mean_displacement/N": float(np.abs(pos - np.arange(n)).mean() / n),
        "adjacent_kept(<=8)": float((gaps <= 8).mean()),
        "same_batch_256": float(((pos[:-1] // batch) == (pos[1:] // batch)).mean()),
        "spearman": float(np.corrcoef(np.arange(n), pos)[0, 1]),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--group", type=int, default=1024)
    ap.add_argument("--window", type=int, default=16384)
    args = ap.parse_args()
    groups = [args.group] * (args.rows // args.group)
    if args.rows % args.group:
        groups.append(args.rows % args.group)
    rows = []
    for window in sorted({args.group, 4 * args.group, args.window}):
        plan = _native.EpochPlan(groups, seed=0, epoch=0, window_rows=window)
        rows.append((f"plan window={window}", metrics(plan.all_rows())))
    rows.append(("full permutation", metrics(np.random.default_rng(0).permutation(args.rows))))
    rows.append(("no shuffle", metrics(np.arange(args.rows))))
    keys = list(rows[0][1])
    print(f"rows={args.rows} row_group={args.group}")
    print(f"{'order':28s}" + "".join(f"{k:>22s}" for k in keys))
    for name, m in rows:
        print(f"{name:28s}" + "".join(f"{m[k]:22.5f}" for k in keys))


if __name__ == "__main__":
    main()
