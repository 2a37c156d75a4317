"""The ingest benchmarks run end to end on tiny inputs, so that they cannot silently rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_grouping_memory_bench() -> None:
    out = _run("benches/grouping_memory.py", "--rows", "3000", "--naive-rows", "1000")
    assert "grouped:" in out and "peak RSS" in out and "x ours" in out


def test_convert_speed_bench() -> None:
    out = _run("benches/convert_speed.py", "--records", "6", "--workers", "0", "--peers", "parquet")
    assert "check=decode" in out and "check=header" in out and "goal" in out
