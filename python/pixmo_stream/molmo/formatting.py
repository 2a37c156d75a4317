"""Molmo's conversations from pixmo-stream records: prompts, style prefixes and roles.

`Formatter(dataset, style)` turns one record (one image, every annotation in lists; see
docs/SCHEMA.md) into one `Example`: one `Annotation` per caption, question, label or
conversation of that image, each the exact strings Molmo v1's preprocessor tokenizes, in
training order. `format(record, rng)` draws every random choice from ``rng`` (make it with
`example_rng`); `bound(record)` takes, for every choice, the option that makes the text
longest, for planning by cost.

The random choices, in this fixed order (so an example is a pure function of its generator):

1. the dataset's own, in record order: pixmo-cap's ``transcript`` style draws one transcript
   per caption; ask-model-anything and cap-qa draw one "no pointing" prefix per question
   that starts with "how many";
2. per annotation, in record order: its prompt template (``long_caption``, ``pointing``,
   ``point_count`` and ``clocks`` only, when templates are used), then its system prompt
   (``demo_or_style``: one uniform draw, for the four demo styles only; ``style_and_length``:
   one uniform draw, then one normal draw when the length hint is kept);
3. one permutation of the annotations, when there are several.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .draws import Drawn, Draws, Longest
from .records import DATASETS, Context, FormatError, Raw, resolve_style
from .templates import load_templates

__all__ = ["DEMO_STYLES", "Annotation", "Example", "FormatError", "Formatter"]

#: The styles whose prefix Molmo drops 90 % of the time (what a demo user types has none).
DEMO_STYLES = frozenset({"point_count", "pointing", "user_qa", "long_caption"})
SYSTEM_PROMPTS = ("demo_or_style", "style_and_length", "none")
MESSAGE_FORMATS = ("role", "none")
PROMPT_TEMPLATES = ("uber_model", "none")


@dataclass(frozen=True)
class Annotation:
    """One conversation about the image: user, assistant, user, assistant, ... (with
    ``message_format="none"`` there are no roles: the prompt, then the answer). Each string
    is tokenized on its own, as Molmo's preprocessor does; roles, leading spaces and the
    style prefix are already in them."""

    messages: tuple[str, ...]


@dataclass(frozen=True)
class Example:
    """All annotations of one record, in training order. ``style`` is the formatter's
    style. A record with nothing to train on (no caption, no parsed response, ...) gives an
    Example with no annotations."""

    style: str
    annotations: tuple[Annotation, ...]


class Formatter:
    """Conversations of one dataset in one style, as Molmo v1 builds them.

    ``dataset`` is a preset name (``"pixmo-cap"``, ``"pixmo-points"``, ...). ``style`` is the
    mixture entry's style where the dataset has several: ``"pointing"`` or ``"point_count"``
    (alias ``"counting"``) for pixmo-points, pixmo-points-eval and pixmo-count;
    ``"long_caption"`` or ``"transcript"`` for pixmo-cap; ``"pixmo_docs_charts"`` (alias
    ``"charts"``), ``..._diagrams``, ``..._tables`` or ``..._other`` for pixmo-docs, which
    has no default. Molmo's fine-tuning uses the defaults of ``system_prompt``,
    ``message_format`` and templates; its caption pre-training uses
    ``system_prompt="style_and_length", message_format="none"``.

    ``prompt_templates`` (``"uber_model"`` or ``"none"``) defaults to ``"none"`` where
    ``message_format="none"``, as in Molmo's pre-training: no templates, the bare prompt.
    ``templates`` replaces the shipped prompt lists (see `pixmo_stream.molmo.templates`).
    ``how_many_prefix`` puts a "no pointing" prefix before "how many" questions of
    ask-model-anything and cap-qa, as Molmo's loaders do.
    """

    def __init__(
        self,
        dataset: str,
        style: str | None = None,
        *,
        system_prompt: str = "demo_or_style",
        message_format: str = "role",
        templates: Mapping[str, Sequence[str]] | str | os.PathLike | None = None,
        always_start_with_space: bool = True,
        prompt_templates: str | None = None,
        how_many_prefix: bool = True,
    ) -> None:
        rule, self.style = resolve_style(dataset, style)
        for name, value, allowed in (
            ("system_prompt", system_prompt, SYSTEM_PROMPTS),
            ("message_format", message_format, MESSAGE_FORMATS),
            ("prompt_templates", prompt_templates, (*PROMPT_TEMPLATES, None)),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.dataset = dataset
        self.system_prompt = system_prompt
        self.message_format = message_format
        self.prompt_templates = prompt_templates or (
            "none" if message_format == "none" else "uber_model"
        )
        self.always_start_with_space = always_start_with_space
        self.how_many_prefix = how_many_prefix
        self.templates = load_templates(templates)
        self.columns: tuple[str, ...] = rule.columns(self.style)

    def __repr__(self) -> str:
        return (
            f"Formatter({self.dataset!r}, {self.style!r}, system_prompt="
            f"{self.system_prompt!r}, message_format={self.message_format!r})"
        )

    def format(self, record: Mapping[str, Any], rng: np.random.Generator) -> Example:
        """The record's conversations, every random choice drawn from ``rng``."""
        return self._example(record, Drawn(rng))

    def bound(self, record: Mapping[str, Any]) -> Example:
        """The record's conversations with every choice taken to make the text longest (in
        characters): the longest template and "no pointing" prefix after filling in, the
        style prefix kept, the longest transcript, the length hint at 4 standard
        deviations. Deterministic; for planning by cost."""
        return self._example(record, Longest())

    # -----------------------------------------------------------------------------------------

    def _example(self, record: Mapping[str, Any], draws: Draws) -> Example:
        # The dataset's rule is looked up, not kept: a Formatter pickles (to DataLoader
        # workers) as its settings only.
        rule = DATASETS[self.dataset]
        ctx = Context(
            dataset=self.dataset,
            style=self.style,
            templates=self.templates,
            draws=draws,
            how_many_prefix=self.how_many_prefix,
            points_dtype=rule.points_dtype,
        )
        raws = rule.build(record, ctx)
        annotations = [Annotation(tuple(self._messages(raw, draws))) for raw in raws]
        order = draws.order(len(annotations))
        return Example(self.style, tuple(annotations[i] for i in order))

    def _messages(self, raw: Raw, draws: Draws) -> list[str]:
        messages = list(raw.messages)
        if raw.template is not None and self.prompt_templates == "uber_model":
            messages[0] = draws.pick(self.templates[raw.template], raw.values)
        prefix = self._system_prefix(raw.style, messages, draws)
        if prefix:
            messages[0] = f"{prefix} {messages[0]}" if messages[0] else prefix
        return self._with_roles(messages)

    def _system_prefix(self, style: str, messages: list[str], draws: Draws) -> str:
        if self.system_prompt == "demo_or_style":
            if style in DEMO_STYLES and not draws.keep_style_prefix():
                return ""
            return f"{style}:"
        if self.system_prompt == "style_and_length":
            # The hint is the answer's length in characters, noisy, over 15.
            return f"{style}{draws.length_hint(len(messages[-1])) or ' '}:"
        return ""

    def _with_roles(self, messages: list[str]) -> list[str]:
        out = []
        for i, m in enumerate(messages):
            if self.message_format == "role" and i % 2 == 0:
                m = f"User: {m} Assistant:"
            if i or self.always_start_with_space:
                m = " " + m
            out.append(m)
        return out
