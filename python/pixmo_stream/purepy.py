"""An independent, pure-Python reader of the pixmo-stream format (docs/FORMAT.md, version 1.2).

It uses only numpy, zstandard, msgpack and the standard library, and imports nothing from the
rest of the package, so it works where the native extension is not installed. Its real job is
to prove that the spec is complete: it was written from FORMAT.md alone, and the tests check
that it reads every file the Rust writer writes exactly as the Rust reader does.

Every "MUST" of the spec's "What a reader MUST do" is checked; a chunk's values are only
returned after its CRC, padding, length and buffer table have been verified.
"""

from __future__ import annotations

import json
import math
import mmap
import operator
import os
import struct
from collections.abc import Iterator
from typing import Any

import msgpack

try:  # optional: only used to cross-check page checksums (FORMAT.md "Page checksums")
    from xxhash import xxh3_64_intdigest as _xxh3_64
except ImportError:  # pragma: no cover
    _xxh3_64 = None
import numpy as np
import zstandard

__all__ = [
    "PurePixmoError",
    "CorruptDataError",
    "UnsupportedVersionError",
    "Dataset",
    "Shard",
    "open_dataset",
    "crc32c",
]

# Constants of FORMAT.md ("Constants").
MAGIC = b"PIXMOSTR"
MAJOR_VERSION = 1
MINOR_VERSION = 2
HEADER_LEN = 16
TRAILER_LEN = 24
CHUNK_ALIGNMENT = 64
BUFFER_ALIGNMENT = 8
MAX_FOOTER_LEN = 268435456
PAGE_LEN = 65536
MAX_NESTING_DEPTH = 32
MAX_BUFFERS_PER_CHUNK = 1048576
MAX_MSGPACK_DEPTH = 512
MANIFEST_NAME = "manifest.json"
SHARD_EXTENSION = ".pxs"

