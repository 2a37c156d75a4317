"""LitData: chunks written with ``litdata.optimize``, read with ``litdata.StreamingDataset``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benches.common import collate_list, jpeg_to_rgb
from benches.contenders.base import Contender

# optimize() calls a function per input in worker processes; the records reach them by fork.
_RECORDS: Sequence[dict[str, Any]] = ()


def _sample(i: int) -> dict[str, Any]:
    rec = _RECORDS[i]
    # LitData flattens nested containers into leaves whose layout must match across samples,
    # so ragged annotations go in as one JSON string (the usual LitData idiom).
    ann = {k: rec[k] for k in ("captions", "point_labels", "point_counts", "qa", "meta")}
    return {
        "image": rec["image"],
        "image_sha256": rec["image_sha256"],
        "image_url": rec["image_url"],
        "width": rec["width"],
        "height": rec["height"],
        "points": rec["points"],
        "ann": json.dumps(ann),
    }


def _to_record(sample: dict[str, Any]) -> dict[str, Any]:
    rec = json.loads(sample.pop("ann"))
    rec.update(sample)
    # LitData hands raw bytes back as a memoryview into its chunk buffer, which can neither
    # outlive the chunk nor cross a DataLoader worker's queue: make them bytes.
    rec["image"] = bytes(rec["image"])
    return rec


def _decoded(sample: dict[str, Any]) -> dict[str, Any]:
    rec = _to_record(sample)
    rec["image"] = jpeg_to_rgb(rec["image"])
    return rec


class LitDataContender(Contender):
    name = "litdata"
    label = "LitData"
    package = module = "litdata"

    def write(self, records: Sequence[dict[str, Any]], out: Path) -> None:
        import litdata

        global _RECORDS
        _RECORDS = records
        try:
            litdata.optimize(
                fn=_sample,
                inputs=list(range(len(records))),
                output_dir=str(out),
                chunk_bytes="64MB",
                num_workers=max(1, (os.cpu_count() or 1)),
                start_method="fork",
                keep_data_ordered=True,
                verbose=False,
            )
        finally:
            _RECORDS = ()

    def _dataset(self, path: Path, **kw: Any) -> Any:
        import litdata

        return litdata.StreamingDataset(str(path), **kw)

    def open_first(self, path: Path) -> dict[str, Any]:
        return _to_record(self._dataset(path)[0])

    def scan(self, path: Path) -> Iterator[dict[str, Any]]:
        return map(_to_record, self._dataset(path))

    def scan_captions(self, path: Path) -> Iterator[list[str]]:
        # Samples are decoded whole: no column projection.
        return (json.loads(s["ann"])["captions"] for s in self._dataset(path))

    def get_many(self, path: Path, indices: Sequence[int]) -> list[dict[str, Any]]:
        ds = self._dataset(path)
        return [_to_record(ds[i]) for i in indices]

    def loader(self, path: Path, *, workers: int, decode: bool, batch_size: int, seed: int) -> Any:
        import litdata

        ds = self._dataset(
            path, shuffle=True, seed=seed, transform=_decoded if decode else _to_record
        )
        return litdata.StreamingDataLoader(
            ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_list
        )
