"""A real torch.distributed run (gloo, 2 CPU processes): every rank finishes the epoch with
the same number of samples, the shares are disjoint, nothing hangs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("torch")

import pixmo_stream as ps  # noqa: E402

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from datetime import timedelta
    import torch.distributed as dist
    import pixmo_stream as ps

    dist.init_process_group("gloo", timeout=timedelta(seconds=30))
    ds = ps.StreamingDataset(sys.argv[1], seed=9, batch_size=4)  # rank from torch.distributed
    loader = ps.DataLoader(ds, num_workers=int(sys.argv[3]))
    ids = [int(i) for b in loader for i in b["id"]]
    counts = [None] * dist.get_world_size()
    dist.all_gather_object(counts, len(ids))
    dist.barrier()
    with open(os.path.join(sys.argv[2], f"rank{dist.get_rank()}.json"), "w") as f:
        json.dump({"ids": ids, "counts": counts, "rank": ds.rank_world()}, f)
    dist.destroy_process_group()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_gloo_two_ranks(tmp_path, num_workers):
    data = tmp_path / "ds"
    with ps.Writer(data, row_group_rows=5) as w:
        for i in range(37):
            w.write({"id": i, "p": np.zeros((1, 2), np.float32)})
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
        env["MASTER_PORT"] = str(port)
        cmd = [sys.executable, str(script), str(data), str(tmp_path), str(num_workers)]
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
    try:
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in results] == [[0, 2], [1, 2]]
    a, b = results[0]["ids"], results[1]["ids"]
    assert len(a) == len(b) == 19 and results[0]["counts"] == [19, 19]
    assert set(a) | set(b) == set(range(37))
    assert len(set(a) & set(b)) == 1  # "pad": one sample repeats to even the ranks out
