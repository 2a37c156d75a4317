"""Refusing a plain `torch.utils.data.DataLoader` that would batch a `StreamingDataset` or
`Mixture` wrongly, when it starts reading, with a message that says what to pass.

Two set-ups go wrong silently or deep inside torch: a dataset that already batches
(`batch_size` set on it) under a loader that batches again (torch's default is
`batch_size=1`: every tensor gets a leading dimension of 1; with `batch_size=4`, torch fails
to stack batches of different lengths), and records with arrays or lists under torch's
`default_collate`, which cannot stack values of different lengths. The dataset sees the
loader only through torch's fetcher, which calls `iter(dataset)`; its settings are what this
module checks. When the caller is anything else (a loop, `pixmo_stream.DataLoader` with its
own settings, a future torch whose fetcher looks different), nothing is checked.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any


def _fetcher_of(caller: FrameType | None) -> Any:
    fetch = sys.modules.get("torch.utils.data._utils.fetch")
    fetcher_type = getattr(fetch, "_IterableDatasetFetcher", None)
    if caller is None or fetcher_type is None:
        return None
    fetcher = caller.f_locals.get("self")
    return fetcher if isinstance(fetcher, fetcher_type) else None


def _varying_fields(dataset: Any) -> list[str]:
    """Fields read whose values vary in length from record to record (arrays, lists)."""
    sources = getattr(dataset, "sources", None) or [dataset]
    names: list[str] = []
    for source in sources:
        schema = getattr(source, "schema", None)
        columns = getattr(source, "columns", None)
        for f in schema.fields if schema is not None else ():
            read = columns is None or f.name in columns
            if read and f.type.kind in ("array", "list") and f.name not in names:
                names.append(f.name)
    return names


def check_torch_loader(dataset: Any, caller: FrameType | None) -> None:
    """Raises ValueError when `caller` is torch's fetcher set to batch `dataset` wrongly."""
    fetcher = _fetcher_of(caller)
    if fetcher is None or not fetcher.auto_collation:
        return
    kind = type(dataset).__name__
    if dataset.batch_size is not None:
        raise ValueError(
            f"{kind}(batch_size={dataset.batch_size}) yields finished batches, and this torch "
            "DataLoader batches them again (its batch_size defaults to 1, which adds a leading "
            "dimension of 1): use pixmo_stream.DataLoader(dataset), or pass batch_size=None "
            "to torch.utils.data.DataLoader"
        )
    from torch.utils.data import default_collate

    varying = _varying_fields(dataset)
    if fetcher.collate_fn is default_collate and varying:
        raise ValueError(
            f"torch's default_collate cannot batch the records of this {kind}: "
            f"{', '.join(varying)} vary in length from record to record. Use "
            "pixmo_stream.DataLoader(dataset, batch_size=B), pass "
            "collate_fn=pixmo_stream.collate (pads arrays and adds a mask), or set "
            f"batch_size on the {kind} and batch_size=None on the DataLoader"
        )
