"""``pixmo-stream demo``: the quick tour (the work lives in ``pixmo_stream.demo``)."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from .common import EXIT_USAGE, CommandError, add_command


def add_parser(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "demo",
        help="convert a small generated PixMo-shaped dataset, read it back every way, report "
        "speeds",
        description="Generate a small pixmo-points-shaped parquet and a folder of JPEGs named "
        "as Molmo's cache names them, convert it with the pixmo-points preset (every image "
        "decoded once), read it back every way (random access, take, iteration, column "
        "projection, verify, a DataLoader decoding images with PIL) and print how fast each "
        "was. The dataset is written to a temporary directory and removed at the end unless "
        "--keep (or --out DIR) is given.",
    )
    p.add_argument(
        "--records",
        "-n",
        type=int,
        default=1000,
        metavar="N",
        help="records to generate (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="where to write the dataset (default: a temporary directory, "
        "removed afterwards unless --keep)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace what is in --out DIR already")
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary dataset and print its path"
    )
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.add_argument(
        "--preset",
        default="small",
        help="synthetic image sizes: 'small' (mostly under 200 kB) or 'pixmo-cap' "
        "(about 500 kB each, like PixMo-Cap) (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="DataLoader worker processes (default: %(default)s: the main process, where "
        "reading already runs on Rust threads; worker processes pickle each batch's "
        "annotations, though images cross as references)",
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    from pixmo_stream import demo

    if args.records < 1:
        raise CommandError("--records must be at least 1", EXIT_USAGE)
    return demo.run(
        records=args.records,
        out_dir=args.out,
        keep=args.keep,
        seed=args.seed,
        preset=args.preset,
        overwrite=args.overwrite,
        quiet=args.quiet,
        workers=args.workers,
        out=out,
    )
