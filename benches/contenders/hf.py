"""Hugging Face datasets: Arrow files from ``Dataset.from_generator`` + ``save_to_disk``, read
with ``load_from_disk``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benches.common import collate_list, jpeg_to_rgb
from benches.contenders.base import Contender

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

BATCH = 1000


def features() -> Any:
    from datasets import Array2D, Features, List, Value

    return Features(
        {
            "image": Value("binary"),
            "image_sha256": Value("string"),
            "image_url": Value("string"),
            "width": Value("int32"),
            "height": Value("int32"),
            "captions": List(Value("string")),
            "points": Array2D(shape=(None, 2), dtype="float32"),
            "point_labels": List(Value("string")),
            "point_counts": List(Value("int32")),
            "qa": List({"question": Value("string"), "answer": Value("string")}),
            "meta": {
                "source": Value("string"),
                "preset": Value("string"),
                "index": Value("int64"),
                "collection_method": Value("string"),
            },
        }
    )


def _gen(records: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from records


def _rows(batch: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    keys = list(batch)
    for values in zip(*(batch[k] for k in keys), strict=True):
        yield dict(zip(keys, values, strict=True))


class _Decoded:
    """Map-style view that decodes each record's image (for the decoded loader)."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.ds[i]
        rec["image"] = jpeg_to_rgb(rec["image"])
        return rec


class HFDatasetsContender(Contender):
    name = "hf-datasets"
    label = "HF datasets (Arrow)"
    package = module = "datasets"

    def write(self, records: Sequence[dict[str, Any]], out: Path) -> None:
        import datasets

        datasets.disable_progress_bars()
        cache = tempfile.mkdtemp(prefix="hf-cache-", dir=out.parent)
        try:
            ds = datasets.Dataset.from_generator(
                _gen, features=features(), gen_kwargs={"records": records}, cache_dir=cache
            )
            ds.save_to_disk(str(out))
            del ds
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def _dataset(self, path: Path) -> Any:
        import datasets

        return datasets.load_from_disk(str(path))

    def open_first(self, path: Path) -> dict[str, Any]:
        return self._dataset(path)[0]

    def scan(self, path: Path) -> Iterator[dict[str, Any]]:
        # Batched iteration is datasets' fast path (row iteration is several times slower).
        for batch in self._dataset(path).iter(batch_size=BATCH):
            yield from _rows(batch)

    def scan_captions(self, path: Path) -> Iterator[list[str]]:
        for batch in self._dataset(path).select_columns(["captions"]).iter(batch_size=BATCH):
            yield from batch["captions"]

    def get_many(self, path: Path, indices: Sequence[int]) -> list[dict[str, Any]]:
        ds = self._dataset(path)
        return [ds[i] for i in indices]

    def loader(self, path: Path, *, workers: int, decode: bool, batch_size: int, seed: int) -> Any:
        import torch
        from torch.utils.data import DataLoader

        ds = self._dataset(path)
        return DataLoader(
            _Decoded(ds) if decode else ds,
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            num_workers=workers,
            collate_fn=collate_list,
        )
