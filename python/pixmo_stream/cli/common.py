"""Helpers every command shares: exit codes, the error type, progress bars, human units,
opening a dataset from any path that names it, tables."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import pixmo_stream as ps
from pixmo_stream._native import Blob

PROG = "pixmo-stream"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
MANIFEST_NAME = "manifest.json"

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 bad data or a failed command (a failed checksum, a corrupt file, "
    "a directory that exists but holds no manifest.json); 2 usage error or a path that does "
    "not exist."
)


class CommandError(Exception):
    """A failure the user can act on; printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def human_bytes(n: float) -> str:
    """Decimal units, as disks and network speeds are quoted: 1 MB = 10**6 bytes."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def progress(
    iterable: Any = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    quiet: bool = False,
    unit_scale: bool = False,
) -> Any:
    """A tqdm bar on stderr, silent when stderr is not a terminal or with --quiet."""
    from tqdm import tqdm

    disable = quiet or not _isatty(sys.stderr)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,
        file=sys.stderr,
        disable=disable,
        leave=False,
        dynamic_ncols=True,
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def dataset_path(path: str) -> str:
    """The dataset a path names: a dataset directory, its ``manifest.json``, or one ``.pxs``
    shard file (read as a dataset of its own). A path that does not exist is a usage error."""
    if not os.path.exists(path):
        raise CommandError(f"no such file or directory: {path}", EXIT_USAGE)
    if os.path.basename(path) == MANIFEST_NAME and os.path.isfile(path):
        return os.path.dirname(path) or "."
    return path


def open_dataset(path: str) -> Any:
    return ps.Dataset(dataset_path(path))


def schema_to_dict(schema: Any) -> dict[str, Any]:
    """The FORMAT.md dict of a schema given as that dict, a JSON string or a ps.Schema."""
    if isinstance(schema, dict):
        return schema
    if isinstance(schema, str | bytes):
        return dict(json.loads(schema))
    return dict(schema.to_dict())


def type_label(dtype: dict[str, Any]) -> str:
    """One-line name of a type, as `str(DataType)` writes it: ``list<struct>``,
    ``array<float32, (N, 2)>``, ``string``."""
    kind = dtype.get("kind", "?")
    if kind == "array":
        dims = "".join(f", {d}" for d in dtype.get("shape", []))
        return f"array<{dtype.get('dtype', '?')}, (N{dims})>"
    if kind == "list":
        item = type_label(dtype.get("item", {}))
        return f"list<{item}{'?' if dtype.get('item_nullable') else ''}>"
    return str(kind)


def _type_children(dtype: dict[str, Any]) -> list[dict[str, Any]]:
    """Struct fields reachable through nested lists, shown as children in the tree."""
    while dtype.get("kind") == "list":
        dtype = dtype.get("item", {})
    return list(dtype.get("fields", [])) if dtype.get("kind") == "struct" else []


def schema_tree(schema: dict[str, Any]) -> list[str]:
    lines: list[str] = []

    def walk(fields: list[dict[str, Any]], prefix: str) -> None:
        for i, field in enumerate(fields):
            last = i == len(fields) - 1
            null = "  (nullable)" if field.get("nullable") else ""
            lines.append(
                f"{prefix}{'└── ' if last else '├── '}{field['name']}: "
                f"{type_label(field['type'])}{null}"
            )
            walk(_type_children(field["type"]), prefix + ("    " if last else "│   "))

    walk(list(schema.get("fields", [])), "")
    return lines


def column_totals(info: dict[str, Any]) -> list[dict[str, Any]]:
    """Per top-level column: stored and raw bytes over all row groups, and codecs used."""
    totals: dict[str, dict[str, Any]] = {}
    for shard in info.get("shards", []):
        for rg in shard.get("row_groups", []):
            for col in rg.get("columns", []):
                t = totals.setdefault(
                    col["name"],
                    {"name": col["name"], "stored_bytes": 0, "raw_bytes": 0, "codecs": []},
                )
                t["stored_bytes"] += int(col["stored_len"])
                t["raw_bytes"] += int(col["raw_len"])
                if col["codec"] not in t["codecs"]:
                    t["codecs"].append(col["codec"])
    out = list(totals.values())
    for t in out:
        t["ratio"] = round(t["raw_bytes"] / t["stored_bytes"], 3) if t["stored_bytes"] else None
    return out


def json_default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview | Blob):
        return f"<{len(obj)} bytes>"
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [fmt(headers), fmt(["─" * w for w in widths]), *(fmt(r) for r in rows)]


def printer(out: TextIO) -> Any:
    def p(line: str = "") -> None:
        out.write(line + "\n")

    return p


def one_line(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError) and e.filename is not None:
        if e.strerror and e.strerror != "No such file or directory":
            return f"{e.filename}: {e.strerror}"  # e.g. a write that has not finished
        return f"no such file or directory: {e.filename}"
    text = " ".join(str(e).split())
    return text or type(e).__name__


def common_options() -> argparse.ArgumentParser:
    """--quiet and --debug, accepted after the command name too. SUPPRESS keeps the
    command's copy from resetting a value given before the command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars"
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show a full traceback on errors",
    )
    return common


def add_command(subparsers: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A command's parser with the shared options and the exit codes in its help."""
    kwargs.setdefault("epilog", EXIT_CODES_HELP)
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, parents=[common_options()], **kwargs
    )
    return parser


DATASET_PATH_HELP = "dataset directory, its manifest.json, or one .pxs shard file"


_SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def byte_size(text: str) -> int:
    """``32MB``, ``500k``, ``1GiB`` or a plain number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kmg]i?)?b?\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 32MB or 500k)")
    return int(float(match[1]) * _SIZE_UNITS[match[2] or ""])
