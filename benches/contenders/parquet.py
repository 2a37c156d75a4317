"""Parquet through pyarrow: ``ParquetWriter`` (snappy, the default), read with ``ParquetFile``."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benches.common import NotSupported
from benches.contenders.base import Contender

# The Hugging Face hub's convention for image data: small row groups, so that a reader
# after one row does not read hundreds of megabytes.
ROW_GROUP_ROWS = 100
FILE = "data.parquet"


def schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("image", pa.binary()),
            ("image_sha256", pa.string()),
            ("image_url", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("captions", pa.list_(pa.string())),
            ("points", pa.list_(pa.list_(pa.float32(), 2))),
            ("point_labels", pa.list_(pa.string())),
            ("point_counts", pa.list_(pa.int32())),
            ("qa", pa.list_(pa.struct([("question", pa.string()), ("answer", pa.string())]))),
            (
                "meta",
                pa.struct(
                    [
                        ("source", pa.string()),
                        ("preset", pa.string()),
                        ("index", pa.int64()),
                        ("collection_method", pa.string()),
                    ]
                ),
            ),
        ]
    )


def _table(records: Sequence[dict[str, Any]], sch: Any) -> Any:
    import pyarrow as pa

    cols: dict[str, Any] = {}
    for f in sch:
        if f.name == "points":
            counts = np.array([len(r["points"]) for r in records], dtype=np.int32)
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
            flat = np.concatenate([r["points"].reshape(-1) for r in records]).astype(np.float32)
            pts = pa.FixedSizeListArray.from_arrays(pa.array(flat), 2)
            cols[f.name] = pa.ListArray.from_arrays(pa.array(offsets), pts)
        else:
            cols[f.name] = pa.array([r[f.name] for r in records], type=f.type)
    return pa.Table.from_pydict(cols, schema=sch)


class ParquetContender(Contender):
    name = "parquet"
    label = "Parquet (pyarrow)"
    package = module = "pyarrow"

    def write(self, records: Sequence[dict[str, Any]], out: Path) -> None:
        import pyarrow.parquet as pq

        out.mkdir(parents=True)
        sch = schema()
        with pq.ParquetWriter(str(out / FILE), sch) as w:
            for s in range(0, len(records), ROW_GROUP_ROWS):
                w.write_table(_table(records[s : s + ROW_GROUP_ROWS], sch))

    def _file(self, path: Path) -> Any:
        import pyarrow.parquet as pq

        return pq.ParquetFile(str(path / FILE))

    def open_first(self, path: Path) -> dict[str, Any]:
        return self._file(path).read_row_group(0).slice(0, 1).to_pylist()[0]

    def scan(self, path: Path) -> Iterator[dict[str, Any]]:
        for batch in self._file(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()

    def scan_captions(self, path: Path) -> Iterator[list[str]]:
        # The column read the goal compares against: one column, all row groups.
        import pyarrow.parquet as pq

        yield from pq.read_table(str(path / FILE), columns=["captions"]).column(0).to_pylist()

    def get_many(self, path: Path, indices: Sequence[int]) -> list[dict[str, Any]]:
        # Parquet's unit of access is the row group: each lookup reads one.
        f = self._file(path)
        md = f.metadata
        starts = [0]
        for g in range(md.num_row_groups):
            starts.append(starts[-1] + md.row_group(g).num_rows)
        out = []
        for i in indices:
            g = bisect.bisect_right(starts, i) - 1
            out.append(f.read_row_group(g).slice(i - starts[g], 1).to_pylist()[0])
        return out

    def loader(self, path: Path, *, workers: int, decode: bool, batch_size: int, seed: int) -> Any:
        raise NotSupported("pyarrow has no torch loader")