KNOWN_FEATURES: frozenset[str] = frozenset()
CODECS = ("none", "zstd")
NUMERIC_KINDS = {
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
VARLEN_KINDS = ("string", "binary", "any")
SCALAR_KINDS = frozenset(["bool", *NUMERIC_KINDS, *VARLEN_KINDS])


class PurePixmoError(Exception):
    """Base class of the errors this reader raises."""


class CorruptDataError(PurePixmoError):
    """The data breaks a rule of FORMAT.md. Carries `file`, `row_group` and `column`."""

    def __init__(
        self,
        what: str,
        file: str | os.PathLike[str] | None = None,
        row_group: int | None = None,
        column: str | None = None,
    ) -> None:
        self.what = what
        self.file = None if file is None else os.fspath(file)
        self.row_group = row_group
        self.column = column
        where = []
        if self.file is not None:
            where.append(self.file)
        if row_group is not None:
            where.append(f"row group {row_group}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {what}" if where else what)


class UnsupportedVersionError(PurePixmoError):
    """A major version other than 1, a header flag or a required feature this reader lacks."""


# --------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven and vectorised.
#
# The data is cut into `lanes` equal runs whose CRC registers numpy advances together, eight
# bytes per step (slicing-by-8); the registers are then merged pairwise with the linear
# "advance over k zero bytes" operator, and the few leftover bytes are done one at a time.


def _make_tables() -> np.ndarray:
    t = np.zeros((8, 256), dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t[0, i] = c
    for k in range(1, 8):
        prev = t[k - 1]
        t[k] = t[0][prev & 0xFF] ^ (prev >> 8)
    return t


_T = _make_tables()
_T0 = [int(x) for x in _T[0]]


def _crc_bytes(reg: int, data: bytes | memoryview) -> int:
    t = _T0
    for b in bytes(data):
        reg = t[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


def _op_apply(cols: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Apply the GF(2) 32x32 matrix given by its 32 column images `cols` to uint32 values `v`."""
    out = np.zeros_like(v)
    for j in range(32):
        out ^= np.where((v >> j) & 1 == 1, cols[j], np.uint32(0))
    return out


def _zero_op(nbytes: int) -> np.ndarray:
    """Column images of the operator advancing a CRC register over `nbytes` zero bytes."""
    basis = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    one = _T[0][basis & 0xFF] ^ (basis >> 8)
    result = basis.copy()
    power = one
    while nbytes:
        if nbytes & 1:
            result = _op_apply(power, result)
        nbytes >>= 1
        if nbytes:
            power = _op_apply(power, power)
    return result


def _op_tables(cols: np.ndarray) -> np.ndarray:
    """Four 256-entry tables so that op(x) = T0[b0] ^ T1[b1] ^ T2[b2] ^ T3[b3]."""
    b = np.arange(256, dtype=np.uint32)
    return np.stack([_op_apply(cols, b << np.uint32(8 * k)) for k in range(4)])


def _op_apply_tables(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    return t[0][v & 0xFF] ^ t[1][(v >> 8) & 0xFF] ^ t[2][(v >> 16) & 0xFF] ^ t[3][v >> 24]


_SMALL = 4096


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C of `data`, continuing from a previous result `value` (0 to start)."""
    mv = memoryview(data).cast("B")
    n = len(mv)
    reg = (value ^ 0xFFFFFFFF) & 0xFFFFFFFF
    if n < _SMALL:
        return _crc_bytes(reg, mv) ^ 0xFFFFFFFF
    lane_len = max(64, (math.isqrt(n) // 8) * 8)
    lanes = n // lane_len
    words = (
        np.frombuffer(mv[: lanes * lane_len], dtype="<u4")
        .reshape(lanes, lane_len // 4)
        .T.astype(np.uint32, order="C")
    )
    regs = np.zeros(lanes, dtype=np.uint32)
    regs[0] = reg
    t0, t1, t2, t3, t4, t5, t6, t7 = _T
    for j in range(0, lane_len // 4, 2):
        lo = regs ^ words[j]
        hi = words[j + 1]
        regs = (
            t7[lo & 0xFF]
            ^ t6[(lo >> 8) & 0xFF]
            ^ t5[(lo >> 16) & 0xFF]
            ^ t4[lo >> 24]
            ^ t3[hi & 0xFF]
            ^ t2[(hi >> 8) & 0xFF]
            ^ t1[(hi >> 16) & 0xFF]
            ^ t0[hi >> 24]
        )
    # Merge: register(A || B) = zeros_op(|B|)(register(A)) ^ register(B), B's started at 0.
    # Leading all-zero lanes change nothing, so pad to a power of two and reduce pairwise.
    width = 1 << (lanes - 1).bit_length()
    regs = np.concatenate([np.zeros(width - lanes, dtype=np.uint32), regs])
    span = lane_len
    while len(regs) > 1:
        op = _op_tables(_zero_op(span))
        regs = _op_apply_tables(op, regs[0::2]) ^ regs[1::2]
        span *= 2
    reg = int(regs[0])
    return _crc_bytes(reg, mv[lanes * lane_len :]) ^ 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# Schema validation (FORMAT.md "Schema").


def _check_fields(fields: Any, depth: int, err: Any) -> None:
    if not isinstance(fields, list):
        raise err("schema: 'fields' must be an array")
    names: set[str] = set()
    for f in fields:
        if not isinstance(f, dict) or not {"name", "type", "nullable"} <= set(f):
            raise err(f"schema: malformed field {f!r}")
        name = f["name"]
        if not isinstance(name, str) or not name:
            raise err(f"schema: field name {name!r} must be a non-empty string")
        if name in names:
            raise err(f"schema: duplicate field name {name!r}")
        names.add(name)
        if not isinstance(f["nullable"], bool):
            raise err(f"schema: field {name!r}: 'nullable' must be a bool")
        _check_type(f["type"], depth, err)


def _check_type(t: Any, depth: int, err: Any) -> None:
    if depth > MAX_NESTING_DEPTH:
        raise err(f"schema: types nest deeper than {MAX_NESTING_DEPTH} levels")
    if not isinstance(t, dict) or not isinstance(t.get("kind"), str):
        raise err(f"schema: malformed type {t!r}")
    kind = t["kind"]
    if kind in SCALAR_KINDS:
        return
    if kind == "array":
        if not isinstance(t.get("dtype"), str) or t["dtype"] not in NUMERIC_KINDS:
            raise err(f"schema: array dtype {t.get('dtype')!r} is not numeric")
        shape = t.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape
        ):
            raise err(f"schema: array shape {shape!r} must be a list of integers >= 1")
    elif kind == "list":
        if not isinstance(t.get("item_nullable"), bool):
            raise err("schema: list 'item_nullable' must be a bool")
        _check_type(t.get("item"), depth + 1, err)
    elif kind == "struct":
        if not t.get("fields"):
            raise err("schema: a struct needs at least one field")
        _check_fields(t["fields"], depth + 1, err)
    else:
        raise err(f"schema: unknown type kind {kind!r}")


def _check_schema(schema: Any, err: Any) -> None:
    if not isinstance(schema, dict) or "fields" not in schema:
        raise err("schema must be a map with 'fields'")
    _check_fields(schema["fields"], 1, err)
    meta = schema.get("metadata", {})
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise err("schema: 'metadata' must map str to str")


def _buffer_count(t: dict, nullable: bool) -> int:
    kind = t["kind"]
    if kind == "bool" or kind in NUMERIC_KINDS:
        n = 1
    elif kind in VARLEN_KINDS or kind == "array":
        n = 2
    elif kind == "list":
        n = 1 + _buffer_count(t["item"], t["item_nullable"])
    else:
        n = sum(_buffer_count(f["type"], f["nullable"]) for f in t["fields"])
    return n + (1 if nullable else 0)


# --------------------------------------------------------------------------------------------
# Decoding one raw chunk (FORMAT.md "Raw chunk: buffer table and buffers").


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


# --------------------------------------------------------------------------------------------
# One shard file.


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _align(x: int, a: int) -> int:
    return -(-x // a) * a


class Shard:
    """One `.pxs` file; the structure is checked on open, each chunk when it is read."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < CHUNK_ALIGNMENT + TRAILER_LEN:
                raise self._err(f"file is {size} bytes, too short for a shard")
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.size = size
        try:
            self._open()
        except BaseException:
            self._mm.close()
            raise

    def _err(self, what: str, rg: int | None = None, col: str | None = None) -> CorruptDataError:
        return CorruptDataError(what, self.path, rg, col)

    def close(self) -> None:
        self._mm.close()

    def _open(self) -> None:
        mm, size = self._mm, self.size
        magic, major, minor, flags = struct.unpack_from("<8sHHI", mm, 0)
        footer_len, footer_crc, t_major, t_minor, t_magic = struct.unpack_from(
            "<QIHH8s", mm, size - TRAILER_LEN
        )
        if magic != MAGIC:
            raise self._err(f"bad magic at the start: {magic!r}")
        if t_magic != MAGIC:
            raise self._err(f"bad magic at the end: {t_magic!r}")
        if (major, minor) != (t_major, t_minor):
            raise self._err(
                f"header version {major}.{minor} != trailer version {t_major}.{t_minor}"
            )
        if major != MAJOR_VERSION:
            raise UnsupportedVersionError(
                f"{self.path}: format version {major}.{minor}; this reader reads major 1"
            )
        if flags != 0:
            raise UnsupportedVersionError(
                f"{self.path}: unknown required header flags 0x{flags:08x}"
            )
        self.version = (major, minor)
        if any(mm[HEADER_LEN:CHUNK_ALIGNMENT]):
            raise self._err("non-zero padding in bytes 16..64 of the header")
        if footer_len > MAX_FOOTER_LEN:
            raise self._err(f"footer_len {footer_len} exceeds {MAX_FOOTER_LEN}")
        footer_start = size - TRAILER_LEN - footer_len
        if footer_start < CHUNK_ALIGNMENT:
            raise self._err(f"footer_len {footer_len} does not fit in a {size}-byte file")
        footer_bytes = mm[footer_start : size - TRAILER_LEN]
        if crc32c(footer_bytes) != footer_crc:
            raise self._err("footer CRC-32C mismatch")
        try:
            footer = msgpack.unpackb(footer_bytes, raw=False, strict_map_key=False)
        except Exception as e:
            raise self._err(f"footer is not valid msgpack: {e}") from None
        self.footer_start = footer_start
        self._parse_footer(footer)

    def _parse_footer(self, footer: Any) -> None:
        if not isinstance(footer, dict):
            raise self._err("footer is not a map")
        for key in ("schema", "num_rows", "row_groups"):
            if key not in footer:
                raise self._err(f"footer lacks {key!r}")
        features = footer.get("required_features", [])
        if not isinstance(features, list) or not all(isinstance(x, str) for x in features):
            raise self._err("footer 'required_features' must be an array of strings")
        unknown = [x for x in features if x not in KNOWN_FEATURES]
        if unknown:
            raise UnsupportedVersionError(f"{self.path}: unknown required features {unknown}")
        _check_schema(footer["schema"], self._err)
        self.schema: dict = footer["schema"]
        self.fields: list[dict] = self.schema["fields"]
        self.num_rows = footer["num_rows"]
        if not _is_uint(self.num_rows):
            raise self._err("footer 'num_rows' must be an unsigned integer")
        self.created_by = footer.get("created_by", "")
        self.metadata = footer.get("metadata", {})
        if not isinstance(self.created_by, str):
            raise self._err("footer 'created_by' must be a string")
        if not isinstance(self.metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()
        ):
            raise self._err("footer 'metadata' must map str to str")
        groups = footer["row_groups"]
        if not isinstance(groups, list):
            raise self._err("footer 'row_groups' must be an array")
        ncols = len(self.fields)
        pos = CHUNK_ALIGNMENT  # the end of the previous chunk (or of the header's padding)
        self.row_groups: list[tuple[int, list[dict]]] = []
        self._pad_end: dict[tuple[int, int], int] = {}
        last: tuple[int, int] | None = None
        total = 0
        for g, rg in enumerate(groups):
            if not isinstance(rg, dict) or "num_rows" not in rg or "columns" not in rg:
                raise self._err("malformed row group entry", g)
            nrows, cols = rg["num_rows"], rg["columns"]
            if not _is_uint(nrows) or nrows < 1:
                raise self._err(f"row group num_rows {nrows!r} must be >= 1", g)
            if not isinstance(cols, list):
                raise self._err("row group 'columns' must be an array", g)
            if len(cols) != ncols:
                raise self._err(f"row group has {len(cols)} columns, schema has {ncols}", g)
            for c, (col, fld) in enumerate(zip(cols, self.fields, strict=True)):
                name = fld["name"]
                if not isinstance(col, dict):
                    raise self._err("malformed column chunk entry", g, name)
                for key in ("offset", "stored_len", "raw_len", "crc32c"):
                    if not _is_uint(col.get(key)):
                        raise self._err(f"{key} must be an unsigned integer", g, name)
                if col.get("codec") not in CODECS:
                    raise self._err(f"unknown codec {col.get('codec')!r}", g, name)
                if col["crc32c"] > 0xFFFFFFFF:
                    raise self._err("crc32c does not fit in 32 bits", g, name)
                pages = col.get("page_xxh3")
                if pages is not None:
                    if not isinstance(pages, bytes):
                        raise self._err("page_xxh3 must be bin", g, name)
                    n_pages = -(-col["stored_len"] // PAGE_LEN)
                    if len(pages) != 8 * n_pages:
                        raise self._err(
                            f"page_xxh3 holds {len(pages)} bytes for {n_pages} pages", g, name
                        )
                if col["codec"] == "none" and col["stored_len"] != col["raw_len"]:
                    raise self._err("codec none but stored_len != raw_len", g, name)
                off = col["offset"]
                if off % CHUNK_ALIGNMENT:
                    raise self._err(f"chunk offset {off} is not a multiple of 64", g, name)
                if off != _align(pos, CHUNK_ALIGNMENT):
                    raise self._err(
                        f"chunk at {off}, expected {_align(pos, CHUNK_ALIGNMENT)} "
                        "(out of order, overlapping, or with a gap)",
                        g,
                        name,
                    )
                pos = off + col["stored_len"]
                if pos > self.footer_start:
                    raise self._err("chunk runs into the footer", g, name)
                if last is not None:
                    self._pad_end[last] = off
                last = (g, c)
            self.row_groups.append((nrows, cols))
            total += nrows
        if last is not None:
            self._pad_end[last] = self.footer_start
        if self.footer_start != _align(pos, CHUNK_ALIGNMENT):
            raise self._err(
                f"footer starts at {self.footer_start}, expected {_align(pos, CHUNK_ALIGNMENT)}"
            )
        if total != self.num_rows:
            raise self._err(f"row groups hold {total} rows, footer num_rows is {self.num_rows}")

    def column_index(self, name: str) -> int:
        for i, f in enumerate(self.fields):
            if f["name"] == name:
                return i
        raise KeyError(name)

    def read_chunk(self, g: int, c: int) -> list:
        """Verify one chunk (CRC, padding, length, buffers) and decode it to Python values."""
        nrows, cols = self.row_groups[g]
        col, fld = cols[c], self.fields[c]

        def err(what: str) -> CorruptDataError:
            return self._err(what, g, fld["name"])

        off, stored_len = col["offset"], col["stored_len"]
        stored = self._mm[off : off + stored_len]
        if crc32c(stored) != col["crc32c"]:
            raise err("chunk CRC-32C mismatch")
        pages = col.get("page_xxh3")
        if pages is not None and _xxh3_64 is not None:
            # This reader verifies whole chunks by their CRC-32C, which is enough; with the
            # `xxhash` package it checks the page checksums too, so that a writer's wrong page
            # checksum is caught here as well.
            for p in range(len(pages) // 8):
                (want,) = struct.unpack_from("<Q", pages, 8 * p)
                if _xxh3_64(stored[p * PAGE_LEN : (p + 1) * PAGE_LEN]) != want:
                    raise err(f"page {p} XXH3-64 mismatch")
        if any(self._mm[off + stored_len : self._pad_end[(g, c)]]):
            raise err("non-zero padding after the chunk")
        if col["codec"] == "zstd":
            raw = _decompress_zstd(stored, col["raw_len"], err)
        else:
            raw = stored
        bufs = _split_buffers(raw, _buffer_count(fld["type"], fld["nullable"]), err)
        dec = _Decoder(bufs, err)
        values = dec.column(fld["type"], fld["nullable"], nrows)
        if dec.next != len(bufs):
            raise err("unused buffers")  # unreachable: the count was checked above
        return values


# --------------------------------------------------------------------------------------------
# A dataset: a directory with a manifest, or a single shard.


class Dataset:
    """Rows of one or more shards, in dataset order. Use `open_dataset` to make one."""

    def __init__(self, path: str, shards: list[Shard], schema: dict) -> None:
        self.path = path
        self.shards = shards
        self.schema = schema
        self._names = [f["name"] for f in schema["fields"]]
        # (shard index, row group index, first global row, num rows) per row group.
        self._layout: list[tuple[int, int, int, int]] = []
        first = 0
        for s, shard in enumerate(shards):
            for g, (nrows, _) in enumerate(shard.row_groups):
                self._layout.append((s, g, first, nrows))
                first += nrows
        self._starts = np.array([x[2] for x in self._layout], dtype=np.int64)
        self._num_rows = first
        self._cache: tuple[int, dict[str, list]] | None = None

    def __len__(self) -> int:
        return self._num_rows

    def close(self) -> None:
        for s in self.shards:
            s.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _row_group(self, k: int) -> dict[str, list]:
        if self._cache is None or self._cache[0] != k:
            s, g, _, _ = self._layout[k]
            shard = self.shards[s]
            cols = {n: shard.read_chunk(g, c) for c, n in enumerate(self._names)}
            self._cache = (k, cols)
        return self._cache[1]

    def __getitem__(self, i: int) -> dict:
        i = operator.index(i)
        if i < 0:
            i += self._num_rows
        if not 0 <= i < self._num_rows:
            raise IndexError(f"row {i} out of range for a dataset of {self._num_rows} rows")
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        cols = self._row_group(k)
        j = i - self._layout[k][2]
        return {n: _fresh(cols[n][j]) for n in self._names}

    def __iter__(self) -> Iterator[dict]:
        for s, g, _, nrows in self._layout:
            shard = self.shards[s]
            cols = [shard.read_chunk(g, c) for c in range(len(self._names))]
            for j in range(nrows):
                yield {n: cols[c][j] for c, n in enumerate(self._names)}

    def read_column(self, name: str) -> list:
        if name not in self._names:
            raise KeyError(f"no column {name!r}; columns are {self._names}")
        c = self._names.index(name)
        out: list = []
        for s, g, _, _ in self._layout:
            out.extend(self.shards[s].read_chunk(g, c))
        return out

    def row_group_layout(self) -> list[tuple[int, int, int, int]]:
        return list(self._layout)

    def verify(self) -> int:
        """Check every chunk of every shard; raise CorruptDataError on the first problem.

        Returns the number of chunks checked.
        """
        n = 0
        for s, g, _, _ in self._layout:
            for c in range(len(self._names)):
                self.shards[s].read_chunk(g, c)
                n += 1
        return n


def _manifest_error(path: str, what: str) -> CorruptDataError:
    return CorruptDataError(f"manifest: {what}", path)


def _open_manifest(root: str) -> Dataset:
    mpath = os.path.join(root, MANIFEST_NAME)

    def err(what: str) -> CorruptDataError:
        return _manifest_error(mpath, what)

    with open(mpath, "rb") as f:
        try:
            m = json.loads(f.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise err(f"not valid UTF-8 JSON: {e}") from None
    if not isinstance(m, dict):
        raise err("not a JSON object")
    if m.get("format") != "pixmo-stream":
        raise err(f"format is {m.get('format')!r}, not 'pixmo-stream'")
    version = m.get("version")
    if not (isinstance(version, list) and len(version) == 2 and all(map(_is_uint, version))):
        raise err(f"malformed version {version!r}")
    if version[0] != MAJOR_VERSION:
        raise UnsupportedVersionError(f"{mpath}: manifest version {version}; reads major 1")
    _check_schema(m.get("schema"), err)
    schema = m["schema"]
    entries = m.get("shards")
    if not isinstance(entries, list):
        raise err("'shards' must be an array")
    shards: list[Shard] = []
    total_rows = total_bytes = 0
    try:
        for e in entries:
            if not isinstance(e, dict):
                raise err(f"malformed shard entry {e!r}")
            rel = e.get("file")
            if (
                not isinstance(rel, str)
                or not rel
                or rel.startswith(("/", "\\"))
                or ".." in rel.replace("\\", "/").split("/")
            ):
                raise err(f"shard file {rel!r} must be a relative path without '..'")
            if not (_is_uint(e.get("num_rows")) and _is_uint(e.get("num_bytes"))):
                raise err(f"shard {rel!r}: num_rows and num_bytes must be unsigned integers")
            spath = os.path.join(root, rel)
            if not os.path.exists(spath):
                raise FileNotFoundError(f"{spath}: shard listed in {mpath} is missing")
            if not os.path.isfile(spath):
                raise CorruptDataError("shard listed in the manifest is not a file", spath)
            size = os.stat(spath).st_size
            if size != e["num_bytes"]:
                raise CorruptDataError(
                    f"file is {size} bytes, the manifest says {e['num_bytes']} "
                    "(truncated or replaced)",
                    spath,
                )
            shard = Shard(spath)
            shards.append(shard)
            if shard.num_rows != e["num_rows"]:
                raise CorruptDataError(
                    f"footer has {shard.num_rows} rows, the manifest says {e['num_rows']}", spath
                )
            groups = [nrows for nrows, _ in shard.row_groups]
            if "row_groups" in e and groups != e["row_groups"]:
                raise CorruptDataError(
                    f"row groups {groups} differ from the manifest's {e['row_groups']}", spath
                )
            if shard.schema["fields"] != schema["fields"]:
                raise CorruptDataError("schema differs from the manifest's schema", spath)
            total_rows += shard.num_rows
            total_bytes += size
        if "num_rows" in m and m["num_rows"] != total_rows:
            raise err(f"num_rows {m['num_rows']} != the shards' total {total_rows}")
        if "num_bytes" in m and m["num_bytes"] != total_bytes:
            raise err(f"num_bytes {m['num_bytes']} != the shards' total {total_bytes}")
    except BaseException:
        for s in shards:
            s.close()
        raise
    return Dataset(root, shards, schema)


def open_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Open a dataset directory (with `manifest.json`) or a single `.pxs` shard file."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(p)
    if os.path.isdir(p):
        return _open_manifest(p)
    shard = Shard(p)
    return Dataset(p, [shard], shard.schema)
