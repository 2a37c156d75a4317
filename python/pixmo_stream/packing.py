"""Packing: several examples per training row, planned from their costs before any pixel is read.

`StreamingDataset(path, pack=Packing(...))` yields, per step, `collate_fn(rows)` where `rows`
is a list of `rows_per_batch` packed rows, each a list of records whose costs fit both the
token and the crop budget. The plan (which examples share a row, and the order of the rows)
is computed in the Rust core (`rust/core/src/plan/pack.rs`) as a pure function of
(seed, epoch, costs, budgets, window): the epoch's shuffled order is cut into windows of
`window` consecutive examples, each window is bin-packed (best fit, largest first, the crop
budget as a second constraint), and its rows are shuffled. Ranks and DataLoader workers split
the *rows* as they split samples unpacked, so the state is (epoch, rows consumed) and resumes
exactly on any number of ranks and workers. `Mixture(..., pack=Packing(...))` packs the
mixture's open-ended position stream the same way (`MixturePackState`). See docs/PACKING.md.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _native
from . import bad_samples as bad
from ._split import checked_int

if TYPE_CHECKING:
    from .dataset import Dataset

#: `record[SAMPLE_KEY]` is `(source, row, epoch)` with `sample_ids=True`.
SAMPLE_KEY = "__sample__"

Costs = tuple[np.ndarray, np.ndarray]
CostsArg = Callable[["Dataset"], Costs] | Costs

# A crop budget no row reaches (the core's "no crop budget").
NO_CROP_BUDGET = 2**32 - 1


@dataclass(frozen=True)
class Packing:
    """How to pack examples into rows.

    Args:
        max_tokens: token budget of one row (e.g. 16384).
        max_crops: crop budget of one row (`None`: no crop budget).
        rows_per_batch: packed rows per step per rank.
        costs: per dataset row, `(tokens uint32[N], crops uint16[N])`, or a callable that
            returns them for a `pixmo_stream.Dataset` (called once per dataset, or per
            source of a `Mixture`, in the main process; e.g. `pixmo_stream.molmo.costs`).
            A `Mixture` needs the callable.
        window: examples planned together (a mixture's consecutive positions): the plan's
            memory bound (8 bytes of row ids and ~12 bytes of bookkeeping per example; ~32
            for a mixture) and its span of choice.

    An example over either budget gets a row of its own (its collate must cut it).
    """

    max_tokens: int
    max_crops: int | None
    rows_per_batch: int
    costs: CostsArg
    window: int = 16384

    def __post_init__(self) -> None:
        checked_int("max_tokens", self.max_tokens, 1, 2**32 - 1)
        if self.max_crops is not None:
            checked_int("max_crops", self.max_crops, 1, 2**32 - 2)
        checked_int("rows_per_batch", self.rows_per_batch, 1, 2**31)
        checked_int("window", self.window, 1, 2**32)
        if not callable(self.costs):
            _check_costs(self.costs, None, "costs")

    @property
    def crop_budget(self) -> int:
        return NO_CROP_BUDGET if self.max_crops is None else int(self.max_crops)


def _check_costs(costs: Any, n: int | None, where: str) -> Costs:
    """`(tokens uint32[N], crops uint16[N])`, or a ValueError naming `where`."""
    if not (isinstance(costs, (tuple, list)) and len(costs) == 2):
        raise ValueError(f"{where}: costs must be a pair (tokens, crops) of 1-D arrays")
    tokens = np.asarray(costs[0])
    crops = np.asarray(costs[1])
    for name, a, dtype in (("tokens", tokens, np.uint32), ("crops", crops, np.uint16)):
        if a.ndim != 1:
            raise ValueError(f"{where}: {name} must be 1-D, got shape {a.shape}")
        if a.size and a.dtype.kind not in "iu":
            raise ValueError(f"{where}: {name} must be integers, got {a.dtype}")
        if a.size and (a.min() < 0 or a.max() > np.iinfo(dtype).max):
            raise ValueError(f"{where}: {name} must fit {np.dtype(dtype).name}")
    if len(tokens) != len(crops):
        raise ValueError(f"{where}: {len(tokens)} token costs but {len(crops)} crop costs")
    if n is not None and len(tokens) != n:
        raise ValueError(f"{where}: {len(tokens)} costs for a dataset of {n} rows")
    return (
        np.ascontiguousarray(tokens, dtype=np.uint32),
        np.ascontiguousarray(crops, dtype=np.uint16),
    )


def resolve_costs(packing: Packing, datasets: Sequence[Dataset]) -> Costs:
    """The costs of the rows of `datasets` read as one (global row ids count through them)."""
    if not callable(packing.costs):
        return _check_costs(packing.costs, sum(len(d) for d in datasets), "Packing.costs")
    parts = [_check_costs(packing.costs(d), len(d), f"Packing.costs({d.path!r})") for d in datasets]
    return (
        np.concatenate([p[0] for p in parts]).astype(np.uint32, copy=False),
        np.concatenate([p[1] for p in parts]).astype(np.uint16, copy=False),
    )


class PackState:
    """The packing side of a `StreamingDataset`: its costs and each epoch's packed-row count
    per window (computed once per epoch in the main process and pickled to workers, so a
    worker does not plan the whole epoch again)."""

    def __init__(self, packing: Packing, costs: Costs) -> None:
        self.packing = packing
        self.tokens, self.crops = costs
        self._counts: dict[int, list[int]] = {}

    def plan_args(self, seed: int, shuffle: bool, shuffle_window: int) -> dict[str, Any]:
        p = self.packing
        return {
            "seed": seed,
            "shuffle": shuffle,
            "window_rows": shuffle_window,
            "max_tokens": p.max_tokens,
            "max_crops": p.crop_budget,
            "pack_window": p.window,
        }

    def plan(self, row_groups: list[int], epoch: int, **kw: Any) -> Any:
        """The epoch's `_native.PackPlan` (packs the whole epoch once unless cached)."""
        counts = self._counts.get(epoch)
        plan = _native.PackPlan(
            row_groups, self.tokens, self.crops, epoch=epoch, row_counts=counts, **kw
        )
        if counts is None:
            # Keep a few epochs: a persistent worker plans its next epoch itself.
            if len(self._counts) >= 4:
                self._counts.pop(next(iter(self._counts)))
            self._counts[epoch] = plan.row_counts()
        return plan

    def counts(self, row_groups: list[int], epoch: int, **kw: Any) -> list[int]:
        if epoch not in self._counts:
            self.plan(row_groups, epoch, **kw)
        return self._counts[epoch]


#: A mixture's pack window as `(window, first packed row, draws per source before it)`.
Anchor = tuple[int, int, list[int]]


class MixturePackState:
    """The packing side of a `Mixture`: each source's costs, the core's plan of the packed
    stream (built once per process: it is not pickled) and the latest pack window this process
    has found (`seek` starts from it, so a process packs each window once)."""

    def __init__(
        self,
        packing: Packing,
        costs: list[Costs],
        rates: list[float],
        seed: int,
        specs: list[tuple[list[int], int, bool, int, int]],
    ) -> None:
        self.packing = packing
        self.costs = costs
        self._args = (rates, seed, specs)
        self._plan: Any = None
        self._latest: Anchor | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_plan"] = None
        return state

    def origin(self) -> Anchor:
        return (0, 0, [0] * len(self.costs))

    def plan(self) -> Any:
        if self._plan is None:
            rates, seed, specs = self._args
            p = self.packing
            self._plan = _native.MixturePackPlan(
                rates,
                seed,
                specs,
                [c[0] for c in self.costs],
                [c[1] for c in self.costs],
                max_tokens=p.max_tokens,
                max_crops=p.crop_budget,
                pack_window=p.window,
            )
        return self._plan

    def seek(self, anchor: Anchor, row: int) -> Anchor:
        """The pack window holding packed row `row`, from `anchor` (at or before it) or from
        the latest window found here where that is nearer."""
        latest = self._latest
        if latest is not None and anchor[1] <= latest[1] <= row:
            anchor = latest
        window, first, counts = self.plan().seek(anchor, row)
        found = (int(window), int(first), [int(c) for c in counts])
        if latest is None or found[1] >= latest[1]:
            self._latest = found
        return found

    def key(self) -> dict[str, Any]:
        """What the packed stream depends on beyond the mixture's seed, rates and sources."""
        crc = 0
        for c in self.costs:
            crc = zlib.crc32(c[1].tobytes(), zlib.crc32(c[0].tobytes(), crc))
        p = self.packing
        return {
            "max_tokens": p.max_tokens,
            "max_crops": p.max_crops,
            "window": p.window,
            "costs_crc32": crc,
        }


def split_rows(records: list[dict[str, Any]], groups: Sequence[int]) -> list[list[dict[str, Any]]]:
    """The records of one read batch cut into its packed rows (`groups`: examples per row)."""
    rows, at = [], 0
    for g in groups:
        rows.append(records[at : at + g])
        at += g
    if at != len(records):
        raise RuntimeError(f"packed rows hold {at} examples but {len(records)} were read")
    return rows


def costs_key(costs: Costs) -> int:
    """A checksum of the costs: a state resumes only on the plan it was taken from."""
    return zlib.crc32(costs[1].tobytes(), zlib.crc32(costs[0].tobytes()))


def open_packed(ds: Any, state: PackState, cfg: dict[str, Any], reading: dict[str, Any]) -> Any:
    """The native read-ahead over this consumer's packed rows of pass `cfg`."""
    kw = state.plan_args(ds.seed, ds.shuffle, ds.shuffle_window)
    reading = {k: v for k, v in reading.items() if k != "batch_rows"}
    return _native.packed_read_ahead(
        ds.paths,
        ds.columns,
        state.tokens,
        state.crops,
        epoch=cfg["epoch"],
        row_counts=state.counts(ds.row_groups, cfg["epoch"], **kw),
        start=cfg["start"],
        pad=ds.remainder == "pad",
        expect=ds._manifest_hashes,
        storage=ds._storage,
        **kw,
        **reading,
    )


def _rows_as_is(rows: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    return rows


def generate(ds: Any, reader: Any, cfg: dict[str, Any], in_main: bool, world: int) -> Iterator[Any]:
    """One step per read batch: `collate_fn(rows)`, each row a list of records. Progress is
    counted in packed rows (the unit the plan splits among consumers)."""
    collate = ds.collate_fn or _rows_as_is
    replacing = ds.on_bad_sample == "replace"
    try:
        while True:
            batch = reader.next_batch()
            if batch is None:
                break
            records, sources, rows, native_bad, _images, groups, epochs = batch
            ds._decorate(records, sources, rows, epochs, cfg)
            replaced = [b for _, b in bad.reports(native_bad)]
            packed = split_rows(records, groups)
            out = collate(packed)
            if replacing and isinstance(out, dict):
                out[bad.BATCH_KEY] = replaced
            ds._count(cfg, len(packed), in_main, world, replaced)
            yield out
    finally:
        reader.close()
