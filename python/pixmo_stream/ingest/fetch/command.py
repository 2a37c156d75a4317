"""``pixmo-stream fetch PARQUET... --cache DIR``: download a PixMo dataset's images.

Written to the CLI's command protocol (``add_parser(subparsers)``, ``run(args, out) -> int``).
Exit 0 when the run completed, whatever its success rate; 1 when it could not run; 2 on a
usage error; 130 on Ctrl-C (after printing the report of what was done).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from pixmo_stream.cli.common import byte_size

from .errors import FetchError, FetchInterrupted
from .options import DEFAULT_USER_AGENT, SHA_POLICIES, FetchOptions
from .outcome import Outcome
from .parquet import SHA_COLUMN, URL_COLUMN, parquet_urls
from .report import REPORT_FILE, FetchReport

NAME = "fetch"
_DEFAULTS = FetchOptions()


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
        return value

    return parse


def add_parser(
    subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    outcomes = ", ".join(o.value for o in Outcome)
    p: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        parents=list(parents),
        help="download the images of PixMo parquet files into a Molmo-compatible cache",
        description="Download the images named by the image_url column (checked against "
        "image_sha256 where the file has one) of PixMo parquet files into DIR, one file per "
        "URL named sha256(url) as Molmo's downloader names it. Re-running resumes: cached "
        "images and permanent failures cost no request; retryable failures are tried again.",
        epilog=f"Outcomes: {outcomes}. The report is printed and written as JSON. Exit codes: "
        "0 the run completed (whatever its success rate), 1 it could not run, 2 usage error, "
        "130 interrupted (what was done is kept).",
    )
    p.add_argument("parquet", nargs="+", metavar="PARQUET", help="PixMo parquet file(s)")
    p.add_argument("--cache", required=True, metavar="DIR", help="image cache directory")
    p.add_argument(
        "--url-column", metavar="NAME", default=URL_COLUMN, help="URL column (default: %(default)s)"
    )
    p.add_argument(
        "--sha-column",
        metavar="NAME",
        default=SHA_COLUMN,
        help="expected-sha256 column, used where present (default: %(default)s)",
    )
    p.add_argument("--limit", type=_positive(int), metavar="N", help="only the first N URLs")
    add_fetch_options(p)
    out = p.add_argument_group("output")
    out.add_argument(
        "--report",
        metavar="FILE",
        default=None,
        help=f"write the JSON report here (default: DIR/{REPORT_FILE})",
    )
    out.add_argument("--json", action="store_true", help="print the JSON report, not a table")
    p.set_defaults(func=run)
    return p


def add_fetch_options(
    parser: argparse.ArgumentParser, *, title: str = "", decode_option: bool = True
) -> None:
    """How to fetch: the network and check options, one definition for ``pixmo-stream fetch``
    and ``pixmo-stream convert --fetch`` (read back by `options_from_args`). ``title``
    prefixes the groups' titles; ``decode_option=False`` leaves out ``--no-decode`` for a
    command that checks every image itself afterwards."""
    net = parser.add_argument_group(f"{title}network")
    net.add_argument(
        "--concurrency",
        metavar="N",
        type=_positive(int),
        default=_DEFAULTS.concurrency,
        help="requests in flight over all hosts (default: %(default)s)",
    )
    net.add_argument(
        "--per-host",
        metavar="N",
        type=_positive(int),
        default=_DEFAULTS.per_host,
        help="requests in flight to one host (default: %(default)s)",
    )
    net.add_argument(
        "--per-host-rate",
        type=_positive(float),
        default=None,
        metavar="N",
        help="most requests started per second to one host (default: no limit until it "
        "throttles; a host that answers 429/503 is slowed on its own)",
    )
    net.add_argument(
        "--timeout",
        type=_positive(float),
        default=_DEFAULTS.request_timeout,
        metavar="S",
        help="wall-clock deadline of one attempt: connect, headers and the whole body "
        "(default: %(default)s)",
    )
    net.add_argument(
        "--connect-timeout",
        type=_positive(float),
        default=_DEFAULTS.connect_timeout,
        metavar="S",
        help="deadline to connect (default: %(default)s)",
    )
    net.add_argument(
        "--deadline",
        type=_positive(float),
        default=None,
        metavar="S",
        help="stop the whole run after S seconds; unfinished URLs are not_attempted and a "
        "re-run fetches them (default: none; every request is bounded anyway)",
    )
    net.add_argument(
        "--max-bytes",
        type=byte_size,
        default=_DEFAULTS.max_bytes,
        metavar="SIZE",
        help="refuse bodies larger than this, e.g. 32MB or 64MiB (default: 32MiB)",
    )
    net.add_argument(
        "--retries",
        type=int,
        default=_DEFAULTS.retries,
        metavar="N",
        help="extra attempts for connect errors, truncated bodies, 408, 429 and 5xx, with "
        "exponential backoff and jitter; 404/410 are never retried, and a request that ran "
        "out its --timeout is left for the next run (default: %(default)s)",
    )
    net.add_argument(
        "--backoff",
        type=float,
        default=_DEFAULTS.backoff_base,
        metavar="S",
        help="first backoff delay, doubling per retry (default: %(default)s)",
    )
    net.add_argument(
        "--backoff-max",
        type=_positive(float),
        default=_DEFAULTS.backoff_max,
        metavar="S",
        help="longest backoff delay (default: %(default)s)",
    )
    net.add_argument(
        "--retry-after-cap",
        type=_positive(float),
        default=_DEFAULTS.retry_after_cap,
        metavar="S",
        help="a Retry-After up to S seconds is waited out; a longer one defers the URL to a "
        "later run instead of sleeping on it (default: %(default)s)",
    )
    net.add_argument(
        "--user-agent",
        metavar="UA",
        default=DEFAULT_USER_AGENT,
        help="User-Agent header (default: %(default)s)",
    )
    checks = parser.add_argument_group(f"{title}checks")
    checks.add_argument(
        "--sha",
        choices=SHA_POLICIES,
        default=_DEFAULTS.sha_policy,
        help="sha256 policy: strict rejects a mismatch; flag keeps a mismatching image that "
        "decodes and counts it as sha_flagged; off does not check (default: %(default)s)",
    )
    if decode_option:
        checks.add_argument(
            "--no-decode",
            action="store_true",
            help="skip the decode of each image (the bytes must still open as an image and "
            "reach their format's end, so a body cut short is never cached)",
        )
    checks.add_argument(
        "--opt-out",
        default=",".join(_DEFAULTS.opt_out_directives),
        metavar="A,B",
        help="X-Robots-Tag directives that opt an image out; empty to ignore them "
        "(default: %(default)s)",
    )
    checks.add_argument(
        "--retry-permanent",
        action="store_true",
        help="also retry URLs a previous run found permanently failed (404, bad content, ...)",
    )


def options_from_args(args: argparse.Namespace, *, decode: bool | None = None) -> FetchOptions:
    """The `FetchOptions` of options `add_fetch_options` defined; ``decode`` overrides
    ``--no-decode`` (or stands for it where it was left out)."""
    directives = tuple(d.strip() for d in args.opt_out.split(",") if d.strip())
    try:
        return FetchOptions(
            concurrency=args.concurrency,
            per_host=args.per_host,
            per_host_rate=args.per_host_rate,
            request_timeout=args.timeout,
            connect_timeout=args.connect_timeout,
            deadline=args.deadline,
            max_bytes=args.max_bytes,
            retries=args.retries,
            backoff_base=args.backoff,
            backoff_max=args.backoff_max,
            retry_after_cap=args.retry_after_cap,
            sha_policy=args.sha,
            decode=(not args.no_decode) if decode is None else decode,
            opt_out_directives=directives,
            user_agent=args.user_agent,
            retry_permanent=args.retry_permanent,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


class UsageError(ValueError):
    """An option value argparse let through but the fetcher refuses (exit 2)."""


def run(args: argparse.Namespace, out: TextIO) -> int:
    from .fetcher import distinct_urls, fetch_images  # aiohttp: only when a fetch runs

    try:
        options = options_from_args(args)
    except UsageError as exc:
        sys.stderr.write(f"pixmo-stream fetch: error: {exc}\n")
        return 2
    for path in args.parquet:
        if not Path(path).is_file():
            sys.stderr.write(f"pixmo-stream fetch: error: {path}: no such file\n")
            return 2
    try:
        todo = distinct_urls(
            parquet_urls(args.parquet, url_column=args.url_column, sha_column=args.sha_column)
        )
    except (TypeError, ValueError) as exc:  # a malformed sha256 or a non-string URL column
        raise FetchError(f"{', '.join(args.parquet)}: {exc}") from exc
    items = list(todo.items())[: args.limit] if args.limit else todo.items()
    progress = not getattr(args, "quiet", False) and _isatty(sys.stderr)
    try:
        report = fetch_images(items, args.cache, options=options, progress=progress)
    except FetchInterrupted as stop:
        _emit(stop.report, args, out)
        return 130
    _emit(report, args, out)
    return 0


def _emit(report: FetchReport, args: argparse.Namespace, out: TextIO) -> None:
    path = Path(args.report) if args.report else Path(args.cache) / REPORT_FILE
    text = report.to_json()
    try:
        report.write(path)
    except OSError as exc:
        sys.stderr.write(f"pixmo-stream fetch: cannot write the report to {path}: {exc}\n")
    out.write(text + "\n" if args.json else report.format() + "\n")
    out.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def standalone_parser() -> argparse.ArgumentParser:
    """The fetch command with the CLI's ``--quiet``, for running it outside ``pixmo-stream``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar"
    )
    parser = argparse.ArgumentParser(prog="pixmo-stream")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_parser(parser.add_subparsers(dest="command", required=True), parents=[common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fetch`` on its own (``python -m pixmo_stream.ingest.fetch``), outside the CLI."""
    try:
        args = standalone_parser().parse_args([NAME, *(sys.argv[1:] if argv is None else argv)])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args, sys.stdout))
    except (FetchError, OSError) as exc:
        sys.stderr.write(f"pixmo-stream fetch: error: {exc}\n")
        return 2 if isinstance(exc, FileNotFoundError) else 1
