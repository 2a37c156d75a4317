"""Tests of the pure-Python reader (`pixmo_stream.purepy`) on shards built by a tiny encoder
written from docs/FORMAT.md (`spec_encoder.py`): values and every "reader MUST" rule. The
cross-checks against the Rust reader and the golden files are in `test_purepy_native.py`.
"""

from __future__ import annotations

import copy
import json
import struct

import msgpack
import numpy as np
import pytest
import zstandard

from spec_encoder import (
    ALL_FIELDS,
    CorruptDataError,
    F,
    K,
    UnsupportedVersionError,
    _flip,
    _offsets,
    _pad,
    assert_same,
    expected,
    make_row,
    purepy,
    raw_chunk,
    write_manifest,
    write_shard,
)

# --------------------------------------------------------------------------------------------
# CRC-32C


def test_crc32c_known_values_and_vectorised_path():
    assert purepy.crc32c(b"") == 0
    assert purepy.crc32c(b"123456789") == 0xE3069283
    assert purepy.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4 test vectors
    assert purepy.crc32c(b"\xff" * 32) == 0x62A8AB43
    rng = np.random.default_rng(0)
    for n in (4095, 4096, 4103, 70001, 1 << 20):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        reg = purepy._crc_bytes(0xFFFFFFFF, data) ^ 0xFFFFFFFF
        assert purepy.crc32c(data) == reg
        assert purepy.crc32c(data[n // 3 :], purepy.crc32c(data[: n // 3])) == reg


# --------------------------------------------------------------------------------------------
# Hand-built files


def test_every_type_round_trips(tmp_path):
    rows = [make_row(i) for i in range(23)]
    write_shard(tmp_path / "a.pxs", ALL_FIELDS, [rows[:10], rows[10:11], rows[11:]])
    ds = purepy.open_dataset(tmp_path / "a.pxs")
    assert len(ds) == 23
    assert ds.schema["fields"] == ALL_FIELDS
    for i, got in enumerate(ds):
        assert_same(got, expected(rows[i]), f"row {i}")
    assert_same(ds[-1], expected(rows[-1]))
    assert_same(ds[10], expected(rows[10]))
    assert ds.read_column("s") == [r["s"] for r in rows]
    assert ds.verify() == 3 * len(ALL_FIELDS)
    with pytest.raises(IndexError):
        ds[23]


def test_codec_none_everywhere_and_empty_shard(tmp_path):
    rows = [make_row(i) for i in range(5)]
    write_shard(tmp_path / "a.pxs", ALL_FIELDS, [rows], codec="none")
    assert_same(list(purepy.open_dataset(tmp_path / "a.pxs")), [expected(r) for r in rows])
    # FORMAT.md's worked example: no rows, one int64 column; the footer begins at 64.
    write_shard(tmp_path / "e.pxs", [F("x", K("int64"))], [])
    ds = purepy.open_dataset(tmp_path / "e.pxs")
    assert len(ds) == 0 and list(ds) == [] and ds.verify() == 0
    assert ds.shards[0].footer_start == 64


def test_dataset_directory(tmp_path):
    fields = [F("id", K("int64")), F("s", K("string"), True)]
    rows = [{"id": i, "s": None if i % 2 else str(i)} for i in range(9)]
    write_shard(tmp_path / "s0.pxs", fields, [rows[:2], rows[2:4]])
    write_shard(tmp_path / "s1.pxs", fields, [rows[4:]])
    write_manifest(tmp_path, fields, ["s0.pxs", "s1.pxs"])
    ds = purepy.open_dataset(tmp_path)
    assert list(ds) == rows and ds.read_column("id") == list(range(9))
    assert ds.row_group_layout() == [(0, 0, 0, 2), (0, 1, 2, 2), (1, 0, 4, 5)]
    with pytest.raises(FileNotFoundError):
        purepy.open_dataset(tmp_path / "missing")
    m = json.loads((tmp_path / "manifest.json").read_text())
    m["shards"][1]["num_bytes"] += 1
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CorruptDataError, match="s1.pxs"):
        purepy.open_dataset(tmp_path)
    m["shards"][1]["num_bytes"] -= 1
    m["shards"][1]["file"] = "../s1.pxs"
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CorruptDataError, match=r"\.\."):
        purepy.open_dataset(tmp_path)
    m["shards"][1]["file"] = "s1.pxs"
    m["version"] = [2, 0]
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(UnsupportedVersionError):
        purepy.open_dataset(tmp_path)


SIMPLE = [
    F("id", K("int64")),
    F("s", K("string")),
    F("tags", K("list", item=K("bool"), item_nullable=False)),
]
SIMPLE_ROWS = [{"id": i, "s": "ab" * i, "tags": [True] * (i % 3)} for i in range(10)]


def _simple(tmp_path, **kw):
    path = tmp_path / "x.pxs"
    footer = write_shard(path, SIMPLE, [SIMPLE_ROWS[:4], SIMPLE_ROWS[4:]], codec="none", **kw)
    return path, footer


