"""benches/ray_convert.py runs end to end on a tiny input (its own local Ray cluster), so
that it cannot silently rot. Skipped without Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'pixmo-stream[ray]'")

ROOT = Path(__file__).resolve().parent.parent


def test_ray_convert_bench() -> None:
    done = subprocess.run(
        [sys.executable, "benches/ray_convert.py", "--records", "12", "--cpus", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "same records in the same order: yes" in done.stdout
    assert "images/s" in done.stdout
