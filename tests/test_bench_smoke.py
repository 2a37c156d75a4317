"""Smoke test of the benchmark harness (benches/), so that it cannot silently rot.

Runs in a few seconds on a handful of records. Peers whose package is not installed are
skipped (the CI installs only '.[test]'; the peers come with '.[bench]').
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benches/ is a folder of the repository, not of the package

from benches import report  # noqa: E402
from benches.common import NotSupported, load_synthetic  # noqa: E402
from benches.contenders import BY_NAME  # noqa: E402

synthetic = load_synthetic()


def test_synthetic_records_are_deterministic_and_pixmo_shaped() -> None:
    a = list(synthetic.generate_records(5, seed=3))
    b = list(synthetic.generate_records(3, seed=3, start=2))
    assert [r["image_sha256"] for r in a[2:]] == [r["image_sha256"] for r in b]
    assert len({r["image_sha256"] for r in a}) == 5
    for r in a:
        assert r["image"][:3] == b"\xff\xd8\xff"
        assert 1 <= len(r["captions"]) <= 3
        assert all(100 <= len(c.split()) <= 310 for c in r["captions"])
        assert r["points"].dtype == np.float32 and r["points"].shape[1:] == (2,)
        assert sum(r["point_counts"]) == len(r["points"]) <= 40
        assert len(r["point_labels"]) == len(r["point_counts"])
        assert 0 <= len(r["qa"]) <= 5
    with pytest.raises(ValueError):
        next(synthetic.generate_records(1, preset="nope"))


def test_synthetic_schema_accepts_the_records(tmp_path: Path) -> None:
    ps = pytest.importorskip("pixmo_stream")
    recs = list(synthetic.generate_records(3))
    with ps.Writer(str(tmp_path / "d"), schema=synthetic.pixmo_schema()) as w:
        w.write_many(recs)
    back = ps.Dataset(str(tmp_path / "d"))[2]
    assert back["image"] == recs[2]["image"] and back["qa"] == recs[2]["qa"]


# The module each contender needs, to skip cleanly where it is not installed.
NEEDS = {
    "pixmo-stream": "pixmo_stream",
    "webdataset": "webdataset",
    "mds": "streaming",
    "mds-zstd": "streaming",
    "litdata": "litdata",
    "hf-datasets": "datasets",
    "parquet": "pyarrow",
}


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return list(synthetic.generate_records(6, seed=1))


# Peers' own leaks (a tar left open by an unfinished iterator, ...) are not ours to fail on.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("name", list(NEEDS))
def test_contender_round_trip(name: str, records: list[dict], tmp_path: Path) -> None:
    pytest.importorskip(NEEDS[name])
    c = BY_NAME[name]
    path = tmp_path / name
    c.write(records, path)
    c.before_read(path)
    assert c.open_first(path)["image_sha256"] == records[0]["image_sha256"]
    got = list(c.scan(path))
    assert [r["image"] for r in got] == [r["image"] for r in records]
    assert [list(r["captions"]) for r in got] == [r["captions"] for r in records]
    assert list(map(list, c.scan_captions(path))) == [r["captions"] for r in records]
    try:
        picked = c.get_many(path, [4, 1])
    except NotSupported:
        pass
    else:
        assert [r["image_sha256"] for r in picked] == [records[i]["image_sha256"] for i in (4, 1)]


def test_run_end_to_end_on_pixmo_stream(tmp_path: Path) -> None:
    """The whole pipeline (generation, write, reader child process, JSON, table) on 6 records."""
    pytest.importorskip("pixmo_stream")
    pytest.importorskip("torch")
    from benches import run

    out = tmp_path / "results"
    code = run.main(
        [
            "--quick",
            "--records",
            "6",
            "--only",
            "pixmo-stream",
            "--no-cold",
            "--loader-workers",
            "0",
        ]
        + ["--workdir", str(tmp_path), "--out", str(out)]
    )
    assert code == 0
    doc = json.loads((out / "latest.json").read_text())
    res = doc["contenders"]["pixmo-stream"]
    assert "child_error" not in res, res.get("child_error")
    for key in ("write", "scan", "captions", "random_access", "open_first"):
        assert "error" not in res[key], res[key]
    assert res["scan"]["rec_per_s"] > 0 and res["size"]["bytes"] > 0
    md = (out / "latest.md").read_text()
    assert "| full scan, images undecoded (rec/s) |" in md


def test_report_table_and_goals() -> None:
    def res(scan: float, size: int) -> dict:
        return {"label": "x", "scan": {"rec_per_s": scan}, "size": {"bytes": size}}

    doc = {
        "command": "python -m benches.run",
        "date": "today",
        "wall_seconds": 1.0,
        "machine": {
            "cpu": "cpu",
            "cores": 2,
            "memory_gib": 1,
            "os": "os",
            "python": "3",
            "packages": {},
        },
        "config": {
            "repeats": 1,
            "write_repeats": 1,
            "batch_size": 32,
            "loader_records": 1,
            "decoded_records": 1,
        },
        "data": {
            "records": 1,
            "preset": "small",
            "seed": 0,
            "image_bytes": 1,
            "mean_image_kb": 1,
            "caption_bytes": 1,
            "generate_seconds": 1,
        },
        "limits": {"memcpy": {"gb_per_s": 1.0}, "jpeg_decode": {"images": 1}},
        "contenders": {
            "pixmo-stream": res(600, 90),
            "mds-zstd": res(100, 100),
            "webdataset": {"label": "w", "na": "not installed (webdataset)"},
        },
    }
    rows = {e["row"].key: e for e in report.table(doc)}
    assert rows["scan"]["holds"] is True and rows["scan"]["ratios"]["pixmo-stream"] == 6.0
    assert rows["size"]["holds"] is True
    md = report.markdown(doc)
    assert "not installed (webdataset)" in md and "| yes |" in md
