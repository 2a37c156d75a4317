"""One shard file (FORMAT.md "Byte layout of a shard"): header, footer and trailer checked on open,
each chunk when it is read."""

from __future__ import annotations

import mmap
import os
import struct
from typing import Any

import msgpack

try:  # optional: only used to cross-check page checksums (FORMAT.md "Page checksums")
    from xxhash import xxh3_64_intdigest as _xxh3_64
except ImportError:  # pragma: no cover
    _xxh3_64 = None

from .constants import (
    CHUNK_ALIGNMENT,
    CODECS,
    HEADER_LEN,
    KNOWN_FEATURES,
    MAGIC,
    MAJOR_VERSION,
    MAX_FOOTER_LEN,
    PAGE_LEN,
    TRAILER_LEN,
)
from .crc32c import crc32c
from .decode import _Decoder, _decompress_zstd, _split_buffers
from .errors import CorruptDataError, UnsupportedVersionError
from .schema import _buffer_count, _check_schema


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
