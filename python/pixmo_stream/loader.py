"""`pixmo_stream.DataLoader`: a torch DataLoader that counts what the training loop consumed,
so that `state_dict()` is exact with any number of workers, and that keeps persistent
workers in step with `set_epoch` / `load_state_dict`.

Why counting in the main process is exact: worker `w` of `W` reads the rank's local blocks
`j` with `j % W == w` (one block = one DataLoader batch), and torch's DataLoader returns
worker results round-robin, in order. The main process therefore sees the rank's samples in
local order 0, 1, 2, ...; after `c` of them on every rank, exactly the epoch positions
`start .. start + c * world_size` are consumed. See `docs/STREAMING.md`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch.utils.data

from . import _transport
from ._split import in_worker
from .bad_samples import BATCH_KEY
from .batching import collate
from .decoding import decode_on_gpu
from .streaming import _PlannedIterable

_log = logging.getLogger("pixmo_stream")


def _as_is(x: Any) -> Any:
    return x


def _shared_collate(records: list[dict[str, Any]]) -> Any:
    """`collate`, whose tensors are made in shared memory in a DataLoader worker."""
    if not (in_worker() and _transport.enabled()):
        return collate(records)
    _transport.install()
    return collate(records, empty=_transport.Arena().empty)


#: Arguments of torch's DataLoader that only worker processes take.
_WORKER_ONLY = ("persistent_workers", "prefetch_factor", "multiprocessing_context", "timeout")


def _nothing_for_workers(dataset: _PlannedIterable, kwargs: dict[str, Any]) -> bool:
    """Whether worker processes could only slow this loader down: the dataset decodes on its
    native read-ahead threads and no Python of the user's runs per batch (no collate_fn, no
    worker_init_fn), so workers would add nothing but copying every image between processes."""
    decode = dataset.decode
    return (
        decode is not None
        and decode.device == "cpu"
        and dataset.collate_fn is None
        and kwargs.get("collate_fn") is None
        and kwargs.get("worker_init_fn") is None
    )


class DataLoader(torch.utils.data.DataLoader):
    """`torch.utils.data.DataLoader` for a `StreamingDataset` or `Mixture`.

    Either let the dataset batch (`StreamingDataset(..., batch_size=B)` and `batch_size=None`
    here: the fast path), or batch here (`batch_size=B`, dataset unbatched). Everything else is
    passed to torch's DataLoader.

    ``in_process``: where a dataset decodes images (``decode=...``) and no function of yours
    runs per batch (no ``collate_fn``, no ``worker_init_fn``), ``num_workers`` worker
    processes would decode on the same native threads and then copy every image to this
    process, which is slower (``"rgb"``: 0.82-0.88x), so by default (``None``) the loader reads in
    this process on the threads the workers would have had together, and says so (a
    warning on the ``pixmo_stream`` logger). ``False`` keeps the worker processes; ``True``
    reads in this process whatever the dataset does.
    """

    def __init__(
        self,
        dataset: _PlannedIterable,
        batch_size: int | None = None,
        *,
        in_process: bool | None = None,
        **kwargs: Any,
    ):
        if not isinstance(dataset, _PlannedIterable):
            raise TypeError("pixmo_stream.DataLoader needs a StreamingDataset or a Mixture")
        #: The worker processes asked for (``num_workers``), whether or not they run.
        self.requested_workers = int(kwargs.get("num_workers") or 0)
        dataset._in_process_threads = 0
        if self.requested_workers > 0 and (
            in_process if in_process is not None else _nothing_for_workers(dataset, kwargs)
        ):
            self._read_in_process(dataset, kwargs, told=in_process is not None)
        if dataset.batch_size is not None and batch_size is not None:
            raise ValueError(
                "the dataset already batches (batch_size set on it); pass batch_size=None here"
            )
        if getattr(dataset, "pack", None) is not None and batch_size is not None:
            raise ValueError("a packing dataset yields its steps; pass batch_size=None here")
        if kwargs.get("drop_last"):
            raise ValueError("drop_last breaks exact resumption; use remainder='drop'")
        if batch_size is not None:
            dataset._block = batch_size
            # In a worker, records' arrays reach a collate_fn of the user's in shared memory,
            # and pixmo_stream.collate makes its tensors there (see `_transport`).
            dataset._records_shared = kwargs.get("collate_fn") is not None
            kwargs.setdefault("collate_fn", _shared_collate)
        else:
            # The dataset yields finished batches (or records); torch's default would walk
            # every value of every batch again (default_convert), which costs more than reading.
            kwargs.setdefault("collate_fn", _as_is)
        # Resolve the rank once, here, where torch.distributed is initialised.
        dataset._resolved = dataset.rank_world()
        super().__init__(dataset, batch_size=batch_size, **kwargs)
        self._pass_of_workers: int | None = None
        self._worker_state: dict[str, Any] | None = None

    def _read_in_process(
        self, dataset: _PlannedIterable, kwargs: dict[str, Any], *, told: bool
    ) -> None:
        workers = self.requested_workers
        threads = dataset._threads(workers) * workers
        dataset._in_process_threads = threads
        kwargs["num_workers"] = 0
        for key in _WORKER_ONLY:
            kwargs.pop(key, None)
        if not told:
            _log.warning(
                "pixmo_stream.DataLoader reads in this process on %d native threads instead "
                "of num_workers=%d worker processes: the dataset decodes on those threads "
                "either way, and workers would copy every image to this process (slower). "
                "Pass in_process=False to keep worker processes, or in_process=True to say "
                "this is what you want.",
                threads,
                workers,
            )

    @property
    def _block(self) -> int:
        return self.dataset._block_size()

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)

    def _sync_persistent_workers(self) -> None:
        """Persistent workers keep the dataset copy they started with and count their own
        passes; restart them when that copy would not produce the pass the user asked for."""
        if not (self.persistent_workers and self.num_workers > 0):
            return
        ds = self.dataset
        world = ds.rank_world()[1]
        wanted = ds._effective(ds._pass_config(0), world)
        if self._iterator is not None and self._worker_state is not None:
            copy_ = self._worker_state["ds"]
            expected = copy_._effective(copy_._pass_config(self._worker_state["passes"]), world)
            if expected != wanted:
                self._iterator._shutdown_workers()
                self._iterator = None
        if self._iterator is None:
            import copy

            self._worker_state = {"ds": copy.copy(ds), "passes": 0}

    def __iter__(self) -> Iterator[Any]:
        ds = self.dataset
        self._sync_persistent_workers()
        cfg = ds._pass_config(0)
        world = ds.rank_world()[1]
        rank_len = ds._rank_len(cfg, world)
        block = self._block
        it = super().__iter__()
        if self._worker_state is not None:
            self._worker_state["passes"] += 1
        return self._count(it, cfg, rank_len, world, block)

    def _count(
        self, it: Iterator[Any], cfg: dict[str, Any], rank_len: int, world: int, block: int
    ) -> Iterator[Any]:
        ds = self.dataset
        items = 0
        in_process = self.num_workers == 0
        # Workers send GPU-decoded datasets' images encoded; this process decodes them.
        gpu = ds.decode if ds.decode is not None and ds.decode.device == "cuda" else None
        try:
            for item in it:
                items += 1
                if not in_process:
                    # Item k is the rank's local block k (or sample k when unbatched).
                    ds._note_progress(cfg, min(items * block, rank_len), world)
                    if gpu is not None:
                        item = decode_on_gpu(item, gpu, ds.on_bad_sample)
                    listed = item.get(BATCH_KEY) if isinstance(item, dict) else None
                    if isinstance(listed, list) and listed:
                        ds._received_bad(listed)
                yield item
        except Exception:
            # A worker's error reaches here with torch's iterator in its traceback, a
            # reference cycle: its workers would be stopped whenever the garbage collector
            # next runs, wherever the program then is, and waited for 5 s each (torch's
            # join timeout). Stop them now, which takes milliseconds.
            if not in_process and not self.persistent_workers:
                stop = getattr(it, "_shutdown_workers", None)
                if stop is not None:
                    stop()
            raise
        if not in_process:
            ds._note_progress(cfg, rank_len, world)
