"""``pixmo-stream merge``: datasets written separately into one, shards untouched."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from .common import EXIT_OK, add_command, human_bytes, printer


def add_parser(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "merge",
        help="combine datasets written separately into one, without rewriting shards",
        description="Combine datasets (converted on several machines, say) into one: shard "
        "files are hard-linked (or copied, or moved) as they are, under new names, and one "
        "new manifest is written last. The schemas must be equal. Rows follow the order of "
        "the inputs.",
    )
    p.add_argument("inputs", nargs="+", metavar="DATASET", help="datasets to merge, in order")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="the merged dataset")
    p.add_argument(
        "--mode",
        choices=("link", "copy", "move"),
        default="link",
        help="how shards get there: hard links (copies across file systems), copies, or "
        "moves (default: %(default)s)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace what is in --out already")


def run(args: argparse.Namespace, out: TextIO) -> int:
    from pixmo_stream.ingest.merging import merge

    summary = merge(args.inputs, args.out, mode=args.mode, overwrite=args.overwrite)
    printer(out)(
        f"merged {len(args.inputs):,} datasets: {summary.num_rows:,} rows in "
        f"{summary.num_shards:,} shards ({human_bytes(summary.num_bytes)}; "
        f"{summary.linked:,} linked or moved, {summary.copied:,} copied) into {summary.path}"
    )
    return EXIT_OK
