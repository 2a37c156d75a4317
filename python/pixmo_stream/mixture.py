"""`Mixture`: several datasets sampled at given rates, as Molmo trains.

Position `q` of the mixture stream draws from a source chosen by a counter-based hash of
(seed, q) (computed in the Rust core), so the stream does not depend on the number of ranks
or workers. The `k`-th draw from a source reads position `k % n` of that source's own epoch
`k // n`: sampling without replacement within each source epoch, a fresh order each wrap.

With ``pack=Packing(...)`` the stream is cut into pack windows of consecutive positions, each
packed into rows from its sources' costs (`packing.MixturePackState`, the core's
`plan/pack_mixture.rs`); ranks and workers then split packed rows as they split positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import _native, packing
from . import bad_samples as bad
from ._split import checked_int
from .dataset import Dataset
from .decoding import Decode, check_column
from .packing import SAMPLE_KEY, Anchor, MixturePackState, Packing
from .streaming import STATE_VERSION, StreamingDataset, _PlannedIterable

INFINITE = 1 << 62


def root_size_rates(
    groups: Mapping[str, tuple[float, Mapping[str, int]]],
) -> dict[str, float]:
    """Molmo's "root-size" rates: `groups` maps a group name to `(group_rate, {dataset: size})`;
    inside a group each dataset gets `group_rate * sqrt(size) / sum(sqrt(sizes))`. The group
    rates are normalised to sum to 1."""
    total = sum(rate for rate, _ in groups.values())
    if total <= 0:
        raise ValueError("group rates must sum to more than 0")
    out: dict[str, float] = {}
    for rate, sizes in groups.values():
        norm = sum(math.sqrt(s) for s in sizes.values())
        for name, size in sizes.items():
            if name in out:
                raise ValueError(f"dataset {name!r} appears in two groups")
            out[name] = (rate / total) * math.sqrt(size) / norm if norm else 0.0
    return out


def _source_dataset(source: StreamingDataset) -> Dataset:
    """The `Dataset` a source reads, opened as the source opens it (for `Packing.costs`)."""
    arg = source._storage[0]
    if arg is None:
        return Dataset(source.paths[0])
    options, cache = arg
    return Dataset(
        source.paths[0],
        storage_options=options,
        cache=Path(cache[0]) if cache is not None else False,
        cache_limit=cache[1] if cache is not None else None,
    )


def _pack_state(
    pack: Packing, sources: list[StreamingDataset], rates: list[float], seed: int
) -> MixturePackState:
    if not callable(pack.costs):
        raise ValueError(
            "a Mixture's Packing.costs must be a callable: it is called with each source's "
            "Dataset (e.g. pixmo_stream.molmo.costs, or Batches.costs)"
        )
    costs = [packing.resolve_costs(pack, [_source_dataset(s)]) for s in sources]
    specs = [(s.row_groups, s.seed, s.shuffle, s.shuffle_window, s.epoch) for s in sources]
    return MixturePackState(pack, costs, rates, seed, specs)


class Mixture(_PlannedIterable):
    """An iterable over `sources` (`StreamingDataset`s of one path each) drawn at `rates`.

    Args:
        length: samples per pass over the mixture (all ranks together), or with `pack`
            packed rows per pass; `None` is infinite. Each pass continues the same stream
            where the previous one ended.
        pack: a `pixmo_stream.Packing` whose `costs` is called with each source's `Dataset`:
            yield steps of `rows_per_batch` packed rows (lists of records within a token and
            a crop budget); see docs/PACKING.md.
        source_key: each record gets this key holding its source's index (None: no key).
        sample_ids: each record gets `record[pixmo_stream.SAMPLE_KEY] = (source, row, epoch)`:
            the row of that source's dataset and the source's epoch that drew it.
    Other arguments as for `StreamingDataset`. Each source's `columns`, `seed`, `shuffle`,
    `shuffle_window` and epoch (its first epoch in the mixture) are used.
    """

    def __init__(
        self,
        sources: Sequence[StreamingDataset],
        rates: Sequence[float],
        *,
        seed: int = 0,
        length: int | None = None,
        batch_size: int | None = None,
        source_key: str | None = "__source__",
        rank: int | None = None,
        world_size: int | None = None,
        collate_fn: Callable[[list[dict[str, Any]]], Any] | None = None,
        pin_memory: bool = False,
        read_threads: int | None = None,
        read_ahead: int = 2,
        on_bad_sample: str = "raise",
        max_replacements: int = 16,
        decode: str | Decode | None = None,
        sample_ids: bool = False,
        pack: Packing | None = None,
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
        if len(sources) != len(rates) or not sources:
            raise ValueError("give one rate per source")
        for s in sources:
            if len(s.paths) != 1:
                raise ValueError("each mixture source must be a StreamingDataset of one path")
            if s.batch_size is not None:
                raise ValueError(
                    f"mixture source {s.paths[0]!r} has batch_size={s.batch_size}: the mixture "
                    "batches (pass batch_size to the Mixture), its sources give records"
                )
        if self.decode is not None:
            for s in sources:
                assert s.schema is not None
                check_column(self.decode, s.schema, s.columns, s.paths[0])
        self.sources = list(sources)
        self.rates = [float(r) for r in rates]
        _native.mixture_counts(self.rates, 0, 0, 0)  # validates the rates
        self.seed = checked_int("seed", seed)
        self.length = INFINITE if length is None else checked_int("length", length, 1)
        self.source_key = source_key
        self._position = 0
        self._counts = [0] * len(self.sources)
        self._progress: dict[str, Any] | None = None
        self.pack = pack
        self._pack = (
            _pack_state(pack, self.sources, self.rates, self.seed) if pack is not None else None
        )
        # With pack=: a pack window at or before `_row`, the first packed row not consumed.
        self._anchor: Anchor | None = self._pack.origin() if self._pack is not None else None
        self._row = 0

    def __len__(self) -> int:
        """Items this rank yields per pass: samples, batches when `batch_size` is set, or with
        `pack` steps of packed rows (as `StreamingDataset.__len__`)."""
        if self.length == INFINITE:
            raise TypeError("an infinite Mixture has no length")
        n = -(-self.length // self.rank_world()[1])
        step = self.pack.rows_per_batch if self.pack is not None else self.batch_size
        return -(-n // step) if step else n

    def _block_size(self) -> int:
        return self.pack.rows_per_batch if self.pack is not None else super()._block_size()

    def _specs(self) -> list[tuple[list[int], int, bool, int, int]]:
        return [(s.row_groups, s.seed, s.shuffle, s.shuffle_window, s.epoch) for s in self.sources]

    def set_epoch(self, epoch: int) -> None:
        """Accepted for symmetry; a mixture is one stream, and each pass continues it."""
        self._reset_passes()

    def _pass_config(self, k: int) -> dict[str, Any]:
        if self._pack is not None:
            anchor, row = self._packed_state()
            return {"k": k, "anchor": anchor, "row": row}
        position, counts = self._current_state()
        return {"k": k, "position": position, "counts": counts}

    def _effective(self, cfg: dict[str, Any], world: int) -> Any:
        if self._pack is not None:
            return self._start_row(cfg, world)
        return self._start(cfg, world)

    def _rank_len(self, cfg: dict[str, Any], world: int) -> int:
        return -(-self.length // world)

    def _replace_seed(self, cfg: dict[str, Any]) -> int:
        # A mixture has no epochs; a row drawn again is replaced the same way.
        return bad.mix_seed(self.seed, 0)

    def _start(self, cfg: dict[str, Any], world: int) -> tuple[int, list[int]]:
        start = cfg["position"] + cfg["k"] * self._rank_len(cfg, world) * world
        extra = _native.mixture_counts(self.rates, self.seed, cfg["position"], start)
        return start, [a + b for a, b in zip(cfg["counts"], extra, strict=True)]

    def _start_row(self, cfg: dict[str, Any], world: int) -> int:
        """With pack=: the first packed row pass `cfg` reads."""
        return int(cfg["row"]) + cfg["k"] * self._rank_len(cfg, world) * world

    def _open(self, cfg: dict[str, Any], world: int, reading: dict[str, Any]) -> Any:
        if self._pack is not None:
            return self._open_packed(cfg, world, reading)
        start, counts = self._start(cfg, world)
        return _native.ReadAhead.for_mixture(
            [s.paths[0] for s in self.sources],
            [s.columns for s in self.sources],
            self.rates,
            self.seed,
            counts,
            self._specs(),
            num_positions=start + self.length,
            start=start,
            expect=[s._manifest_hashes[0] for s in self.sources],
            storage=[s._storage[0] for s in self.sources],
            **reading,
        )

    def _open_packed(self, cfg: dict[str, Any], world: int, reading: dict[str, Any]) -> Any:
        assert self._pack is not None
        start = self._start_row(cfg, world)
        anchor = self._pack.seek(cfg["anchor"], start)
        return _native.mixture_packed_read_ahead(
            self._pack.plan(),
            [s.paths[0] for s in self.sources],
            [s.columns for s in self.sources],
            anchor,
            num_positions=start + self.length,
            start=start,
            expect=[s._manifest_hashes[0] for s in self.sources],
            storage=[s._storage[0] for s in self.sources],
            **{k: v for k, v in reading.items() if k != "batch_rows"},
        )

    def _decorate(
        self,
        records: list[dict[str, Any]],
        sources: list[int],
        rows: list[int],
        epochs: list[int],
        cfg: dict[str, Any],
    ) -> None:
        if self.source_key is not None:
            for rec, s in zip(records, sources, strict=True):
                rec[self.source_key] = s
        if self.sample_ids:
            # The row of the source's dataset and the epoch of that source it was drawn in.
            for rec, s, r, e in zip(records, sources, rows, epochs, strict=True):
                rec[SAMPLE_KEY] = (s, r, e)

    def _note_progress(self, cfg: dict[str, Any], consumed: int, world: int) -> None:
        if self._pack is not None:
            row = self._start_row(cfg, world) + min(consumed, self._rank_len(cfg, world)) * world
            self._progress = {"anchor": cfg["anchor"], "row": row}
            return
        start, counts = self._start(cfg, world)
        position = start + min(consumed, self._rank_len(cfg, world)) * world
        self._progress = {"start": start, "counts": counts, "position": position}

    def _current_state(self) -> tuple[int, list[int]]:
        p = self._progress
        if p is None:
            return self._position, list(self._counts)
        extra = _native.mixture_counts(self.rates, self.seed, p["start"], p["position"])
        return p["position"], [a + b for a, b in zip(p["counts"], extra, strict=True)]

    def _packed_state(self) -> tuple[Anchor, int]:
        """With pack=: the first packed row not consumed and the pack window holding it."""
        assert self._pack is not None and self._anchor is not None
        p = self._progress
        anchor, row = (self._anchor, self._row) if p is None else (p["anchor"], p["row"])
        anchor = self._pack.seek(anchor, row)
        if p is not None:
            p["anchor"] = anchor  # found once
        return anchor, row

    def source_counts(self) -> list[int]:
        """Samples drawn from each source so far (by every rank together); with `pack`, the
        draws before the pack window holding the next packed row."""
        if self._pack is not None:
            return list(self._packed_state()[0][2])
        return self._current_state()[1]

    def _state_at(self, cfg: dict[str, Any], world: int) -> dict[str, Any]:
        if self._pack is not None:
            row = self._start_row(cfg, world)
            return self._packed_dict(self._pack.seek(cfg["anchor"], row), row)
        start, counts = self._start(cfg, world)
        return self._state(start, counts)

    def state_dict(self) -> dict[str, Any]:
        """The position in the mixture stream and the draws per source before it (see
        `StreamingDataset.state_dict`; in a DataLoader worker, that worker's own stream)."""
        worker_state = self._worker_state()
        if worker_state is not None:
            return worker_state
        if self._pack is not None:
            return self._packed_dict(*self._packed_state())
        position, counts = self._current_state()
        return self._state(position, counts)

    def _packed_dict(self, anchor: Anchor, row: int) -> dict[str, Any]:
        """A packed mixture's state: the pack window holding the next row (its first position
        and the draws per source before it, as an unpacked state has them), its first packed
        row, and the first packed row not consumed."""
        assert self._pack is not None and self.pack is not None
        window, first, counts = anchor
        state = self._state(window * self.pack.window, list(counts))
        state["pack"] = {**self._pack.key(), "window_row": first, "row": row}
        return state

    def _state(self, position: int, counts: list[int]) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "kind": "Mixture",
            "seed": self.seed,
            "rates": self.rates,
            "position": position,
            "counts": counts,
            **self._bad_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "Mixture" or state.get("version") != STATE_VERSION:
            raise ValueError("not a Mixture state (version 1)")
        if state["seed"] != self.seed or [float(r) for r in state["rates"]] != self.rates:
            raise ValueError("state was saved with another seed or other rates")
        counts = state["counts"]
        if not isinstance(counts, list | tuple) or len(counts) != len(self.sources):
            raise ValueError(
                f"state['counts'] must hold one count per source ({len(self.sources)})"
            )
        mine = self._pack.key() if self._pack is not None else None
        theirs = state.get("pack")
        if isinstance(theirs, dict):
            theirs = {k: v for k, v in theirs.items() if k not in ("window_row", "row")}
        if theirs != mine:
            raise ValueError(
                f"state was saved with packing {theirs!r}, this mixture packs with {mine!r}; "
                "the packed rows would differ"
            )
        self._position = checked_int("state['position']", state["position"])
        self._counts = [checked_int("state['counts']", c) for c in counts]
        if self.pack is not None:
            window, rest = divmod(self._position, self.pack.window)
            first = checked_int("state['pack']['window_row']", state["pack"]["window_row"])
            self._row = checked_int("state['pack']['row']", state["pack"]["row"], first)
            if rest or sum(self._counts) != self._position:
                raise ValueError("state['position'] is not the start of a pack window")
            self._anchor = (window, first, list(self._counts))
        self._progress = None
        self._reset_passes()
        self._load_bad_state(state)
        self._load_worker_state(state)
