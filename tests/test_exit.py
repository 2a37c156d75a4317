"""At interpreter exit no read-ahead thread of pixmo-stream is still running, even when a pass
was left unfinished (a training loop that stops at a step count, `next(iter(loader))`): a
thread alive while the interpreter shuts down is one more thing racing its teardown (under
torchrun, gloo's own threads already do)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

SCRIPT = textwrap.dedent(
    """
    import atexit, os, sys

    def threads():
        return len(os.listdir("/proc/self/task"))

    # Registered first, so it runs last, after every other exit handler.
    atexit.register(lambda: print("at exit", threads(), flush=True))

    import torch  # noqa: F401  (its threads, if any, count in the baseline)
    import pixmo_stream as ps

    with ps.Writer(sys.argv[1], row_group_rows=4) as w:
        for i in range(400):
            w.write({"id": i})
    print("before", threads(), flush=True)
    kind = sys.argv[2]
    if kind == "loader":
        ds = ps.StreamingDataset(sys.argv[1], batch_size=2, read_ahead=1, read_threads=2)
        it = iter(ps.DataLoader(ds, num_workers=0))
    elif kind == "mixture":
        src = ps.StreamingDataset(sys.argv[1])
        it = iter(ps.Mixture([src, src], [1, 1], batch_size=2, read_threads=2))
    else:
        it = iter(ps.StreamingDataset(sys.argv[1], read_threads=2))
    next(it)  # the pass is left unfinished, and still referenced at exit
    print("reading", threads(), flush=True)
    """
)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
@pytest.mark.parametrize("kind", ["loader", "mixture", "dataset"])
def test_no_read_ahead_thread_outlives_the_interpreter(tmp_path, kind):
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "d"), kind],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    counts = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in p.stdout.splitlines()}
    before, reading, at_exit = counts["before"], counts["reading"], counts["at exit"]
    assert reading > before  # the read-ahead threads were running
    assert at_exit == before, p.stdout
