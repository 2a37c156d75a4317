"""The pure-Python reader against the Rust one: golden files, datasets the Rust writer wrote,
and files of the spec encoder read by Rust (skipped when the native module is missing)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from spec_encoder import (
    ALL_FIELDS,
    ROOT,
    CorruptDataError,
    F,
    K,
    _flip,
    assert_same,
    expected,
    make_row,
    purepy,
    write_manifest,
    write_shard,
)

# --------------------------------------------------------------------------------------------
# Cross-check against the Rust reader.


def _native():
    pytest.importorskip("pixmo_stream._native", reason="native extension not built")
    import pixmo_stream

    return pixmo_stream


GOLDEN = ROOT / "tests" / "golden"


def _from_jsonable(v):
    # The encoding of tests/golden/make_golden.py's expected.json.
    if isinstance(v, dict) and set(v) == {"bytes"}:
        return bytes.fromhex(v["bytes"])
    if isinstance(v, dict) and set(v) == {"ndarray", "dtype", "shape"}:
        return np.array(v["ndarray"], dtype=v["dtype"]).reshape(v["shape"])
    if isinstance(v, dict):
        return {k: _from_jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_jsonable(x) for x in v]
    return v


def check_golden(root):
    ds = purepy.open_dataset(root)
    assert ds.verify() == len(ds.row_group_layout()) * len(ds.schema["fields"])
    want = _from_jsonable(json.loads((root / "expected.json").read_text()))
    got = list(ds)
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert_same(a, b, f"{root.name} row {i}")
    for s in ds.shards:
        purepy.open_dataset(s.path).verify()


@pytest.mark.parametrize(
    "version",
    sorted(p.parent.name for p in GOLDEN.glob("*/manifest.json")) or [None],
)
def test_golden_files(version):
    if version is None:
        pytest.skip("no golden files yet")
    check_golden(GOLDEN / version)


def _cross_check(ps, path):
    rust = ps.Dataset(path, zero_copy=False)  # bytes for binary; the default gives Blobs
    pure = purepy.open_dataset(path)
    assert len(pure) == len(rust)
    assert pure.row_group_layout() == [tuple(x) for x in rust.row_group_layout()]
    assert pure.verify() == rust.verify().num_chunks
    for i, (a, b) in enumerate(zip(pure, rust, strict=True)):
        assert_same(a, b, f"row {i}")
    for i in (0, len(rust) // 2, -1):
        assert_same(pure[i], rust[i], f"row {i}")
    return pure, rust


def test_cross_check_every_type(tmp_path):
    ps = _native()
    rows = [make_row(i) for i in range(57)]
    schema = ps.Schema.from_dict({"fields": ALL_FIELDS, "metadata": {}})
    with ps.Writer(tmp_path / "ds", schema=schema, row_group_rows=5, shard_bytes=4096) as w:
        w.write_many(rows)
    pure, rust = _cross_check(ps, tmp_path / "ds")
    assert len(pure.shards) > 1 and len(pure.row_group_layout()) > len(pure.shards)
    assert pure.schema == rust.info()["schema"]
    for i, got in enumerate(pure):
        assert_same(got, expected(rows[i]), f"row {i}")
    for s in pure.shards:
        _cross_check(ps, s.path)  # each shard on its own
    blobs = ps.Dataset(tmp_path / "ds")  # default: zero-copy Blobs, equal to the bytes
    assert all(blobs[i]["bin"] == pure[i]["bin"] for i in range(len(pure)) if pure[i]["bin"])


def _same_bits(a, b):
    """Equality that tells -0.0 from 0.0 and accepts NaN == NaN."""
    if isinstance(a, float):
        return type(b) is float and struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same_bits, a, b))
    if isinstance(a, dict):
        return (
            type(b) is dict and list(a) == list(b) and all(map(_same_bits, a.values(), b.values()))
        )
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return type(a) is type(b) and a == b


def test_cross_check_edge_values(tmp_path):
    ps = _native()
    fields = [
        F("i64", K("int64")),
        F("u64", K("uint64")),
        F("i8", K("int8")),
        F("f32", K("float32")),
        F("f64", K("float64"), True),
        F("s", K("string")),
        F("big", K("binary")),
        F("a", K("any")),
        F("e", K("array", dtype="uint64", shape=[1, 1])),
    ]
    specials = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-300, 5e-324]
    rng = np.random.default_rng(1)
    rows = [
        {
            "i64": [-(2**63), 2**63 - 1, 0][i % 3],
            "u64": [2**64 - 1, 0, 1][i % 3],
            "i8": [-128, 127][i % 2],
            "f32": [0.0, -0.0, float("inf"), float("nan"), 1e-45, 3.4028234663852886e38][i % 6],
            "f64": None if i == 3 else specials[i % len(specials)],
            "s": ["", "\x00", "a\u0301", "\U0010ffff", "ﬁ" * 300][i % 5],
            "big": rng.integers(0, 256, 30_000 if i % 4 == 0 else 0, dtype=np.uint8).tobytes(),
            "a": [[None], 2**64 - 1, -(2**63), 1.5, "", b"", [], {}, {"k": {"k": [None, {}]}}][
                i % 9
            ],
            "e": np.full((i % 3, 1, 1), 2**64 - 1, dtype=np.uint64),
        }
        for i in range(40)
    ]
    schema = ps.Schema.from_dict({"fields": fields, "metadata": {"m": "v"}})
    codecs = {"big": "zstd", "s": "none", "i64": "none"}
    with ps.Writer(tmp_path / "ds", schema=schema, row_group_rows=16, codecs=codecs) as w:
        w.write_many(rows)
    pure = purepy.open_dataset(tmp_path / "ds")
    rust = ps.Dataset(tmp_path / "ds", zero_copy=False)
    assert [c["codec"] for c in pure.shards[0].row_groups[0][1]][:2] == ["none", "zstd"]
    assert max(c["stored_len"] for c in pure.shards[0].row_groups[0][1]) > 60_000
    assert pure.verify() == rust.verify().num_chunks == 3 * len(fields)
    for i, (a, b) in enumerate(zip(pure, rust, strict=True)):
        assert _same_bits(a, b), (i, a, b)
        want = dict(rows[i], f32=float(np.float32(rows[i]["f32"])))
        assert _same_bits(a, want), (i, a, want)


def test_cross_check_corruption(tmp_path):
    ps = _native()
    rows = [{"id": i, "text": "x" * i} for i in range(40)]
    with ps.Writer(tmp_path / "ds", schema=None, row_group_rows=8) as w:
        w.write_many(rows)
    pure = purepy.open_dataset(tmp_path / "ds")
    assert list(pure) == rows
    shard = pure.shards[0]
    _, cols = shard.row_groups[2]
    pos = cols[1]["offset"] + cols[1]["stored_len"] // 2
    pure.close()
    _flip(Path(shard.path), pos)
    with pytest.raises(CorruptDataError) as info:
        purepy.open_dataset(tmp_path / "ds").verify()
    assert (info.value.row_group, info.value.column) == (2, "text")
    assert not ps.Dataset(tmp_path / "ds").verify().ok


def test_rust_reads_files_of_the_spec_encoder(tmp_path):
    """The other direction: the test's encoder (written from FORMAT.md) against Rust's reader."""
    ps = _native()
    rows = [make_row(i) for i in range(23)]
    write_shard(tmp_path / "a.pxs", ALL_FIELDS, [rows[:10], rows[10:11], rows[11:]])
    write_shard(tmp_path / "e.pxs", [F("x", K("int64"))], [])
    pure, rust = _cross_check(ps, tmp_path / "a.pxs")
    for i, got in enumerate(rust):
        assert_same(got, expected(rows[i]), f"row {i}")
    assert len(ps.Dataset(tmp_path / "e.pxs")) == 0
    fields = [F("id", K("int64")), F("s", K("string"), True)]
    write_shard(tmp_path / "s0.pxs", fields, [[{"id": 1, "s": None}], [{"id": 2, "s": "b"}]])
    write_shard(tmp_path / "s1.pxs", fields, [[{"id": 3, "s": "c"}]])
    write_manifest(tmp_path, fields, ["s0.pxs", "s1.pxs"])
    _cross_check(ps, tmp_path)
