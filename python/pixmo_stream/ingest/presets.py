"""One preset per PixMo dataset: which published columns it reads, how a batch of grouped
rows becomes records, and the schema it writes (docs/SCHEMA.md is the vocabulary).

Every record starts with the same image fields (`IMAGE_FIELDS`); a preset adds its
annotation fields, each a list with one entry per input row of that image, in input order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import pixmo_stream as ps

from . import columns as C
from .grouping import GroupBatch
from .images import ImageInfo

POINT_UNIT = "percent"  # stored in every dataset's metadata as point_unit
# float64, as published: float32 would print some points differently in Molmo's text
# (45.65 -> "45.6" from float64, "45.7" from float32).
POINTS = ps.array("float64", (2,))

IMAGE_FIELDS = (
    ps.Field("image", ps.binary(), nullable=True),
    ps.Field("image_url", ps.string(), nullable=True),
    ps.Field("image_sha256", ps.string(), nullable=True),
    ps.Field("source_sha256", ps.string(), nullable=True),
    ps.Field("sha256_mismatch", ps.bool_()),
    ps.Field("width", ps.int32(), nullable=True),
    ps.Field("height", ps.int32(), nullable=True),
)
IMAGE_FIELD_NAMES = tuple(f.name for f in IMAGE_FIELDS)


def _strings() -> ps.DataType:
    return ps.list_(ps.string())


def _nullable_strings() -> ps.DataType:
    return ps.list_(ps.string(), nullable_items=True)


Annotate = Callable[[GroupBatch], list[dict[str, Any]]]
Finish = Callable[[dict[str, Any], ImageInfo | None], None]


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    key: str | None  # the column that names the image; None: every row is one image
    required: tuple[str, ...]
    fields: tuple[ps.Field, ...]
    annotate: Annotate
    optional: tuple[str, ...] = ()
    published_sha256: str | None = None  # the column holding the dataset's own hash
    inline_images: str | None = None  # the column holding image bytes
    file_name_column: str | None = None
    n_validation: int = 0  # Molmo's held-out size (0: the dataset publishes its splits)
    finish: Finish | None = None
    extra_metadata: dict[str, str] = field(default_factory=dict)
    # Column sets of which the input must have at least one (pixmo-cap-qa's two layouts).
    one_of: tuple[tuple[str, ...], ...] = ()

    def schema(self) -> ps.Schema:
        return ps.Schema([*IMAGE_FIELDS, *self.fields])

    def metadata(self) -> dict[str, str]:
        return {"preset": self.name, "point_unit": POINT_UNIT, **self.extra_metadata}


def _col(batch: GroupBatch, name: str) -> list[Any]:
    if name not in batch.table.column_names:
        return [None] * batch.table.num_rows
    return batch.table.column(name).to_pylist()


def _lists(batch: GroupBatch, name: str) -> list[list[Any]]:
    return C.per_group(_col(batch, name), batch.offsets)


def _records(batch: GroupBatch, **fields: list[Any]) -> list[dict[str, Any]]:
    n = len(batch.groups)
    return [{k: v[i] for k, v in fields.items()} for i in range(n)]


def _ints(values: list[list[Any]]) -> list[list[int]]:
    return [[0 if v is None else int(v) for v in row] for row in values]


def _texts(values: list[list[Any]]) -> list[list[str]]:
    return [["" if v is None else str(v) for v in row] for row in values]


# ---------------------------------------------------------------------------------------------


def _cap(batch: GroupBatch) -> list[dict[str, Any]]:
    transcripts = [[list(t or []) for t in row] for row in _lists(batch, "transcripts")]
    return _records(batch, captions=_texts(_lists(batch, "caption")), transcripts=transcripts)


def _qa(batch: GroupBatch) -> list[dict[str, Any]]:
    return _records(
        batch,
        questions=_texts(_lists(batch, "question")),
        answers=_texts(_lists(batch, "answer")),
    )


def _cap_qa(batch: GroupBatch) -> list[dict[str, Any]]:
    # Newer uploads carry `messages` (alternating user/assistant turns); older ones one
    # question and one answer per row. Both become one conversation per row.
    q, a, m = _col(batch, "question"), _col(batch, "answer"), _col(batch, "messages")
    conversations = [
        [str(t) for t in msgs] if msgs else ["" if qi is None else qi, "" if ai is None else ai]
        for qi, ai, msgs in zip(q, a, m, strict=True)
    ]
    return _records(batch, conversations=C.per_group(conversations, batch.offsets))


def _points(batch: GroupBatch) -> list[dict[str, Any]]:
    pts = C.per_group(C.point_lists(batch.table.column("points")), batch.offsets)
    return _records(
        batch,
        labels=_texts(_lists(batch, "label")),
        points=pts,
        counts=[
            [len(p) if c is None else int(c) for c, p in zip(cs, ps_, strict=True)]
            for cs, ps_ in zip(_lists(batch, "count"), pts, strict=True)
        ],
        collection_methods=_texts(_lists(batch, "collection_method")),
    )


def _points_eval(batch: GroupBatch) -> list[dict[str, Any]]:
    masks = (
        C.mask_structs(batch.table.column("masks"))
        if "masks" in batch.table.column_names
        else [[] for _ in range(batch.table.num_rows)]
    )
    return _records(
        batch,
        labels=_texts(_lists(batch, "label")),
        points=C.per_group(C.point_lists(batch.table.column("points")), batch.offsets),
        masks=C.per_group(masks, batch.offsets),
    )


def _point_explanations(batch: GroupBatch) -> list[dict[str, Any]]:
    return _records(
        batch,
        questions=_texts(_lists(batch, "question")),
        responses=_texts(_lists(batch, "response")),
        parsed_responses=_lists(batch, "parsed_response"),
        alt_texts=[[list(v or []) for v in row] for row in _lists(batch, "alt_text")],
        inline_texts=[[list(v or []) for v in row] for row in _lists(batch, "inline_text")],
        point_groups=C.per_group(C.point_group_lists(batch.table.column("points")), batch.offsets),
    )


def _count(batch: GroupBatch) -> list[dict[str, Any]]:
    # Points stay in pixels here; `_count_to_percent` divides by the decoded image's size.
    pts = C.per_group(C.struct_of_lists_points(batch.table.column("points")), batch.offsets)
    return _records(
        batch,
        labels=_texts(_lists(batch, "label")),
        counts=_ints(_lists(batch, "count")),
        points=pts,
    )


def _count_to_percent(record: dict[str, Any], info: ImageInfo | None) -> None:
    if info is None or info.width <= 0 or info.height <= 0:
        # Without the image there is no size to divide by: no points rather than wrong ones.
        record["points"] = [C.EMPTY_POINTS for _ in record["points"]]
        return
    # Divided by (width / 100, height / 100) in float64, as Molmo's formatter divides: the
    # same quotient to the last bit.
    scale = np.array([info.width / 100, info.height / 100], dtype=np.float64)
    record["points"] = [np.asarray(p, dtype=np.float64) / scale for p in record["points"]]


def _docs(batch: GroupBatch) -> list[dict[str, Any]]:
    questions: list[list[str]] = []
    answers: list[list[str]] = []
    for qs in C.first_per_group(_col(batch, "questions"), batch.offsets):
        qs = qs or {}
        questions.append([str(q) for q in qs.get("question") or []])
        answers.append([str(a) for a in qs.get("answer") or []])
    return _records(
        batch,
        image_id=C.first_per_group(_col(batch, "image_id"), batch.offsets),
        questions=questions,
        answers=answers,
    )


PRESETS: dict[str, Preset] = {}


def _add(preset: Preset) -> None:
    PRESETS[preset.name] = preset


_add(
    Preset(
        "pixmo-cap",
        "dense captions: captions and their spoken transcripts",
        key="image_url",
        required=("image_url", "caption"),
        optional=("transcripts",),
        fields=(
            ps.Field("captions", _strings()),
            ps.Field("transcripts", ps.list_(_strings())),
        ),
        annotate=_cap,
        n_validation=2048,
    )
)
_add(
    Preset(
        "pixmo-ask-model-anything",
        "questions users asked about an image, with answers",
        key="image_url",
        required=("image_url", "question", "answer"),
        optional=("image_sha256",),
        published_sha256="image_sha256",
        fields=(ps.Field("questions", _strings()), ps.Field("answers", _strings())),
        annotate=_qa,
        n_validation=2048,
    )
)
_add(
    Preset(
        "pixmo-cap-qa",
        "synthetic QA from captions (question/answer rows or `messages` conversations)",
        key="image_url",
        required=("image_url",),
        optional=("question", "answer", "messages"),
        fields=(ps.Field("conversations", ps.list_(_strings())),),
        annotate=_cap_qa,
        one_of=(("messages",), ("question", "answer")),
        n_validation=2048,
    )
)
_add(
    Preset(
        "pixmo-points",
        "pointing and counting: labels, (N, 2) points in percent, counts",
        key="image_url",
        required=("image_url", "points", "label"),
        optional=("image_sha256", "count", "collection_method"),
        published_sha256="image_sha256",
        fields=(
            ps.Field("labels", _strings()),
            ps.Field("points", ps.list_(POINTS)),
            ps.Field("counts", ps.list_(ps.int64())),
            ps.Field("collection_methods", _strings()),
        ),
        annotate=_points,
        n_validation=2048,
    )
)
MASK = ps.struct(
    [
        ps.Field("height", ps.int32()),
        ps.Field("width", ps.int32()),
        ps.Field("bits", ps.binary()),
    ]
)
_add(
    Preset(
        "pixmo-points-eval",
        "the pointing test set: labels, points in percent, masks",
        key="image_url",
        required=("image_url", "points", "label"),
        optional=("image_sha256", "masks"),
        published_sha256="image_sha256",
        fields=(
            ps.Field("labels", _strings()),
            ps.Field("points", ps.list_(POINTS)),
            ps.Field("masks", ps.list_(ps.list_(MASK))),
        ),
        annotate=_points_eval,
    )
)
_add(
    Preset(
        "pixmo-point-explanations",
        "answers that point: responses with point groups, alt and inline texts",
        key="image_url",
        required=("image_url", "question", "response", "points"),
        optional=("image_sha256", "parsed_response", "alt_text", "inline_text"),
        published_sha256="image_sha256",
        fields=(
            ps.Field("questions", _strings()),
            ps.Field("responses", _strings()),
            ps.Field("parsed_responses", _nullable_strings()),
            ps.Field("alt_texts", ps.list_(_strings())),
            ps.Field("inline_texts", ps.list_(_strings())),
            ps.Field("point_groups", ps.list_(ps.list_(POINTS))),
        ),
        annotate=_point_explanations,
        n_validation=1024,
    )
)
_add(
    Preset(
        "pixmo-count",
        "counting: labels, counts, points converted from pixels to percent",
        key="image_url",
        required=("image_url", "count", "points", "label"),
        optional=("image_sha256",),
        published_sha256="image_sha256",
        fields=(
            ps.Field("labels", _strings()),
            ps.Field("counts", ps.list_(ps.int64())),
            ps.Field("points", ps.list_(POINTS)),
        ),
        annotate=_count,
        finish=_count_to_percent,
    )
)
_add(
    Preset(
        "pixmo-docs",
        "charts, diagrams, tables, other: inline images with their questions and answers",
        key="image_id",
        required=("image", "image_id", "questions"),
        inline_images="image",
        fields=(
            ps.Field("image_id", ps.string()),
            ps.Field("questions", _strings()),
            ps.Field("answers", _strings()),
        ),
        annotate=_docs,
    )
)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(
            f"unknown preset {name!r}; the presets are {', '.join(sorted(PRESETS))}"
        ) from None


def check_columns(preset: Preset, names: list[str], source: str) -> None:
    """A clear error when the input lacks a column the preset reads."""
    from .errors import InputError

    missing = [c for c in preset.required if c not in names]
    if missing:
        raise InputError(
            f"{source}: not {preset.name} as published: no column "
            f"{', '.join(repr(c) for c in missing)} (it has: {', '.join(names)})"
        )
    if preset.one_of and not any(all(c in names for c in cols) for cols in preset.one_of):
        layouts = " or ".join("+".join(repr(c) for c in cols) for cols in preset.one_of)
        raise InputError(
            f"{source}: not {preset.name} as published: it needs {layouts} "
            f"(it has: {', '.join(names)})"
        )
