"""`Batches`: records of one or several PixMo datasets -> Molmo's training batch, per step.

A `Batches` is the ``collate_fn`` of a `StreamingDataset` or `Mixture` that decodes images
with Molmo's preprocessing (``decode=batches.decode``); `stream` and `mixture` build those.
Per batch it formats every record into its conversations (each source's own `Formatter`),
tokenizes all messages in one call, lays each example out as Molmo does (`tokens.layout`),
and collates them (`collate.collate`, or `collate.collate_packed` for packed rows).

Every random choice of an example is drawn from ``example_rng(seed, epoch, name, row)``
with ``(source, row, epoch)`` from the record's sample id (``pixmo_stream.SAMPLE_KEY``), so a
batch is the same on any number of ranks and workers and after resumption.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import pickle
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .collate import collate, collate_packed
from .formatting import Formatter
from .rng import example_rng
from .tokenizer import MolmoTokenizer
from .tokens import (
    ExampleTooLong,
    LayoutStats,
    Special,
    check_options,
    layout,
    tokenize_messages,
)

SAMPLE_KEY = "__sample__"
SOURCE_KEY = "__source__"
IMAGE = "image"


def _names(formatters: Sequence[Formatter]) -> list[str]:
    """Each source's name in the RNG: its dataset, with the style where a dataset repeats
    (Molmo lists pixmo-points once per style)."""
    datasets = [f.dataset for f in formatters]
    names = [
        d if datasets.count(d) == 1 else f"{d}:{f.style}"
        for d, f in zip(datasets, formatters, strict=True)
    ]
    if len(set(names)) != len(names):
        raise ValueError(f"two mixture sources have the same name {names}: pass names=")
    return names


_FORMATTER_SETTINGS = (
    "style",
    "system_prompt",
    "message_format",
    "templates",
    "always_start_with_space",
    "prompt_templates",
    "how_many_prefix",
)


def _portable(formatter: Formatter) -> Any:
    """`formatter` itself where it pickles, else its settings (a Formatter's dataset rules
    may hold lambdas); `Batches.__setstate__` rebuilds it from them."""
    try:
        pickle.dumps(formatter)
        return formatter
    except Exception:
        settings = {k: getattr(formatter, k) for k in _FORMATTER_SETTINGS}
        return {"dataset": formatter.dataset, **settings}


def _replaced(items: list[Any], *, keep_size: bool, records: Sequence[dict[str, Any]]) -> list[Any]:
    """`items` with each None replaced by the next item that is not (cyclically, so the
    same on every rank) or, without `keep_size`, left out."""
    good = [x for x in items if x is not None]
    if not keep_size:
        return good
    if not good:
        r = records[0] if records else {}
        raise ValueError(
            "no record of this batch has anything to train on that fits (no annotation, or "
            f"an image and first turn over the row; the first is sample {r.get(SAMPLE_KEY)} "
            f"of source {r.get(SOURCE_KEY, 0)})"
        )
    n = len(items)
    return [
        x
        if x is not None
        else next(items[j % n] for j in range(i + 1, i + n) if items[j % n] is not None)
        for i, x in enumerate(items)
    ]


def _same(path: str, dataset: Any) -> bool:
    """Whether `dataset` (a ``pixmo_stream.Dataset``) is the one at `path`."""
    theirs = str(getattr(dataset, "path", ""))
    if theirs == path:
        return True
    local = "://" not in path and "://" not in theirs
    return local and os.path.realpath(path) == os.path.realpath(theirs)


class Batches:
    """Molmo's batch from records decoded with Molmo's image preprocessing.

    Args:
        tokenizer: a `MolmoTokenizer`, or anything it accepts (a ``tokenizers.Tokenizer``, a
            tokenizer.json path, a transformers fast tokenizer).
        formatters: one `Formatter`, or one per mixture source (in the mixture's order).
        seq_len: tokens per row (Molmo v1: 2304).
        max_crops: Molmo's crop limit (12; rows have ``max_crops + 1`` crops with the global
            view).
        normalize: float32 CLIP-normalised crops (Molmo's); ``False``: uint8 crops, 0-padded,
            to normalise on the GPU with `pixmo_stream.molmo.normalize_images`.
        exact: Molmo's exact pixels; ``False``: the fast decode (pixels within a few levels).
        pack: a ``pixmo_stream.Packing``: rows of several examples (see `collate_packed`);
            with ``costs=pixmo_stream.molmo.costs`` (or a mapping of Packing's other
            fields) `Batches` computes each source's costs with its own formatter (cached
            on disk, under `cost_cache` if given).
        seed: the run's seed for `example_rng`.
        truncate: ``"annotations"`` (drop whole annotations that do not fit, counted in
            `stats`) or ``"cut"`` (keep everything; the collator cuts at ``seq_len``, as v1).
        weighting: ``"root_subsegments"`` (loss of each of n annotations times
            ``sqrt(1/n)``, Molmo's released setting) or ``None``.
        names: each source's name in `example_rng` (default: its dataset, with the style when
            a dataset appears twice).
    """

    def __init__(
        self,
        tokenizer: Any,
        formatters: Formatter | Sequence[Formatter],
        *,
        seq_len: int = 2304,
        max_crops: int = 12,
        normalize: bool = True,
        exact: bool = True,
        pack: Any = None,
        seed: int = 0,
        truncate: str = "annotations",
        weighting: str | None = "root_subsegments",
        names: Sequence[str] | None = None,
        cost_cache: str | None = None,
    ) -> None:
        from ..image import MolmoConfig

        self.tokenizer = (
            tokenizer if isinstance(tokenizer, MolmoTokenizer) else MolmoTokenizer(tokenizer)
        )
        self.formatters = [formatters] if isinstance(formatters, Formatter) else list(formatters)
        if not self.formatters:
            raise ValueError("give at least one Formatter")
        self.names = list(names) if names is not None else _names(self.formatters)
        if len(self.names) != len(self.formatters):
            raise ValueError("give one name per formatter")
        self.seq_len = int(seq_len)
        self.image_config = MolmoConfig(
            max_crops=int(max_crops),
            normalize=bool(normalize),
            exact=bool(exact),
            token_ids=self.tokenizer.image_token_ids,
        )
        self.seed = int(seed)
        self.truncate = truncate
        self.weighting = weighting
        self.cost_cache = cost_cache
        self.special = Special(
            bos=self.tokenizer.bos_id,
            eos=self.tokenizer.eos_id,
            image_prompt=self.tokenizer.image_prompt_id,
        )
        self.pack = self._packing(pack)
        #: What truncation removed in this process (see `tokens.LayoutStats`).
        self.stats = LayoutStats()
        check_options(truncate, weighting)

    def _packing(self, pack: Any) -> Any:
        """`pack` as a ``Packing`` whose costs are this `Batches`' where it asks for them
        (``costs=molmo.costs`` or ``None``, or a mapping of ``Packing``'s other fields)."""
        from .costs import costs as molmo_costs

        if pack is None:
            return None
        if isinstance(pack, Mapping):
            from ..packing import Packing

            pack = Packing(**{**pack, "costs": self.costs})
        elif getattr(pack, "costs", None) in (None, molmo_costs):
            pack = dataclasses.replace(pack, costs=self.costs)
        if pack.max_crops is not None and pack.max_crops < self.n_crops:
            raise ValueError(
                f"pack.max_crops={pack.max_crops} is below one image's most crops "
                f"({self.n_crops} with max_crops={self.image_config.max_crops})"
            )
        return pack

    # ---- what the stream reads ------------------------------------------------------------
    @property
    def decode(self) -> Any:
        """The `pixmo_stream.Decode` the stream needs (Molmo's preprocessing of ``image``)."""
        from ..decoding import Decode

        return Decode(column=IMAGE, molmo=self.image_config)

    @property
    def n_crops(self) -> int:
        """Crops per row of the batch: ``max_crops`` plus the global view."""
        return self.image_config.max_crops + 1

    def columns(self, source: int = 0) -> list[str]:
        """The columns a source's records need: its formatter's and the image."""
        return [IMAGE, *[c for c in self.formatters[source].columns if c != IMAGE]]

    # ---- records -> per-example arrays -----------------------------------------------------
    def _rng(self, record: dict[str, Any]) -> tuple[int, np.random.Generator]:
        sample = record.get(SAMPLE_KEY)
        if sample is not None:
            source, row, epoch = (int(x) for x in sample)
        else:
            # Without sample ids (a stream made without `sample_ids=True`): the draws
            # depend on the record's text, the same every epoch.
            source = int(record.get(SOURCE_KEY, 0))
            cols = self.formatters[source].columns
            row = zlib.crc32(repr([record.get(c) for c in cols]).encode())
            epoch = 0
        if not 0 <= source < len(self.formatters):
            raise ValueError(
                f"record of source {source}, but this Batches has {len(self.formatters)} formatters"
            )
        return source, example_rng(self.seed, epoch, self.names[source], row)

    def examples(
        self,
        records: Sequence[dict[str, Any]],
        max_tokens: int | None = None,
        *,
        row_budget: int | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """Molmo's per-example arrays (``input_tokens``, ..., ``images``, ``image_masks``,
        ``image_input_idx``) of records decoded with `decode`, each at most `max_tokens`
        (default ``seq_len``) long. With `row_budget` (a packed row), examples lose whole
        annotations until they fit it together (costs are bounds of the text in characters,
        which a tokenizer may exceed by a few tokens)."""
        formatted = []
        for r in records:
            source, rng = self._rng(r)
            formatted.append(self.formatters[source].format(r, rng))
        records, formatted = self._without_empty(records, formatted, row_budget is None)
        ids = tokenize_messages(self.tokenizer, formatted)
        limit = max_tokens if max_tokens is not None else self.seq_len
        truncate = "annotations" if row_budget is not None else self.truncate
        for r in records:
            if IMAGE + "_tokens" not in r:
                raise ValueError(
                    "records lack Molmo's image outputs: read them with decode=batches.decode"
                )

        def lay(i: int, budget: int, stats: LayoutStats) -> dict[str, np.ndarray]:
            r = records[i]
            arrays = layout(
                ids[i],
                r[IMAGE + "_tokens"],
                r[IMAGE + "_input_idx"],
                self.special,
                max_tokens=budget,
                truncate=truncate,
                weighting=self.weighting,
                stats=stats,
            )
            arrays["images"] = r[IMAGE]
            arrays["image_masks"] = r[IMAGE + "_patch_mask"]
            return arrays

        laid: list[dict[str, np.ndarray] | None] = []
        for i in range(len(records)):
            try:
                laid.append(lay(i, limit, self.stats))
            except ExampleTooLong:
                # The image and first turn alone exceed the row: replaced as an empty record.
                self.stats.too_long += 1
                laid.append(None)
        if row_budget is None:
            return _replaced(laid, keep_size=True, records=records)
        which = [i for i, x in enumerate(laid) if x is not None]
        out = [x for x in laid if x is not None]
        self._fit_row(out, which, row_budget, lay)
        return out

    def _without_empty(
        self, records: Sequence[dict[str, Any]], formatted: list[Any], keep_size: bool
    ) -> tuple[Sequence[dict[str, Any]], list[Any]]:
        """Records with nothing to train on (e.g. a point explanation whose responses are all
        null) are counted in `stats` and, in a batch, replaced by the next record of the
        batch that has something (as the same on every rank as the batch itself); in a
        packed row they are left out."""
        empty = [i for i, ex in enumerate(formatted) if not ex.annotations]
        if not empty:
            return records, formatted
        self.stats.empty_records += len(empty)
        kept = _replaced(
            [None if not ex.annotations else i for i, ex in enumerate(formatted)],
            keep_size=keep_size,
            records=records,
        )
        return [records[i] for i in kept], [formatted[i] for i in kept]

    def _fit_row(
        self, out: list[dict[str, np.ndarray]], which: list[int], budget: int, lay: Any
    ) -> None:
        """Shortens the longest examples of a packed row (whole annotations) until it fits;
        where none can lose an annotation, the longest leaves the row."""
        while (over := sum(len(e["input_tokens"]) for e in out) - budget) > 0:
            for i in sorted(range(len(out)), key=lambda j: -len(out[j]["input_tokens"])):
                try:
                    trial = LayoutStats()
                    out[i] = lay(which[i], len(out[i]["input_tokens"]) - over, trial)
                except ExampleTooLong:
                    continue
                trial.examples = 0  # counted already
                self.stats.add(trial)
                break
            else:
                # No example can lose an annotation: the longest leaves the row (counted).
                longest = max(range(len(out)), key=lambda j: len(out[j]["input_tokens"]))
                del out[longest], which[longest]
                self.stats.too_long += 1

    #: The stream calls ``batches(records, empty=...)`` with the allocator of the process it
    #: runs in (shared memory in a DataLoader worker), so the batch is written once, where it
    #: crosses to the main process by reference (see `pixmo_stream.StreamingDataset`).
    accepts_empty = True

    def __call__(self, records: Sequence[Any], *, empty: Any = None) -> dict[str, Any]:
        """The batch of `records` (a list of records), or of packed rows (a list of lists);
        `empty(shape, dtype)` makes its arrays (see `collate.collate`)."""
        if records and isinstance(records[0], (list, tuple)):
            if self.pack is None:
                raise ValueError("packed rows given to a Batches made without pack=")
            rows = [
                self.examples(row, self.pack.max_tokens, row_budget=self.pack.max_tokens)
                for row in records
            ]
            if not any(rows):
                _replaced([None], keep_size=True, records=records[0])  # raises: nothing fits
            crops = (
                self.pack.max_crops
                if self.pack.max_crops is not None
                else max(sum(len(e["images"]) for e in row) for row in rows)
            )
            return collate_packed(rows, self.pack.max_tokens, crops, empty=empty)
        return collate(self.examples(records), self.seq_len, self.n_crops, empty=empty)

    # ---- costs for packing -----------------------------------------------------------------
    def costs(self, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per row of `dataset`: (tokens, crops) under the formatter of the source reading it
        (the largest of them where several sources read one path)."""
        from .costs import costs

        which = [i for i, p in enumerate(getattr(self, "_paths", [])) if _same(p, dataset)]
        if not which:
            if len(self.formatters) > 1:
                raise ValueError(
                    f"{dataset.path} is none of this Batches' sources {getattr(self, '_paths', [])}"
                )
            which = [0]
        got = [
            costs(
                dataset,
                self.formatters[i],
                self.tokenizer,
                config=self.image_config,
                max_tokens=self.pack.max_tokens if self.pack is not None else self.seq_len,
                cache_dir=self.cost_cache,
            )
            for i in which
        ]
        tokens = np.maximum.reduce([g[0] for g in got])
        crops = np.maximum.reduce([g[1] for g in got])
        return tokens, crops

    # ---- streams ---------------------------------------------------------------------------
    def _stream_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        from ..streaming import StreamingDataset

        kwargs.setdefault("decode", self.decode)
        kwargs.setdefault("collate_fn", self)
        if self.pack is not None:
            kwargs.setdefault("pack", self.pack)
        if "sample_ids" in inspect.signature(StreamingDataset).parameters:
            kwargs.setdefault("sample_ids", True)
        return kwargs

    def stream(self, path: Any, *, batch_size: int | None = None, **kwargs: Any) -> Any:
        """A `StreamingDataset` over one dataset (this `Batches` must have one formatter)
        yielding Molmo's batches of `batch_size` examples, or with ``pack`` its
        ``rows_per_batch`` packed rows (`batch_size` is then not used). Other arguments go
        to `StreamingDataset` (``seed``, ``shuffle``, ``rank``, ``on_bad_sample``, ...)."""
        from ..streaming import StreamingDataset

        if len(self.formatters) != 1:
            raise ValueError("stream() reads one dataset; use mixture() for several formatters")
        self._paths = [str(path)]
        kwargs.setdefault("columns", self.columns(0))
        if self.pack is None:
            if batch_size is None:
                raise ValueError("give batch_size (examples per step), or pack=")
            kwargs["batch_size"] = batch_size
        return StreamingDataset(path, **self._stream_kwargs(kwargs))

    def mixture(
        self,
        paths: Sequence[Any],
        rates: Sequence[float],
        *,
        batch_size: int | None = None,
        source_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """A `Mixture` of one dataset per formatter (``paths`` in the same order) at `rates`
        (e.g. from `pixmo_stream.root_size_rates`), yielding Molmo's batches of `batch_size`
        examples, or with ``pack`` its ``rows_per_batch`` packed rows (each source's costs from
        its own formatter; the Mixture's ``length`` then counts packed rows). Other arguments
        go to `Mixture` (``seed``, ``length``, ``rank``, ...), `source_kwargs` to each
        source's `StreamingDataset`."""
        from ..mixture import Mixture
        from ..streaming import StreamingDataset

        if len(paths) != len(self.formatters):
            raise ValueError(f"give one path per formatter ({len(self.formatters)})")
        self._paths = [str(p) for p in paths]
        extra = dict(source_kwargs or {})
        sources = [
            StreamingDataset(p, columns=self.columns(i), **extra) for i, p in enumerate(paths)
        ]
        kwargs.setdefault("source_key", SOURCE_KEY)
        if self.pack is None:
            if batch_size is None:
                raise ValueError("give batch_size (examples per step)")
            kwargs["batch_size"] = batch_size
        return Mixture(sources, rates, **self._stream_kwargs(kwargs))

    # ---- pickling (DataLoader workers started with spawn) ----------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["formatters"] = [_portable(f) for f in self.formatters]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["formatters"] = [
            Formatter(**f) if isinstance(f, dict) else f for f in state["formatters"]
        ]
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"Batches({self.names}, seq_len={self.seq_len}, "
            f"max_crops={self.image_config.max_crops}, normalize={self.image_config.normalize}, "
            f"pack={self.pack is not None})"
        )
