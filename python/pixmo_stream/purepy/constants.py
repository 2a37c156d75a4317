"""The constants of FORMAT.md ("Constants") and the type kinds of its schema."""

from __future__ import annotations

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
