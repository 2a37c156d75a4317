"""A column of parquet files read a row group at a time, by global row number.

pixmo-docs carries its images inline (~55 GB in all): reading that column with the rest of
the table would hold every image in memory. The annotations are read whole (they are
small); the image column is read here, one row group at a time, as batches ask for rows.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from . import columns as C
from .errors import InputError


class ParquetColumn:
    """``get(rows)``: the values of ``column`` at global rows (counted through ``files`` in
    order), image structs read as their bytes. One row group is cached: batches ask for
    rows in nearly increasing order, so each row group is read about once."""

    def __init__(self, files: Sequence[str], column: str) -> None:
        import pyarrow.parquet as pq

        self.files = list(files)
        self.column = column
        self._groups: list[tuple[int, int, int]] = []  # (first global row, file, row group)
        self._starts: list[int] = []
        row = 0
        for i, path in enumerate(self.files):
            meta = pq.ParquetFile(path).metadata
            for g in range(meta.num_row_groups):
                self._groups.append((row, i, g))
                self._starts.append(row)
                row += meta.row_group(g).num_rows
        self.num_rows = row
        self._cached: tuple[int, list[Any]] | None = None
        self._open: dict[int, Any] = {}

    def _row_group(self, k: int) -> list[Any]:
        if self._cached is not None and self._cached[0] == k:
            return self._cached[1]
        import pyarrow.parquet as pq

        _, i, g = self._groups[k]
        if i not in self._open:
            self._open.clear()  # one file open at a time
            self._open[i] = pq.ParquetFile(self.files[i])
        try:
            table = self._open[i].read_row_group(g, columns=[self.column])
        except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds here
            raise InputError(f"{self.files[i]}: row group {g} does not read ({e})") from e
        values = C.inline_image_bytes(table.column(self.column))
        self._cached = (k, values)
        return values

    def get(self, rows: Sequence[int]) -> list[Any]:
        out = []
        for r in rows:
            k = bisect.bisect_right(self._starts, int(r)) - 1
            out.append(self._row_group(k)[int(r) - self._starts[k]])
        return out
