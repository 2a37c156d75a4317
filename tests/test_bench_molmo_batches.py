"""Smoke test of benches/molmo_batches.py at tiny size, so that the bench cannot silently rot:
every row runs (Molmo's pipeline in Python, pixmo-stream's batches, the image-part limit),
ratios come out, and pixmo-stream's float32 batch equals the one Molmo's pipeline makes of the
same records (crops up to float32 rounding)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benches/ is a folder of the repository, not of the package

pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("tokenizers")


def test_molmo_batches_bench_runs_every_row(tmp_path: Path, capsys) -> None:
    from benches import molmo_batches

    out = molmo_batches.main(
        ["--records", "6", "--batch", "2", "--preset", "small", "--check", "2", "--repeats", "1"]
        + ["--limit-images", "4", "--data", str(tmp_path), "--no-write"]
    )
    rows = out["rows"]
    assert not [name for name, r in rows.items() if "skipped" in r], rows
    assert {molmo_batches.MOLMO + " (before)", molmo_batches.MOLMO + " (after)"} <= set(rows)
    ours = [r for name, r in rows.items() if name.startswith("pixmo-stream")]
    assert len(ours) == 4
    assert all(r["examples_per_s"] > 0 and "x_molmo" in r and "of_limit" in r for r in ours)
    same = out["same_batch"]
    assert same.pop("examples") == 2
    images = same.pop("images")
    assert images == "identical" or float(images.split()[-1]) <= 2e-6, images
    assert set(same.values()) == {"identical"}, same
    printed = capsys.readouterr().out
    assert "| loader | examples/s |" in printed
