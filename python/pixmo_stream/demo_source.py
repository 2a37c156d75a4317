"""The demo's input: a small pixmo-points-shaped parquet (one row per label, image URLs
repeated, points as ``list<{x, y}>`` in percent) and a folder of its images named as
Molmo's downloader names them (sha256 of the URL), so that the demo converts it exactly as
``pixmo-stream convert --preset pixmo-points`` converts the real thing."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ingest.sources import molmo_cache_name


@dataclass
class DemoSource:
    parquet: str
    images: str
    num_rows: int
    num_images: int
    image_bytes: int
    expected: dict[int, dict[str, Any]]  # a sample of records: the fields convert must keep


def make_source(
    root: str,
    n: int,
    seed: int,
    preset: str,
    sample_ids: set[int],
    tick: Callable[[int], None] | None = None,
    records: Iterable[dict[str, Any]] | None = None,
) -> DemoSource:
    """Writes the parquet and the image folder under ``root`` for records ``0 .. n`` of
    ``synthetic`` (``seed``, ``preset``), or for ``records`` when given (``synthetic``'s
    record layout); ``expected`` holds the fields convert must keep for ``sample_ids``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import synthetic

    images_dir = os.path.join(root, "images")
    os.makedirs(images_dir, exist_ok=True)
    rows: list[dict[str, Any]] = []
    expected: dict[int, dict[str, Any]] = {}
    total = 0
    # JPEG encoding is the slow part: one generator process per core for larger runs.
    workers = 0 if n >= 256 else 1
    for i, rec in enumerate(
        synthetic.generate_records(n, seed=seed, preset=preset, workers=workers)
    ):
        url, image = rec["image_url"], rec["image"]
        with open(os.path.join(images_dir, molmo_cache_name(url)), "wb") as f:
            f.write(image)
        total += len(image)
        labels = rec["point_labels"] or ["nothing"]  # an image with nothing to point at
        counts = rec["point_counts"] or [0]
        ends = np.cumsum(counts)
        groups = [rec["points"][e - c : e] for c, e in zip(counts, ends, strict=True)]
        method = rec["meta"]["collection_method"]
        for label, pts in zip(labels, groups, strict=True):
            rows.append(
                {
                    "image_url": url,
                    "image_sha256": rec["image_sha256"],
                    "points": [{"x": float(x), "y": float(y)} for x, y in pts],
                    "count": len(pts),
                    "label": label,
                    "collection_method": method,
                }
            )
        if i in sample_ids:
            expected[i] = {"image": image, "image_url": url, "labels": labels, "points": groups}
        if tick is not None:
            tick(1)
    xy = pa.struct([("x", pa.float64()), ("y", pa.float64())])
    schema = pa.schema(
        [
            ("image_url", pa.string()),
            ("image_sha256", pa.string()),
            ("points", pa.list_(xy)),
            ("count", pa.int64()),
            ("label", pa.string()),
            ("collection_method", pa.string()),
        ]
    )
    parquet = os.path.join(root, "pixmo-points-demo.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), parquet)
    return DemoSource(parquet, images_dir, len(rows), n, total, expected)
