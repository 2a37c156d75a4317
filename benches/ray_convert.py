"""``convert --engine ray`` against a local run of the same input, in the same run.

The input is the demo's pixmo-points-shaped parquet and image folder (synthetic JPEGs). The
local run is timed with ``--workers`` processes; the Ray run on a local cluster of as many
CPUs, started before the clock starts (a cluster is usually up already). Both outputs are
compared record by record, so a ratio is only printed for equal results.

    python benches/ray_convert.py --records 2000 --cpus 2
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches.common import load_synthetic  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--preset", default="small", help="synthetic image sizes (small, pixmo-cap)")
    p.add_argument("--cpus", type=int, default=2, help="local workers, and the cluster's CPUs")
    args = p.parse_args()

    import ray

    import pixmo_stream as ps
    from pixmo_stream.demo_source import make_source
    from pixmo_stream.ingest import convert

    records = list(load_synthetic().generate_records(args.records, seed=0, preset=args.preset))
    with tempfile.TemporaryDirectory(prefix="pixmo-ray-bench-") as tmp:
        root = Path(tmp)
        src = make_source(str(root / "src"), len(records), 0, args.preset, set(), records=records)
        print(f"input: {src.num_rows:,} parquet rows over {src.num_images:,} images "
              f"({src.image_bytes / 1e6:,.1f} MB of JPEG)")  # fmt: skip
        kw = dict(preset="pixmo-points", images=src.images, workers=args.cpus)

        t = time.perf_counter()
        convert(src.parquet, str(root / "local"), **kw)  # type: ignore[arg-type]
        local = time.perf_counter() - t

        t = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter() - t
        t = time.perf_counter()
        convert(src.parquet, str(root / "ray"), engine="ray", **kw)  # type: ignore[arg-type]
        on_ray = time.perf_counter() - t
        ray.shutdown()

        a, b = ps.Dataset(root / "local"), ps.Dataset(root / "ray")
        # Pickles compare whole records: images as bytes, arrays by dtype, shape and values.
        same = len(a) == len(b) and all(
            pickle.dumps(x) == pickle.dumps(y) for x, y in zip(a.iter(), b.iter(), strict=True)
        )
        n = len(a)
        print(f"local, {args.cpus} workers:      {n / local:8,.0f} images/s ({local:.2f} s)")
        print(f"ray, {args.cpus}-CPU local cluster: {n / on_ray:8,.0f} images/s ({on_ray:.2f} s; "
              f"cluster start {started:.1f} s, not counted)")  # fmt: skip
        if not same:
            raise SystemExit("the Ray run's records differ from the local run's")
        print(f"same records in the same order: yes; ray / local = {local / on_ray:.2f}x")


if __name__ == "__main__":
    main()
