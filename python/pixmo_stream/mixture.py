"""`Mixture`: several datasets sampled at given rates, as Molmo trains.

Position `q` of the mixture stream draws from a source chosen by a counter-based hash of
(seed, q) (computed in the Rust core), so the stream does not depend on the number of ranks
or workers. The `k`-th draw from a source reads position `k % n` of that source's own epoch
`k // n`: sampling without replacement within each source epoch, a fresh order each wrap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import _native
from . import bad_samples as bad
from ._split import checked_int
from .decoding import Decode, check_column
from .packing import SAMPLE_KEY
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


class Mixture(_PlannedIterable):
    """An iterable over `sources` (`StreamingDataset`s of one path each) drawn at `rates`.

    Args:
        length: samples per pass over the mixture (all ranks together); `None` is infinite.
            Each pass continues the same stream where the previous one ended.
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
    ) -> None:
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

    def __len__(self) -> int:
        if self.length == INFINITE:
            raise TypeError("an infinite Mixture has no length")
        return -(-self.length // self.rank_world()[1])

    def _specs(self) -> list[tuple[list[int], int, bool, int, int]]:
        return [(s.row_groups, s.seed, s.shuffle, s.shuffle_window, s.epoch) for s in self.sources]

    def set_epoch(self, epoch: int) -> None:
        """Accepted for symmetry; a mixture is one stream, and each pass continues it."""
        self._reset_passes()

    def _pass_config(self, k: int) -> dict[str, Any]:
        position, counts = self._current_state()
        return {"k": k, "position": position, "counts": counts}

    def _effective(self, cfg: dict[str, Any], world: int) -> Any:
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

    def _open(self, cfg: dict[str, Any], world: int, reading: dict[str, Any]) -> Any:
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
        start, counts = self._start(cfg, world)
        position = start + min(consumed, self._rank_len(cfg, world)) * world
        self._progress = {"start": start, "counts": counts, "position": position}

    def _current_state(self) -> tuple[int, list[int]]:
        p = self._progress
        if p is None:
            return self._position, list(self._counts)
        extra = _native.mixture_counts(self.rates, self.seed, p["start"], p["position"])
        return p["position"], [a + b for a, b in zip(p["counts"], extra, strict=True)]

    def source_counts(self) -> list[int]:
        """Samples drawn from each source so far (by every rank together)."""
        return self._current_state()[1]

    def _state_at(self, cfg: dict[str, Any], world: int) -> dict[str, Any]:
        start, counts = self._start(cfg, world)
        return self._state(start, counts)

    def state_dict(self) -> dict[str, Any]:
        """The position in the mixture stream and the draws per source before it (see
        `StreamingDataset.state_dict`; in a DataLoader worker, that worker's own stream)."""
        worker_state = self._worker_state()
        if worker_state is not None:
            return worker_state
        position, counts = self._current_state()
        return self._state(position, counts)

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
        self._position = checked_int("state['position']", state["position"])
        self._counts = [checked_int("state['counts']", c) for c in counts]
        self._progress = None
        self._reset_passes()
        self._load_bad_state(state)
        self._load_worker_state(state)
