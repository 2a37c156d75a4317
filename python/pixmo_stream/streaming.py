"""`StreamingDataset`: a shuffled, evenly split, exactly resumable torch `IterableDataset`.

The order of an epoch is computed in the Rust core (`EpochPlan`, a pure function of seed,
epoch and the row-group layout); ranks and DataLoader workers take fixed, interleaved shares
of it (`ConsumerSplit`), and a background read-ahead stage in the core reads and decompresses
rows with the GIL released. See `docs/STREAMING.md`.
"""

from __future__ import annotations

import functools
import os
import sys
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch.utils.data

from . import _host, _native, _transport, packing
from . import bad_samples as bad
from ._loader_check import check_torch_loader
from ._native import SchemaError
from ._split import check_rank_world, checked_int, detect_rank_world, in_worker, worker_info
from .batching import collate as default_collate
from .batching import null_fills
from .dataset import Dataset, check_columns, column_list
from .decoding import Decode, as_decode, check_column, collate_decoded, decode_on_gpu, gathers_crops
from .packing import SAMPLE_KEY, Packing, PackState, resolve_costs
from .schema import Schema
from .storage import CacheArg, open_arg


def _read_fields(schema: Schema, columns: list[str] | None) -> dict[str, Any]:
    """The fields read, by name: records are dicts, so their order does not matter."""
    return {f.name: f for f in schema.fields if columns is None or f.name in columns}


STATE_VERSION = 1


