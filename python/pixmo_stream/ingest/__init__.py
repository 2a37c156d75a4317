"""Ingestion: PixMo presets and generic inputs, grouped one record per image, into datasets.

    from pixmo_stream.ingest import convert
    report = convert("pixmo-points.parquet", "out/", preset="pixmo-points", images="cache/")

See docs/INGEST.md (how) and docs/SCHEMA.md (what each preset writes).
"""

from __future__ import annotations

from .._lazy import lazy_names

# Names load on first use, so that the CLI can build its parser from this package without
# importing pyarrow or aiohttp, which only the commands that run need.
_LAZY = {
    "PRESET_NAMES": ".api",
    "convert": ".api",
    "excluded_urls": ".api",
    "REPORT_NAME": ".report",
    "ConvertReport": ".report",
    "Failure": ".report",
    "InputError": ".errors",
    "MergeError": ".errors",
    "BrokenImage": ".images",
    "ImageInfo": ".images",
    "check_image": ".images",
    "merge": ".merging",
    "IMAGE_FIELDS": ".presets",
    "POINT_UNIT": ".presets",
    "PRESETS": ".presets",
    "Preset": ".presets",
    "get_preset": ".presets",
    "FolderImages": ".sources",
    "ImageRef": ".sources",
    "InlineImages": ".sources",
    "MissingImage": ".sources",
    "NoImages": ".sources",
    "molmo_cache_name": ".sources",
}
__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = [
    "IMAGE_FIELDS",
    "POINT_UNIT",
    "PRESETS",
    "PRESET_NAMES",
    "REPORT_NAME",
    "BrokenImage",
    "ConvertReport",
    "Failure",
    "FolderImages",
    "ImageInfo",
    "ImageRef",
    "InlineImages",
    "InputError",
    "MergeError",
    "MissingImage",
    "NoImages",
    "Preset",
    "check_image",
    "convert",
    "excluded_urls",
    "get_preset",
    "merge",
    "molmo_cache_name",
]
