"""What each PixMo dataset's record becomes before prompts are templated: one `Raw`
conversation per annotation, the way Molmo's dataset loaders (``olmo/data/pixmo_datasets.py``)
turn their rows into messages.

The record schema is docs/SCHEMA.md's (one record per image, every annotation in lists).
The loader-level random choices (which transcript, which "no pointing" prefix) are made here,
in record order, before any template is drawn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ingest.text import counting_text, point_tag, points_text
from .draws import Draws
from .templates import Templates


class FormatError(ValueError):
    """A record that cannot be formatted (a column missing or of the wrong shape)."""


@dataclass
class Raw:
    """One annotation before templating: ``messages`` are user, assistant, user, ...;
    where ``template`` names a template list, ``messages[0]`` is the prompt used without
    templates (Molmo's ``prompt_templates="none"``) and a template filled with ``values``
    replaces it otherwise."""

    style: str
    messages: list[str]
    template: str | None = None
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    dataset: str
    style: str
    templates: Templates
    draws: Draws
    how_many_prefix: bool
    points_dtype: type[np.floating]


Builder = Callable[[Mapping[str, Any], Context], list[Raw]]

# Molmo marks a question as counting when its lower-cased text *fully* matches this (so a
# line break after "how many" does not match: `.` stops at it).
_HOW_MANY = re.compile("how many.*")


def column(record: Mapping[str, Any], name: str, ctx: Context) -> Any:
    try:
        value = record[name]
    except KeyError:
        have = ", ".join(sorted(record)) or "none"
        raise FormatError(f"{ctx.dataset} record has no column {name!r} (it has: {have})") from None
    return [] if value is None else value


def _no_pointing(question: str, ctx: Context) -> str:
    if ctx.how_many_prefix and _HOW_MANY.fullmatch(question.lower()):
        return ctx.draws.pick(ctx.templates["no_pointing"]) + question
    return question


def _as_str(v: Any) -> str:
    return "" if v is None else str(v)


def cap(record: Mapping[str, Any], ctx: Context) -> list[Raw]:
    captions = [_as_str(c) for c in column(record, "captions", ctx)]
    out = [Raw("long_caption", ["", c], template="long_caption") for c in captions]
    if ctx.style == "transcript":
        # Molmo's transcript variant: each caption, and one of its transcripts (drawn first,
        # for every caption in order) as a `transcript` answer with no prompt.
        transcripts = list(column(record, "transcripts", ctx))
        chosen = [
            ctx.draws.pick([_as_str(t) for t in ts]) if ts is not None and len(ts) else None
            for ts in (transcripts + [None] * len(captions))[: len(captions)]
        ]
        out = [
            a
            for c, t in zip(out, chosen, strict=True)
            for a in ([c] if t is None else [c, Raw("transcript", ["", t])])
        ]
    return out


def qa(record: Mapping[str, Any], ctx: Context) -> list[Raw]:
    questions = [_as_str(q) for q in column(record, "questions", ctx)]
    answers = [_as_str(a) for a in column(record, "answers", ctx)]
    if len(questions) != len(answers):
        raise FormatError(
            f"{ctx.dataset} record: {len(questions)} questions but {len(answers)} answers"
        )
    if ctx.style == "user_qa":
        questions = [_no_pointing(q, ctx) for q in questions]
    return [Raw(ctx.style, [q, a]) for q, a in zip(questions, answers, strict=True)]


def cap_qa(record: Mapping[str, Any], ctx: Context) -> list[Raw]:
    out = []
    for conv in column(record, "conversations", ctx):
        turns = [_as_str(t) for t in (conv if conv is not None else [])]
        turns = turns[: len(turns) - len(turns) % 2]  # a last question with no answer: dropped
        if not turns:
            continue
        # Every "how many" user turn gets its own prefix before its own text (Molmo v1
        # put the conversation's first question there instead: not reproduced).
        for i in range(0, len(turns), 2):
            turns[i] = _no_pointing(turns[i], ctx)
        out.append(Raw(ctx.style, turns))
    return out


def _points(value: Any, where: str, ctx: Context) -> np.ndarray:
    # Datasets written before points were float64 hold float32: upcast, then round in the
    # dataset's type (float64; float32 for pixmo-count, as Molmo's loader keeps it).
    arr = np.asarray(value if value is not None else [], dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise FormatError(f"{ctx.dataset} record: {where} is not (N, 2) points: shape {arr.shape}")
    return arr


def points(record: Mapping[str, Any], ctx: Context) -> list[Raw]:
    labels = [_as_str(v) for v in column(record, "labels", ctx)]
    pts = list(column(record, "points", ctx))
    if len(labels) != len(pts):
        raise FormatError(f"{ctx.dataset} record: {len(labels)} labels but {len(pts)} points")
    text = points_text if ctx.style == "pointing" else counting_text
    out = []
    for i, (label, p) in enumerate(zip(labels, pts, strict=True)):
        label = label.lower()  # Molmo lower-cases labels, in the prompt and the answer
        arr = _points(p, f"points[{i}]", ctx)
        answer = text(arr, label, dtype=ctx.points_dtype)
        out.append(Raw(ctx.style, [label, answer], template=ctx.style, values={"label": label}))
    return out


def point_explanations(record: Mapping[str, Any], ctx: Context) -> list[Raw]:
    names = ("questions", "parsed_responses", "alt_texts", "inline_texts", "point_groups")
    cols = [list(column(record, n, ctx)) for n in names]
    if len({len(c) for c in cols}) != 1:
        sizes = ", ".join(f"{n} {len(c)}" for n, c in zip(names, cols, strict=True))
        raise FormatError(f"{ctx.dataset} record: lists of different lengths ({sizes})")
    out = []
    for k, (q, response, alts, inlines, groups) in enumerate(zip(*cols, strict=True)):
        if response is None:  # Molmo trains only on responses that were parsed
            continue
        answer = str(response)
        alts, inlines = list(alts if alts is not None else []), list(inlines or [])
        groups = list(groups if groups is not None else [])
        if not len(groups) == len(alts) == len(inlines):
            raise FormatError(
                f"{ctx.dataset} record: response {k} has {len(groups)} point groups, "
                f"{len(alts)} alt texts and {len(inlines)} inline texts"
            )
        for g, (group, alt, inline) in enumerate(zip(groups, alts, inlines, strict=True)):
            head, sep, tail = answer.partition("<|POINT|>")
            if not sep:
                raise FormatError(
                    f"{ctx.dataset} record: response {k} has fewer <|POINT|> placeholders "
                    f"than its {len(groups)} point groups"
                )
            arr = _points(group, f"point_groups[{k}][{g}]", ctx)
            tag = point_tag(arr, _as_str(inline), _as_str(alt), dtype=ctx.points_dtype)
            answer = head + tag + tail
        out.append(Raw(ctx.style, [_as_str(q), answer]))
    return out


def _clock_text(record: Mapping[str, Any], ctx: Context) -> str:
    text = record.get("text")
    if text:
        return str(text)

    def field_(*names: str) -> int:
        for n in names:
            if record.get(n) is not None:
                return int(record[n])
        raise FormatError(f"{ctx.dataset} record has no {' or '.join(map(repr, names))}")

    hour = field_("hour_visible", "hour")
    minute = field_("minute_visible", "minute")
    second = field_("second_visible", "second")
    if hour < 0 or minute < 0:
        raise FormatError(f"{ctx.dataset} record: no readable time and no `text` to answer with")
    fmt = str(record.get("time_format") or "").lower()
    seconds = record.get("shows_seconds", True) is not False and second >= 0
    tail = f":{second:02d}" if seconds else ""
    if "24" in fmt:
        return f"{hour}:{minute:02d}{tail}"
    h12 = hour % 12 or 12
    if "am/pm" in fmt and "without" not in fmt:
        return f"{h12}:{minute:02d}{tail} {'PM' if hour >= 12 else 'AM'}"
    return f"{h12}:{minute:02d}{tail}"


def clocks(record: Mapping[str, Any], ctx: Context) -> list[Raw]:
    return [Raw(ctx.style, ["", _clock_text(record, ctx)], template="clocks")]


@dataclass(frozen=True)
class DatasetRule:
    styles: tuple[str, ...]  # the first is the default (None: a style must be given)
    default: str | None
    build: Builder
    columns: Callable[[str], tuple[str, ...]]
    points_dtype: type[np.floating] = np.float64


def _fixed(*names: str) -> Callable[[str], tuple[str, ...]]:
    return lambda style: names


POINT_STYLES = ("pointing", "point_count")
DOC_STYLES = tuple(f"pixmo_docs_{t}" for t in ("charts", "diagrams", "tables", "other"))
# The published answer; a record without it (an older upload's layout) is answered from its
# time fields when they are in the record.
CLOCK_COLUMNS = ("text",)

DATASETS: dict[str, DatasetRule] = {
    "pixmo-cap": DatasetRule(
        ("long_caption", "transcript"),
        "long_caption",
        cap,
        lambda s: ("captions", "transcripts") if s == "transcript" else ("captions",),
    ),
    "pixmo-ask-model-anything": DatasetRule(
        ("user_qa",), "user_qa", qa, _fixed("questions", "answers")
    ),
    "pixmo-cap-qa": DatasetRule(("synthetic_qa",), "synthetic_qa", cap_qa, _fixed("conversations")),
    "pixmo-points": DatasetRule(POINT_STYLES, "pointing", points, _fixed("labels", "points")),
    "pixmo-points-eval": DatasetRule(POINT_STYLES, "pointing", points, _fixed("labels", "points")),
    # Molmo's pixmo-count loader keeps its points in float32 (they are published so):
    # formatting rounds them in float32 too, to write exactly what Molmo writes.
    "pixmo-count": DatasetRule(
        POINT_STYLES, "pointing", points, _fixed("labels", "points"), np.float32
    ),
    "pixmo-point-explanations": DatasetRule(
        ("point_qa",),
        "point_qa",
        point_explanations,
        _fixed("questions", "parsed_responses", "alt_texts", "inline_texts", "point_groups"),
    ),
    "pixmo-docs": DatasetRule(DOC_STYLES, None, qa, _fixed("questions", "answers")),
    "pixmo-clocks": DatasetRule(("clocks",), "clocks", clocks, _fixed(*CLOCK_COLUMNS)),
}

#: Other names accepted for a style.
STYLE_ALIASES = {
    "counting": "point_count",
    **{s.removeprefix("pixmo_docs_"): s for s in DOC_STYLES},
}


def resolve_style(dataset: str, style: str | None) -> tuple[DatasetRule, str]:
    try:
        rule = DATASETS[dataset]
    except KeyError:
        raise ValueError(
            f"no conversation format for dataset {dataset!r}; known: {', '.join(DATASETS)}"
        ) from None
    if style is None:
        if rule.default is None:
            raise ValueError(f"{dataset} needs a style: one of {', '.join(rule.styles)}")
        return rule, rule.default
    canonical = STYLE_ALIASES.get(style, style)
    if canonical not in rule.styles:
        raise ValueError(f"{dataset} has no style {style!r}; its styles: {', '.join(rule.styles)}")
    return rule, canonical
