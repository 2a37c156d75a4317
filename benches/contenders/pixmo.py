"""pixmo-stream: ``pixmo_stream.Writer`` and ``pixmo_stream.Dataset`` / ``StreamingDataset``."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benches.common import NotSupported, collate_list, jpeg_to_rgb, load_synthetic
from benches.contenders.base import Contender


def _decode_batch(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for rec in records:
        rec["image"] = jpeg_to_rgb(rec["image"])
    return records


class PixmoContender(Contender):
    name = "pixmo-stream"
    label = "pixmo-stream"
    package = "pixmo-stream"
    module = "pixmo_stream._native"
    is_ours = True

    def write(self, records: Sequence[dict[str, Any]], out: Path) -> None:
        import pixmo_stream as ps

        with ps.Writer(str(out), schema=load_synthetic().pixmo_schema()) as w:
            w.write_many(records)

    def _dataset(self, path: Path) -> Any:
        import pixmo_stream as ps

        return ps.Dataset(str(path))

    def open_first(self, path: Path) -> dict[str, Any]:
        return self._dataset(path)[0]

    def scan(self, path: Path) -> Iterator[dict[str, Any]]:
        return self._dataset(path).iter()

    def scan_captions(self, path: Path) -> Iterator[list[str]]:
        for rec in self._dataset(path).iter(columns=["captions"]):
            yield rec["captions"]

    def get_many(self, path: Path, indices: Sequence[int]) -> list[dict[str, Any]]:
        ds = self._dataset(path)
        return [ds[i] for i in indices]

    def loader(self, path: Path, *, workers: int, decode: bool, batch_size: int, seed: int) -> Any:
        import pixmo_stream as ps

        try:
            sds_cls, loader_cls = ps.StreamingDataset, ps.DataLoader
        except (AttributeError, ImportError) as e:
            raise NotSupported(f"n/a (not yet): {e}") from e
        params = inspect.signature(sds_cls).parameters
        # Decoding is a user hook here, as it is for every peer (a map / transform / get_item).
        collate = _decode_batch if decode else collate_list
        kwargs: dict[str, Any] = {"shuffle": True, "seed": seed}
        if "batch_size" in params and "collate_fn" in params:
            kwargs.update(batch_size=batch_size, collate_fn=collate)
            sds = sds_cls(str(path), **kwargs)
            return loader_cls(sds, batch_size=None, num_workers=workers)
        sds = sds_cls(str(path), **kwargs)
        return loader_cls(sds, batch_size=batch_size, num_workers=workers, collate_fn=collate)