@pytest.mark.parametrize("target", ["chunk", "padding", "header_pad", "footer", "magic_end"])
def test_any_flipped_byte_is_detected(tmp_path, target):
    path, footer = _simple(tmp_path)
    chunk = footer["row_groups"][1]["columns"][1]
    size = path.stat().st_size
    pos = {
        "chunk": chunk["offset"] + 17,
        "padding": chunk["offset"] + chunk["stored_len"],
        "header_pad": 40,
        "footer": size - 30,
        "magic_end": size - 1,
    }[target]
    _flip(path, pos)
    with pytest.raises(CorruptDataError) as info:
        purepy.open_dataset(path).verify()
    if target in ("chunk", "padding"):
        e = info.value
        assert (e.file, e.row_group, e.column) == (str(path), 1, "s")
        assert str(path) in str(e) and "row group 1" in str(e) and "'s'" in str(e)


def test_every_byte_flip_of_a_small_shard_is_detected(tmp_path):
    path = tmp_path / "x.pxs"
    write_shard(path, SIMPLE[1:], [SIMPLE_ROWS[:3]], codec="none")
    good = path.read_bytes()
    undetected = []
    for pos in range(len(good)):
        b = bytearray(good)
        b[pos] ^= 0x80
        path.write_bytes(b)
        try:
            purepy.open_dataset(path).verify()
            undetected.append(pos)
        except (CorruptDataError, UnsupportedVersionError):
            pass
    assert undetected == []


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"version": (2, 0)}, "version 2.0"),
        ({"flags": 1}, "flags"),
        ({"extra": {"required_features": ["zebra"]}}, "zebra"),
    ],
)
def test_unsupported(tmp_path, kw, match):
    path, _ = _simple(tmp_path, **kw)
    with pytest.raises(UnsupportedVersionError, match=match):
        purepy.open_dataset(path)


def test_higher_minor_and_unknown_footer_keys_are_accepted(tmp_path):
    path, _ = _simple(tmp_path, version=(1, 7), extra={"future_key": {"x": 1}})
    assert list(purepy.open_dataset(path)) == SIMPLE_ROWS


def _write_raw_chunk_shard(path, fields, nrows, raws):
    """A one-row-group shard whose raw chunks are given as bytes (to build invalid data)."""
    out = bytearray(b"PIXMOSTR" + struct.pack("<HHI", 1, 0, 0) + bytes(48))
    cols = []
    for raw in raws:
        crc = purepy.crc32c(raw)
        cols.append(
            {
                "offset": len(out),
                "stored_len": len(raw),
                "raw_len": len(raw),
                "codec": "none",
                "crc32c": crc,
            }
        )
        out += _pad(raw, 64)
    footer = msgpack.packb(
        {
            "schema": {"fields": fields, "metadata": {}},
            "num_rows": nrows,
            "row_groups": [{"num_rows": nrows, "columns": cols}],
            "required_features": [],
        }
    )
    out += footer + struct.pack("<QIHH8s", len(footer), purepy.crc32c(footer), 1, 0, b"PIXMOSTR")
    path.write_bytes(out)


@pytest.mark.parametrize(
    ("t", "nullable", "bufs", "match"),
    [
        (K("string"), False, [_offsets([2, 0]), b"\xff\xfe"], "UTF-8"),
        (K("string"), False, [struct.pack("<3Q", 0, 2, 1), b"ab"], "decrease"),
        (K("string"), False, [struct.pack("<3Q", 1, 1, 2), b"ab"], "start at"),
        (K("binary"), False, [_offsets([1, 1]), b"abc"], "data length"),
        (K("bool"), False, [b"\x04"], "bits past"),
        (K("int32"), True, [b"\x04", bytes(8)], "bits past"),
        (K("int32"), True, [b"\x01", struct.pack("<ii", 5, 9)], "placeholder"),
        (K("string"), True, [b"\x01", _offsets([1, 1]), b"ab"], "placeholder"),
        (K("int16"), False, [bytes(6)], "expected 4"),
        (K("any"), False, [_offsets([1, 0]), b"\xc0"], "empty"),
        (K("any"), False, [_offsets([1, 2]), b"\xc0\xc0\xc0"], "msgpack"),
        (K("any"), False, [_offsets([1, 3]), b"\xc0\xd4\x05\x00"], "msgpack"),
        (K("array", dtype="int8", shape=[3]), False, [_offsets([1, 0]), bytes(4)], "expected 3"),
        (
            K("list", item=K("int8"), item_nullable=False),
            False,
            [_offsets([2, 0]), bytes(3)],
            "expected 2",
        ),
    ],
)
def test_invalid_buffers(tmp_path, t, nullable, bufs, match):
    path = tmp_path / "bad.pxs"
    _write_raw_chunk_shard(path, [F("c", t, nullable)], 2, [raw_chunk(bufs)])
    with pytest.raises(CorruptDataError, match=match) as info:
        purepy.open_dataset(path).verify()
    assert info.value.column == "c" and info.value.row_group == 0


