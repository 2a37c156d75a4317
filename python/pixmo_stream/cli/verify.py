"""``pixmo-stream verify``: every checksum, and with ``--decode`` every image."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

import pixmo_stream as ps
from pixmo_stream.storage import is_url

from .common import (
    DATASET_PATH_HELP,
    EXIT_FAILURE,
    EXIT_OK,
    add_command,
    add_storage_arguments,
    child_path,
    dataset_path,
    human_bytes,
    human_seconds,
    is_shard_path,
    one_line,
    open_checked,
    printer,
    progress,
    read_options,
)


def add_parser(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "verify",
        help="check every checksum (and with --decode every image); exit 1 on any failure",
        description="Check every chunk checksum, padding and buffer of a dataset. Prints a "
        "summary; names each bad shard, row group and column; exits 1 on any "
        "failure and 0 when clean. With --decode, also decodes every binary value that is an "
        "image (or should be: the `image` column) and names the rows that do not decode.",
    )
    p.add_argument("path", help=DATASET_PATH_HELP)
    p.add_argument(
        "--decode",
        action="store_true",
        help="also decode every image fully (PIL) and name the rows that fail",
    )
    add_storage_arguments(p)


def run(args: argparse.Namespace, out: TextIO) -> int:
    p = printer(out)
    path = dataset_path(args.path)
    options = read_options(args)
    start = time.perf_counter()
    opened = False
    try:
        ds = open_checked(path, options)
        opened = True
        info = ds.info()  # opens every shard: a broken footer or a wrong size shows up here
    except (ps.StorageError, PermissionError):
        raise  # the store failed or refused: no verdict on the data
    except (ps.PixmoError, FileNotFoundError) as e:  # the path exists: a shard is missing
        if is_url(path) and not opened and isinstance(e, FileNotFoundError):
            raise  # no dataset at that URL: a usage error, as a local path that does not exist
        p(f"FAILED: the dataset does not open: {one_line(e)}")
        # Check the shards one by one anyway, so that the report names every bad one (a
        # local manifest only: there is no reading a remote manifest apart from its shards).
        checked = [] if is_url(path) else _verify_shards_from_manifest(path, args.quiet)
        _print_shard_failures(p, checked)
        if checked:
            failed = sum(not r["ok"] for r in checked)
            p(f"{failed:,} of {len(checked):,} shards failed their own checks")
        return EXIT_FAILURE

    shards = info.get("shards", [])
    results: list[dict[str, Any]]
    if not is_shard_path(path) and len(shards) > 1:
        results = _verify_each_shard(path, shards, args.quiet, options)
    else:
        # One shard (or a single .pxs file): one call checks everything.
        try:
            report = ds.verify()
        except ps.StorageError:
            raise
        except ps.PixmoError as e:
            p(f"FAILED: {one_line(e)}")
            return EXIT_FAILURE
        name = shards[0].get("file", path) if shards else path
        results = [
            {
                "file": name,
                "ok": bool(report.ok),
                "num_chunks": int(report.num_chunks),
                "errors": [str(e) for e in report.errors],
                "num_bytes": int(info.get("num_bytes", 0)),
            }
        ]
    elapsed = time.perf_counter() - start
    chunks = sum(r["num_chunks"] for r in results)
    nbytes = sum(r["num_bytes"] for r in results)
    bad = [r for r in results if not r["ok"]]
    speed = f", {human_bytes(nbytes / elapsed)}/s" if elapsed > 0 else ""
    summary = (
        f"{chunks:,} chunks in {len(results):,} shard{'s' if len(results) != 1 else ''}, "
        f"{int(info.get('num_rows', 0)):,} rows, {human_bytes(nbytes)} "
        f"checked in {human_seconds(elapsed)}{speed}"
    )
    if not bad:
        p(f"OK: {summary}")
        if getattr(args, "decode", False):
            return _decode_all(ds, p, args.quiet)
        return EXIT_OK
    n_errors = sum(len(r["errors"]) for r in bad)
    p(
        f"FAILED: {n_errors:,} error{'s' if n_errors != 1 else ''} in {len(bad):,} of "
        f"{len(results):,} shards ({summary})"
    )
    _print_shard_failures(p, results)
    return EXIT_FAILURE


def _verify_each_shard(
    root: str, shards: list[dict[str, Any]], quiet: bool, options: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    results = []
    total = sum(int(s.get("num_bytes", 0)) for s in shards)
    with progress(total=total, desc="verify", unit="B", unit_scale=True, quiet=quiet) as bar:
        for shard in shards:
            num_bytes = int(shard.get("num_bytes", 0))
            results.append(_verify_one_shard(root, shard["file"], num_bytes, options or {}))
            bar.update(num_bytes)
    return results


def _verify_one_shard(
    root: str, file: str, num_bytes: int, options: dict[str, Any]
) -> dict[str, Any]:
    shard_path = child_path(root, file)
    result: dict[str, Any] = {"file": file, "ok": False, "num_chunks": 0, "errors": []}
    result["num_bytes"] = num_bytes
    remote = is_url(shard_path)
    try:
        if not remote:
            _check_size(result, shard_path, os.path.getsize(shard_path), num_bytes, "file")
        shard = ps.Dataset(shard_path, **options)
        if remote:  # read as a dataset of its own, a shard's size is the object's
            _check_size(result, shard_path, int(shard.info()["num_bytes"]), num_bytes, "object")
        report = shard.verify()
    except (ps.StorageError, PermissionError):
        raise
    except (ps.PixmoError, OSError) as e:
        result["errors"].append(one_line(e))
        return result
    result["num_chunks"] = int(report.num_chunks)
    result["errors"] += [str(e) for e in report.errors]
    result["ok"] = not result["errors"] and bool(report.ok)
    return result


def _check_size(result: dict[str, Any], path: str, size: int, expected: int, what: str) -> None:
    if expected and size != expected:
        result["errors"].append(f"{path}: {what} is {size:,} bytes, the manifest says {expected:,}")


def _verify_shards_from_manifest(root: str, quiet: bool) -> list[dict[str, Any]]:
    manifest = Path(root) / "manifest.json"
    if not manifest.is_file():
        return []
    try:
        shards = json.loads(manifest.read_text(encoding="utf-8"))["shards"]
        shards = [{"file": s["file"], "num_bytes": int(s.get("num_bytes", 0))} for s in shards]
    except (ValueError, KeyError, TypeError):
        return []
    return _verify_each_shard(root, shards, quiet)


def _print_shard_failures(p: Any, results: list[dict[str, Any]]) -> None:
    for r in results:
        if r["ok"]:
            continue
        p(f"  bad shard {r['file']}:")
        for err in r["errors"][:50]:
            p(f"    - {err}")
        if len(r["errors"]) > 50:
            p(f"    … {len(r['errors']) - 50:,} more errors")


MAX_NAMED_ROWS = 50


def _decode_all(ds: Any, p: Any, quiet: bool) -> int:
    """Decodes every image of every binary column; names each row that does not decode."""
    from pixmo_stream.ingest.images import BrokenImage, check_image

    columns = [f.name for f in ds.schema.fields if f.type.kind == "binary"]
    if not columns:
        p("decode: no binary columns, nothing to decode")
        return EXIT_OK
    start = time.perf_counter()
    bad: list[str] = []
    images = 0
    rows = progress(ds.iter(columns=columns), total=len(ds), desc="decode", unit="rec", quiet=quiet)
    for row, rec in enumerate(rows):
        for name in columns:
            value = rec[name]
            if value is None:
                continue
            images += 1
            try:
                check_image(value)
            except BrokenImage as e:
                bad.append(f"row {row:,} column {name}: {e.cause}: {e.detail}")
    elapsed = human_seconds(time.perf_counter() - start)
    if not bad:
        p(f"OK: {images:,} images in {', '.join(columns)} decode ({elapsed})")
        return EXIT_OK
    p(f"FAILED: {len(bad):,} of {images:,} images do not decode ({elapsed})")
    for line in bad[:MAX_NAMED_ROWS]:
        p(f"  - {line}")
    if len(bad) > MAX_NAMED_ROWS:
        p(f"  … {len(bad) - MAX_NAMED_ROWS:,} more")
    return EXIT_FAILURE
