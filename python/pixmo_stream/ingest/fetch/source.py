"""Converting what a fetch downloaded: the cache as an image source that says, for every image
that is not there, why its download failed.

    from pixmo_stream.ingest import convert
    from pixmo_stream.ingest.fetch import FetchedImages
    convert("points.parquet", "out/", preset="pixmo-points", source=FetchedImages("cache/"))

`pixmo_stream.ingest.convert` with ``fetch=FetchOptions(...)`` (``convert --fetch``) downloads
first, then converts through this source.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..sources import FolderImages, ImageRef, MissingImage
from .errors import FetchInterrupted
from .options import FetchOptions
from .report import REPORT_FILE, FetchReport
from .state import STATE_FILE, FetchState

# One read-only view of a cache's fetch state per process (convert's workers and Ray tasks
# each get a copy of the source, which must stay picklable): opened on the first missing image.
_STATES: dict[str, FetchState] = {}


@dataclass(frozen=True)
class FetchedImages:
    """The images of a fetch cache (files named as Molmo's cache names them). An image that
    is not there is `MissingImage` with the cause its last fetch recorded (``not_found``,
    ``opted_out``, ``timeout``, ``sha_mismatch``, ...), and ``missing`` where no fetch has
    recorded one (never attempted, or a file removed since)."""

    root: str

    def read(self, ref: ImageRef) -> bytes:
        try:
            return FolderImages(self.root, "url-sha256").read(ref)
        except MissingImage:
            state = self._state()
            rec = state.get(ref.url) if state is not None and ref.url else None
            if rec is None or rec.outcome.cached:
                raise
            tries = f"{rec.attempts} attempt{'s' if rec.attempts != 1 else ''}"
            raise MissingImage(
                f"not downloaded: {rec.detail} ({tries})", cause=rec.outcome.value
            ) from None

    def _state(self) -> FetchState | None:
        key = os.path.abspath(self.root)
        state = _STATES.get(key)
        if state is None and os.path.exists(os.path.join(key, STATE_FILE)):
            state = _STATES[key] = FetchState(key)
        return state


def fetch_parquet_images(
    parquets: Sequence[str], cache: str, options: FetchOptions, *, progress: bool = False
) -> FetchReport:
    """Downloads the images the ``image_url`` column of ``parquets`` names (checked against
    ``image_sha256`` where there is one) into ``cache``, and writes the report there as
    ``pixmo-stream fetch`` does. On Ctrl-C the report of what was done is written, and
    `FetchInterrupted` raised."""
    from .fetcher import fetch_images  # aiohttp: only when a fetch runs
    from .parquet import parquet_urls

    try:
        report = fetch_images(parquet_urls(parquets), cache, options=options, progress=progress)
    except FetchInterrupted as stop:
        stop.report.write(os.path.join(cache, REPORT_FILE))
        raise
    report.write(os.path.join(cache, REPORT_FILE))
    return report
