"""Peak memory of streaming with a shuffle window, measured (not just stated).

For each window size, a fresh process streams one shuffled epoch (0 workers) and samples its
anonymous resident memory (RssAnon: heap, not the memory-mapped shard pages, which belong to
the page cache) after every batch; it prints the peak growth over the process's memory before
streaming. Usage: python -m benches.shuffle_memory [--records N] [--dataset DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def child(path: str, window: int) -> None:
    import torch  # noqa: F401  (imported before the baseline, as a training process has it)

    import pixmo_stream as ps

    ds = ps.StreamingDataset(path, seed=0, batch_size=32, shuffle_window=window, collate_fn=list)
    loader = ps.DataLoader(ds, num_workers=0)
    base = peak = rss_anon()
    n = 0
    for batch in loader:
        n += len(batch)
        del batch
        peak = max(peak, rss_anon())
    print(json.dumps({"window": window, "records": n, "peak_growth": peak - base}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--dataset", help="an existing dataset (default: generate one)")
    ap.add_argument("--windows", default="1024,4096,16384,65536")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.dataset
        if path is None:
            import pixmo_stream as ps
            from pixmo_stream.synthetic import generate_records, pixmo_schema

            path = str(Path(tmp) / "ds")
            with ps.Writer(path, pixmo_schema()) as w:
                w.write_many(generate_records(args.records, seed=0, workers=2))
        print(f"dataset: {path}")
        print("| shuffle_window (rows) | records | peak anonymous memory growth |")
        print("|---|---|---|")
        for window in (int(w) for w in args.windows.split(",")):
            out = subprocess.run(
                [sys.executable, "-m", "benches.shuffle_memory", "--child", path, str(window)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"| {window:,} | {r['records']:,} | {r['peak_growth'] / 2**20:.1f} MiB |")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
