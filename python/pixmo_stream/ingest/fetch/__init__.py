"""Download image URLs into a Molmo-compatible cache: concurrent, polite, resumable.

    from pixmo_stream.ingest.fetch import FetchOptions, fetch_images
    report = fetch_images([(url, sha256_or_none), ...], "images/", options=FetchOptions())
    print(report.format())

See ``docs/FETCH.md``.
"""

from __future__ import annotations

from ..._lazy import lazy_names

# Names load on first use, so that the CLI can build its parser from this package without
# importing pyarrow or aiohttp, which only the commands that run need.
_LAZY = {
    "cache_name": ".cache",
    "FetchError": ".errors",
    "FetchInterrupted": ".errors",
    "fetch_images": ".fetcher",
    "FetchedImages": ".source",
    "fetch_parquet_images": ".source",
    "FetchOptions": ".options",
    "Outcome": ".outcome",
    "FetchReport": ".report",
    "FetchState": ".state",
    "UrlRecord": ".state",
}
__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = [
    "FetchError",
    "FetchInterrupted",
    "FetchOptions",
    "FetchReport",
    "FetchState",
    "FetchedImages",
    "Outcome",
    "UrlRecord",
    "cache_name",
    "fetch_images",
    "fetch_parquet_images",
]
