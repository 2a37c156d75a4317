"""MosaicML Streaming: MDS shards written with ``MDSWriter``, read with ``StreamingDataset``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benches.common import collate_list, jpeg_to_rgb
from benches.contenders.base import Contender

COLUMNS = {
    "image": "bytes",
    "image_sha256": "str",
    "image_url": "str",
    "width": "int32",
    "height": "int32",
    "captions": "json",
    "points": "bytes",  # raw float32; MDS's ndarray encoding rejects empty arrays
    "point_labels": "json",
    "point_counts": "json",
    "qa": "json",
    "meta": "json",
}


def _fresh() -> None:
    # StreamingDataset keeps shared memory per local directory; reopening the same directory
    # in one process needs the stale segments gone.
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()


def _to_record(sample: dict[str, Any]) -> dict[str, Any]:
    rec = dict(sample)
    rec["points"] = np.frombuffer(rec["points"], np.float32).reshape(-1, 2)
    return rec


class MDSContender(Contender):
    name = "mds"
    label = "MDS (MosaicML)"
    package = "mosaicml-streaming"
    module = "streaming"
    compression: str | None = None

    def write(self, records: Sequence[dict[str, Any]], out: Path) -> None:
        from streaming import MDSWriter

        with MDSWriter(out=str(out), columns=COLUMNS, compression=self.compression) as w:
            for rec in records:
                sample = {k: rec[k] for k in COLUMNS}
                sample["points"] = rec["points"].tobytes()
                w.write(sample)

    def _dataset(self, path: Path, **kw: Any) -> Any:
        from streaming import StreamingDataset

        _fresh()
        kw.setdefault("batch_size", 32)  # required to iterate, even outside a DataLoader
        return StreamingDataset(local=str(path), remote=None, **kw)

    def open_first(self, path: Path) -> dict[str, Any]:
        return _to_record(self._dataset(path)[0])

    def scan(self, path: Path) -> Iterator[dict[str, Any]]:
        return map(_to_record, self._dataset(path))

    def scan_captions(self, path: Path) -> Iterator[list[str]]:
        # MDS decodes whole samples: there is no column projection.
        return (s["captions"] for s in self._dataset(path))

    def get_many(self, path: Path, indices: Sequence[int]) -> list[dict[str, Any]]:
        ds = self._dataset(path)
        return [_to_record(ds[i]) for i in indices]

    def loader(self, path: Path, *, workers: int, decode: bool, batch_size: int, seed: int) -> Any:
        from streaming import StreamingDataLoader, StreamingDataset

        _fresh()

        class Decoding(StreamingDataset):
            def get_item(self, idx: int) -> Any:
                rec = _to_record(super().get_item(idx))
                if decode:
                    rec["image"] = jpeg_to_rgb(rec["image"])
                return rec

        ds = Decoding(
            local=str(path), remote=None, shuffle=True, shuffle_seed=seed, batch_size=batch_size
        )
        return StreamingDataLoader(
            ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_list
        )


class MDSZstdContender(MDSContender):
    """MDS with zstd shards. Reading one decompresses each shard it touches to a raw copy
    beside it (the reader's cache); ``before_read`` removes those copies, so every timed read
    reads the dataset as stored instead of the plain-MDS copy the previous read left."""

    name = "mds-zstd"
    label = "MDS + zstd"
    compression = "zstd"

    def before_read(self, path: Path) -> None:
        for raw in path.glob("*.mds"):
            if raw.with_name(raw.name + ".zstd").exists():
                raw.unlink()
