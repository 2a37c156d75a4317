"""Helpers every command shares: exit codes, the error type, progress bars, human units,
opening a dataset from any path or URL that names it (and the object-storage options), tables."""

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
from pixmo_stream.storage import is_url, parse_size

PROG = "pixmo-stream"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_STORAGE = 3
MANIFEST_NAME = "manifest.json"

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 bad data or a failed command (a failed checksum, a corrupt file, "
    "a directory that exists but holds no manifest.json, a store that refuses the credentials "
    "for a read or a write); 2 usage error or a path that does "
    "not exist (or a URL with no dataset there); 3 object storage failed (a request still "
    "failed after its retries: try again later)."
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
    shard file (read as a dataset of its own); or a URL of one of those. A local path that
    does not exist is a usage error; a URL is not checked here (the store answers when the
    dataset is opened)."""
    if is_url(path):
        trimmed = path.rstrip("/")
        if trimmed.endswith("/" + MANIFEST_NAME):
            return trimmed[: -len(MANIFEST_NAME) - 1]
        return path
    if not os.path.exists(path):
        raise CommandError(f"no such file or directory: {path}", EXIT_USAGE)
    if os.path.basename(path) == MANIFEST_NAME and os.path.isfile(path):
        return os.path.dirname(path) or "."
    return path


def is_shard_path(path: str) -> bool:
    """Does `path` (as `dataset_path` returns it) name one shard file rather than a dataset?"""
    return path.endswith(".pxs") if is_url(path) else os.path.isfile(path)


def child_path(root: str, name: str) -> str:
    """``name`` inside the dataset ``root``, a directory or a URL."""
    return f"{root.rstrip('/')}/{name}" if is_url(root) else os.path.join(root, name)


def open_dataset(path: str, args: argparse.Namespace | None = None) -> Any:
    return open_checked(dataset_path(path), read_options(args))


def open_checked(path: str, options: dict[str, Any]) -> Any:
    """`ps.Dataset`; a ValueError (an unknown ``--storage-option``, say) is a usage error."""
    try:
        return ps.Dataset(path, **options)
    except ValueError as e:
        message = one_line(e)
        named = message if message.startswith(path) else f"{path}: {message}"
        raise CommandError(named, EXIT_USAGE) from None


def read_options(args: argparse.Namespace | None) -> dict[str, Any]:
    """`ps.Dataset`'s ``storage_options``, ``cache`` and ``cache_limit`` from the flags of
    `add_storage_arguments` (unset: the environment's and the defaults)."""
    if args is None:
        return {}
    cache: Any = True
    if getattr(args, "no_cache", False):
        cache = False
    elif getattr(args, "cache", None):
        cache = args.cache
    return {
        "storage_options": write_options(args),
        "cache": cache,
        "cache_limit": getattr(args, "cache_limit", None),
    }


def write_options(args: argparse.Namespace) -> dict[str, str] | None:
    """`ps.Writer`'s ``storage_options`` from ``--storage-option`` (None: the environment's)."""
    return dict(getattr(args, "storage_options", None) or []) or None


def storage_option(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--storage-option``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f"not KEY=VALUE: {text!r} (e.g. endpoint=http://127.0.0.1:9000)"
        )
    return key.strip(), value


STORAGE_HELP = (
    "For s3://, gs://, az:// and http(s):// URLs. Credentials and settings come from the "
    "environment as each store's tools expect (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
    "AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP=true, ...; GOOGLE_APPLICATION_CREDENTIALS; "
    "AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY, ...); --storage-option overrides "
    "them."
)


def add_storage_arguments(parser: argparse.ArgumentParser, *, cache: bool = True) -> None:
    """The object-storage flags: ``--storage-option`` (every command that takes a URL) and,
    for commands that read one, the node cache's ``--cache``/``--no-cache``/``--cache-limit``."""
    group = parser.add_argument_group("object storage", STORAGE_HELP)
    group.add_argument(
        "--storage-option",
        dest="storage_options",
        action="append",
        type=storage_option,
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the store's client, e.g. endpoint=URL, region=NAME, "
        "allow_http=true, timeout=30s (repeatable)",
    )
    if not cache:
        return
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--cache",
        metavar="DIR",
        default=None,
        help="the node cache of chunks read from a URL, shared by this machine's processes "
        "(default: PIXMO_STREAM_CACHE, else ~/.cache/pixmo-stream)",
    )
    where.add_argument(
        "--no-cache", action="store_true", help="read from the store without the node cache"
    )
    group.add_argument(
        "--cache-limit",
        type=byte_size,
        default=None,
        metavar="SIZE",
        help="the node cache's size limit, e.g. 20GiB (default: PIXMO_STREAM_CACHE_LIMIT, "
        "else 64 GiB)",
    )


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
    filename = getattr(e, "filename", None)
    if isinstance(e, FileNotFoundError | PermissionError) and is_url(str(filename or "")):
        return _url_error(e, str(filename))
    if isinstance(e, FileNotFoundError) and e.filename is not None:
        if e.strerror and e.strerror != "No such file or directory":
            return f"{e.filename}: {e.strerror}"  # e.g. a write that has not finished
        return f"no such file or directory: {e.filename}"
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _url_error(e: OSError, url: str) -> str:
    if isinstance(e, FileNotFoundError):
        if e.strerror and e.strerror != "No such file or directory":
            return f"{url}: {e.strerror}"  # a write that has not finished
        if url.endswith("/" + MANIFEST_NAME):
            return f"no dataset at {url[: -len(MANIFEST_NAME) - 1]} (no {url})"
        return f"no such object: {url}"
    # The store's answer after the URL: cut the XML body of the error response.
    detail = (e.strerror or str(e)).removeprefix(f"{url}: ")
    detail = " ".join(re.sub(r"<\?xml.*", "", detail, flags=re.S).split()).rstrip(": ")
    return f"permission denied: {url}" + (f" ({detail})" if detail else "")


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


DATASET_PATH_HELP = (
    "dataset directory, its manifest.json, or one .pxs shard file; or the URL of one "
    "(s3://, gs://, az://, https://)"
)


def byte_size(text: str) -> int:
    """``32MB``, ``500k``, ``1GiB`` or a plain number of bytes (`pixmo_stream.storage.parse_size`,
    as an argparse type)."""
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
