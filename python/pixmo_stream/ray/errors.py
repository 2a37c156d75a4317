"""Errors of the Ray integration, `PixmoError` subclasses."""

from __future__ import annotations

from .._native import PixmoError


class RayWriteError(PixmoError):
    """A Ray write that cannot be committed: an output that is not empty, blocks whose
    schemas differ, nothing to write and no schema to write it with. Names the output."""
