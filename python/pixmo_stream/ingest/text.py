"""Points as Molmo writes them in its training text (``olmo/data/data_formatter.py``).

Points are in percent of the (EXIF-oriented) image's width and height, 0-100, which is the
unit every pixmo-stream dataset stores (docs/SCHEMA.md). Each point is rounded to one
decimal, and the points are sorted by x, then y, after rounding, as Molmo sorts them.

Pointing and counting differ only in the sentence around the points: pointing answers are
the points element itself, counting answers read "Counting the <points ...>...</points>
shows a total of N.". Both answer "There are none." when there are no points. The released
Molmo loader formats pixmo-points' two subsets with each other's style (docs/INGEST.md);
these helpers take the style from the caller, so use ``collection_method`` as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

Style = Literal["pointing", "counting"]
NO_POINTS = "There are none."


def _sorted_rounded(points: np.ndarray | Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    rounded = [(round(float(x), 1), round(float(y), 1)) for x, y in arr]
    rounded.sort()
    return rounded


def points_text(
    points: np.ndarray | Sequence[Sequence[float]], label: str, alt: str | None = None
) -> str:
    """``<point x="12.3" y="45.6" alt="cat">cat</point>`` for one point, ``<points x1=...
    y1=... x2=... y2=... alt="cat">cat</points>`` for several, "There are none." for none.

    ``points`` is ``(N, 2)`` in percent. ``alt`` defaults to ``label``; both are written as
    given, unescaped, as Molmo writes them (Molmo lowercases labels before it calls this; do
    that first if you want it).
    """
    pts = _sorted_rounded(points)
    if not pts:
        return NO_POINTS
    alt_attr = label if alt is None else alt
    body = label
    if len(pts) == 1:
        x, y = pts[0]
        return f'<point x="{x:.1f}" y="{y:.1f}" alt="{alt_attr}">{body}</point>'
    coords = " ".join(f'x{i}="{x:.1f}" y{i}="{y:.1f}"' for i, (x, y) in enumerate(pts, start=1))
    return f'<points {coords} alt="{alt_attr}">{body}</points>'


def counting_text(
    points: np.ndarray | Sequence[Sequence[float]], label: str, alt: str | None = None
) -> str:
    """ "Counting the <points ...>label</points> shows a total of N.", or "There are none."."""
    n = len(_sorted_rounded(points))
    if n == 0:
        return NO_POINTS
    return f"Counting the {points_text(points, label, alt)} shows a total of {n}."


def answer_text(
    points: np.ndarray | Sequence[Sequence[float]], label: str, style: Style | str
) -> str:
    """The answer for one label in the given style: ``"pointing"`` or ``"counting"``
    (pixmo-points' ``collection_method`` values)."""
    if style == "pointing":
        return points_text(points, label)
    if style == "counting":
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
