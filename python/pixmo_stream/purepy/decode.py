"""Decoding one raw chunk (FORMAT.md "Raw chunk: buffer table and buffers"): its buffer
table, its values by type, and the zstd frame it may be stored in."""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack
import numpy as np
import zstandard

from .constants import (
    BUFFER_ALIGNMENT,
    MAX_BUFFERS_PER_CHUNK,
    MAX_MSGPACK_DEPTH,
    NUMERIC_KINDS,
    VARLEN_KINDS,
)


def _split_buffers(raw: bytes, expected: int, err: Any) -> list[memoryview]:
    if len(raw) < 8:
        raise err("raw chunk shorter than its buffer table")
    count, reserved = struct.unpack_from("<II", raw, 0)
    if reserved != 0:
        raise err(f"buffer table: reserved field is {reserved}, not 0")
    if count > MAX_BUFFERS_PER_CHUNK:
        raise err(f"buffer table: {count} buffers exceeds {MAX_BUFFERS_PER_CHUNK}")
    if count != expected:
        raise err(f"buffer table: {count} buffers, the column's type implies {expected}")
    table_end = 8 + 8 * count
    if len(raw) < table_end:
        raise err("raw chunk shorter than its buffer table")
    lens = struct.unpack_from(f"<{count}Q", raw, 8)
    mv = memoryview(raw)
    bufs = []
    pos = table_end  # already a multiple of BUFFER_ALIGNMENT
    for i, blen in enumerate(lens):
        end = pos + blen
        if end > len(raw):
            raise err(f"buffer {i} ({blen} bytes at {pos}) runs past raw_len {len(raw)}")
        bufs.append(mv[pos:end])
        if i + 1 < count:
            padded = -(-end // BUFFER_ALIGNMENT) * BUFFER_ALIGNMENT
            if padded > len(raw):
                raise err(f"padding after buffer {i} runs past raw_len {len(raw)}")
            if any(mv[end:padded]):
                raise err(f"non-zero padding after buffer {i}")
            end = padded
        pos = end
    if pos != len(raw):
        raise err(f"buffers end at {pos}, raw_len is {len(raw)}")
    return bufs


class _Decoder:
    """Depth-first walk of FORMAT.md's `encode(type, nullable, n)`, consuming buffers in order.

    Each step returns (values, empty, invalid) for its n slots: the Python values; a mask of
    the slots that hold a null's placeholder (zero, empty, or null), checked wherever a slot is
    null; and a mask of the slots whose placeholder is no valid value (an empty `any`), which
    must be null themselves or sit under a null struct.
    """

    def __init__(self, bufs: list[memoryview], err: Any) -> None:
        self.bufs = bufs
        self.next = 0
        self.err = err

    def take(self, what: str, length: int | None = None) -> memoryview:
        buf = self.bufs[self.next]
        if length is not None and len(buf) != length:
            raise self.err(f"buffer {self.next} ({what}) is {len(buf)} bytes, expected {length}")
        self.next += 1
        return buf

    def bitmap(self, what: str, n: int) -> np.ndarray:
        buf = self.take(what, (n + 7) // 8)
        bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little")
        if bits[n:].any():
            raise self.err(f"{what}: bits past row {n} are not 0")
        return bits[:n].astype(bool)

    def offsets(self, what: str, n: int) -> np.ndarray:
        offs = np.frombuffer(self.take(f"{what} offsets", 8 * (n + 1)), dtype="<u8")
        if offs[0] != 0:
            raise self.err(f"{what} offsets start at {int(offs[0])}, not 0")
        if n and np.any(offs[1:] < offs[:-1]):
            raise self.err(f"{what} offsets decrease")
        return offs

    def column(self, t: dict, nullable: bool, n: int) -> list:
        values, _, invalid = self.field(t, nullable, n)
        self.check_valid(invalid)
        return values

    def check_valid(self, invalid: np.ndarray) -> None:
        if invalid.any():
            i = int(np.flatnonzero(invalid)[0])
            raise self.err(f"any value {i} is empty, not one msgpack object")

    def field(self, t: dict, nullable: bool, n: int) -> tuple[list, np.ndarray, np.ndarray]:
        if not nullable:
            return self.value(t, n)
        valid = self.bitmap("validity bitmap", n)
        values, empty, invalid = self.value(t, n)
        nulls = ~valid
        if not empty[nulls].all():
            row = int(np.flatnonzero(nulls & ~empty)[0])
            raise self.err(f"null slot {row} does not hold an empty placeholder")
        self.check_valid(invalid & valid)
        for i in np.flatnonzero(nulls).tolist():
            values[i] = None
        return values, nulls, np.zeros(n, dtype=bool)

    def value(self, t: dict, n: int) -> tuple[list, np.ndarray, np.ndarray]:
        kind = t["kind"]
        ok = np.zeros(n, dtype=bool)
        if kind == "bool":
            bits = self.bitmap("bool bitmap", n)
            return bits.tolist(), ~bits, ok
        if kind in NUMERIC_KINDS:
            dt = np.dtype(NUMERIC_KINDS[kind])
            buf = self.take(kind, n * dt.itemsize)
            arr = np.frombuffer(buf, dtype=dt)
            zero = np.frombuffer(buf, dtype=f"<u{dt.itemsize}") == 0
            return arr.tolist(), zero, ok
        if kind in VARLEN_KINDS:
            offs = self.offsets(kind, n)
            data = bytes(self.take(f"{kind} data"))
            if int(offs[n]) != len(data):
                raise self.err(f"last {kind} offset {int(offs[n])} != data length {len(data)}")
            empty = offs[1:] == offs[:-1]
            bounds = offs.tolist()
            if kind == "binary":
                values = [data[bounds[i] : bounds[i + 1]] for i in range(n)]
            elif kind == "string":
                values = []
                for i in range(n):
                    try:
                        values.append(data[bounds[i] : bounds[i + 1]].decode("utf-8"))
                    except UnicodeDecodeError as e:
                        raise self.err(f"string value {i} is not valid UTF-8: {e}") from None
            else:
                values = [self.any_value(data[bounds[i] : bounds[i + 1]], i) for i in range(n)]
                return values, empty, empty
            return values, empty, ok
        if kind == "array":
            dt = np.dtype(NUMERIC_KINDS[t["dtype"]])
            shape = tuple(t["shape"])
            per_row = math.prod(shape) * dt.itemsize
            offs = self.offsets("array", n)
            rows = int(offs[n])
            buf = self.take("array data", rows * per_row)
            full = np.frombuffer(buf, dtype=dt).reshape((rows, *shape))
            bounds = offs.tolist()
            values = [full[bounds[i] : bounds[i + 1]] for i in range(n)]
            return values, offs[1:] == offs[:-1], ok
        if kind == "list":
            offs = self.offsets("list", n)
            items = self.column(t["item"], t["item_nullable"], int(offs[n]))
            bounds = offs.tolist()
            return [items[bounds[i] : bounds[i + 1]] for i in range(n)], offs[1:] == offs[:-1], ok
        # struct
        names = [f["name"] for f in t["fields"]]
        columns = []
        empty = np.ones(n, dtype=bool)
        invalid = ok
        for f in t["fields"]:
            vals, e, bad = self.field(f["type"], f["nullable"], n)
            columns.append(vals)
            empty &= e
            invalid = invalid | bad
        rows = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
        return rows, empty, invalid

    def any_value(self, blob: bytes, i: int) -> Any:
        if not blob:
            return None  # a placeholder: the caller checks that the slot is null
        try:
            obj = msgpack.unpackb(
                blob,
                raw=False,
                strict_map_key=False,
                ext_hook=_no_ext,
                object_pairs_hook=_dict_with_tuple_keys,
            )
            _check_any(obj)
        except Exception as e:
            raise self.err(f"any value {i} is not one valid msgpack object: {e}") from None
        return obj


def _dict_with_tuple_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A map as a dict, array keys as tuples (as a Python tuple key was written). The twin of
    `_convert.dict_with_tuple_keys`, kept here because this reader imports nothing from the
    package."""

    def frozen(k: Any) -> Any:
        return tuple(frozen(x) for x in k) if isinstance(k, list) else k

    return {frozen(k): v for k, v in pairs}


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def _check_any(obj: Any) -> None:
    stack = [(obj, 0)]
    while stack:
        o, depth = stack.pop()
        if depth > MAX_MSGPACK_DEPTH:
            raise ValueError(f"msgpack nests more than {MAX_MSGPACK_DEPTH} levels deep")
        if isinstance(o, list | tuple):
            stack.extend((x, depth + 1) for x in o)
        elif isinstance(o, dict):
            stack.extend((x, depth + 1) for x in o.keys())
            stack.extend((x, depth + 1) for x in o.values())
        elif isinstance(o, msgpack.Timestamp):
            raise ValueError("msgpack timestamp extension is not allowed")


def _fresh(v: Any) -> Any:
    """A copy of the mutable containers in a cached value (bytes, str, read-only arrays shared)."""
    if isinstance(v, list):
        return [_fresh(x) for x in v]
    if isinstance(v, dict):
        return {k: _fresh(x) for k, x in v.items()}
    return v


def _decompress_zstd(stored: bytes, raw_len: int, err: Any) -> bytes:
    try:
        declared = zstandard.frame_content_size(stored)
    except zstandard.ZstdError as e:
        raise err(f"not a zstd frame: {e}") from None
    if declared not in (-1, raw_len):
        raise err(f"zstd frame declares {declared} bytes, raw_len is {raw_len}")
    dobj = zstandard.ZstdDecompressor().decompressobj()
    out = []
    size = 0
    # libzstd enforces a declared size; without one, feed small pieces so that a frame cannot
    # balloon far past raw_len before we notice.
    step = len(stored) if declared == raw_len else 4096
    pos = 0
    try:
        while pos < len(stored) and not dobj.eof and size <= raw_len:
            piece = dobj.decompress(stored[pos : pos + step])
            pos += step
            size += len(piece)
            out.append(piece)
    except zstandard.ZstdError as e:
        raise err(f"zstd decompression failed: {e}") from None
    if size > raw_len:
        raise err(f"decompresses to more than raw_len ({raw_len}) bytes")
    if not dobj.eof:
        raise err("zstd frame is truncated")
    if size != raw_len:
        raise err(f"decompressed to {size} bytes, raw_len is {raw_len}")
    if dobj.unused_data or pos < len(stored):
        raise err("bytes after the zstd frame")
    return b"".join(out)
