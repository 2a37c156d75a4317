"""`ps.Dataset([a, b, ...])`: several datasets of one schema read as one, the way
`StreamingDataset` takes a list: their rows one after the other, in the order given."""

from __future__ import annotations

import numpy as np
import pytest

import pixmo_stream as ps


def write(path, ids, *, tag, row_group_rows=3, reverse_fields=False):
    with ps.Writer(path, row_group_rows=row_group_rows) as w:
        for i in ids:
            rec = {"id": i, "tag": tag, "p": np.full((1 + i % 2, 2), i, np.float32)}
            w.write(dict(reversed(rec.items())) if reverse_fields else rec)
    return path


@pytest.fixture
def three(tmp_path):
    return [
        write(tmp_path / "a", range(0, 5), tag="a"),
        write(tmp_path / "b", range(5, 12), tag="b", row_group_rows=4),
        write(tmp_path / "c", range(12, 13), tag="c", reverse_fields=True),
    ]


def test_rows_follow_one_another(three):
    ds = ps.Dataset(three)
    assert len(ds) == 13
    assert [ds[i]["id"] for i in range(13)] == list(range(13))
    assert ds[-1]["id"] == 12 and ds[-13]["id"] == 0 and ds[np.int64(5)]["tag"] == "b"
    for bad in (13, -14):
        with pytest.raises(IndexError, match="out of range for a dataset of 13 rows"):
            ds[bad]
    assert [r["id"] for r in ds[3:7]] == [3, 4, 5, 6]
    assert ds.paths == [str(p) for p in three] and ds.path == str(three[0])
    assert ds.num_shards == 3


def test_take_keeps_the_order_asked_for(three):
    ds = ps.Dataset(three)
    recs = ds.take([12, 0, 6, 4, 6, -2], columns=["id", "tag"])
    assert [(r["id"], r["tag"]) for r in recs] == [
        (12, "c"),
        (0, "a"),
        (6, "b"),
        (4, "a"),
        (6, "b"),
        (11, "b"),
    ]
    assert set(recs[0]) == {"id", "tag"}
    assert ds.take([]) == []
    with pytest.raises(IndexError):
        ds.take([0, 99])
    with pytest.raises(ValueError, match="unknown column 'nope'"):
        ds.take([0], columns=["nope"])


def test_scans_cover_every_dataset(three):
    ds = ps.Dataset(three)
    assert [r["id"] for r in ds] == list(range(13))
    assert [r["tag"] for r in ds.iter(columns=["tag"])] == ["a"] * 5 + ["b"] * 7 + ["c"]
    assert [len(b) for b in ds.iter_batches()] == [3, 2, 4, 3, 1]
    with pytest.raises(ValueError, match="unknown column"):
        ds.iter(columns=["nope"])
    layout = ds.row_group_layout()
    assert [(s, first, n) for s, _, first, n in layout] == [
        (0, 0, 3),
        (0, 3, 2),
        (1, 5, 4),
        (1, 9, 3),
        (2, 12, 1),
    ]
    np.testing.assert_array_equal(ds[12]["p"], np.full((1, 2), 12, np.float32))


def test_verify_and_info_cover_every_dataset(three):
    ds = ps.Dataset(three)
    report = ds.verify()
    assert report.ok and report.num_chunks == sum(ps.Dataset(p).verify().num_chunks for p in three)
    info = ds.info()
    assert info["num_rows"] == 13 and info["paths"] == [str(p) for p in three]
    assert [s["dataset"] for s in info["shards"]] == [str(p) for p in three]
    assert info["num_bytes"] == sum(ps.Dataset(p).info()["num_bytes"] for p in three)
    # Damage in the second dataset is found and named.
    shard = next((three[1]).glob("*.pxs"))
    raw = bytearray(shard.read_bytes())
    raw[200] ^= 0xFF
    shard.write_bytes(bytes(raw))
    report = ps.Dataset(three).verify()
    assert not report.ok
    assert all(str(shard) in e for e in report.errors), report.errors


def test_one_path_in_a_list_is_that_dataset(three):
    one, listed = ps.Dataset(three[1]), ps.Dataset([three[1]])
    assert len(one) == len(listed) == 7
    cols = ["id", "tag"]
    assert listed.take([0, 6], columns=cols) == one.take([0, 6], columns=cols)
    assert listed.info() == one.info()
    assert repr(listed) == repr(one)


def test_different_schemas_are_refused(tmp_path, three):
    other = tmp_path / "other"
    with ps.Writer(other) as w:
        w.write({"id": 1, "caption": "x"})
    with pytest.raises(ps.SchemaError, match=r"other: its schema differs from .*a's"):
        ps.Dataset([three[0], other])
    with pytest.raises(ValueError, match="no dataset path given"):
        ps.Dataset([])
    with pytest.raises(FileNotFoundError):
        ps.Dataset([three[0], tmp_path / "missing"])


def test_streaming_over_the_same_list_reads_the_same_rows(three):
    pytest.importorskip("torch")
    ds = ps.Dataset(three)
    stream = ps.StreamingDataset(three, seed=3)
    assert sorted(r["id"] for r in stream) == [r["id"] for r in ds]
