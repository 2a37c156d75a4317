"""Ingestion: PixMo presets and generic inputs, grouped one record per image, into datasets.

    from pixmo_stream.ingest import convert
    report = convert("pixmo-points.parquet", "out/", preset="pixmo-points", images="cache/")

See docs/INGEST.md (how) and docs/SCHEMA.md (what each preset writes).
"""

from __future__ import annotations

from .api import PRESET_NAMES, convert, excluded_urls
from .convert import REPORT_NAME, ConvertReport, Failure
from .errors import InputError, MergeError
from .images import BrokenImage, ImageInfo, check_image
from .merge import merge
from .presets import IMAGE_FIELDS, POINT_UNIT, PRESETS, Preset, get_preset
from .sources import FolderImages, ImageRef, InlineImages, MissingImage, NoImages, molmo_cache_name

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
