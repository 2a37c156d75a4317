"""A tiny encoder of the format written from docs/FORMAT.md alone, and the pure-Python reader
loaded by file path, shared by the purepy tests."""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path

import msgpack
import numpy as np
import zstandard

ROOT = Path(__file__).resolve().parents[1]
PUREPY = ROOT / "python" / "pixmo_stream" / "purepy"


def _load_purepy():
    # By file path: purepy must work without the package's native extension.
    spec = importlib.util.spec_from_file_location(
        "_purepy_under_test", PUREPY / "__init__.py", submodule_search_locations=[str(PUREPY)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its modules import each other relatively, through this name
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


def _flip(path, pos, xor=0x01):
    b = bytearray(path.read_bytes())
    b[pos] ^= xor
    path.write_bytes(b)
