"""`Dataset`: random access, iteration, projection and verification of a written dataset."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.reduction import ForkingPickler
from typing import Any

from . import _native
from .schema import Schema

# Between processes of one machine (DataLoader workers and their main process), a Blob travels
# as a reference to its bytes in the shard file, which the receiver maps again: a batch of
# images crosses the process boundary as a few hundred bytes, not as copies of the images.
# `pickle` itself still gives `bytes`. PIXMO_STREAM_BLOB_IPC=copy sends copies instead.


def _reduce_blob_for_ipc(blob: _native.Blob) -> tuple[Any, tuple[Any, ...]]:
    ref = None if os.environ.get("PIXMO_STREAM_BLOB_IPC") == "copy" else blob._ipc_ref()
    if ref is None:
        return bytes, (bytes(blob),)
    return _native.blob_from_ref, ref


ForkingPickler.register(_native.Blob, _reduce_blob_for_ipc)


def column_list(columns: Sequence[str] | None) -> list[str] | None:
    """`columns` as a list (None: all). A lone string is refused rather than split into
    letters."""
    if columns is None:
        return None
    if isinstance(columns, str | bytes):
        raise TypeError(
            f"columns must be a list of names, not a string: did you mean [{columns!r}]?"
        )
    return list(columns)


def check_columns(columns: Sequence[str], available: Sequence[str], path: str) -> None:
    """Raises ValueError naming the first of `columns` that `path` does not have."""
    for c in columns:
        if c not in available:
            raise ValueError(f"{path}: unknown column {c!r}; columns are: {', '.join(available)}")


@dataclass(frozen=True)
class VerifyReport:
    """What `Dataset.verify()` found: `ok` is True when every chunk checked out."""

    num_chunks: int
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def __bool__(self) -> bool:
        return self.ok


class Dataset:
    """A pixmo-stream dataset directory (or a single `.pxs` shard), opened for reading.

    `len(ds)`, `ds[i]`, `ds.take(indices, columns=...)` and `for rec in ds` return records as
    dicts. Opening reads only the manifest; shards are mapped on first use.

    Binary values (images) come back as `Blob`s by default: zero-copy, read-only views of the
    mapped shard that support the buffer protocol (`bytes(b)`, `memoryview(b)`,
    `np.frombuffer(b, np.uint8)`, `PIL.Image.open(io.BytesIO(b))`), compare equal to `bytes`,
    and pickle as `bytes`. Pass ``zero_copy=False`` to get `bytes` copies instead.

    Every value is verified against its checksums before it is returned. A `Blob` from `ds[i]`
    or `take` comes verified; one from a scan (`iter`, `iter_batches`) verifies its pages the
    first time its bytes are read, so a scan that leaves images unread never touches them, and
    damage in an image raises `CorruptDataError` from that first read. `verify()` checks all.
    """

    def __init__(self, path: str | os.PathLike[str], *, zero_copy: bool = True) -> None:
        self._native = _native.Dataset(os.fspath(path), zero_copy)
        self._schema = Schema.from_json(self._native.schema_json())

    @property
    def path(self) -> str:
        return str(self._native.path)

    @property
    def schema(self) -> Schema:
        return self._schema

    @property
    def columns(self) -> list[str]:
        return self._schema.names

    @property
    def metadata(self) -> dict[str, str]:
        """The `metadata` the writer was given (`Writer(..., metadata={...})`)."""
        return self._native.metadata

    @property
    def num_shards(self) -> int:
        return self._native.num_shards

    @property
    def num_row_groups(self) -> int:
        return self._native.num_row_groups

    def __len__(self) -> int:
        return len(self._native)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if isinstance(index, slice):
            return self.take(range(*index.indices(len(self))))  # type: ignore[return-value]
        return self._native.get(index)

    def take(
        self, indices: Sequence[int], columns: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Records at `indices`, in that order (batched: each row group is decoded once)."""
        return self._native.take(list(indices), column_list(columns))

    def iter_batches(self, columns: Sequence[str] | None = None) -> Iterator[list[dict[str, Any]]]:
        """One list of records per row group, in storage order. To scan, prefer `iter`: it
        makes one record at a time, so the garbage collector has no live lists to promote."""
        return self._native.iter_row_groups(column_list(columns))

    def iter(self, columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Records in storage order; with `columns`, only those columns are read. Each record
        is made when it is asked for (`iter_batches` makes a row group's at once)."""
        return self._native.iter_rows(column_list(columns))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter()

    def row_group_layout(self) -> list[tuple[int, int, int, int]]:
        """`(shard, row_group, first_row, num_rows)` for every row group, in order."""
        return self._native.row_group_layout()

    def verify(self) -> VerifyReport:
        """Checks every checksum and every buffer of every chunk."""
        n, errors = self._native.verify()
        return VerifyReport(n, list(errors))

    def info(self) -> dict[str, Any]:
        """Shards, row groups and per-chunk sizes and codecs (opens every shard)."""
        return json.loads(self._native.info_json())

    def __repr__(self) -> str:
        return f"Dataset({self.path!r}, rows={len(self)}, columns={self.columns})"
