"""Grouping rows by image: first-appearance order, input order within an image, null keys,
and tables of many chunks (a parquet file's row groups)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pixmo_stream.ingest.grouping import contiguous, group_rows, iter_batches


def test_groups_in_first_appearance_order_rows_in_input_order() -> None:
    keys = pa.chunked_array([["b", "a", None, "b"], ["c", "a", None, "b"]])
    index = group_rows(keys)
    groups = [index.rows(g).tolist() for g in range(len(index))]
    # b first (row 0), a (1), the null row 2 alone, c (4), the null row 6 alone.
    assert groups == [[0, 3, 7], [1, 5], [2], [4], [6]]


def test_batches_take_each_groups_rows_from_a_many_chunk_table() -> None:
    keys = ["x", "y", "x", "z", "y", "x"]
    table = pa.Table.from_batches(
        [pa.record_batch({"k": keys[i : i + 2], "v": list(range(i, i + 2))}) for i in (0, 2, 4)]
    )
    assert table.column("k").num_chunks == 3
    index = group_rows(table.column("k"))
    batches = list(iter_batches(table, index, np.arange(len(index)), 2))
    assert [b.groups.tolist() for b in batches] == [[0, 1], [2]]
    first = batches[0]
    assert first.table.column("v").to_pylist() == [0, 2, 5, 1, 4]
    assert first.offsets.tolist() == [0, 3, 5]
    assert first.input_rows.tolist() == [0, 2, 5, 1, 4]
    assert batches[1].table.column("k").to_pylist() == ["z"]


def test_contiguous_keeps_values_and_makes_one_chunk() -> None:
    col = pa.chunked_array([pa.array(["a", "bb"]), pa.array([None, "ccc"])])
    lists = pa.chunked_array([pa.array([[1], []]), pa.array([[2, 3], None])])
    out = contiguous(pa.table({"s": col, "l": lists}))
    assert all(c.num_chunks == 1 for c in out.columns)
    assert out.column("s").to_pylist() == ["a", "bb", None, "ccc"]
    assert out.column("l").to_pylist() == [[1], [], [2, 3], None]
