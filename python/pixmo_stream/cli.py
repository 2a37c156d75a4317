"""The ``pixmo-stream`` command-line tool: ``demo``, ``inspect``, ``verify`` and ``head``.

Every command exits 0 on success, 1 when the data is bad (a failed checksum, a corrupt
file, a directory without its manifest) or a command fails, and 2 on a usage error or a path
that does not exist. Errors are one readable
line on stderr; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import pixmo_stream as ps
from pixmo_stream._native import Blob

PROG = "pixmo-stream"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure the user can act on; printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# Small formatting helpers shared by the commands (and by demo.py).


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


def sniff_image(data: bytes | bytearray | memoryview) -> str:
    """Name the image format from its magic bytes: jpeg, png, gif, webp or other."""
    head = bytes(data[:12])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return "other"


IMAGE_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "webp": ".webp"}


# ---------------------------------------------------------------------------------------------
# Schema rendering works on the FORMAT.md dict form (what ds.info()["schema"] holds).


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


# ---------------------------------------------------------------------------------------------
# Opening datasets with errors a user can act on.


def open_dataset(path: str) -> Any:
    if not os.path.exists(path):
        raise CommandError(f"no such file or directory: {path}", EXIT_USAGE)
    return ps.Dataset(path)


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


# ---------------------------------------------------------------------------------------------
# inspect


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    ds = open_dataset(args.path)
    info = dict(ds.info())
    schema = schema_to_dict(info.get("schema", ds.schema))
    shards = info.get("shards", [])
    columns = column_totals(info)
    num_row_groups = sum(len(s.get("row_groups", [])) for s in shards)
    if args.json:
        doc = {
            **info,
            "schema": schema,
            "num_shards": len(shards),
            "num_row_groups": num_row_groups,
            "columns": columns,
        }
        json.dump(doc, out, indent=2, default=_json_default)
        out.write("\n")
        return EXIT_OK

    types = {f["name"]: type_label(f["type"]) for f in schema.get("fields", [])}
    stored = sum(c["stored_bytes"] for c in columns)
    raw = sum(c["raw_bytes"] for c in columns)
    p = _printer(out)
    p(f"dataset     {info.get('path', args.path)}")
    p(f"rows        {int(info.get('num_rows', len(ds))):,}")
    p(f"shards      {len(shards):,}")
    p(f"row groups  {num_row_groups:,}")
    p(
        f"on disk     {human_bytes(int(info.get('num_bytes', stored)))} "
        f"(chunks {human_bytes(stored)}, raw {human_bytes(raw)}"
        f"{f', {raw / stored:.2f}x' if stored else ''})"
    )
    for key, value in (info.get("metadata") or {}).items():
        p(f"metadata    {key} = {value}")
    p("")
    p(f"schema ({len(schema.get('fields', []))} columns)")
    for line in schema_tree(schema):
        p(f"  {line}")
    p("")
    headers = ("column", "type", "codec", "stored", "raw", "ratio", "share")
    rows = []
    for c in columns:
        share = f"{100 * c['stored_bytes'] / stored:.1f}%" if stored else "-"
        ratio = f"{c['ratio']:.2f}x" if c["ratio"] is not None else "-"
        rows.append(
            (
                c["name"],
                types.get(c["name"], "?"),
                "+".join(c["codecs"]),
                human_bytes(c["stored_bytes"]),
                human_bytes(c["raw_bytes"]),
                ratio,
                share,
            )
        )
    for line in _table(headers, rows, right={3, 4, 5, 6}):
        p(f"  {line}")
    if len(shards) > 1 or args.shards:
        p("")
        srows = [
            (
                s.get("file", "?"),
                f"{int(s.get('num_rows', 0)):,}",
                f"{len(s.get('row_groups', [])):,}",
                human_bytes(int(s.get("num_bytes", 0))),
            )
            for s in shards
        ]
        limit = len(srows) if args.shards else 10
        for line in _table(("shard", "rows", "row groups", "size"), srows[:limit], right={1, 2, 3}):
            p(f"  {line}")
        if len(srows) > limit:
            p(f"  … {len(srows) - limit:,} more shards (--shards lists all)")
    return EXIT_OK


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview | Blob):
        return f"<{len(obj)} bytes>"
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [fmt(headers), fmt(["─" * w for w in widths]), *(fmt(r) for r in rows)]


def _printer(out: TextIO) -> Any:
    def p(line: str = "") -> None:
        out.write(line + "\n")

    return p


# ---------------------------------------------------------------------------------------------
# verify


def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    p = _printer(out)
    path = args.path
    if not os.path.exists(path):
        raise CommandError(f"no such file or directory: {path}", EXIT_USAGE)
    start = time.perf_counter()
    try:
        ds = ps.Dataset(path)
        info = ds.info()  # opens every shard: a broken footer or a wrong size shows up here
    except (ps.PixmoError, FileNotFoundError) as e:  # the path exists: a shard is missing
        # Check the shards one by one anyway, so that the report names every bad one.
        p(f"FAILED: the dataset does not open: {_one_line(e)}")
        checked = _verify_shards_from_manifest(path, args.quiet)
        _print_shard_failures(p, checked)
        if checked:
            failed = sum(not r["ok"] for r in checked)
            p(f"{failed:,} of {len(checked):,} shards failed their own checks")
        return EXIT_FAILURE

    shards = info.get("shards", [])
    results: list[dict[str, Any]]
    if os.path.isdir(path) and len(shards) > 1:
        results = _verify_each_shard(path, shards, args.quiet)
    else:
        # One shard (or a single .pxs file): one call checks everything.
        try:
            report = ds.verify()
        except ps.PixmoError as e:
            p(f"FAILED: {_one_line(e)}")
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
        return EXIT_OK
    n_errors = sum(len(r["errors"]) for r in bad)
    p(
        f"FAILED: {n_errors:,} error{'s' if n_errors != 1 else ''} in {len(bad):,} of "
        f"{len(results):,} shards ({summary})"
    )
    _print_shard_failures(p, results)
    return EXIT_FAILURE


def _verify_each_shard(
    root: str, shards: list[dict[str, Any]], quiet: bool
) -> list[dict[str, Any]]:
    results = []
    total = sum(int(s.get("num_bytes", 0)) for s in shards)
    with progress(total=total, desc="verify", unit="B", unit_scale=True, quiet=quiet) as bar:
        for shard in shards:
            results.append(_verify_one_shard(root, shard["file"], int(shard.get("num_bytes", 0))))
            bar.update(int(shard.get("num_bytes", 0)))
    return results


def _verify_one_shard(root: str, file: str, num_bytes: int) -> dict[str, Any]:
    shard_path = os.path.join(root, file)
    result: dict[str, Any] = {"file": file, "ok": False, "num_chunks": 0, "errors": []}
    result["num_bytes"] = num_bytes
    try:
        size = os.path.getsize(shard_path)
        if num_bytes and size != num_bytes:
            result["errors"].append(
                f"{shard_path}: file is {size:,} bytes, the manifest says {num_bytes:,}"
            )
        report = ps.Dataset(shard_path).verify()
    except (ps.PixmoError, OSError) as e:
        result["errors"].append(_one_line(e))
        return result
    result["num_chunks"] = int(report.num_chunks)
    result["errors"] += [str(e) for e in report.errors]
    result["ok"] = not result["errors"] and bool(report.ok)
    return result


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


def _one_line(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError) and e.filename is not None:
        if e.strerror and e.strerror != "No such file or directory":
            return f"{e.filename}: {e.strerror}"  # e.g. a write that has not finished
        return f"no such file or directory: {e.filename}"
    text = " ".join(str(e).split())
    return text or type(e).__name__


# ---------------------------------------------------------------------------------------------
# head


def cmd_head(args: argparse.Namespace, out: TextIO) -> int:
    if args.n < 0:
        raise CommandError(f"-n must be 0 or more, got {args.n}", EXIT_USAGE)
    images_dir = Path(args.images_to) if args.images_to else None
    if images_dir is not None and images_dir.exists() and not images_dir.is_dir():
        raise CommandError(f"--images-to {images_dir}: exists and is not a directory", EXIT_USAGE)
    ds = open_dataset(args.path)
    columns = _parse_columns(args.columns, list(ds.schema.names))
    n = min(args.n, len(ds))
    p = _printer(out)
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


MAX_LIST_ITEMS = 3
MAX_ARRAY_VALUES = 6


def format_record(rec: dict[str, Any], width: int = 100) -> list[str]:
    """Readable lines for one record: one per field, nested values indented under it."""
    lines: list[str] = []
    key_width = max((len(str(k)) for k in rec), default=0)
    for key, value in rec.items():
        _format_field(str(key), value, "  ", key_width, width, lines)
    return lines


def _format_field(
    key: str, value: Any, indent: str, key_width: int, width: int, lines: list[str]
) -> None:
    label = f"{indent}{key.ljust(key_width)} : "
    if isinstance(value, dict):
        lines.append(label.rstrip() if value else f"{label}{{}}")
        kw = max((len(str(k)) for k in value), default=0)
        for k, v in value.items():
            _format_field(str(k), v, indent + "  ", kw, width, lines)
    elif isinstance(value, list) and _one_item_per_line(value, width):
        lines.append(f"{label}list of {len(value):,}")
        shown = value[:MAX_LIST_ITEMS]
        kw = len(f"[{len(shown) - 1}]")
        for j, v in enumerate(shown):
            _format_field(f"[{j}]", v, indent + "  ", kw, width, lines)
        if len(value) > len(shown):
            lines.append(f"{indent}  … {len(value) - len(shown):,} more")
    else:
        lines.append(label + format_value(value, max(20, width - len(label))))


def _one_item_per_line(value: list[Any], width: int) -> bool:
    """Lists of structs, of lists, or of long text read better one item per line."""
    return any(
        isinstance(v, dict | list) or isinstance(v, str) and len(v) > width // 3 for v in value
    )


def format_value(value: Any, width: int = 80) -> str:
    """One-line summary of a value: binaries by kind and size, arrays by shape, text cut."""
    if value is None:
        return "null"
    if isinstance(value, bytes | bytearray | memoryview | Blob):
        return f"<{sniff_image(value)} {len(value):,} bytes>"
    if isinstance(value, str):
        return _format_str(value, width)
    if isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return _format_array(value)
    if isinstance(value, list):
        parts: list[str] = []
        used = 2
        for v in value[:16]:
            s = format_value(v, max(20, width // 2))
            if used + len(s) + 2 > width and parts:
                break
            parts.append(s)
            used += len(s) + 2
        more = f", … ({len(value):,} items)" if len(parts) < len(value) else ""
        return "[" + ", ".join(parts) + more + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{k}: {format_value(v, width // 2)}" for k, v in value.items()) + "}"
        )
    return _format_str(repr(value), width, quote=False)


def _format_str(s: str, width: int, quote: bool = True) -> str:
    flat = s.replace("\n", "\\n").replace("\t", "\\t")
    q = '"' if quote else ""
    if len(flat) + 2 <= width:
        return f"{q}{flat}{q}"
    suffix = f" ({len(s):,} chars)"
    keep = max(10, width - len(suffix) - 3)
    return f"{q}{flat[:keep]}…{q}{suffix}"


def _format_array(arr: Any) -> str:
    """Shape, dtype and the first values; rows of a 2-D array stay grouped: [[x, y], ...]."""

    def num(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    head = f"array {tuple(arr.shape)} {arr.dtype}"
    if arr.ndim == 2 and 0 < arr.shape[1] <= MAX_ARRAY_VALUES:
        rows = arr[: max(1, MAX_ARRAY_VALUES // arr.shape[1])].tolist()
        shown = ", ".join("[" + ", ".join(num(v) for v in row) + "]" for row in rows)
        more = ", …" if arr.shape[0] > len(rows) else ""
        return f"{head} [{shown}{more}]"
    flat = arr.reshape(-1)
    shown = ", ".join(num(v) for v in flat[:MAX_ARRAY_VALUES].tolist())
    more = ", …" if flat.shape[0] > MAX_ARRAY_VALUES else ""
    return f"{head} [{shown}{more}]"


# ---------------------------------------------------------------------------------------------
# demo (the work lives in demo.py)


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
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


# ---------------------------------------------------------------------------------------------
# Argument parsing and the error boundary.


def build_parser() -> argparse.ArgumentParser:
    # --quiet and --debug work before or after the subcommand; SUPPRESS in the subcommand
    # copy keeps it from resetting a value given before the subcommand.
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

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Store, inspect, check and stream PixMo-style multimodal training data.",
        epilog="Exit codes: 0 success, 1 failure (bad data, failed checks), "
        "2 usage error or missing path. Run '%(prog)s COMMAND --help' for details.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {getattr(ps, '__version__', 'unknown')}"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show a full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="write a small PixMo-like dataset, read it back every way and report speeds",
        description="Generate a small PixMo-like dataset (JPEGs of varied sizes, captions, "
        "points, QA), write it, read it back every way (random access, take, "
        "iteration, column projection, verify, a torch DataLoader) and print how "
        "fast each was.",
    )
    demo.add_argument(
        "--records",
        "-n",
        type=int,
        default=2000,
        metavar="N",
        help="records to generate (default: %(default)s)",
    )
    demo.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="where to write the dataset (default: a temporary directory, "
        "removed afterwards unless --keep)",
    )
    demo.add_argument(
        "--overwrite", action="store_true", help="replace what is in --out DIR already"
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary dataset and print its path"
    )
    demo.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    demo.add_argument(
        "--preset",
        default="small",
        help="synthetic image sizes: 'small' (mostly under 200 kB) or 'pixmo-cap' "
        "(about 500 kB each, like PixMo-Cap) (default: %(default)s)",
    )
    demo.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="DataLoader worker processes (default: %(default)s: the main process, where "
        "reading already runs on Rust threads; worker processes pickle each batch's "
        "annotations, though images cross as references)",
    )
    demo.set_defaults(func=cmd_demo)

    insp = sub.add_parser(
        "inspect",
        parents=[common],
        help="show schema, rows, shards and bytes per column",
        description="Show a dataset's schema as a tree, its rows, shards and row groups, and "
        "the bytes each column takes on disk and raw, with compression ratios.",
    )
    insp.add_argument("path", help="dataset directory or .pxs shard file")
    insp.add_argument("--json", action="store_true", help="print machine-readable JSON")
    insp.add_argument("--shards", action="store_true", help="list every shard (default: 10)")
    insp.set_defaults(func=cmd_inspect)

    ver = sub.add_parser(
        "verify",
        parents=[common],
        help="check every checksum; exit 1 on any failure",
        description="Check every chunk checksum, padding and buffer of a dataset. Prints a "
        "summary; names each bad shard, row group and column; exits 1 on any "
        "failure and 0 when clean.",
    )
    ver.add_argument("path", help="dataset directory or .pxs shard file")
    ver.set_defaults(func=cmd_verify)

    head = sub.add_parser(
        "head",
        parents=[common],
        help="print the first records readably",
        description="Print the first records: binary values as <jpeg 103,412 bytes>, arrays "
        "as shape, dtype and first values, long text cut with its length.",
    )
    head.add_argument("path", help="dataset directory or .pxs shard file")
    head.add_argument(
        "-n", type=int, default=5, metavar="N", help="records to show (default: %(default)s)"
    )
    head.add_argument(
        "--columns",
        "-c",
        metavar="A,B",
        default=None,
        help="comma-separated columns to read (default: all)",
    )
    head.add_argument(
        "--images-to",
        metavar="DIR",
        default=None,
        help="also write image values (jpeg, png, gif, webp) to files in DIR",
    )
    head.add_argument(
        "--width",
        type=int,
        default=100,
        metavar="COLS",
        help="line width for values (default: %(default)s)",
    )
    head.set_defaults(func=cmd_head)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit code (the console script passes it to sys.exit)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    out = sys.stdout
    try:
        return int(args.func(args, out))
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
        path = getattr(args, "path", None)
        if isinstance(e, FileNotFoundError) and path and os.path.exists(path):
            code = EXIT_FAILURE  # the path is there; what it should hold is not: bad data
        expected = isinstance(e, CommandError | ps.PixmoError | OSError)
        _error(message if expected else f"{message} (a bug? --debug shows the traceback)")
        return code


def _describe(e: Exception) -> tuple[int, str]:
    if isinstance(e, CommandError):
        return e.code, str(e)
    if isinstance(e, FileNotFoundError):
        return EXIT_USAGE, _one_line(e)
    if isinstance(e, ps.PixmoError):
        return EXIT_FAILURE, f"{type(e).__name__}: {_one_line(e)}"
    if isinstance(e, OSError):
        return EXIT_FAILURE, _one_line(e)
    return EXIT_FAILURE, f"{type(e).__name__}: {_one_line(e)}"


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
