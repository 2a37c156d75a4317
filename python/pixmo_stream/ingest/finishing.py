"""Finishing a record: read its image from the source, check it, fill in its size and hash.

This part runs where the images are read (convert's worker processes, or Ray tasks), so it
sits below both engines (`pixmo_stream.ingest.pipeline`, `pixmo_stream.ray.convert`) and
imports neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .images import BrokenImage, Check, check_image, sha256_hex
from .report import Failure
from .sources import ImageRef, ImageSource, MissingImage, NoImages


@dataclass(frozen=True)
class Pending:
    """A record whose image is not read yet."""

    record: dict[str, Any]
    ref: ImageRef
    published_sha256: str | None
    input_rows: tuple[int, ...]


@dataclass(frozen=True)
class FinishOptions:
    source: ImageSource
    check: Check
    keep_missing: bool
    finish: Callable[[dict[str, Any], Any], None] | None


Finished = tuple[dict[str, Any] | None, Failure | None]
"""A record (``None`` when it is skipped) and what went wrong with its image, if anything."""

Job = tuple[list[Pending], FinishOptions]


def finish_record(item: Pending, opts: FinishOptions) -> Finished:
    rec: dict[str, Any] = {
        "image": None,
        "image_url": item.ref.url,
        "image_sha256": None,
        "source_sha256": item.published_sha256,
        "sha256_mismatch": False,
        "width": None,
        "height": None,
    }
    failure = None
    info = None
    if not isinstance(opts.source, NoImages):
        try:
            data = opts.source.read(item.ref)
            info = check_image(data, opts.check)
        except MissingImage as e:
            failure = Failure(e.cause, item.ref.url, list(item.input_rows), str(e))
        except BrokenImage as e:
            failure = Failure(e.cause, item.ref.url, list(item.input_rows), e.detail)
        else:
            digest = sha256_hex(data)
            rec.update(image=data, image_sha256=digest, width=info.width, height=info.height)
            published = (item.published_sha256 or "").strip().lower()
            rec["sha256_mismatch"] = bool(published) and published != digest
    rec.update(item.record)
    if opts.finish is not None:
        opts.finish(rec, info)
    if failure is not None and not opts.keep_missing:
        return None, failure
    return rec, failure


def finish_batch(job: Job) -> list[Finished]:
    items, opts = job
    return [finish_record(item, opts) for item in items]
