"""Errors that stop a fetch run as a whole (one URL failing is an outcome, never an error)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pixmo_stream._native import PixmoError

if TYPE_CHECKING:
    from .report import FetchReport


class FetchError(PixmoError):
    """The run could not start or continue: an unusable cache directory or state file."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class FetchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run; what was done is kept, and ``report`` says what that was."""

    def __init__(self, report: FetchReport) -> None:
        super().__init__("fetch interrupted")
        self.report = report
