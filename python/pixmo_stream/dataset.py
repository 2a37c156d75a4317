"""`Dataset`: random access, iteration, projection and verification of a written dataset."""

from __future__ import annotations

import bisect
import itertools
import json
import operator
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.reduction import ForkingPickler
from typing import Any

from . import _native
from ._native import SchemaError
from .schema import Schema
from .storage import CacheArg, open_arg

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
    """A pixmo-stream dataset directory (or a single `.pxs` shard), opened for reading; or
    several of one schema, read as one (their rows one after the other, in the order given).

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

    Datasets read as one must have the same fields (in any order; `SchemaError` otherwise).
    `path` and `metadata` are then the first one's; `paths` lists them all.

    A path may be a URL (``s3://``, ``gs://``, ``az://``, ``http(s)://``): opening reads the
    manifest, a shard's footer is read when the shard is first used, and a read fetches only
    the chunks it needs (ranged requests). `storage_options` configure the store client over
    the environment (``endpoint``, ``region``, ``access_key_id``, ``allow_http``,
    ``timeout``, ``max_retries``, ...); `cache` is the node cache's directory (True: the
    default, ``~/.cache/pixmo-stream`` or ``PIXMO_STREAM_CACHE``; False: none) and
    `cache_limit` its size limit (default 64 GiB). See docs/STORAGE.md.
    """

    def __init__(
        self,
        path_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        zero_copy: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        cache: CacheArg = True,
        cache_limit: int | str | None = None,
    ) -> None:
        if isinstance(path_or_paths, str | os.PathLike):
            path_or_paths = [path_or_paths]
        paths = [os.fspath(p) for p in path_or_paths]
        if not paths:
            raise ValueError("no dataset path given")
        self._parts = [
            _native.Dataset(p, zero_copy, open_arg(p, storage_options, cache, cache_limit))
            for p in paths
        ]
        # The first (for one dataset, the only) native reader: its path names the dataset.
        self._native = self._parts[0]
        self._schema = Schema.from_json(self._native.schema_json())
        fields = {f.name: f for f in self._schema.fields}
        for path, part in zip(paths[1:], self._parts[1:], strict=True):
            other = Schema.from_json(part.schema_json())
            if {f.name: f for f in other.fields} != fields:
                raise SchemaError(
                    f"{path}: its schema differs from {paths[0]}'s; datasets read as one must "
                    "have the same fields (use a Mixture to draw from different ones)"
                )
        self._starts = [0]
        for part in self._parts:
            self._starts.append(self._starts[-1] + len(part))

    @property
    def path(self) -> str:
        return str(self._native.path)

    @property
    def paths(self) -> list[str]:
        """Every dataset read, in order (one, unless a list was given)."""
        return [str(p.path) for p in self._parts]

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
        return sum(p.num_shards for p in self._parts)

    @property
    def num_row_groups(self) -> int:
        return sum(p.num_row_groups for p in self._parts)

    def __len__(self) -> int:
        return self._starts[-1]

    def _locate(self, index: int) -> tuple[int, int]:
        """`(part, row in that part)` of a global index (negative counts from the end)."""
        n = len(self)
        i = operator.index(index)
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} rows")
        part = bisect.bisect_right(self._starts, j) - 1
        return part, j - self._starts[part]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if isinstance(index, slice):
            return self.take(range(*index.indices(len(self))))  # type: ignore[return-value]
        if len(self._parts) == 1:
            return self._native.get(index)
        part, row = self._locate(index)
        return self._parts[part].get(row)

    def take(
        self, indices: Sequence[int], columns: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Records at `indices`, in that order (batched: each row group is decoded once)."""
        cols = column_list(columns)
        if len(self._parts) == 1:
            return self._native.take(list(indices), cols)
        wanted: dict[int, list[tuple[int, int]]] = {}
        located = [self._locate(i) for i in indices]
        for k, (part, row) in enumerate(located):
            wanted.setdefault(part, []).append((k, row))
        out: list[Any] = [None] * len(located)
        for part, items in wanted.items():
            records = self._parts[part].take([row for _, row in items], cols)
            for (k, _), rec in zip(items, records, strict=True):
                out[k] = rec
        return out

    def iter_batches(self, columns: Sequence[str] | None = None) -> Iterator[list[dict[str, Any]]]:
        """One list of records per row group, in storage order. To scan, prefer `iter`: it
        makes one record at a time, so the garbage collector has no live lists to promote."""
        cols = column_list(columns)
        if len(self._parts) == 1:
            return self._native.iter_row_groups(cols)
        return itertools.chain.from_iterable([p.iter_row_groups(cols) for p in self._parts])

    def iter(self, columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Records in storage order; with `columns`, only those columns are read. Each record
        is made when it is asked for (`iter_batches` makes a row group's at once)."""
        cols = column_list(columns)
        if len(self._parts) == 1:
            return self._native.iter_rows(cols)
        # Made now, so that a bad column name raises here, as with one dataset.
        return itertools.chain.from_iterable([p.iter_rows(cols) for p in self._parts])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter()

    def row_group_layout(self) -> list[tuple[int, int, int, int]]:
        """`(shard, row_group, first_row, num_rows)` for every row group, in order (shards and
        rows counted through all the datasets read)."""
        out = []
        shards = 0
        for part, start in zip(self._parts, self._starts, strict=False):
            for shard, group, first, n in part.row_group_layout():
                out.append((shards + shard, group, start + first, n))
            shards += part.num_shards
        return out

    def verify(self) -> VerifyReport:
        """Checks every checksum and every buffer of every chunk."""
        chunks, errors = 0, []
        for part in self._parts:
            n, errs = part.verify()
            chunks += n
            errors.extend(errs)
        return VerifyReport(chunks, errors)

    def info(self) -> dict[str, Any]:
        """Shards, row groups and per-chunk sizes and codecs (opens every shard). Reading
        several datasets, each shard also names its `dataset`, and `paths` lists them."""
        infos = [json.loads(p.info_json()) for p in self._parts]
        if len(infos) == 1:
            return infos[0]
        shards = [dict(s, dataset=i["path"]) for i in infos for s in i["shards"]]
        return {
            **infos[0],
            "paths": [i["path"] for i in infos],
            "num_rows": sum(i["num_rows"] for i in infos),
            "num_bytes": sum(i["num_bytes"] for i in infos),
            "shards": shards,
        }

    def __repr__(self) -> str:
        where = repr(self.path) if len(self._parts) == 1 else repr(self.paths)
        return f"Dataset({where}, rows={len(self)}, columns={self.columns})"
