"""``pixmo-stream fetch``: the command lives with the fetcher; the CLI registers it from here,
with the options every command shares (``--quiet``, ``--debug`` after the command name)."""

from __future__ import annotations

from typing import Any

from pixmo_stream.ingest.fetch.command import add_parser as _add_parser
from pixmo_stream.ingest.fetch.command import run

from .common import common_options

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    _add_parser(subparsers, parents=[common_options()])
