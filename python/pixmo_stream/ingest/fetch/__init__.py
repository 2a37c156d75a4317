"""Download image URLs into a Molmo-compatible cache: concurrent, polite, resumable.

    from pixmo_stream.ingest.fetch import FetchOptions, fetch_images
    report = fetch_images([(url, sha256_or_none), ...], "images/", options=FetchOptions())
    print(report.format())

See ``docs/FETCH.md``.
"""

from __future__ import annotations

from .cache import cache_name
from .errors import FetchError, FetchInterrupted
from .fetcher import fetch_images
from .options import FetchOptions
from .outcome import Outcome
from .report import FetchReport
from .state import FetchState, UrlRecord

__all__ = [
    "FetchError",
    "FetchInterrupted",
    "FetchOptions",
    "FetchReport",
    "FetchState",
    "Outcome",
    "UrlRecord",
    "cache_name",
    "fetch_images",
]
