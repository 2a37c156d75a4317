"""Writes the golden dataset of a format version and the values it must read back as.

Run once per released format version (python tests/golden/make_golden.py); the files are
checked in and every later reader must keep reading them (tests/test_golden.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import pixmo_stream as ps

HERE = Path(__file__).parent


def golden_schema() -> ps.Schema:
    return ps.Schema(
        [
            ps.Field("id", ps.int64()),
            ps.Field("flag", ps.bool_(), nullable=True),
            ps.Field("i8", ps.int8()),
            ps.Field("i16", ps.int16()),
            ps.Field("i32", ps.int32()),
            ps.Field("u8", ps.uint8()),
            ps.Field("u16", ps.uint16()),
            ps.Field("u32", ps.uint32()),
            ps.Field("u64", ps.uint64()),
            ps.Field("f32", ps.float32()),
            ps.Field("f64", ps.float64(), nullable=True),
            ps.Field("caption", ps.string(), nullable=True),
            ps.Field("image", ps.binary()),
            ps.Field("points", ps.array("float32", (2,))),
            ps.Field("mask", ps.array("uint8", (2, 3)), nullable=True),
            ps.Field("scores", ps.array("float64")),
            ps.Field("labels", ps.list_(ps.string(), nullable_items=True)),
            ps.Field(
                "qa",
                ps.list_(
                    ps.struct(
                        [
                            ps.Field("question", ps.string()),
                            ps.Field("answer", ps.string(), nullable=True),
                            ps.Field("turns", ps.list_(ps.int16())),
                        ]
                    )
                ),
            ),
            ps.Field(
                "size",
                ps.struct([ps.Field("w", ps.int32()), ps.Field("h", ps.int32())]),
                nullable=True,
            ),
            ps.Field("meta", ps.any_(), nullable=True),
        ]
    )


def golden_records(version: str = "v1.0") -> list[dict]:
    out = []
    # From 1.1 on, one image spans three pages of page checksums (FORMAT.md "Page checksums").
    big = bytes((j * 31 + j // 251) % 256 for j in range(150_000)) if version != "v1.0" else b""
    for i in range(8):
        n = i % 4
        out.append(
            {
                "id": i,
                "flag": None if i == 3 else bool(i % 2),
                "i8": -128 + i,
                "i16": -300 * i,
                "i32": 2**31 - 1 - i,
                "u8": 255 - i,
                "u16": 65535 - i,
                "u32": 2**32 - 1 - i,
                "u64": 2**64 - 1 - i,
                "f32": i * 0.5,
                "f64": None if i == 5 else i / 3,
                "caption": None if i == 2 else f"caption {i}: ünïcødé ✓ " * (i + 1),
                "image": bytes([0xFF, 0xD8, 0xFF])
                + bytes(range(i * 10))
                + (big if i == 4 else b""),
                "points": np.arange(n * 2, dtype=np.float32).reshape(n, 2) * 1.5,
                "mask": None if i == 1 else np.full((i % 3, 2, 3), i, dtype=np.uint8),
                "scores": np.linspace(0, 1, n, dtype=np.float64),
                "labels": [f"label{j}" if j != 1 else None for j in range(n)],
                "qa": [
                    {
                        "question": f"q{j}?",
                        "answer": None if j == 2 else f"a{j}",
                        "turns": list(range(j)),
                    }
                    for j in range(n)
                ],
                "size": None if i == 4 else {"w": 640 + i, "h": 480 - i},
                "meta": None
                if i == 6
                else {"source": "golden", "i": i, "nested": [1, 2.5, "x", None]},
            }
        )
    return out


def to_jsonable(v):
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, np.ndarray):
        return {"ndarray": v.tolist(), "dtype": v.dtype.name, "shape": list(v.shape)}
    if isinstance(v, dict):
        return {k: to_jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_jsonable(x) for x in v]
    return v


def main(version: str = "v{}.{}".format(*ps.FORMAT_VERSION)) -> None:
    out = HERE / version
    records = golden_records(version)
    with ps.Writer(out, golden_schema(), row_group_rows=3, shard_bytes=2048, overwrite=True) as w:
        w.write_many(records)
    (out / "expected.json").write_text(json.dumps([to_jsonable(r) for r in records], indent=1))
    print(w.summary)


if __name__ == "__main__":
    main(*sys.argv[1:])
