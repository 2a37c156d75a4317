"""Datasets on object storage: how a URL is opened (the store's options and the node cache).

`Dataset`, `StreamingDataset`, `Mixture`, `Writer` and the CLI take ``s3://``, ``gs://``,
``az://`` and ``http(s)://`` URLs as well as paths. Reads are ranged requests made by the Rust
core (the `object_store` crate); credentials and settings come from the environment as that
ecosystem expects (``AWS_ACCESS_KEY_ID``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``, ...,
``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_ACCOUNT_NAME``, ...), and from
``storage_options``, which override them. See docs/STORAGE.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

__all__ = ["CacheArg", "default_cache_dir", "is_url", "open_arg", "parse_size"]

_SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss", "azure", "http", "https")
#: The node cache's size limit when none is given (``PIXMO_STREAM_CACHE_LIMIT`` overrides it).
DEFAULT_CACHE_LIMIT = 64 << 30

CacheArg: TypeAlias = "bool | str | os.PathLike[str] | None"

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_UNITS.update({"ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40})


def parse_size(value: int | str) -> int:
    """Bytes from ``64GiB``, ``500MB``, ``32m`` or a plain number."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kmgt]i?)?b?\s*", str(value).lower())
    if match is None:
        raise ValueError(f"not a size: {value!r} (try 64GiB or 500MB)")
    return int(float(match[1]) * _UNITS[match[2] or ""])


def is_url(path: str | os.PathLike[str]) -> bool:
    """Is `path` an object-storage URL (rather than a local path)?"""
    text = os.fspath(path)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in _SCHEMES


def default_cache_dir() -> Path:
    """``PIXMO_STREAM_CACHE``, else ``$XDG_CACHE_HOME/pixmo-stream`` (``~/.cache/...``)."""
    if env := os.environ.get("PIXMO_STREAM_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pixmo-stream"


def _option_text(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TypeError(f"storage option {key!r}: expected a str, bool or number, not {value!r}")


def open_arg(
    path: str,
    storage_options: Mapping[str, Any] | None,
    cache: CacheArg,
    cache_limit: int | str | None,
) -> tuple[dict[str, str], tuple[str, int] | None] | None:
    """What the native reader takes for `path`: None for a local path, else the store's
    options as strings and the node cache (directory, size limit) or None."""
    if not is_url(path):
        return None
    options = {str(k): _option_text(str(k), v) for k, v in (storage_options or {}).items()}
    if cache is None or cache is False:
        return options, None
    directory = default_cache_dir() if cache is True else Path(os.fspath(cache))
    if cache_limit is None:
        cache_limit = os.environ.get("PIXMO_STREAM_CACHE_LIMIT", DEFAULT_CACHE_LIMIT)
    return options, (str(directory), parse_size(cache_limit))
