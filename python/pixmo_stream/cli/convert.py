"""``pixmo-stream convert``: a PixMo preset or a generic input into a dataset."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from pixmo_stream.ingest.fetch.command import UsageError, add_fetch_options, options_from_args
from pixmo_stream.storage import is_url

from .common import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_command,
    add_storage_arguments,
    byte_size,
    one_line,
    printer,
    progress,
    write_options,
)

# The presets by name, here so that building the parser does not import pyarrow (every
# command's --help would pay for it); tests check it against pixmo_stream.ingest.PRESET_NAMES.
PRESET_NAMES = (
    "pixmo-ask-model-anything",
    "pixmo-cap",
    "pixmo-cap-qa",
    "pixmo-count",
    "pixmo-docs",
    "pixmo-point-explanations",
    "pixmo-points",
    "pixmo-points-eval",
    "pixmo-clocks",
)


def add_parser(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "convert",
        help="convert PixMo parquet (a preset) or a generic input into a dataset",
        description="Read annotations (PixMo parquet as published, or a generic input: a "
        "JSONL or parquet beside an image folder, a saved HF dataset, WebDataset tars), group "
        "them one record per image, read and fully decode every image, and write a dataset. "
        "Missing or broken images are skipped (or kept without image with --keep-missing), "
        "counted by cause and named in the report, printed and written as "
        "OUT/convert-report.json. OUT may be a URL (s3://bucket/prefix, gs://, az://): each "
        "shard is staged in TMPDIR and uploaded when it is finished, the manifest last. The "
        "inputs and --images are local: reading them from a URL is not supported (copy them "
        "here first).",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="local parquet/JSONL/tar files or folders"
    )
    p.add_argument(
        "-o", "--out", required=True, metavar="DIR|URL",
        help="the dataset to write: a directory, or a URL (with the local engine)",
    )  # fmt: skip
    p.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default=None,
        help="the PixMo dataset the input is (default: a generic input, columns kept as they are)",
    )
    p.add_argument("--images", metavar="DIR", default=None, help="local folder of the images")
    p.add_argument(
        "--fetch",
        action="store_true",
        help="first download the images of the input's image_url column into --images (a "
        "Molmo-compatible cache, resumable: what is there costs no request), as 'pixmo-stream "
        "fetch' does with the --fetch options below, its JSON report written there too; an "
        "image that could not be downloaded is skipped under its fetch outcome (not_found, "
        "timeout, ...)",
    )
    p.add_argument(
        "--naming",
        choices=("url-sha256", "filename"),
        default="url-sha256",
        help="how files in --images are named: as Molmo's cache names them (sha256 of the "
        "URL, no extension) or by file name (default: %(default)s)",
    )
    p.add_argument(
        "--split",
        choices=("all", "train", "validation"),
        default="all",
        help="Molmo's held-out split, carved per image with its seed (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=96817, help="split seed (default: Molmo's, 96817)")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PARQUET",
        help="leave out the images of this parquet first (pixmo-points-eval for pixmo-points)",
    )
    p.add_argument(
        "--workers", type=int, default=0, metavar="N",
        help="processes that read and check images (default: 0, this process); the records "
        "and their order do not depend on N",
    )  # fmt: skip
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where images are read, checked and written: this machine (--workers) or Ray "
        "tasks (pip install 'pixmo-stream[ray]'); the records and their order are the same "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--address", metavar="ADDR", default=None,
        help="with --engine ray: the Ray cluster to run on (e.g. auto, or ray://HOST:10001; "
        "default: RAY_ADDRESS, else a local cluster)",
    )  # fmt: skip
    p.add_argument(
        "--check",
        choices=("decode", "draft", "header"),
        default="decode",
        help="how each image is checked: full decode, JPEG reduced-scale decode, or header "
        "and end of file only (a file cut short is caught, damage inside it is not; "
        "default: %(default)s)",
    )
    p.add_argument(
        "--keep-missing",
        action="store_true",
        help="keep records whose image is missing or broken, without image",
    )
    p.add_argument(
        "--shard-size", type=byte_size, default=None, metavar="BYTES",
        help="target shard size, e.g. 256MiB (default: the writer's, 256 MiB)",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace what is in --out already")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--report", metavar="FILE", default=None,
        help="also write the report (JSON) to FILE; OUT/convert-report.json is written "
        "anyway for a local OUT, but not uploaded to a URL (only the dataset is)",
    )  # fmt: skip
    add_storage_arguments(p, cache=False)
    # Converting decodes (or checks, as --check says) every image right after, so the fetch
    # checks only that each body is a whole image file: no --no-decode here.
    add_fetch_options(p, title="--fetch ", decode_option=False)


def _fetch_options(args: argparse.Namespace) -> Any:
    """The `FetchOptions` of --fetch, or ``None``; fetch options without --fetch are refused."""
    from pixmo_stream.ingest.fetch import FetchOptions

    try:
        options = options_from_args(args, decode=False)
    except UsageError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    if args.fetch:
        return options
    if options != FetchOptions(decode=False):
        raise CommandError(
            "the fetch options (--timeout, --sha, --concurrency, ...) are for --fetch", EXIT_USAGE
        )
    return None


def run(args: argparse.Namespace, out: TextIO) -> int:
    from pixmo_stream.ingest import convert
    from pixmo_stream.ingest.fetch import FetchInterrupted, FetchReport
    from pixmo_stream.ingest.report import summarize

    must_exist = [*args.inputs, *args.exclude]
    if args.fetch:
        if not args.images:
            raise CommandError("--fetch needs --images DIR: the cache to download into", EXIT_USAGE)
        if args.naming != "url-sha256":
            raise CommandError(
                "--fetch names files as Molmo's cache does: drop --naming", EXIT_USAGE
            )
    elif args.images:
        must_exist.append(args.images)
    fetch = _fetch_options(args)
    for path in must_exist:
        if is_url(path):
            raise CommandError(
                f"{path}: convert reads local inputs only (copy them here first); only --out "
                "may be a URL",
                EXIT_USAGE,
            )
        if not os.path.exists(path):
            raise CommandError(f"no such file or directory: {path}", EXIT_USAGE)
    if args.address is not None and args.engine != "ray":
        raise CommandError("--address is for --engine ray", EXIT_USAGE)
    if args.engine == "ray" and is_url(args.out):
        raise CommandError(
            "--engine ray writes to a shared file system, not to a URL: use --engine local, "
            "or convert to a directory and 'pixmo-stream merge' it into the URL",
            EXIT_USAGE,
        )
    if args.engine == "ray":
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError:
            raise CommandError(
                "--engine ray needs Ray: pip install 'pixmo-stream[ray]'", EXIT_USAGE
            ) from None
    if args.workers < 0:
        raise CommandError(f"--workers must be 0 or more, got {args.workers}", EXIT_USAGE)
    if is_url(args.out):
        if not args.overwrite:
            _check_url_is_free(args.out, write_options(args))
    elif os.path.isdir(args.out) and os.listdir(args.out) and not args.overwrite:
        raise CommandError(
            f"{args.out} already exists and is not empty; pass --overwrite to replace it",
            EXIT_USAGE,
        )
    if fetch is not None and not any(
        p.endswith(".parquet") or os.path.isdir(p) for p in args.inputs
    ):
        raise CommandError("--fetch reads image URLs from parquet inputs; none given", EXIT_USAGE)
    # The bar starts once the images to convert are counted, after any fetch and its own bar.
    bars: list[Any] = []

    def on_total(total: int) -> None:
        bars.append(progress(total=total, desc="convert", unit="img", quiet=args.quiet))

    try:
        report = convert(
            args.inputs,
            args.out,
            preset=args.preset,
            images=args.images,
            naming=args.naming,
            split=args.split,
            seed=args.seed,
            exclude=args.exclude,
            workers=args.workers,
            check=args.check,
            keep_missing=args.keep_missing,
            shard_bytes=args.shard_size,
            overwrite=args.overwrite,
            progress=lambda n: bars[0].update(n) if bars else None,
            on_total=on_total,
            engine=args.engine,
            address=args.address,
            storage_options=write_options(args),
            fetch=fetch,
            fetch_progress=not args.quiet and sys.stderr.isatty(),
        )
    except FetchInterrupted as stop:
        # What was downloaded is kept (a re-run resumes); exit as for any Ctrl-C, 130.
        out.write(stop.report.format() + "\n")
        raise KeyboardInterrupt from None
    finally:
        for bar in bars:
            bar.close()
    if args.report:
        report.write(args.report)
    if args.json:
        json.dump(report.to_dict(), out, indent=2)
        out.write("\n")
    else:
        p = printer(out)
        if report.fetch is not None:
            for line in FetchReport.from_dict(report.fetch).format().splitlines():
                p(line)
        for line in summarize(report):
            p(line)
    if report.records_written == 0 and report.selected_images > 0:
        raise CommandError(
            f"no record was written: every one of the {report.selected_images:,} images was "
            f"skipped ({', '.join(f'{k} {v:,}' for k, v in sorted(report.skipped.items()))})"
        )
    return EXIT_OK


def _check_url_is_free(url: str, storage_options: dict[str, str] | None) -> None:
    """Refuses, before any work, a URL that holds a dataset or shards of an unfinished write.
    The store offers no listing here but the `Writer`'s own check when it opens, so a writer
    is opened (it lists the prefix, uploads nothing) and dropped at once."""
    import pixmo_stream as ps

    probe = ps.Schema([ps.Field("probe", ps.int64())])
    try:
        writer = ps.Writer(url, probe, storage_options=storage_options)
    except ValueError as e:
        message = one_line(e)
        if "already holds a dataset" not in message:
            named = message if message.startswith(url) else f"{url}: {message}"
            raise CommandError(f"--out {named}", EXIT_USAGE) from None
        raise CommandError(
            f"{url} already holds a dataset (or shards of an unfinished write); pass "
            "--overwrite to replace it",
            EXIT_USAGE,
        ) from None
    writer.abort()
