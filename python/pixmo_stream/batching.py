"""Batching records: numbers become tensors, variable-length arrays are padded with a mask,
strings, bytes and free-form values stay Python lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _pin(t: Any) -> Any:
    import torch

    return t.pin_memory() if torch.cuda.is_available() else t


def null_fills(schema: Any, columns: Sequence[str] | None = None) -> dict[str, tuple]:
    """What `collate` puts in place of a null, for the nullable top-level numeric, bool and
    array fields of `schema` (a `pixmo_stream.Schema`), so that their batches have the same
    keys and types whether or not a null is in them."""
    out: dict[str, tuple] = {}
    for f in schema.fields:
        if not f.nullable or (columns is not None and f.name not in columns):
            continue
        kind = f.type.kind
        if kind == "bool":
            out[f.name] = ("bool",)
        elif kind.startswith(("int", "uint")):
            out[f.name] = ("int",)
        elif kind.startswith("float"):
            out[f.name] = ("float",)
        elif kind == "array":
            out[f.name] = ("array", np.dtype(f.type.dtype), tuple(f.type.shape))
    return out


def _mask_name(key: str, keys: Any, mask_suffix: str) -> str:
    """The name of `key`'s mask, refused when a field of the records already has it."""
    name = key + mask_suffix
    if name in keys:
        raise ValueError(
            f"the mask of {key!r} would overwrite the field {name!r}: pass another mask_suffix"
        )
    return name


def collate(
    records: Sequence[dict[str, Any]],
    *,
    pin_memory: bool = False,
    mask_suffix: str = "_mask",
    nulls: dict[str, tuple] | None = None,
    empty: Callable[[tuple[int, ...], Any], np.ndarray] = np.empty,
) -> dict[str, Any]:
    """Collate a list of records (dicts with the same keys) into one batch.

    - ints, floats, bools -> 1-D tensors (int64, float64, bool);
    - numpy arrays of shape `(N_i, *inner)` -> one tensor `(B, max N_i, *inner)` zero-padded,
      plus a bool tensor `key + mask_suffix` of shape `(B, max N_i)` marking real rows;
    - anything else (str, bytes, lists, dicts) -> a list of length B; so is a column with a
      None (a null) in this batch, or with values of mixed types, unless `nulls` says how to
      fill it (below).

    With `nulls` (from `null_fills(schema)`; `StreamingDataset` passes it), a nullable
    numeric or bool field is always a tensor, 0 (False) where null, with `key + mask_suffix`
    True where a value is present; a null array is an empty one (its mask row all False).

    With `pin_memory`, tensors are placed in page-locked memory (when CUDA is available).
    `empty(shape, dtype)` makes the arrays that the tensors of arrays are made over (in a
    DataLoader worker, shared memory that reaches the main process without a copy).
    """
    import torch

    if not records:
        return {}
    keys = records[0].keys()
    for i, r in enumerate(records):
        if r.keys() != keys:
            raise ValueError(
                f"records 0 and {i} of this batch have different keys ({sorted(keys)} and "
                f"{sorted(r.keys())}), e.g. from mixture sources with other columns: give the "
                "loader a collate_fn that turns each record into the same fields (e.g. text "
                "for the model), or read the same columns from every source"
            )
    out: dict[str, Any] = {}
    nulls = nulls or {}
    for key in keys:
        values = [r[key] for r in records]
        fill = nulls.get(key)
        if fill is not None and fill[0] != "array":
            dtype = {"bool": torch.bool, "int": torch.int64, "float": torch.float64}[fill[0]]
            out[key] = torch.tensor([0 if v is None else v for v in values], dtype=dtype)
            out[_mask_name(key, keys, mask_suffix)] = torch.tensor([v is not None for v in values])
            continue
        if fill is not None:
            none = np.zeros((0, *fill[2]), dtype=fill[1])
            values = [none if v is None else v for v in values]
        first = values[0]
        if isinstance(first, bool) and all(isinstance(v, bool) for v in values):
            out[key] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(first, int) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            out[key] = torch.tensor(values, dtype=torch.int64)
        elif isinstance(first, float) and all(isinstance(v, (int, float)) for v in values):
            out[key] = torch.tensor(values, dtype=torch.float64)
        elif isinstance(first, np.ndarray) and all(
            isinstance(v, np.ndarray) and v.shape[1:] == first.shape[1:] and v.dtype == first.dtype
            for v in values
        ):
            if first.ndim == 0:
                stacked = np.stack(values, out=empty((len(values),), first.dtype))
                out[key] = torch.from_numpy(stacked)
                continue
            longest = max(v.shape[0] for v in values)
            padded = empty((len(values), longest, *first.shape[1:]), first.dtype)
            mask = empty((len(values), longest), bool)
            for i, v in enumerate(values):
                n = v.shape[0]
                padded[i, :n] = v
                padded[i, n:] = 0
                mask[i, :n] = True
                mask[i, n:] = False
            out[key] = torch.from_numpy(padded)
            out[_mask_name(key, keys, mask_suffix)] = torch.from_numpy(mask)
        else:
            out[key] = values
    if pin_memory:
        out = {k: _pin(v) if isinstance(v, torch.Tensor) else v for k, v in out.items()}
    return out