class _PlannedIterable(torch.utils.data.IterableDataset):
    """What `StreamingDataset` and `Mixture` share: rank/worker detection, passes, progress."""

    def __init__(
        self,
        *,
        batch_size: int | None,
        rank: int | None,
        world_size: int | None,
        collate_fn: Callable[[list[dict[str, Any]]], Any] | None,
        pin_memory: bool,
        read_threads: int | None,
        read_ahead: int,
        on_bad_sample: str = "raise",
        max_replacements: int = 16,
        decode: str | Decode | None = None,
        sample_ids: bool = False,
    ) -> None:
        bad.check_policy(on_bad_sample, max_replacements)
        #: Add `record[pixmo_stream.SAMPLE_KEY] = (source, row, epoch)` to every record.
        self.sample_ids = bool(sample_ids)
        self.decode = as_decode(decode)
        if batch_size is not None:
            batch_size = checked_int("batch_size", batch_size, 1)
        if read_threads is not None:
            read_threads = checked_int("read_threads", read_threads, 1, 1024)
        read_ahead = checked_int("read_ahead", read_ahead, 1, 1024)
        if (rank is None) != (world_size is None):
            raise ValueError("pass both rank and world_size, or neither")
        if rank is not None and world_size is not None:
            check_rank_world(rank, world_size)
        self.batch_size = batch_size
        self._explicit = (rank, world_size) if rank is not None else None
        self._resolved: tuple[int, int] | None = None
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory
        self.read_threads = read_threads
        self._in_process_threads = 0  # (set by pixmo_stream.DataLoader: see _threads)
        self._pack: Any = None  # (with pack=: the packing's state, set by the subclass)
        self.read_ahead = read_ahead
        self.on_bad_sample = on_bad_sample
        self.max_replacements = max_replacements
        #: Replaced samples the training loop has received (see `pixmo_stream.bad_samples`),
        #: counted since construction or as restored by `load_state_dict`.
        self.bad_samples = 0
        #: The latest of them (at most 100), where this process received them in batches.
        self.bad_sample_log: list[bad.BadSample] = []
        # Samples per worker block when the DataLoader batches (set by pixmo_stream.DataLoader).
        self._block = 1
        # Whether a DataLoader worker puts records' arrays in shared memory before the
        # loader's own collate_fn batches them (set by pixmo_stream.DataLoader).
        self._records_shared = False
        # Passes started by this object in this process since its state was last set.
        self._passes = 0
        self._pid = os.getpid()
        # Samples this process has yielded in the current pass (main-process iteration).
        self._consumed = 0
        self._current: dict[str, Any] | None = None
        # In a DataLoader worker: the pass it reads and the samples it yielded (what a
        # torchdata.StatefulDataLoader checkpoint of this worker holds), and a loaded one.
        self._worker_pass: dict[str, Any] | None = None
        self._worker_resume: dict[str, Any] | None = None

    def _null_fills(self) -> dict[str, tuple]:
        """What the default collate puts in place of nulls (see `batching.null_fills`)."""
        return {}

    # ---- bad samples ----------------------------------------------------------------------
    def _replace_seed(self, cfg: dict[str, Any]) -> int:
        """Seed of the replacements of pass `cfg` (the same on every rank)."""
        raise NotImplementedError

    def _received_bad(self, samples: list[bad.BadSample] | int) -> None:
        """Counts replaced samples that reached the training loop in this process."""
        if isinstance(samples, int):
            self.bad_samples += samples
            return
        self.bad_samples += len(samples)
        self.bad_sample_log = (self.bad_sample_log + samples)[-100:]

    def _bad_state(self) -> dict[str, Any]:
        return {"bad_samples": self.bad_samples} if self.on_bad_sample == "replace" else {}

    def _load_bad_state(self, state: dict[str, Any]) -> None:
        self.bad_samples = checked_int("state['bad_samples']", state.get("bad_samples", 0))
        self.bad_sample_log = []

    # ---- who is reading -------------------------------------------------------------------
    def rank_world(self) -> tuple[int, int]:
        """`(rank, world_size)`: explicit, else as resolved in the main process, else detected."""
        if self._explicit is not None:
            return self._explicit
        if self._resolved is not None:
            return self._resolved
        return check_rank_world(*detect_rank_world())

    def __getstate__(self) -> dict[str, Any]:
        # Pickled in the main process when DataLoader workers start (spawn): resolve the rank
        # there, where torch.distributed is initialised.
        state = self.__dict__.copy()
        state["_resolved"] = self.rank_world()
        return state

    def _block_size(self) -> int:
        return self.batch_size or self._block

    def _threads(self, num_workers: int) -> int:
        """Read-ahead threads of one reading process: as given, else the cores this process
        may use shared among the DataLoader's worker processes, at most 2 and at least 1
        (more threads than cores only delay the first batch)."""
        if self.read_threads is not None:
            return self.read_threads
        if num_workers == 0 and self._in_process_threads:
            return self._in_process_threads  # (pixmo_stream.DataLoader's, for its workers)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        cores = cores or os.cpu_count() or 1
        return max(1, min(2, cores // max(1, num_workers)))

    # ---- to implement ---------------------------------------------------------------------
    def _pass_config(self, k: int) -> dict[str, Any]:
        """The configuration of pass `k` after the state was last set (pure)."""
        raise NotImplementedError

    def _rank_len(self, cfg: dict[str, Any], world: int) -> int:
        raise NotImplementedError

    def _open(self, cfg: dict[str, Any], world: int, reading: dict[str, Any]) -> Any:
        """The native read-ahead of pass `cfg`; `reading` holds the keyword arguments that
        say who reads and how (consumer split, threads, depth, rows to skip)."""
        raise NotImplementedError

    def _note_progress(self, cfg: dict[str, Any], consumed: int, world: int) -> None:
        raise NotImplementedError

    def _state_at(self, cfg: dict[str, Any], world: int) -> dict[str, Any]:
        """The state whose pass 0 is the pass `cfg` read from its start."""
        raise NotImplementedError

    # ---- torchdata.StatefulDataLoader: per-worker states ----------------------------------
    def _worker_state(self) -> dict[str, Any] | None:
        """In a worker that has started a pass: the state of that pass's start plus the
        samples this worker yielded since (restored by the same worker of a loader with the
        same number of workers)."""
        wp = self._worker_pass
        if wp is None or not in_worker() or os.getpid() != self._pid:
            return None
        state = self._state_at(wp["cfg"], wp["world"])
        state["worker"] = {k: wp[k] for k in ("id", "num_workers", "samples")}
        if self.on_bad_sample == "replace":
            state["bad_samples"] = self.bad_samples + wp.get("bad_samples", 0)
        return state

    def _load_worker_state(self, state: dict[str, Any]) -> None:
        w = state.get("worker")
        if w is not None and not (
            isinstance(w, dict) and {"id", "num_workers", "samples"} <= set(w)
        ):
            raise ValueError(f"malformed per-worker state {w!r}")
        self._worker_resume = w

    def _take_worker_skip(self, worker: int, nw: int, in_main: bool) -> int:
        w, self._worker_resume = self._worker_resume, None
        if w is None:
            return 0
        if in_main or (w["id"], w["num_workers"]) != (worker, nw):
            raise ValueError(
                f"this state was saved by DataLoader worker {w['id']} of {w['num_workers']} "
                "(torchdata.StatefulDataLoader keeps one state per worker); resume it with the "
                "same num_workers, or use pixmo_stream.DataLoader, whose states resume on any "
                "number of ranks and workers"
            )
        return int(w["samples"])

    def _effective(self, cfg: dict[str, Any], world: int) -> Any:
        """What a pass configuration reads (to compare two of them)."""
        return cfg

    def _decorate(
        self,
        records: list[dict[str, Any]],
        sources: list[int],
        rows: list[int],
        epochs: list[int],
        cfg: dict[str, Any],
    ) -> None:
        """Adds per-record keys (the source, the sample id) to a read batch's records."""

    def _reset_passes(self) -> None:
        self._passes = 0
        self._consumed = 0
        self._current = None

    # ---- iteration ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        check_torch_loader(self, sys._getframe(1))
        if os.getpid() != self._pid:
            # A forked worker inherits the parent's counters; it starts its own passes.
            self._pid = os.getpid()
            self._passes = 0
        rank, world = self.rank_world()
        worker, nw = worker_info()
        in_main = not in_worker()
        # In the process that owns the object, a pass reads what its state says (set_epoch,
        # load_state_dict, progress); a persistent worker's copy counts its own passes.
        cfg = self._pass_config(0 if in_main else self._passes)
        self._passes += 1
        block = self._block_size()
        skip = self._take_worker_skip(worker, nw, in_main)
        if in_main:
            self._current = cfg
            self._consumed = 0
        else:
            self._worker_pass = {
                "cfg": cfg,
                "world": world,
                "id": worker,
                "num_workers": nw,
                "samples": skip,
            }
        reading = {
            "world_size": world,
            "rank": rank,
            "num_workers": nw,
            "worker": worker,
            "block": block,
            "batch_rows": block if self.batch_size else 64,
            "threads": self._threads(nw),
            "depth": self.read_ahead,
            "skip": skip,
            # A worker sends images on as references that the receiving process verifies when
            # it reads them; a worker that does not read an image leaves its pages untouched.
            # Under "replace", damage must be found here, where the row can still be replaced.
            "verify_blobs": in_main
            or self.on_bad_sample == "replace"
            or os.environ.get("PIXMO_STREAM_BLOB_IPC") == "copy",
            "replace": (self._replace_seed(cfg), self.max_replacements)
            if self.on_bad_sample == "replace"
            else None,
            "decode": self.decode.native(gather=gathers_crops(self, in_main, _transport.enabled()))
            if self.decode is not None and self.decode.device == "cpu"
            else None,
        }
        reader = self._open(cfg, world, reading)
        rank_len = self._rank_len(cfg, world) if in_main else 0
        if self._pack is not None:
            records = packing.generate(self, reader, cfg, in_main, world)
        else:
            records = self._generate(reader, cfg, in_main, rank_len, world)
        # A pass left unfinished stops its read-ahead threads when it is dropped, or at the
        # latest at interpreter exit (atexit), so no thread of ours outlives the interpreter.
        weakref.finalize(records, reader.close)
        return records

    def _count(
        self, cfg: dict[str, Any], n: int, in_main: bool, world: int, replaced: list[Any]
    ) -> None:
        """Counts `n` samples about to be yielded, `replaced` of them replacements (before
        the yield: a state taken after the consumer received them includes them)."""
        if in_main:
            self._consumed += n
            self._note_progress(cfg, self._consumed, world)
            self._received_bad(replaced)
        elif self._worker_pass is not None:
            self._worker_pass["samples"] += n
            self._worker_pass["bad_samples"] = self._worker_pass.get("bad_samples", 0) + len(
                replaced
            )

    def _generate(
        self, reader: Any, cfg: dict[str, Any], in_main: bool, rank_len: int, world: int
    ) -> Iterator[Any]:
        # In a DataLoader worker, a batch's arrays are made in (or copied once into) shared
        # memory, and cross to the main process as references (see `_transport`).
        shared = not in_main and _transport.enabled()
        if shared:
            _transport.install()
        user_collate = self.collate_fn
        # A collate_fn with ``accepts_empty = True`` (`pixmo_stream.molmo.Batches`) is called
        # as ``collate_fn(records, empty=...)`` and makes its arrays with that allocator.
        takes_empty = bool(getattr(user_collate, "accepts_empty", False))
        nulls = self._null_fills() if user_collate is None else {}

        def collate_into(empty: Any) -> Callable[[list[dict[str, Any]]], Any]:
            if user_collate is not None:
                return user_collate
            return functools.partial(
                default_collate,
                pin_memory=self.pin_memory,
                nulls=nulls,
                empty=_host.empty if empty is None else empty,
            )

        replacing = self.on_bad_sample == "replace"
        decode = self.decode
        # Molmo outputs vary in crops per image: the default collate pads them (with masks).
        on_cpu = (
            decode is not None
            and decode.device == "cpu"
            and decode.molmo is None
            and self.collate_fn is None
        )
        on_gpu = decode is not None and decode.device == "cuda" and in_main

        def finished(out: list[dict[str, Any]], replaced: list[bad.BadSample], images: Any) -> Any:
            arena = _transport.Arena() if shared else None
            empty = None if arena is None else arena.empty
            if arena is not None and user_collate is not None and not takes_empty:
                # The user's collate_fn gets arrays that travel as references, whatever
                # it does with them.
                out = arena.records(out)
            collate = collate_into(empty)
            if on_cpu:
                assert decode is not None
                batch = collate_decoded(out, images, decode, collate, self.pin_memory, empty)
            elif takes_empty:
                # It makes its arrays with `empty`: written once, where they cross by reference.
                batch = collate(out, empty=empty or _host.empty)
            else:
                batch = collate(out)
            if replacing and isinstance(batch, dict):
                batch[bad.BATCH_KEY] = replaced
            if on_gpu:
                assert decode is not None
                batch = decode_on_gpu(batch, decode, self.on_bad_sample)
                replaced = batch.get(bad.BATCH_KEY, replaced)
            self._count(cfg, len(out), in_main, world, replaced)
            return batch

        try:
            pending: list[dict[str, Any]] = []
            # Replaced samples among `pending`, by index in it.
            pending_bad: list[tuple[int, bad.BadSample]] = []
            # The read batch's gathered images while `pending` is exactly that batch.
            pending_images: Any = None
            while True:
                batch = reader.next_batch()
                if batch is None:
                    break
                records, sources, rows, native_bad, images, _groups, epochs = batch
                if shared and images is not None:
                    _transport.track(images)  # (crops gathered in shared memory, if they are)
                self._decorate(records, sources, rows, epochs, cfg)
                replaced = bad.reports(native_bad)
                if self.batch_size is None:
                    if shared and self._records_shared:
                        # pixmo_stream.DataLoader batches them with the user's collate_fn.
                        records = _transport.Arena().records(records)
                    marks = dict(replaced)
                    for i, rec in enumerate(records):
                        self._count(cfg, 1, in_main, world, [marks[i]] if i in marks else [])
                        yield rec
                    continue
                base = len(pending)
                pending_images = images if base == 0 else None
                pending.extend(records)
                pending_bad.extend((base + i, b) for i, b in replaced)
                while len(pending) >= self.batch_size:
                    size = self.batch_size
                    whole = len(pending) == size
                    out, pending = pending[:size], pending[size:]
                    mine = [b for i, b in pending_bad if i < size]
                    pending_bad = [(i - size, b) for i, b in pending_bad if i >= size]
                    yield finished(out, mine, pending_images if whole else None)
                    pending_images = None
            if pending:
                yield finished(pending, [b for _, b in pending_bad], pending_images)
        finally:
            reader.close()


class StreamingDataset(_PlannedIterable):
    """A torch `IterableDataset` over one or more pixmo-stream datasets (read as one).

    Args:
        path_or_paths: a dataset directory (or shard file), or a list of them.
        columns: columns to read (all by default); others' bytes are never touched.
        shuffle: shuffle row-group order, then rows within windows of `shuffle_window` rows.
        seed: the order is a pure function of (seed, epoch, dataset layout).
        batch_size: yield collated batches of this many samples (use with
            `DataLoader(batch_size=None)`); `None` yields records.
        shuffle_window: rows per shuffle window (memory bound of the shuffle; see the docs).
        remainder: `"pad"` (every rank gets `ceil(N / world)` samples, repeating the first
            samples of the order) or `"drop"` (`floor(N / world)`, the last positions unread).
        rank, world_size: explicit; by default from torch.distributed, else RANK/WORLD_SIZE.
        collate_fn: batches records when `batch_size` is set (default `pixmo_stream.collate`).
        read_threads: background read threads per reading process (default: the usable cores
            divided among the DataLoader workers, 1 to 2).
        read_ahead: batches each read thread may queue.
        on_bad_sample: `"raise"` (a damaged sample stops the stream with `BadSampleError`)
            or `"replace"` (it is replaced deterministically and counted); see
            `pixmo_stream.bad_samples`.
        max_replacements: bad replacement candidates tried for one sample before raising.
        decode: decode the images of a column on the read-ahead threads: `"rgb"`, `"cuda"`
            (on the GPU, in the iterating process) or a `pixmo_stream.Decode` (column,
            resize, pixel limit); see `pixmo_stream.decoding`.
        pack: a `pixmo_stream.Packing`: yield steps of `rows_per_batch` packed rows (lists of
            records within a token and a crop budget), planned from costs; see docs/PACKING.md.
        sample_ids: add `record[pixmo_stream.SAMPLE_KEY] = (0, row, epoch)` to every record
            (`row` counted through the paths read as one), the same on every layout.
        storage_options, cache, cache_limit: for URLs (``s3://``, ``gs://``, ``az://``,
            ``http(s)://``), as for `Dataset`: the store's options, and the node cache shared
            by every rank and worker of a machine (docs/STORAGE.md).
    """

    def __init__(
        self,
        path_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        columns: Sequence[str] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        batch_size: int | None = None,
        shuffle_window: int = 16384,
        remainder: str = "pad",
        rank: int | None = None,
        world_size: int | None = None,
        collate_fn: Callable[[list[dict[str, Any]]], Any] | None = None,
        pin_memory: bool = False,
        read_threads: int | None = None,
        read_ahead: int = 2,
        on_bad_sample: str = "raise",
        max_replacements: int = 16,
        decode: str | Decode | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache: CacheArg = True,
        cache_limit: int | str | None = None,
        pack: Packing | None = None,
        sample_ids: bool = False,
    ) -> None:
        if pack is not None and batch_size is not None:
            raise ValueError(
                "with pack=, a step is Packing.rows_per_batch packed rows; leave batch_size unset"
            )
        super().__init__(
            batch_size=batch_size,
            rank=rank,
            world_size=world_size,
            collate_fn=collate_fn,
            pin_memory=pin_memory,
            read_threads=read_threads,
            read_ahead=read_ahead,
            on_bad_sample=on_bad_sample,
            max_replacements=max_replacements,
            decode=decode,
            sample_ids=sample_ids,
        )
        if isinstance(path_or_paths, (str, os.PathLike)):
            path_or_paths = [path_or_paths]
        self.paths = [os.fspath(p) for p in path_or_paths]
        if not self.paths:
            raise ValueError("no dataset path given")
        # How each path is opened here and in every reading process (None for local paths).
        self._storage = [open_arg(p, storage_options, cache, cache_limit) for p in self.paths]
        if remainder not in ("pad", "drop"):
            raise ValueError("remainder must be 'pad' or 'drop'")
        self.columns = column_list(columns)
        self.shuffle = bool(shuffle)
        self.seed = checked_int("seed", seed)
        self.shuffle_window = checked_int("shuffle_window", shuffle_window, 1)
        self.remainder = remainder

        self.row_groups: list[int] = []
        # Readers opened later (in DataLoader workers, each pass) check that each path still
        # names this dataset: the plan is a function of its layout.
        self._manifest_hashes: list[int | None] = []
        self.schema: Schema | None = None
        opened = []
        for p in self.paths:
            ds = Dataset(p, storage_options=storage_options, cache=cache, cache_limit=cache_limit)
            opened.append(ds)
            if self.columns is not None:
                check_columns(self.columns, ds.columns, p)
            if self.schema is None:
                self.schema = ds.schema
            elif _read_fields(ds.schema, self.columns) != _read_fields(self.schema, self.columns):
                raise SchemaError(
                    f"{p}: its schema differs from {self.paths[0]}'s (in the columns read); "
                    "datasets read as one must agree (use a Mixture for different ones)"
                )
            if self.decode is not None:
                check_column(self.decode, ds.schema, self.columns, p)
            self.row_groups.extend(int(g[3]) for g in ds.row_group_layout())
            self._manifest_hashes.append(ds._native.manifest_hash)
        self.num_rows = sum(self.row_groups)
        # First global row of each path (sample ids count through the paths read as one).
        self._path_starts = [0]
        for ds in opened:
            self._path_starts.append(self._path_starts[-1] + len(ds))
        self.pack = pack
        self._pack = PackState(pack, resolve_costs(pack, opened)) if pack is not None else None
        self._epoch = 0
        self._resume: tuple[int, int] | None = None
        self._progress: dict[str, Any] | None = None

    # ---- epochs and state -----------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Use epoch `epoch` next (call before each epoch, as with `DistributedSampler`). A
        state loaded for this epoch is kept; for another epoch, reading starts at its start."""
        self._epoch = checked_int("epoch", epoch)
        self._progress = None
        self._reset_passes()

    def _null_fills(self) -> dict[str, tuple]:
        return null_fills(self.schema, self.columns) if self.schema is not None else {}

    def _pass_config(self, k: int) -> dict[str, Any]:
        epoch = self._epoch + k
        start = 0
        if k == 0 and self._resume is not None and self._resume[0] == epoch:
            start = self._resume[1]
        return {"epoch": epoch, "start": start}

    def _replace_seed(self, cfg: dict[str, Any]) -> int:
        return bad.mix_seed(self.seed, cfg["epoch"])

    def _num_positions(self, epoch: int) -> int:
        """Positions of an epoch: rows of the dataset, or packed rows with `pack=`."""
        if self._pack is None:
            return self.num_rows
        kw = self._pack.plan_args(self.seed, self.shuffle, self.shuffle_window)
        return sum(self._pack.counts(self.row_groups, epoch, **kw))

    def _rank_len(self, cfg: dict[str, Any], world: int) -> int:
        return _native.rank_len(
            self._num_positions(cfg["epoch"]),
            start=cfg["start"],
            world_size=world,
            pad=self.remainder == "pad",
        )

    def _block_size(self) -> int:
        return self.pack.rows_per_batch if self.pack is not None else super()._block_size()

    def _decorate(
        self,
        records: list[dict[str, Any]],
        sources: list[int],
        rows: list[int],
        epochs: list[int],
        cfg: dict[str, Any],
    ) -> None:
        if self.sample_ids:
            starts, epoch = self._path_starts, cfg["epoch"]
            for rec, s, r in zip(records, sources, rows, strict=True):
                rec[SAMPLE_KEY] = (0, starts[s] + r, epoch)

    def _open(self, cfg: dict[str, Any], world: int, reading: dict[str, Any]) -> Any:
        if self._pack is not None:
            return packing.open_packed(self, self._pack, cfg, reading)
        return _native.ReadAhead.for_plan(
            self.paths,
            self.columns,
            seed=self.seed,
            epoch=cfg["epoch"],
            shuffle=self.shuffle,
            window_rows=self.shuffle_window,
            start=cfg["start"],
            pad=self.remainder == "pad",
            expect=self._manifest_hashes,
            storage=self._storage,
            **reading,
        )

    def _note_progress(self, cfg: dict[str, Any], consumed: int, world: int) -> None:
        rank_len = self._rank_len(cfg, world)
        position = cfg["start"] + min(consumed, rank_len) * world
        self._progress = {"epoch": cfg["epoch"], "position": position}

    def __len__(self) -> int:
        """Items (samples, or batches when `batch_size` is set) this rank yields next pass."""
        n = self.samples_per_rank()
        step = self.batch_size or (self.pack.rows_per_batch if self.pack is not None else None)
        return -(-n // step) if step else n

    def samples_per_rank(self, world_size: int | None = None) -> int:
        """Samples (packed rows with `pack=`) each rank yields in the next pass (the same on
        every rank)."""
        world = world_size if world_size is not None else self.rank_world()[1]
        return self._rank_len(self._pass_config(0), world)

    def _state_at(self, cfg: dict[str, Any], world: int) -> dict[str, Any]:
        return self._state({"epoch": cfg["epoch"], "position": cfg["start"]})

    def _state(self, progress: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "kind": "StreamingDataset",
            "seed": self.seed,
            "num_rows": self.num_rows,
            "shuffle": self.shuffle,
            "shuffle_window": self.shuffle_window,
            **progress,
            **self._bad_state(),
            **({"pack": self._pack_key()} if self._pack is not None else {}),
        }

    def _pack_key(self) -> dict[str, Any] | None:
        """What the packing plan depends on beyond seed and layout (a state's `position`
        counts packed rows of exactly this plan)."""
        if self._pack is None:
            return None
        p = self._pack.packing
        return {
            "max_tokens": p.max_tokens,
            "max_crops": p.max_crops,
            "window": p.window,
            "costs_crc32": packing.costs_key((self._pack.tokens, self._pack.crops)),
        }

    def state_dict(self) -> dict[str, Any]:
        """A small JSON-serialisable state: the epoch and the first position of its order not
        yet consumed by every rank. Exact when this object did the iterating (num_workers=0)
        or when `pixmo_stream.DataLoader` counted for it. Called in a DataLoader worker (as
        `torchdata.StatefulDataLoader` does), the state of that worker's own stream."""
        worker_state = self._worker_state()
        if worker_state is not None:
            return worker_state
        progress = self._progress
        if progress is None:
            cfg = self._pass_config(0)
            progress = {"epoch": cfg["epoch"], "position": cfg["start"]}
        return self._state(progress)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from `state_dict()`, on any number of ranks and workers."""
        if state.get("kind") != "StreamingDataset" or state.get("version") != STATE_VERSION:
            raise ValueError("not a StreamingDataset state (version 1)")
        for key in ("seed", "num_rows", "shuffle", "shuffle_window"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"state was saved with {key}={state[key]!r}, this dataset has "
                    f"{getattr(self, key)!r}; the order would differ"
                )
        if state.get("pack") != self._pack_key():
            raise ValueError(
                f"state was saved with packing {state.get('pack')!r}, this dataset packs with "
                f"{self._pack_key()!r}; the packed rows would differ"
            )
        self._epoch = checked_int("state['epoch']", state["epoch"])
        position = checked_int("state['position']", state["position"])
        self._resume = (self._epoch, position)
        self._progress = {"epoch": self._epoch, "position": position}
        self._reset_passes()
        self._load_bad_state(state)
        self._load_worker_state(state)

    def __repr__(self) -> str:
        return (
            f"StreamingDataset({self.paths!r}, rows={self.num_rows}, shuffle={self.shuffle}, "
            f"seed={self.seed}, epoch={self._epoch}, batch_size={self.batch_size})"
        )
