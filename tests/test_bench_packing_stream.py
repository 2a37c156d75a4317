"""Smoke test of benches/packing_stream.py at tiny size, so that the bench cannot silently rot:
every layout runs through the stream, its figures are measured from the batches (fill within
(0, 1], packing fills rows better than Molmo v1's padded rows on this data, the vision encoder
runs at least one crop per real crop), and the table and plot come out."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benches/ is a folder of the repository, not of the package

pytest.importorskip("torch")
pytest.importorskip("tokenizers")


def test_packing_stream_bench_runs_every_layout(tmp_path: Path, monkeypatch, capsys) -> None:
    from benches import packing_stream

    out = packing_stream.main(
        ["--records", "8", "--batch", "2", "--preset", "small", "--budgets", "4096,2048"]
        + ["--step-tokens", "4096", "--crops", "uint8", "--repeats", "1"]
        + ["--data", str(tmp_path / "data"), "--no-write"]
    )
    rows = out["rows"]
    assert set(rows) == {
        "unpacked, uint8 crops",
        "packed 4096, uint8 crops",
        "packed 2048, uint8 crops",
    }
    for name, r in rows.items():
        assert r["examples"] == 8, name  # one epoch, every example once
        assert r["examples_per_s"] > 0, name
        assert 0 < r["token_fill"] <= 1, name
        assert r["padding_waste"] == pytest.approx(1 - r["token_fill"])
        assert r["crops_per_real_crop"] >= 1, name
        assert r["loss_tokens"] > 0, name
    unpacked = rows["unpacked, uint8 crops"]
    assert unpacked["examples_per_row"] == 1
    assert unpacked["crop_slots"] == unpacked["rows"] * 13
    packed = rows["packed 4096, uint8 crops"]
    assert packed["token_fill"] > unpacked["token_fill"]
    assert packed["examples_per_row"] > 1
    assert packed["crops_per_real_crop"] < unpacked["crops_per_real_crop"]
    sweep = out["crop_sweep"]
    assert sweep["chosen"] == out["layouts"]["packed 4096"]["max_crops"]
    assert sweep["chosen"] in [p["max_crops"] for p in sweep["plans"]]
    assert all(0 < p["token_fill"] <= 1 for p in sweep["plans"])
    assert "| layout (step) | crops | examples/s" in capsys.readouterr().out

    pytest.importorskip("matplotlib")
    monkeypatch.setattr(packing_stream, "RESULTS", tmp_path)
    packing_stream.plot(out)
    assert (tmp_path / "packing_stream.png").stat().st_size > 0
