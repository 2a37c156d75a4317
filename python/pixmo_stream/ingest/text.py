"""Points as Molmo writes them in its training text (``olmo/data/data_formatter.py``).

Points are in percent of the (EXIF-oriented) image's width and height, 0-100, which is the
unit every pixmo-stream dataset stores (docs/SCHEMA.md). Each coordinate is rounded to one
decimal as numpy rounds (``x * 10`` rounded half to even, then ``/ 10``, in the points'
floating type: 0.15 -> 0.2 where Python's ``round`` gives 0.1), and the points are sorted by
``x * 10000 + y`` after rounding, as Molmo sorts them.

The floating type matters: Molmo formats the published float64 values (45.65 -> "45.6"),
while the same value stored as float32 reads 45.650001... (-> "45.7"). pixmo-stream stores
points as float64; ``dtype=np.float32`` reproduces Molmo's pixmo-count loader, which keeps
its points in float32.

Pointing and counting differ only in the sentence around the points: pointing answers are
the points element itself, counting answers read "Counting the <points ...>...</points>
shows a total of N.". Both answer "There are none." when there are no points. Which style
a label gets is the training mixture's choice (Molmo lists pixmo-points once per style);
``pixmo_stream.molmo.Formatter`` builds whole conversations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Style = Literal["pointing", "counting"]
NO_POINTS = "There are none."
Points = np.ndarray | Sequence[Sequence[float]]


def rounded_points(points: Points, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
    """``(N, 2)`` points rounded to one decimal by numpy in ``dtype``, sorted as Molmo sorts
    them (by ``x * 10000 + y``, ties kept in input order)."""
    arr = np.round(np.asarray(points, dtype=dtype).reshape(-1, 2), 1)
    key = arr[:, 0] * arr.dtype.type(10000) + arr[:, 1]
    return arr[np.argsort(key, kind="stable")]


def point_tag(points: Points, label: str, alt: str, dtype: npt.DTypeLike = np.float64) -> str:
    """Molmo's point element, whatever the number of points: ``<point x=".." y=".."
    alt="alt">label</point>`` for one, ``<points x1=".." y1=".." ... alt="alt">label</points>``
    otherwise (also for none, as Molmo writes it; pointing answers say "There are none."
    instead: see `points_text`)."""
    pts = rounded_points(points, dtype).tolist()  # Python floats: the same values, fast to print
    if len(pts) == 1:
        x, y = pts[0]
        return f'<point x="{x:.1f}" y="{y:.1f}" alt="{alt}">{label}</point>'
    coords = " ".join(f'x{i}="{x:.1f}" y{i}="{y:.1f}"' for i, (x, y) in enumerate(pts, start=1))
    return f'<points {coords} alt="{alt}">{label}</points>'


def points_text(
    points: Points, label: str, alt: str | None = None, dtype: npt.DTypeLike = np.float64
) -> str:
    """``<point x="12.3" y="45.6" alt="cat">cat</point>`` for one point, ``<points x1=...
    y1=... x2=... y2=... alt="cat">cat</points>`` for several, "There are none." for none.

    ``points`` is ``(N, 2)`` in percent. ``alt`` defaults to ``label``; both are written as
    given, unescaped, as Molmo writes them (Molmo lowercases labels before it calls this; do
    that first if you want it).
    """
    if len(np.asarray(points).reshape(-1, 2)) == 0:
        return NO_POINTS
    return point_tag(points, label, label if alt is None else alt, dtype)


def counting_text(
    points: Points, label: str, alt: str | None = None, dtype: npt.DTypeLike = np.float64
) -> str:
    """ "Counting the <points ...>label</points> shows a total of N.", or "There are none."."""
    n = len(np.asarray(points).reshape(-1, 2))
    if n == 0:
        return NO_POINTS
    return f"Counting the {points_text(points, label, alt, dtype)} shows a total of {n}."


def answer_text(points: Points, label: str, style: Style | str) -> str:
    """The answer for one label in the given style: ``"pointing"`` or ``"counting"``
    (``"point_count"``, Molmo's name of the counting style, is accepted too)."""
    if style == "pointing":
        return points_text(points, label)
    if style in ("counting", "point_count"):
        return counting_text(points, label)
    raise ValueError(f"style must be 'pointing' or 'counting', got {style!r}")


def record_answers(record: Mapping[str, Any]) -> list[str]:
    """The answer for every label of a pixmo-points record (`labels`, `points`,
    `collection_methods`), each in its own collection method's style; labels lowercased, as
    Molmo lowercases them."""
    return [
        answer_text(points, label.lower(), style)
        for label, points, style in zip(
            record["labels"], record["points"], record["collection_methods"], strict=True
        )
    ]
