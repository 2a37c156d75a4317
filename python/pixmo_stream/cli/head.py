"""``pixmo-stream head``: print the first records readably."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from pixmo_stream._native import Blob

from .common import (
    DATASET_PATH_HELP,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_command,
    add_storage_arguments,
    open_dataset,
    printer,
)
from .formatting import IMAGE_EXTENSIONS, format_record, sniff_image


def add_parser(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "head",
        help="print the first records readably",
        description="Print the first records: binary values as <jpeg 103,412 bytes>, arrays "
        "as shape, dtype and first values, long text cut with its length.",
    )
    p.add_argument("path", help=DATASET_PATH_HELP)
    p.add_argument(
        "-n", type=int, default=5, metavar="N", help="records to show (default: %(default)s)"
    )
    p.add_argument(
        "--columns",
        "-c",
        metavar="A,B",
        default=None,
        help="comma-separated columns to read (default: all)",
    )
    p.add_argument(
        "--images-to",
        metavar="DIR",
        default=None,
        help="also write image values (jpeg, png, gif, webp) to files in DIR (a local "
        "folder, also when the dataset is a URL)",
    )
    p.add_argument(
        "--width",
        type=int,
        default=100,
        metavar="COLS",
        help="line width for values (default: %(default)s)",
    )
    add_storage_arguments(p)


def run(args: argparse.Namespace, out: TextIO) -> int:
    if args.n < 0:
        raise CommandError(f"-n must be 0 or more, got {args.n}", EXIT_USAGE)
    images_dir = Path(args.images_to) if args.images_to else None
    if images_dir is not None and images_dir.exists() and not images_dir.is_dir():
        raise CommandError(f"--images-to {images_dir}: exists and is not a directory", EXIT_USAGE)
    ds = open_dataset(args.path, args)
    columns = _parse_columns(args.columns, list(ds.schema.names))
    n = min(args.n, len(ds))
    p = printer(out)
    if images_dir is not None:
        images_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    skipped = 0
    records = ds.take(list(range(n)), columns=columns) if n else []
    for i, rec in enumerate(records):
        p(f"── record {i} " + "─" * max(0, 40 - len(str(i))))
        for line in format_record(rec, width=args.width):
            p(line)
        if images_dir is not None:
            w, s = _write_images(rec, i, images_dir)
            written += w
            skipped += s
    p(f"({n:,} of {len(ds):,} records shown)")
    if images_dir is not None:
        note = f"; {skipped:,} non-image binary values skipped" if skipped else ""
        p(
            f"wrote {len(written):,} image file{'s' if len(written) != 1 else ''} "
            f"to {images_dir}{note}"
        )
    return EXIT_OK


def _parse_columns(spec: str | None, names: list[str]) -> list[str] | None:
    if not spec:
        return None
    cols = [c.strip() for c in spec.split(",") if c.strip()]
    unknown = [c for c in cols if c not in names]
    if unknown:
        raise CommandError(
            f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"the dataset has: {', '.join(names)}",
            EXIT_USAGE,
        )
    return cols


def _write_images(rec: dict[str, Any], row: int, out_dir: Path) -> tuple[list[Path], int]:
    written, skipped = [], 0
    for name, data in _binary_values(rec, ""):
        kind = sniff_image(data)
        if kind == "other":
            skipped += 1
            continue
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        target = out_dir / f"{row:06d}_{safe}{IMAGE_EXTENSIONS[kind]}"
        target.write_bytes(bytes(data))
        written.append(target)
    return written, skipped


def _binary_values(value: Any, name: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, bytes | bytearray | memoryview | Blob):
        yield name, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _binary_values(v, f"{name}.{k}" if name else str(k))
    elif isinstance(value, list):
        for j, v in enumerate(value):
            yield from _binary_values(v, f"{name}.{j}")
