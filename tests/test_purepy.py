"""Tests of the pure-Python reader (`pixmo_stream.purepy`).

Part one builds shards with a tiny encoder written from docs/FORMAT.md and checks values and
every "reader MUST" rule; part two cross-checks purepy against the Rust reader on datasets the
Rust writer wrote (skipped when the native module is missing); part three reads the golden
files.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import struct
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zstandard

ROOT = Path(__file__).resolve().parents[1]


def _load_purepy():
    # By file path: purepy must work without the package's native extension.
    spec = importlib.util.spec_from_file_location(
        "_purepy_under_test", ROOT / "python" / "pixmo_stream" / "purepy.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


purepy = _load_purepy()
CorruptDataError = purepy.CorruptDataError
UnsupportedVersionError = purepy.UnsupportedVersionError

# --------------------------------------------------------------------------------------------
# A tiny spec-following encoder (FORMAT.md "Raw chunk", "Byte layout of a shard").

NUM = {
    "int8": "<i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "uint8": "<u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
    "float32": "<f4",
    "float64": "<f8",
}
EMPTY = object()  # an `any` placeholder: no bytes at all


def _bits(flags):
    return np.packbits(np.array(flags, dtype=bool), bitorder="little").tobytes()


def _offsets(lens):
    return np.concatenate([[0], np.cumsum(lens, dtype=np.uint64)]).astype("<u8").tobytes()


def _placeholder(t):
    k = t["kind"]
    if k == "struct":
        return {f["name"]: None if f["nullable"] else _placeholder(f["type"]) for f in t["fields"]}
    if k == "array":
        return np.zeros((0, *t["shape"]), NUM[t["dtype"]])
    return {"bool": False, "string": "", "binary": b"", "any": EMPTY, "list": []}.get(k, 0)


def encode(t, nullable, vals):
    bufs = []
    if nullable:
        bufs.append(_bits([v is not None for v in vals]))
        vals = [_placeholder(t) if v is None else v for v in vals]
    k = t["kind"]
    if k == "bool":
        bufs.append(_bits(vals))
    elif k in NUM:
        bufs.append(np.array(vals, dtype=NUM[k]).tobytes())
    elif k in ("string", "binary", "any"):
        if k == "string":
            blobs = [v.encode() for v in vals]
        elif k == "any":
            blobs = [b"" if v is EMPTY else msgpack.packb(v) for v in vals]
        else:
            blobs = vals
        bufs += [_offsets([len(b) for b in blobs]), b"".join(blobs)]
    elif k == "array":
        arrs = [np.asarray(v, dtype=NUM[t["dtype"]]) for v in vals]
        bufs += [_offsets([len(a) for a in arrs]), b"".join(a.tobytes() for a in arrs)]
    elif k == "list":
        bufs.append(_offsets([len(v) for v in vals]))
        bufs += encode(t["item"], t["item_nullable"], [x for v in vals for x in v])
    else:
        for f in t["fields"]:
            bufs += encode(f["type"], f["nullable"], [v[f["name"]] for v in vals])
    return bufs


def _pad(b, a):
    return b + bytes(-len(b) % a)


def raw_chunk(bufs):
    table = struct.pack(f"<II{len(bufs)}Q", len(bufs), 0, *map(len, bufs))
    return table + b"".join(_pad(b, 8) for b in bufs[:-1]) + bufs[-1]


def write_shard(path, fields, groups, *, version=(1, 0), flags=0, codec="zstd", extra=None):
    """`groups` is a list of row groups, each a list of record dicts."""
    out = bytearray(struct.pack("<8sHHI", b"PIXMOSTR", *version, flags) + bytes(48))
    directory = []
    for rows in groups:
        cols = []
        for f in fields:
            raw = raw_chunk(encode(f["type"], f["nullable"], [r[f["name"]] for r in rows]))
            c = "none" if f["type"]["kind"] == "binary" else codec
            stored = zstandard.ZstdCompressor().compress(raw) if c == "zstd" else raw
            cols.append(
                {
                    "offset": len(out),
                    "stored_len": len(stored),
                    "raw_len": len(raw),
                    "codec": c,
                    "crc32c": purepy.crc32c(stored),
                }
            )
            out += _pad(stored, 64)
        directory.append({"num_rows": len(rows), "columns": cols})
    footer = {
        "schema": {"fields": fields, "metadata": {}},
        "num_rows": sum(map(len, groups)),
        "row_groups": directory,
        "required_features": [],
        "created_by": "test_purepy encoder",
        "metadata": {},
    }
    footer.update(extra or {})
    fb = msgpack.packb(footer)
    out += fb + struct.pack("<QIHH8s", len(fb), purepy.crc32c(fb), *version, b"PIXMOSTR")
    Path(path).write_bytes(out)
    return footer


def write_manifest(root, fields, shard_files):
    shards = []
    for name in shard_files:
        b = (root / name).read_bytes()
        (flen,) = struct.unpack_from("<Q", b, len(b) - 24)
        footer = msgpack.unpackb(b[len(b) - 24 - flen : len(b) - 24])
        shards.append(
            {
                "file": name,
                "num_rows": footer["num_rows"],
                "num_bytes": len(b),
                "row_groups": [g["num_rows"] for g in footer["row_groups"]],
            }
        )
    manifest = {
        "format": "pixmo-stream",
        "version": [1, 0],
        "schema": {"fields": fields, "metadata": {}},
        "num_rows": sum(s["num_rows"] for s in shards),
        "num_bytes": sum(s["num_bytes"] for s in shards),
        "shards": shards,
        "created_by": "test",
        "metadata": {},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))


def F(name, t, nullable=False):
    return {"name": name, "type": t, "nullable": nullable}


def K(kind, **kw):
    return {"kind": kind, **kw}


ALL_FIELDS = [
    F("b", K("bool")),
    *[F(k, K(k)) for k in NUM],
    F("s", K("string"), True),
    F("bin", K("binary"), True),
    F("pts", K("array", dtype="float32", shape=[2]), True),
    F("vec", K("array", dtype="int16", shape=[])),
    F("m", K("array", dtype="float64", shape=[2, 3])),
    F(
        "qa",
        K(
            "list",
            item=K(
                "struct",
                fields=[
                    F("q", K("string")),
                    F("tags", K("list", item=K("int32"), item_nullable=True), True),
                ],
            ),
            item_nullable=True,
        ),
        True,
    ),
    F("st", K("struct", fields=[F("x", K("any")), F("y", K("uint8"), True)]), True),
    F("meta", K("any"), True),
]


def make_row(i):
    return {
        "b": i % 3 == 0,
        **{k: (i * 37) % 100 - (0 if k.startswith("u") else 50) for k in NUM},
        "s": None if i % 4 == 1 else ["", "héllo", "日本語 🎉", f"row {i}"][i % 4],
        "bin": None if i % 5 == 2 else bytes(range(i % 7)),
        "pts": None if i % 6 == 3 else np.arange(2 * (i % 4), dtype="<f4").reshape(-1, 2) / 3,
        "vec": np.arange(i % 5, dtype="<i2") - 2,
        "m": np.full((i % 3, 2, 3), i, dtype="<f8"),
        "qa": None
        if i % 7 == 4
        else [
            None if j == 1 else {"q": f"q{j}", "tags": None if j == 2 else [j, None, -j]}
            for j in range(i % 4)
        ],
        "st": None if i % 3 == 2 else {"x": {"k": [1, 2.5, None, "v", b"\x00"]}, "y": None},
        "meta": None if i % 2 else {"i": i, "nested": [{"a": []}, True], 7: "int key"},
    }


def assert_same(a, b, where="value"):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, (where, a.dtype, b.dtype, a.shape)
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), (where, a, b)
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


def expected(row):
    """A record as a reader returns it (typed numpy arrays, Python scalars)."""
    out = dict(row)
    for k in NUM:
        out[k] = float(row[k]) if k.startswith("float") else int(row[k])
    return out


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


def _flip(path, pos, xor=0x01):
    b = bytearray(path.read_bytes())
    b[pos] ^= xor
    path.write_bytes(b)


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
