"""Conversions the native writer and reader delegate to Python (numpy arrays, msgpack)."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np


def to_array(obj: Any, dtype: str, shape: list[int]) -> tuple[int, bytes]:
    """Checks and converts ``obj`` to a C-order array of ``dtype`` and inner ``shape``.

    Returns (outer length, little-endian bytes). Raises TypeError/ValueError with a message
    the writer turns into a SchemaError.
    """
    target = np.dtype(dtype).newbyteorder("<")
    arr = np.asarray(obj)
    if arr.dtype == object:
        raise TypeError(f"expected a numeric array, got {type(obj).__name__} of objects")
    if arr.size == 0 and arr.ndim == 1 and shape:
        arr = arr.reshape((0, *shape))
    if arr.size and not np.can_cast(arr.dtype, target, casting="same_kind"):
        raise TypeError(f"cannot store a {arr.dtype} array as {dtype} without losing information")
    if tuple(arr.shape[1:]) != tuple(shape) or arr.ndim != len(shape) + 1:
        want = "(N" + "".join(f", {d}" for d in shape) + ")"
        raise ValueError(f"expected an array of shape {want}, got shape {arr.shape}")
    return arr.shape[0], np.ascontiguousarray(arr, dtype=target).tobytes()


def pack_any(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True, default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in an 'any' field")


def unpack_any(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:  # noqa: BLE001 - any decoding failure is a data problem
        from ._native import CorruptDataError

        raise CorruptDataError(f"an 'any' value cannot be decoded in Python: {e}") from e
