"""WebDataset: tar shards written with ``ShardWriter``, read with ``WebDataset``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benches.common import NotSupported, collate_list, jpeg_to_rgb
from benches.contenders.base import Contender, annotations

SHARD_BYTES = 64 << 20  # like MDS's and LitData's default chunk size, so loaders can split work


def _shards(path: Path) -> list[str]:
    return [str(p) for p in sorted(path.glob("*.tar"))]


def _to_record(sample: dict[str, Any]) -> dict[str, Any]:
    rec = json.loads(sample["json"])
    rec["image"] = sample["jpg"]
    return rec


def _decode(rec: dict[str, Any]) -> dict[str, Any]:
    rec["image"] = jpeg_to_rgb(rec["image"])
    return rec


class WebDatasetContender(Contender):
    name = "webdataset"
    label = "WebDataset (tar)"
    package = module = "webdataset"

    def write(self, records: Sequence[dict[str, Any]], out: Path) -> None:
        import webdataset as wds

        out.mkdir(parents=True)
        with wds.ShardWriter(str(out / "shard-%06d.tar"), maxsize=SHARD_BYTES, verbose=0) as w:
            for i, rec in enumerate(records):
                w.write(
                    {
                        "__key__": f"{i:09d}",
                        "jpg": rec["image"],
                        "json": json.dumps(annotations(rec)).encode(),
                    }
                )

    def _dataset(self, path: Path) -> Any:
        import webdataset as wds

        return wds.WebDataset(_shards(path), shardshuffle=False, empty_check=False)

    def open_first(self, path: Path) -> dict[str, Any]:
        it = iter(self._dataset(path))
        try:
            return _to_record(next(it))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # closes the tar it opened

    def scan(self, path: Path) -> Iterator[dict[str, Any]]:
        return map(_to_record, self._dataset(path))

    def scan_captions(self, path: Path) -> Iterator[list[str]]:
        # A tar has no columns: every member is read; only the JSON is parsed.
        return (json.loads(s["json"])["captions"] for s in self._dataset(path))

    def get_many(self, path: Path, indices: Sequence[int]) -> list[dict[str, Any]]:
        raise NotSupported("tar shards have no index")

    def loader(self, path: Path, *, workers: int, decode: bool, batch_size: int, seed: int) -> Any:
        import webdataset as wds
        from torch.utils.data import DataLoader

        shards = _shards(path)
        ds = (
            wds.WebDataset(shards, shardshuffle=len(shards), seed=seed, empty_check=False)
            .shuffle(1000, seed=seed)
            .map(_to_record)
        )
        if decode:
            ds = ds.map(_decode)
        return DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_list)
