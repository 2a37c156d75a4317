"""``pixmo-stream merge``: datasets written separately into one, shards untouched."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from pixmo_stream.storage import is_url

from .common import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_command,
    add_storage_arguments,
    human_bytes,
    one_line,
    printer,
    progress,
    read_options,
)


def add_parser(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "merge",
        help="combine datasets written separately into one, without rewriting shards",
        description="Combine datasets (converted on several machines, say) into one: shard "
        "files are hard-linked (or copied, or moved) as they are, under new names, and one "
        "new manifest is written last. The schemas must be equal. Rows follow the order of "
        "the inputs. Any input and the output may be a URL (s3://, gs://, az://, https://): "
        "the records are then read and written again (the same records in the same order, "
        "schema and codecs kept; shard and row-group boundaries may differ), since objects "
        "cannot be linked, and each shard is uploaded as it is finished, the manifest last.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="DATASET", help="datasets to merge (paths or URLs), in order"
    )
    p.add_argument(
        "-o", "--out", required=True, metavar="DIR|URL", help="the merged dataset (path or URL)"
    )
    p.add_argument(
        "--mode",
        choices=("link", "copy", "move"),
        default="link",
        help="how shards get there: hard links (copies across file systems), copies, or "
        "moves (default: %(default)s); local datasets only: with a URL, records are copied",
    )
    p.add_argument("--overwrite", action="store_true", help="replace what is in --out already")
    add_storage_arguments(p)


def run(args: argparse.Namespace, out: TextIO) -> int:
    from pixmo_stream.ingest.merging import merge

    remote = any(is_url(p) for p in [*args.inputs, args.out])
    if remote and args.mode == "move":
        raise CommandError(
            "--mode move is for local datasets; with a URL the records are copied", EXIT_USAGE
        )
    with progress(desc="merge", unit="rec", quiet=args.quiet) as bar:
        try:
            summary = merge(
                args.inputs,
                args.out,
                mode=args.mode,
                overwrite=args.overwrite,
                progress=bar.update,
                **read_options(args),
            )
        except ValueError as e:  # the store's options (an unknown --storage-option, say)
            raise CommandError(one_line(e), EXIT_USAGE) from None
    how = (
        "records rewritten: a URL cannot be linked"
        if summary.rewritten
        else f"{summary.linked:,} linked or moved, {summary.copied:,} copied"
    )
    printer(out)(
        f"merged {len(args.inputs):,} datasets: {summary.num_rows:,} rows in "
        f"{summary.num_shards:,} shards ({human_bytes(summary.num_bytes)}; {how}) into "
        f"{summary.path}"
    )
    return EXIT_OK
