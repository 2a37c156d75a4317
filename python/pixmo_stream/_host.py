"""Large arrays of a batch in memory the native module's allocator recycles.

A batch of Molmo's float32 crops is 141 MB (8 rows of 13 crops). ``np.empty`` takes such a
block from glibc's ``malloc``, which maps it fresh and unmaps it when the batch is freed, so
the kernel zeroes its pages again for every batch. `empty` takes blocks of 1 MiB and more from
``pixmo_stream._native.HostBuffer`` (mimalloc underneath), whose freed blocks the next batch
reuses while the stream runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _native

#: From this size up, arrays come from the native allocator.
LARGE = 1 << 20


def empty(shape: Sequence[int], dtype: Any) -> np.ndarray:
    """An uninitialised, writable array of `shape` and `dtype`, as ``np.empty``."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * dtype.itemsize
    if nbytes < LARGE or dtype.hasobject:
        return np.empty(shape, dtype)
    return np.frombuffer(_native.HostBuffer(nbytes), dtype=dtype, count=count).reshape(shape)


def owner(a: np.ndarray) -> Any:
    """The object that owns `a`'s memory: the end of its chain of views (through the
    memoryview ``np.frombuffer`` keeps of an exporting object)."""
    base: Any = a
    while isinstance(base, np.ndarray):
        base = base.base
    return base.obj if isinstance(base, memoryview) else base
