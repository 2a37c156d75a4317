"""The parser and the error boundary of the ``pixmo-stream`` tool.

Each command is a module with ``add_parser(subparsers)`` and ``run(args, out) -> int``;
``COMMANDS`` lists them in the order ``--help`` shows them. Errors are one readable line on
stderr (``--debug`` shows the traceback instead); exit codes are in ``EXIT_CODES_HELP``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

import pixmo_stream as ps
from pixmo_stream.storage import is_url

from . import convert, demo, fetch, head, inspect, merge, verify
from .common import (
    EXIT_CODES_HELP,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_USAGE,
    PROG,
    CommandError,
    one_line,
)

COMMANDS: tuple[ModuleType, ...] = (demo, convert, fetch, merge, inspect, verify, head)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The parser, and which module runs each command name."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert, store, inspect, check and stream PixMo-style multimodal "
        "training data.",
        epilog=f"{EXIT_CODES_HELP} Run '%(prog)s COMMAND --help' for details.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {getattr(ps, '__version__', 'unknown')}"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show a full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    runners: dict[str, ModuleType] = {}
    for module in COMMANDS:
        before = set(sub.choices)
        module.add_parser(sub)
        for name in set(sub.choices) - before:
            runners[name] = module
    return parser, runners


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit code (the console script passes it to sys.exit)."""
    parser, runners = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    out = sys.stdout
    try:
        return int(runners[args.command].run(args, out))
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # `pixmo-stream head ... | head -3`: the reader went away; that is not an error.
        _silence_stdout()
        return EXIT_OK
    except Exception as e:
        if args.debug:
            raise
        code, message = _describe(e)
        if isinstance(e, FileNotFoundError) and _names_missing_data(e, args):
            code = EXIT_FAILURE  # the path is there; what it should hold is not: bad data
        expected = isinstance(e, CommandError | ps.PixmoError | OSError)
        _error(message if expected else f"{message} (a bug? --debug shows the traceback)")
        return code
    except BaseException as e:
        # A panic in the native core arrives as pyo3's PanicException, which is no Exception.
        if type(e).__name__ != "PanicException" or args.debug:
            raise
        _error(f"internal error in the native core: {one_line(e)} (a bug; --debug shows it)")
        return EXIT_FAILURE


def _names_missing_data(e: FileNotFoundError, args: argparse.Namespace) -> bool:
    """Is the missing file part of a dataset that is there (a shard its manifest lists),
    rather than the dataset the command was given?"""
    path = getattr(args, "path", None)
    missing = str(e.filename or "")
    if is_url(missing):
        # A store has no directories: only a missing shard of a dataset that opened is data.
        given = {str(p).rstrip("/") for p in [path, *getattr(args, "inputs", [])] if p}
        return missing.endswith(".pxs") and missing not in given
    return path is not None and not is_url(path) and os.path.exists(path)


def _describe(e: Exception) -> tuple[int, str]:
    if isinstance(e, CommandError):
        return e.code, str(e)
    if isinstance(e, FileNotFoundError):
        return EXIT_USAGE, one_line(e)
    if isinstance(e, ps.StorageError):  # failed after the client's retries: try again later
        return EXIT_STORAGE, f"storage error: {one_line(e)}"
    if isinstance(e, ps.PixmoError):
        return EXIT_FAILURE, f"{type(e).__name__}: {one_line(e)}"
    if isinstance(e, OSError):
        return EXIT_FAILURE, one_line(e)
    return EXIT_FAILURE, f"{type(e).__name__}: {one_line(e)}"


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
