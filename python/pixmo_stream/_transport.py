"""Arrays from DataLoader workers to the main process without pickling their bytes.

A worker puts the arrays of one batch in one anonymous shared-memory file (`memfd_create`),
mapped in the worker. When torch's worker queue pickles the batch (`ForkingPickler`), each
array or tensor lying in such a file becomes a reference: the file (sent once per batch as a
file descriptor, as torch sends its own shared tensors) and the array's offset, dtype, shape
and strides. The main process maps the same pages; nothing is copied on the way, and no
arena has a name, so nothing is left behind in /dev/shm when a process ends or is killed: the
pages are freed when the last mapping of them is gone.

Making shared-memory pages and freeing them costs more than copying into them (each page is
allocated, zeroed and charged on first touch), so a worker reuses its files: the first bytes
of each count the times it was sent and the times a receiver dropped its last array over it,
and a file whose counts agree and whose arrays in the worker are gone takes the next batch.

The native read-ahead of a worker writes Molmo's crops of a batch straight into a shared
file of its own (``_native.GatheredCrops`` with ``shared``, made and reused by the native
side under the same counts); `track` makes arrays and tensors over it travel the same way.

Only worker processes register the reducers (`install`); arrays elsewhere in the worker still
pickle as before (numpy's bytes, torch's own shared memory). `PIXMO_STREAM_WORKER_IPC=copy`
turns the arenas off.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._host import owner

# Address space reserved per segment: a memfd is sparse, so pages exist only where written,
# and the receiver maps only the bytes used. A batch larger than this gets a segment of its
# own size.
RESERVE = 1 << 32
ALIGN = 64
_PAGE = mmap.PAGESIZE


def enabled() -> bool:
    return hasattr(os, "memfd_create") and os.environ.get("PIXMO_STREAM_WORKER_IPC") != "copy"


class _Segment:
    """One memfd of this worker, mapped here for as long as it lives. Its first bytes count
    the times it was sent (written here) and returned (written by the receivers, when their
    last array over it is gone); it is reused for another batch once every receiver has
    returned it and no array of this process lies in it (its lease is gone)."""

    def __init__(self, size: int) -> None:
        self.fd = os.memfd_create("pixmo-stream-batch", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
            self.map = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise
        self.size = size
        self.address = int(np.frombuffer(self.map, np.uint8, count=1).ctypes.data)
        self.sent = 0
        self.lease: weakref.ref[Any] | None = None
        self.used = HEADER

    def free(self) -> bool:
        if self.lease is not None and self.lease() is not None:
            return False
        return int.from_bytes(self.map[8:16], "little") == self.sent

    def close(self) -> None:
        try:
            self.map.close()
        except BufferError:  # (an array of this process still lies in it: leave it be)
            return
        os.close(self.fd)


# The first bytes of a segment: times sent, times returned.
HEADER = ALIGN


class _Lease(ctypes.c_char * RESERVE):
    """What the arrays of one batch are made over: while one of them lives, the segment is
    not reused. `segment` is the segment, for the reducers."""

    segment: _Segment


def _lease_type(size: int) -> type[Any]:
    if size == RESERVE:
        return _Lease
    return type("_Lease", (ctypes.c_char * size,), {})  # (a batch larger than the reserve)


# This worker's segments.
_pool: list[_Segment] = []
# Free segments kept for reuse beyond those in flight.
MAX_IDLE = 4


def _take(nbytes: int) -> _Segment:
    free = [s for s in _pool if s.free()]
    for extra in free[MAX_IDLE:]:
        _pool.remove(extra)
        extra.close()
    for seg in free:
        if seg.size >= HEADER + nbytes:
            return seg
    seg = _Segment(max(RESERVE, -(-(HEADER + nbytes) // _PAGE) * _PAGE))
    _pool.append(seg)
    return seg


class Arena:
    """Shared memory for one batch's arrays: `empty` / `zeros` / `copy` return numpy arrays
    over it."""

    def __init__(self) -> None:
        self._lease: _Lease | None = None

    def empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        shape = tuple(int(s) for s in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        lease = self._lease
        if lease is not None:
            seg = lease.segment
            start = -(-seg.used // ALIGN) * ALIGN
        if lease is None or start + nbytes > seg.size:
            seg = _take(nbytes)
            lease = self._lease = _lease_type(seg.size).from_buffer(seg.map)
            lease.segment = seg
            seg.lease = weakref.ref(lease)
            start = HEADER
        seg.used = start + nbytes
        return np.ndarray(shape, dtype, buffer=lease, offset=start)

    def zeros(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        out = self.empty(shape, dtype)
        out.fill(0)
        return out

    def copy(self, a: np.ndarray) -> np.ndarray:
        out = self.empty(a.shape, a.dtype)
        np.copyto(out, a, casting="no")
        return out

    def records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`records` with their numpy values (top level) copied into this arena."""
        return [
            {
                k: self.copy(v) if type(v) is np.ndarray and v.dtype.kind in _KINDS else v
                for k, v in r.items()
            }
            for r in records
        ]


# bool, ints, unsigned ints, floats, complex: the dtypes rebuilt from their `str`.
_KINDS = frozenset("biufc")


