"""The ``pixmo-stream`` command-line tool, one module per command (see ``app.COMMANDS``).

``app`` is imported lazily, so that library modules (``pixmo_stream.demo``) can use the
shared helpers in ``cli.common`` without importing every command. (It is not named ``main``:
importing a submodule of that name would replace this function on the package.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit code (the console script passes it to sys.exit)."""
    from .app import main as run_main

    return run_main(argv)


def __getattr__(name: str) -> Any:
    # Names tests and scripts have used from the single-module CLI.
    if name in ("format_value", "format_record", "sniff_image"):
        from . import formatting

        return getattr(formatting, name)
    raise AttributeError(f"module 'pixmo_stream.cli' has no attribute {name!r}")
