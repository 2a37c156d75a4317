"""Grouping annotation rows into one record per image, with memory bounded by the Arrow
columns of the annotations (never one Python object per row of the whole input).

The key column (``image_url``) is dictionary-encoded once, which numbers the images in the
order they first appear; a stable argsort of those numbers lists every image's rows
together, in input order. Records are then built a batch of images at a time from
``table.take(rows)``: only one batch of Python objects is alive at once. For pixmo-points
(2.4M rows over ~228k images) that is some 60 MB of index arrays beside the Arrow table of the
annotations themselves (benches/grouping_memory.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class GroupIndex:
    """``order[starts[g]:starts[g + 1]]`` are the input rows of group ``g``, in input order;
    groups are numbered in the order their first row appears. A row whose key is null is a
    group of its own."""

    order: np.ndarray  # int64 row ids, grouped
    starts: np.ndarray  # int64, len = number of groups + 1

    def __len__(self) -> int:
        return len(self.starts) - 1

    def rows(self, group: int) -> np.ndarray:
        return self.order[self.starts[group] : self.starts[group + 1]]


def group_rows(keys: pa.ChunkedArray | pa.Array) -> GroupIndex:
    n = len(keys)
    if n == 0:
        return GroupIndex(np.zeros(0, np.int64), np.zeros(1, np.int64))
    encoded = pc.dictionary_encode(keys)
    if isinstance(encoded, pa.ChunkedArray):
        indices = pa.chunked_array([c.indices for c in encoded.chunks]).combine_chunks()
        num_keys = len(encoded.chunks[0].dictionary) if encoded.num_chunks else 0
    else:
        indices, num_keys = encoded.indices, len(encoded.dictionary)
    codes = indices.fill_null(-1).to_numpy().astype(np.int64)
    nulls = np.flatnonzero(codes < 0)
    if len(nulls):
        # Each null-keyed row is its own group; number all groups by their first row so that
        # the order stays the input's.
        codes[nulls] = num_keys + np.arange(len(nulls))
        first = np.full(num_keys + len(nulls), n, dtype=np.int64)
        np.minimum.at(first, codes, np.arange(n, dtype=np.int64))
        rank = np.empty_like(first)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        codes = rank[codes]
    order = np.argsort(codes, kind="stable").astype(np.int64)
    counts = np.bincount(codes, minlength=int(codes.max()) + 1)
    starts = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    return GroupIndex(order, starts)


def single_rows(n: int) -> GroupIndex:
    """Every row its own group (inputs with one row per image)."""
    return GroupIndex(np.arange(n, dtype=np.int64), np.arange(n + 1, dtype=np.int64))


@dataclass(frozen=True)
class GroupBatch:
    """A run of groups: ``table`` holds their rows, grouped; ``offsets[i]:offsets[i + 1]``
    are group ``groups[i]``'s rows in it; ``input_rows`` their row numbers in the input."""

    groups: np.ndarray
    table: pa.Table
    offsets: np.ndarray
    input_rows: np.ndarray


def _large(t: pa.DataType) -> pa.DataType:
    """``t`` with 64-bit offsets throughout (strings, binaries and lists of any size)."""
    if pa.types.is_string(t):
        return pa.large_string()
    if pa.types.is_binary(t):
        return pa.large_binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.large_list(_large(t.value_type))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(_large(t.value_type), t.list_size)
    if pa.types.is_struct(t):
        return pa.struct(
            [t.field(i).with_type(_large(t.field(i).type)) for i in range(t.num_fields)]
        )
    return t


def contiguous(table: pa.Table) -> pa.Table:
    """Every column in one chunk. ``take`` on a column of many chunks (a parquet file's row
    groups) costs time in the whole column's length, which made grouping quadratic; one
    column at a time is copied, and one too large for 32-bit offsets gets 64-bit ones."""
    columns = []
    for col in table.columns:
        if col.num_chunks == 1:
            columns.append(col.chunk(0))
            continue
        try:
            columns.append(col.combine_chunks())
        except (pa.ArrowInvalid, pa.ArrowCapacityError):
            columns.append(col.cast(_large(col.type)).combine_chunks())
    return pa.Table.from_arrays(columns, names=table.column_names)


def iter_batches(
    table: pa.Table, index: GroupIndex, groups: np.ndarray, batch_groups: int
) -> Iterator[GroupBatch]:
    """The given groups (in the order given), ``batch_groups`` at a time."""
    table = contiguous(table)
    for at in range(0, len(groups), batch_groups):
        chunk = groups[at : at + batch_groups]
        sizes = index.starts[chunk + 1] - index.starts[chunk]
        offsets = np.zeros(len(chunk) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        rows = (
            np.concatenate([index.rows(int(g)) for g in chunk])
            if len(chunk)
            else np.zeros(0, np.int64)
        )
        yield GroupBatch(chunk, table.take(pa.array(rows)), offsets, rows)