def test_invalid_buffer_tables(tmp_path):
    path = tmp_path / "bad.pxs"
    fields = [F("c", K("int32"))]
    good = raw_chunk([bytes(8)])
    cases = {
        "reserved": good[:4] + b"\x01" + good[5:],
        "implies 1": raw_chunk([bytes(8), b""]),
        "raw_len": good + bytes(1),
        "runs past": good[:-1],
    }
    for match, raw in cases.items():
        _write_raw_chunk_shard(path, fields, 2, [raw])
        with pytest.raises(CorruptDataError, match=match):
            purepy.open_dataset(path).verify()
    padded = raw_chunk([bytes(3), b"x"])  # buffer 0 is followed by 5 padding bytes
    _write_raw_chunk_shard(path, [F("c", K("string"))], 1, [padded[:27] + b"\x01" + padded[28:]])
    with pytest.raises(CorruptDataError, match="padding after buffer 0"):
        purepy.open_dataset(path).verify()


@pytest.mark.parametrize(
    ("path_in_footer", "value", "match"),
    [
        (("row_groups", 0, "columns", 1, "offset"), lambda v: v + 64, "expected"),
        (("row_groups", 0, "columns", 1, "offset"), lambda v: v + 8, "multiple of 64"),
        (("row_groups", 1, "columns", 0, "offset"), lambda v: v - 64, "expected"),
        (("row_groups", 0, "columns", 1, "stored_len"), lambda v: v + 200, "expected|footer"),
        (("row_groups", 0, "num_rows"), lambda v: 3, "rows"),
        (("row_groups", 0, "columns", 0, "codec"), lambda v: "lz4", "codec"),
        (("schema", "fields", 0, "type", "kind"), lambda v: "int128", "kind"),
        (("schema", "fields", 1, "name"), lambda v: "id", "duplicate"),
        (("num_rows",), lambda v: v + 1, "rows"),
    ],
)
def test_bad_footer(tmp_path, path_in_footer, value, match):
    path, footer = _simple(tmp_path)
    footer = copy.deepcopy(footer)
    good = path.read_bytes()
    node = footer
    for key in path_in_footer[:-1]:
        node = node[key]
    node[path_in_footer[-1]] = value(node[path_in_footer[-1]])
    fb = msgpack.packb(footer)
    (flen,) = struct.unpack_from("<Q", good, len(good) - 24)
    body = good[: len(good) - 24 - flen]
    trailer = struct.pack("<QIHH8s", len(fb), purepy.crc32c(fb), 1, 0, b"PIXMOSTR")
    path.write_bytes(body + fb + trailer)
    with pytest.raises(CorruptDataError, match=match):
        purepy.open_dataset(path).verify()


def _leaf_paths(x, path=()):
    yield path
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    for k, v in items:
        yield from _leaf_paths(v, (*path, k))


def test_footer_and_chunk_mutations_with_valid_crcs_raise_only_reader_errors(tmp_path):
    """Checksums fixed up after the damage: the structural checks alone must catch it."""
    rows = [make_row(i) for i in range(12)]
    path = tmp_path / "a.pxs"
    footer = write_shard(path, ALL_FIELDS, [rows[:5], rows[5:]], codec="none")
    good = path.read_bytes()
    (flen,) = struct.unpack_from("<Q", good, len(good) - 24)
    body = good[: len(good) - 24 - flen]
    rnd = np.random.default_rng(7)
    replacements = [None, -1, 0, 1, 2**64 - 1, "x", "", [], {}, True, 1.5, b"\0", 63, "list"]
    for _ in range(300):
        f, b = copy.deepcopy(footer), bytearray(body)
        if rnd.random() < 0.5:
            paths = list(_leaf_paths(f))[1:]
            *parents, last = paths[rnd.integers(len(paths))]
            node = f
            for k in parents:
                node = node[k]
            node[last] = replacements[rnd.integers(len(replacements))]
        else:
            col = f["row_groups"][rnd.integers(2)]["columns"][rnd.integers(len(ALL_FIELDS))]
            start, end = col["offset"], col["offset"] + col["stored_len"]
            for pos in rnd.integers(start, end, 3):
                b[pos] = rnd.integers(256)
            col["crc32c"] = purepy.crc32c(bytes(b[start:end]))
        fb = msgpack.packb(f)
        trailer = struct.pack("<QIHH8s", len(fb), purepy.crc32c(fb), 1, 0, b"PIXMOSTR")
        path.write_bytes(bytes(b) + fb + trailer)
        try:
            list(purepy.open_dataset(path))
        except purepy.PurePixmoError:
            pass


def test_zstd_frame_checks(tmp_path):
    raw = raw_chunk([bytes(8)])
    frame = zstandard.ZstdCompressor().compress(raw)
    err = purepy.CorruptDataError
    assert purepy._decompress_zstd(frame, len(raw), err) == raw
    with pytest.raises(err, match="declares"):
        purepy._decompress_zstd(frame, len(raw) + 1, err)
    with pytest.raises(err, match="after the zstd frame"):
        purepy._decompress_zstd(frame + frame, len(raw), err)
    nosize = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(1 << 20))
    with pytest.raises(err, match="more than"):
        purepy._decompress_zstd(nosize, 100, err)
    with pytest.raises(err, match="truncated"):
        purepy._decompress_zstd(nosize[:-4], 1 << 20, err)
