"""How often a finished 2-process `torchrun` (gloo) run dies at exit, with and without
pixmo-stream, measured in the same run:

    nice python -m benches.torchrun_exit --runs 40             # pixmo 0 workers, 2 workers, control
    nice python -m benches.torchrun_exit --runs 40 --variants pixmo0

Each run is `torchrun --nproc_per_node 2` of a small training-loop script that reads a
StreamingDataset through `ps.DataLoader` (or, for the control, a torch `TensorDataset`
through torch's own DataLoader) and then ends: by returning without tearing anything down,
as many user scripts do, or (`--teardown`) with `dist.destroy_process_group()`. A run fails
when torchrun exits non-zero; the output counts the failures by the exit code (or signal) of
the rank torchrun blames, and whether "terminate called" was printed (a C++ std::terminate:
a SIGABRT). The
script checks its work in every run, so a run that exits 0 did read its share.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    variant, data = sys.argv[1], sys.argv[2]
    if variant == "import":
        import pixmo_stream  # noqa: F401
    if variant in ("control", "import"):
        ds = torch.utils.data.TensorDataset(torch.arange(64))
        sampler = torch.utils.data.DistributedSampler(ds, shuffle=True, seed=0)
        loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler)
        n = sum(len(b[0]) for b in loader)
    else:
        import pixmo_stream as ps

        ds = ps.StreamingDataset(data, seed=0, batch_size=4)
        loader = ps.DataLoader(ds, num_workers=int(variant[-1]))
        n = sum(len(b["id"]) for b in loader)
    counts = [None] * dist.get_world_size()
    dist.all_gather_object(counts, n)
    assert counts == [32, 32], counts
    if os.environ.get("TEARDOWN") == "1":
        dist.destroy_process_group()
    """
)
VARIANTS = ("pixmo0", "pixmo2", "control")  # also "import": the control, pixmo_stream imported


def one_run(script: Path, variant: str, data: Path, port: int, teardown: bool) -> tuple[str, str]:
    """`(outcome, output)`: outcome is "ok", "timeout", or how it failed: the signal or exit
    code of the rank torchrun blames first, and "terminate" when a C++ terminate was printed."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        str(script),
        variant,
        str(data),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", TEARDOWN=str(int(teardown)))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    out = p.stdout + p.stderr
    if p.returncode == 0:
        return "ok", out
    root = out.split("Root Cause", 1)[-1]
    code = re.search(r"exitcode\s*:\s*(-?\d+)", root)
    outcome = f"exit {code.group(1)}" if code else f"torchrun {p.returncode}"
    if "terminate called" in out:
        outcome += " terminate"
    return outcome, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument(
        "--teardown",
        action="store_true",
        help="end the script with dist.destroy_process_group() (the clean shutdown)",
    )
    ap.add_argument("--show", action="store_true", help="print the output of failed runs")
    args = ap.parse_args()
    variants = args.variants.split(",")
    import numpy as np

    import pixmo_stream as ps

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "ds"
        with ps.Writer(data, row_group_rows=8) as w:
            for i in range(64):
                w.write({"id": i, "p": np.zeros((2, 2), np.float32)})
        script = Path(tmp) / "train.py"
        script.write_text(SCRIPT)
        results: dict[str, Counter[str]] = {v: Counter() for v in variants}
        t0 = time.monotonic()
        port = 29_500 + os.getpid() % 1000
        # Interleaved, so that a slow stretch of the machine hits every variant alike.
        for i in range(args.runs):
            for v in variants:
                port = 29_500 + (port - 29_499) % 1000
                outcome, out = one_run(script, v, data, port, args.teardown)
                results[v][outcome] += 1
                if outcome != "ok" and args.show:
                    print(f"--- {v} run {i}: {outcome}\n{out[-3000:]}", file=sys.stderr)
        elapsed = time.monotonic() - t0
    end = "destroy_process_group()" if args.teardown else "no teardown"
    print(f"pixmo_stream from {Path(ps.__file__).parent}; scripts end with {end}; {elapsed:.0f} s")
    print(f"{'variant':10} {'runs':>5} {'failed':>7}  rate    outcomes")
    for v, outcomes in results.items():
        n = sum(outcomes.values())
        failed = n - outcomes["ok"]
        detail = ", ".join(f"{k}: {c}" for k, c in sorted(outcomes.items()) if k != "ok")
        print(f"{v:10} {n:5d} {failed:7d}  {failed / max(n, 1):5.1%}   {detail}")


if __name__ == "__main__":
    main()
