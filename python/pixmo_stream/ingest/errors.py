"""Errors of the ingest layer, all `PixmoError` subclasses."""

from __future__ import annotations

from pixmo_stream._native import PixmoError


class InputError(PixmoError):
    """An input that cannot be converted as asked: a missing column, an unreadable file, a
    layout that is not the one the preset reads. The message names the file."""


class MergeError(PixmoError):
    """Datasets that cannot be merged: schemas that differ, a missing manifest, a clash."""
