"""`Writer`: write records (dicts) into a dataset directory."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from . import _native
from ._split import checked_int
from .schema import Schema, infer_schema
from .storage import open_arg

DEFAULT_SHARD_BYTES = 256 << 20
DEFAULT_ROW_GROUP_BYTES = 16 << 20
DEFAULT_ROW_GROUP_ROWS = 1024


@dataclass(frozen=True)
class WriteSummary:
    path: str
    num_rows: int
    num_shards: int
    num_bytes: int


def _str_map(metadata: Mapping[str, str]) -> dict[str, str]:
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(
                f"metadata maps str to str (FORMAT.md); got {k!r}: {v!r} "
                "(store other values as text, e.g. json.dumps)"
            )
    return dict(metadata)


class Writer:
    """Writes records into `path` (a directory), shard by shard, manifest last.

    ``schema=None`` infers the schema from the first record (see `infer_schema`). A record
    that does not fit raises `SchemaError` naming the field and the record (``e.field``;
    ``e.record``, the row it would have been: the number of records written before it); it is
    not written and the writer stays usable. Array values are stored only if every value
    fits the field's dtype (an int out of range, a float for an int dtype, or a float64 that
    overflows float32 is refused; floats round as floats do). Leaving the ``with`` block
    normally writes the manifest; leaving it with an exception does not, so a failed write
    never looks complete.

    Image bytes are not copied: a `bytes` value of 4 KiB or more is held by reference until
    its row group is on disk (up to three row groups, ~48 MiB at the default size), then let
    go. `bytearray` and `memoryview` values are copied, since they can change.

    `path` may be a URL (``s3://bucket/data``, ``gs://``, ``az://``): each shard is written
    to a local staging directory (``$TMPDIR``) and uploaded (multipart) when it is finished,
    and the manifest is uploaded last, so a crash never leaves a dataset that looks complete.
    `storage_options` configure the store as for `Dataset`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: Schema | None = None,
        *,
        shard_bytes: int = DEFAULT_SHARD_BYTES,
        row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        zstd_level: int = 3,
        codecs: Mapping[str, str] | None = None,
        overwrite: bool = False,
        metadata: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._options = dict(
            shard_bytes=checked_int("shard_bytes", shard_bytes, 1),
            row_group_bytes=checked_int("row_group_bytes", row_group_bytes, 1, 2**63 - 1),
            row_group_rows=checked_int("row_group_rows", row_group_rows, 1, 2**63 - 1),
            zstd_level=checked_int("zstd_level", zstd_level, -(2**17), 22),
            codecs=dict(codecs or {}),
            overwrite=bool(overwrite),
            metadata=_str_map(metadata or {}),
            storage_options=(open_arg(self.path, storage_options, False, None) or (None,))[0],
        )
        self._schema = schema
        self._native: Any = None
        self.summary: WriteSummary | None = None
        if schema is not None:
            self._open(schema)

    def _open(self, schema: Schema) -> None:
        self._native = _native.Writer(self.path, schema.to_json(), **self._options)
        self._schema = schema

    @property
    def schema(self) -> Schema | None:
        return self._schema

    @property
    def rows_written(self) -> int:
        return 0 if self._native is None else self._native.rows_written

    def write(self, record: Mapping[str, Any]) -> None:
        if self._native is None:
            if self.summary is not None:
                raise ValueError("write to a closed Writer")
            self._open(infer_schema(record))
        self._native.write(record)

    def write_many(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Writes every record of an iterable; returns how many. Stops at the first record
        that does not fit (`SchemaError`); the records before it are written."""
        it = iter(records)
        n = 0
        if self._native is None:
            for first in it:
                self.write(first)
                n = 1
                break
        if self._native is None:
            return n
        return n + self._native.write_many(it)

    def close(self) -> WriteSummary:
        """Flushes and writes the manifest. Closing twice returns the same summary."""
        if self.summary is not None:
            return self.summary
        if self._native is None:
            raise _native.SchemaError(
                "nothing was written and no schema was given: cannot write an empty dataset "
                "without a schema"
            )
        path, rows, shards, nbytes = self._native.close()
        self.summary = WriteSummary(str(path), rows, shards, nbytes)
        return self.summary

    def abort(self) -> None:
        """Stops without writing a manifest (the directory does not become a dataset)."""
        if self._native is not None and not self._native.closed:
            self._native.abort()

    def __del__(self) -> None:
        native = getattr(self, "_native", None)
        if native is not None and not native.closed and native.rows_written:
            warnings.warn(
                f"Writer({self.path!r}) was dropped without close(): its {native.rows_written:,} "
                "records were discarded and no manifest was written (use `with ps.Writer(...)` "
                "or call close())",
                RuntimeWarning,
                stacklevel=2,
            )

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
