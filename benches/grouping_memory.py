"""Peak memory and speed of grouping pixmo-points-shaped rows into one record per image.

A synthetic parquet shaped like pixmo-points (default 2.4M rows over ~228k images, points
as ``list<{x, y}>``, 0 to ~40 points a row, URLs repeated and rows of an image scattered)
is written first; a child process then reads it and builds every record's annotations
exactly as ``convert --preset pixmo-points`` does (no images: this measures the grouping),
and reports its peak RSS (``getrusage``). The same run also measures the way Molmo's
download script groups (every row as a Python dict in one list per image), on a slice of
the rows, and extrapolates its peak to the full input, for the ratio.

    python benches/grouping_memory.py              # the full 2.4M rows (a minute or two)
    python benches/grouping_memory.py --rows 200000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_BYTES = 2 * 10**9


def make_parquet(path: str, rows: int, images: int, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    image_of_row = rng.integers(0, images, rows)  # an image's rows are scattered
    urls = pa.array(
        [f"https://images.example.com/{i:07d}/{i * 7919 % 1000003}.jpg" for i in range(images)]
    )
    n_points = np.minimum(rng.geometric(1 / 6.5, rows) - 1, 40)
    offsets = np.zeros(rows + 1, np.int32)
    np.cumsum(n_points, out=offsets[1:])
    total = int(offsets[-1])
    xy = pa.StructArray.from_arrays(
        [pa.array(rng.random(total) * 100), pa.array(rng.random(total) * 100)], ["x", "y"]
    )
    labels = pa.array([f"label {i % 5000}" for i in range(rows)])
    table = pa.table(
        {
            "image_url": urls.take(pa.array(image_of_row)),
            "image_sha256": pa.array(["0" * 64] * rows),
            "points": pa.ListArray.from_arrays(pa.array(offsets), xy),
            "count": pa.array(n_points.astype(np.int64)),
            "label": labels,
            "collection_method": pa.array(np.where(rng.random(rows) < 0.3, "counting", "pointing")),
        }
    )
    pq.write_table(table, path, row_group_size=100_000)


def child_grouping(path: str) -> dict[str, float]:
    import numpy as np

    from pixmo_stream.ingest import get_preset
    from pixmo_stream.ingest.grouping import group_rows, iter_batches
    from pixmo_stream.ingest.pipeline import pending_records, read_parquet

    preset = get_preset("pixmo-points")
    t = time.perf_counter()
    table = read_parquet([path], [*preset.required, *preset.optional])
    index = group_rows(table.column("image_url"))
    records = points = 0
    for batch in iter_batches(table, index, np.arange(len(index)), 64):
        for item in pending_records(preset, batch):
            records += 1
            points += sum(len(p) for p in item.record["points"])
    elapsed = time.perf_counter() - t
    return {"rows": table.num_rows, "records": records, "points": points, "seconds": elapsed}


def child_naive(path: str, rows: int) -> dict[str, float]:
    """Molmo's way: every row a dict, one list of them per image, all held at once."""
    import pyarrow.parquet as pq

    t = time.perf_counter()
    table = pq.read_table(path).slice(0, rows)
    groups: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        groups.setdefault(row["image_url"], []).append(row)
    return {"rows": table.num_rows, "records": len(groups), "seconds": time.perf_counter() - t}


def _run_child(*argv: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=2_376_222)
    p.add_argument("--images", type=int, default=None, help="default: rows / 10.4, as pixmo-points")
    p.add_argument("--naive-rows", type=int, default=200_000, help="rows for the baseline")
    p.add_argument("--child", choices=("grouping", "naive"), help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        result = (
            child_grouping(args.path)
            if args.child == "grouping"
            else child_naive(args.path, args.naive_rows)
        )
        result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps(result))
        return
    images = args.images or max(1, round(args.rows / 10.42))
    with tempfile.TemporaryDirectory(prefix="pixmo-grouping-") as tmp:
        path = os.path.join(tmp, "points.parquet")
        t = time.perf_counter()
        make_parquet(path, args.rows, images)
        print(f"wrote {args.rows:,} rows over {images:,} images in {time.perf_counter() - t:.1f} s "
              f"({os.path.getsize(path) / 1e6:,.0f} MB parquet)")  # fmt: skip
        ours = _run_child("--child", "grouping", "--path", path)
        naive_rows = min(args.naive_rows, args.rows)
        naive = _run_child("--child", "naive", "--path", path, "--naive-rows", str(naive_rows))
        base = _run_child("--child", "naive", "--path", path, "--naive-rows", "0")
    per_row = (naive["peak_rss"] - base["peak_rss"]) / max(1, naive_rows)
    naive_full = base["peak_rss"] + per_row * args.rows
    print(
        f"grouped:  {ours['records']:,} records from {ours['rows']:,} rows "
        f"({ours['points']:,} points) in {ours['seconds']:.1f} s, "
        f"{ours['rows'] / ours['seconds']:,.0f} rows/s, peak RSS {ours['peak_rss'] / 1e9:.2f} GB "
        f"(goal < {GOAL_BYTES / 1e9:.0f} GB: "
        f"{'met' if ours['peak_rss'] < GOAL_BYTES else 'NOT met'})"
    )
    print(
        f"baseline: Python dicts grouped in memory, {naive_rows:,} rows: peak RSS "
        f"{naive['peak_rss'] / 1e9:.2f} GB, {naive_rows / naive['seconds']:,.0f} rows/s; "
        f"extrapolated to {args.rows:,} rows: {naive_full / 1e9:.1f} GB "
        f"({naive_full / ours['peak_rss']:.1f}x ours)"
    )


if __name__ == "__main__":
    main()