# ---- the native read-ahead's shared files ---------------------------------------------------
class _NativeSegment:
    """A shared file of the native read-ahead (a ``_native.GatheredCrops``'s), as the reducers
    see a `_Segment`: the native side reuses it once the counts agree and its owner is gone."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.fd, self.address, self.used = owner.shared


# Live `GatheredCrops` in shared memory, by the address of their mapping.
_native: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def track(a: np.ndarray) -> None:
    """Arrays and tensors over `a`'s memory travel by reference, where that memory is a
    shared file of the native read-ahead (else nothing changes)."""
    memory = owner(a)
    shared = getattr(memory, "shared", None)
    if shared is not None:
        _native[shared[1]] = memory


# ---- reduction (worker side) ---------------------------------------------------------------
def _segment_of(a: np.ndarray) -> _Segment | None:
    memory = owner(a)
    return getattr(memory, "segment", None) if isinstance(memory, ctypes.Array) else None


def _segment_at(start: int, end: int) -> _Segment | _NativeSegment | None:
    for seg in _pool:
        if seg.address <= start and end <= seg.address + seg.used and not seg.free():
            return seg
    for address, crops in list(_native.items()):
        if address + HEADER <= start and end <= address + crops.shared[2]:
            return _NativeSegment(crops)
    return None


def _extent(address: int, shape: Sequence[int], strides: Sequence[int], itemsize: int) -> tuple:
    """First and one-past-last byte of an array's elements."""
    lo = hi = address
    if any(s == 0 for s in shape):
        return address, address
    for n, s in zip(shape, strides, strict=True):
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    return lo, hi + itemsize


def _reduce_segment(seg: _Segment) -> tuple[Any, tuple[Any, ...]]:
    from multiprocessing.reduction import DupFd

    seg.sent += 1
    seg.map[0:8] = seg.sent.to_bytes(8, "little")
    return _rebuild_segment, (DupFd(seg.fd), -(-seg.used // _PAGE) * _PAGE)


def _reduce_native(seg: _NativeSegment) -> tuple[Any, tuple[Any, ...]]:
    from multiprocessing.reduction import DupFd

    seg.owner.mark_sent()
    return _rebuild_segment, (DupFd(seg.fd), seg.used)


def _array_ref(a: np.ndarray) -> tuple[Any, ...] | None:
    if a.dtype.kind not in _KINDS or a.dtype.hasobject:
        return None
    address = a.__array_interface__["data"][0]
    lo, hi = _extent(address, a.shape, a.strides, a.itemsize)
    seg: _Segment | _NativeSegment | None = _segment_of(a)
    if seg is None and _native:
        seg = _segment_at(lo, hi)
    if seg is None or lo < seg.address or hi > seg.address + seg.used:
        return None
    return (seg, address - seg.address, a.dtype.str, a.shape, a.strides)


def _reduce_ndarray(a: np.ndarray) -> Any:
    ref = _array_ref(a)
    if ref is None:
        return a.__reduce__()
    return _rebuild_array, ref


_TORCH_TO_NUMPY = {
    "torch.bool": "|b1",
    "torch.uint8": "|u1",
    "torch.int8": "|i1",
    "torch.int16": "<i2",
    "torch.int32": "<i4",
    "torch.int64": "<i8",
    "torch.float16": "<f2",
    "torch.float32": "<f4",
    "torch.float64": "<f8",
}


def _tensor_ref(t: Any) -> tuple[Any, ...] | None:
    import torch

    dtype = _TORCH_TO_NUMPY.get(str(t.dtype))
    if (
        type(t) is not torch.Tensor
        or dtype is None
        or t.device.type != "cpu"
        or t.layout != torch.strided
        or t.requires_grad
        or not (_pool or _native)
    ):
        return None
    itemsize = t.element_size()
    strides = tuple(s * itemsize for s in t.stride())
    lo, hi = _extent(t.data_ptr(), tuple(t.shape), strides, itemsize)
    seg = _segment_at(lo, hi)
    if seg is None:
        return None
    return (seg, t.data_ptr() - seg.address, dtype, tuple(t.shape), strides)


def _reducer_for_tensor(previous: Any) -> Any:
    def reduce_tensor(t: Any) -> Any:
        ref = _tensor_ref(t)
        if ref is None:
            return previous(t) if previous is not None else t.__reduce_ex__(2)
        return _rebuild_tensor, ref

    return reduce_tensor


_installed = False


def install() -> None:
    """Registers the reducers in this process (a DataLoader worker), once."""
    global _installed
    if _installed:
        return
    from multiprocessing.reduction import ForkingPickler

    ForkingPickler.register(_Segment, _reduce_segment)
    ForkingPickler.register(_NativeSegment, _reduce_native)
    ForkingPickler.register(np.ndarray, _reduce_ndarray)
    import sys

    if "torch" in sys.modules:
        import torch
        import torch.multiprocessing  # noqa: F401  (registers torch's reducers first)

        previous = ForkingPickler._extra_reducers.get(torch.Tensor)
        ForkingPickler.register(torch.Tensor, _reducer_for_tensor(previous))
    _installed = True


# ---- rebuilding (receiver side) ------------------------------------------------------------
class _Received(mmap.mmap):
    """A worker's segment mapped here; when its last array is gone, it tells the worker (only
    the process that received it: a child forked while it lived holds copies of nothing)."""

    pid = 0

    def __del__(self) -> None:
        if self.pid != os.getpid():
            return
        try:
            returned = int.from_bytes(self[8:16], "little") + 1
            self[8:16] = returned.to_bytes(8, "little")
        except (ValueError, BufferError):  # (closed already)
            pass


def _rebuild_segment(fd: Any, length: int) -> mmap.mmap:
    n = fd.detach()
    try:
        received = _Received(n, length)
    finally:
        os.close(n)
    received.pid = os.getpid()
    return received


def _rebuild_array(
    seg: mmap.mmap, offset: int, dtype: str, shape: tuple, strides: tuple
) -> np.ndarray:
    return np.ndarray(shape, np.dtype(dtype), buffer=seg, offset=offset, strides=strides)


def _rebuild_tensor(seg: mmap.mmap, offset: int, dtype: str, shape: tuple, strides: tuple) -> Any:
    import torch

    return torch.from_numpy(_rebuild_array(seg, offset, dtype, shape, strides))
