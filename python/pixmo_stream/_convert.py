"""Conversions the native writer and reader delegate to Python (numpy arrays, msgpack)."""

from __future__ import annotations

import functools
from typing import Any

import msgpack
import numpy as np


def to_array(obj: Any, dtype: str, shape: list[int]) -> tuple[int, bytes]:
    """Checks and converts ``obj`` to a C-order array of ``dtype`` and inner ``shape``.

    Values are stored only if they fit: an integer outside the target's range, a float for an
    integer dtype, or a finite float that overflows to infinity in a narrower float is refused
    (ints into floats and float64 into float32 round, as floats do). Returns (outer length,
    little-endian bytes). Raises TypeError/ValueError with a message the writer turns into a
    SchemaError.
    """
    target = _little_endian(dtype)
    arr = obj if type(obj) is np.ndarray else np.asarray(obj)
    if arr.dtype.kind not in "biuf":
        what = "objects" if arr.dtype == object else str(arr.dtype)
        raise TypeError(f"expected a numeric array, got {type(obj).__name__} of {what}")
    if arr.size == 0 and arr.ndim == 1 and shape:
        arr = arr.reshape((0, *shape))
    if tuple(arr.shape[1:]) != tuple(shape) or arr.ndim != len(shape) + 1:
        want = "(N" + "".join(f", {d}" for d in shape) + ")"
        raise ValueError(f"expected an array of shape {want}, got shape {arr.shape}")
    if arr.dtype == target:  # the common case: nothing to check or convert
        return arr.shape[0], arr.tobytes()
    if arr.size:
        _check_fits(arr, target, dtype)
    with np.errstate(over="ignore"):  # overflow was ruled out above
        out = np.ascontiguousarray(arr, dtype=target)
    return arr.shape[0], out.tobytes()


@functools.cache
def _little_endian(dtype: str) -> np.dtype:
    return np.dtype(dtype).newbyteorder("<")


def _check_fits(arr: np.ndarray, target: np.dtype, dtype: str) -> None:
    src = arr.dtype.kind
    if target.kind in "iu":
        if src == "f":
            raise TypeError(f"cannot store a {arr.dtype} array as {dtype}: floats are not integers")
        if src in "iu":
            info = np.iinfo(target)
            lo, hi = int(arr.min()), int(arr.max())
            if lo < info.min or hi > info.max:
                bad = lo if lo < info.min else hi
                raise ValueError(
                    f"value {bad} is out of range for {dtype} [{info.min}, {info.max}]"
                )
    elif src == "f" and arr.dtype.itemsize > target.itemsize:
        with np.errstate(over="ignore"):
            overflow = np.isinf(arr.astype(target)) & np.isfinite(arr)
        if overflow.any():
            bad = float(arr[overflow].flat[0])
            raise ValueError(f"value {bad!r} is out of range for {dtype} (it would be infinite)")


def pack_any(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True, default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in an 'any' field")


def dict_with_tuple_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A msgpack map as a dict, with array keys as tuples (what tuple keys were written as)."""
    return {_frozen(k): v for k, v in pairs}


def _frozen(k: Any) -> Any:
    return tuple(_frozen(x) for x in k) if isinstance(k, list) else k


def unpack_any(data: bytes) -> Any:
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=False, object_pairs_hook=dict_with_tuple_keys
        )
    except Exception as e:  # noqa: BLE001 - any decoding failure is a data problem
        from ._native import CorruptDataError

        raise CorruptDataError(f"an 'any' value cannot be decoded in Python: {e}") from e
