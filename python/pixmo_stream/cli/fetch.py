"""``pixmo-stream fetch``: the command lives with the fetcher; the CLI registers it from here."""

from pixmo_stream.ingest.fetch.command import add_parser, run

__all__ = ["add_parser", "run"]
