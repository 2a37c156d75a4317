"""Download image URLs into a Molmo-compatible cache: concurrent, polite, resumable.

    from pixmo_stream.ingest.fetch import FetchOptions, fetch_images
    report = fetch_images([(url, sha256_or_none), ...], "images/", options=FetchOptions())
    print(report.format())

See ``docs/FETCH.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names load on first use: the CLI builds its parser from these packages without paying
# for pyarrow or aiohttp, which only the commands that run need.
_LAZY = {
    "cache_name": ".cache",
    "FetchError": ".errors",
    "FetchInterrupted": ".errors",
    "fetch_images": ".fetcher",
    "FetchOptions": ".options",
    "Outcome": ".outcome",
    "FetchReport": ".report",
    "FetchState": ".state",
    "UrlRecord": ".state",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
