"""``pixmo-stream demo``: write a small PixMo-like dataset, read it back every way, report.

The point is a two-minute tour a new user can run before reading any docs: it generates
records (JPEGs of varied sizes, dense captions, points, QA) with ``pixmo_stream.synthetic``,
writes them with ``Writer``, then reads them back by index, by ``take``, by iteration, with
a caption-only projection, checks every checksum, and streams them through a torch
DataLoader. Every read is compared with what was written, so the demo is also a smoke test.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import pixmo_stream as ps
from pixmo_stream._native import Blob
from pixmo_stream.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    column_totals,
    human_bytes,
    human_seconds,
    one_line,
)
from pixmo_stream.cli.common import progress as _progress

# Small shards and row groups, so that even the default 2,000 records show the layout
# (several shards, several row groups each) that a real dataset has.
DEMO_SHARD_BYTES = 32 << 20
DEMO_ROW_GROUP_BYTES = 4 << 20
RANDOM_READS = 300
TAKE_ROWS = 256


@dataclass
class Timing:
    name: str
    seconds: float
    records: int = 0
    nbytes: int = 0
    note: str = ""

    def rate(self) -> str:
        if self.seconds <= 0:
            return ""
        parts = []
        if self.records:
            parts.append(f"{self.records / self.seconds:,.0f} rec/s")
        if self.nbytes:
            parts.append(f"{human_bytes(self.nbytes / self.seconds)}/s")
        return ", ".join(parts)


def payload_bytes(value: Any) -> int:
    """Bytes of the values themselves (what a naive dump would hold), without any framing."""
    if value is None:
        return 0
    if isinstance(value, bytes | bytearray | memoryview | Blob):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        return 8
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(payload_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(payload_bytes(v) for v in value)
    return len(repr(value))


def same_value(a: Any, b: Any) -> bool:
    """Deep equality that treats numpy arrays, buffers and bytes sensibly."""
    if hasattr(a, "shape") and hasattr(a, "dtype") or hasattr(b, "shape") and hasattr(b, "dtype"):
        import numpy as np

        a_arr, b_arr = np.asarray(a), np.asarray(b)
        return a_arr.shape == b_arr.shape and bool(np.array_equal(a_arr, b_arr))
    if isinstance(a, bytes | bytearray | memoryview | Blob) or isinstance(
        b, bytes | bytearray | memoryview | Blob
    ):
        try:
            return bytes(a) == bytes(b)
        except TypeError:
            return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def matches(record: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Whether ``record`` holds every field of ``expected`` with the same value."""
    return all(k in record and same_value(record[k], v) for k, v in expected.items())


def _check_preset(preset: str) -> None:
    from pixmo_stream import synthetic

    if preset not in synthetic.PRESETS:
        raise CommandError(
            f"unknown preset {preset!r}; choose one of {', '.join(sorted(synthetic.PRESETS))}",
            EXIT_USAGE,
        )


DEMO_IMAGE_SIZE = (224, 224)


def _streaming_loader(path: str, workers: int) -> tuple[Iterable[Any] | None, str]:
    """A DataLoader over StreamingDataset (the dataset batches: the fast path), or None."""
    try:
        import torch.utils.data
    except ImportError:
        return None, "torch is not installed (pip install 'pixmo-stream[torch]')"
    try:
        streaming_cls = ps.StreamingDataset
    except (AttributeError, ImportError) as e:  # the streaming module is optional here
        return None, f"pixmo_stream.StreamingDataset is not available ({one_line(e)})"
    try:
        loader_cls: Any = ps.DataLoader
    except (AttributeError, ImportError):
        loader_cls = torch.utils.data.DataLoader
    # Images are decoded and resized on the read-ahead threads (Rust, off the GIL): each
    # batch's "image" is one [32, 224, 224, 3] uint8 tensor.
    sds = streaming_cls(
        path, shuffle=True, seed=0, batch_size=32, decode=ps.Decode(resize=DEMO_IMAGE_SIZE)
    )
    loader = loader_cls(sds, batch_size=None, num_workers=workers)
    where = f"{workers} worker process{'es' if workers != 1 else ''}" if workers else "no workers"
    name = "torch DataLoader" if loader_cls is torch.utils.data.DataLoader else "ps.DataLoader"
    h, w = DEMO_IMAGE_SIZE
    return loader, (
        f"{name} over ps.StreamingDataset(shuffle=True, batch_size=32, "
        f"decode=ps.Decode(resize=({h}, {w}))): images decoded and resized on the read-ahead "
        f"threads, {where}; JPEG decoder: {ps.image.jpeg_decoder()}"
    )


def collate_list(batch: list[Any]) -> list[Any]:
    """Keep records as dicts: images stay encoded bytes."""
    return batch


def _batch_len(batch: Any) -> int:
    if isinstance(batch, list):
        return len(batch)
    if isinstance(batch, dict):
        first: Any = next(iter(batch.values()), [])
        return len(first)
    return 1


def run(
    records: int = 1000,
    out_dir: str | None = None,
    keep: bool = False,
    seed: int = 0,
    preset: str = "small",
    overwrite: bool = False,
    quiet: bool = False,
    workers: int = 0,
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    _check_preset(preset)
    tmp = None
    if out_dir is None:
        tmp = tempfile.mkdtemp(prefix="pixmo-demo-")
        path = os.path.join(tmp, "dataset")
    else:
        path = out_dir
        if os.path.isdir(path) and os.listdir(path) and not overwrite:
            raise CommandError(
                f"{path} already exists and is not empty; pass --overwrite to replace it",
                EXIT_USAGE,
            )
    try:
        kept = keep or out_dir is not None
        return _run(records, path, seed, preset, overwrite, quiet, workers, kept, out)
    finally:
        if tmp is not None:
            if keep:
                out.write(f"kept the dataset at {path}\n")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


def _run(
    n: int,
    path: str,
    seed: int,
    preset: str,
    overwrite: bool,
    quiet: bool,
    workers: int,
    keep: bool,
    out: TextIO,
) -> int:
    def bar(it: Any = None, **kw: Any) -> Any:
        return _progress(it, quiet=quiet, **kw)

    timings: list[Timing] = []
    problems: list[str] = []
    rng = random.Random(seed)
    sample_ids = set(rng.sample(range(n), min(n, RANDOM_READS)))
    sample: dict[int, dict[str, Any]] = {}

    # 1. A pixmo-points-shaped parquet and a Molmo-named image folder, converted with the
    # preset (every image decoded once to check it), as `pixmo-stream convert` does.
    from pixmo_stream.demo_source import make_source
    from pixmo_stream.ingest import convert

    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pixmo-demo-src-") as src_dir:
        t0 = time.perf_counter()
        with bar(total=n, desc="generate", unit="img") as pbar:
            source = make_source(src_dir, n, seed, preset, sample_ids, pbar.update)
        gen_s = time.perf_counter() - t0
        sample = source.expected
        t0 = time.perf_counter()
        with bar(total=n, desc="convert", unit="img") as pbar:
            converted = convert(
                source.parquet,
                path,
                preset="pixmo-points",
                images=source.images,
                shard_bytes=DEMO_SHARD_BYTES,
                overwrite=overwrite,
                progress=pbar.update,
            )
        write_s = time.perf_counter() - t0
    raw = source.image_bytes
    if converted.records_written != n:
        problems.append(
            f"convert wrote {converted.records_written} records of {n}: {converted.skipped}"
        )
    timings.append(
        Timing(
            "generate",
            gen_s,
            n,
            int(raw),
            f"synthetic JPEGs and {source.num_rows:,} parquet rows, not pixmo-stream",
        )
    )
    timings.append(
        Timing(
            "convert+write",
            write_s,
            n,
            int(raw),
            f"preset pixmo-points: {source.num_rows:,} rows grouped, every image decoded",
        )
    )

    # 2. Open, and time to first record.
    t0 = time.perf_counter()
    ds = ps.Dataset(path)
    t_open = time.perf_counter() - t0
    first = ds[0]
    t_first = time.perf_counter() - t0
    if len(ds) != n:
        problems.append(f"len(ds) is {len(ds)}, wrote {n}")
    if 0 in sample and not matches(first, sample[0]):
        problems.append("ds[0] differs from the record written")
    info = ds.info()
    on_disk = int(info.get("num_bytes", 0))
    shards = info.get("shards", [])
    num_rg = sum(len(s.get("row_groups", [])) for s in shards)

    # 3. Random access, in random order, each compared with what was written.
    order = list(sample_ids)
    rng.shuffle(order)
    t0 = time.perf_counter()
    got = {i: ds[i] for i in bar(order, desc="random ds[i]", unit="rec")}
    t_rand = time.perf_counter() - t0
    bad = [i for i in order if not matches(got[i], sample[i])]
    if bad:
        problems.append(f"ds[i] differs from the record written for {len(bad)} rows, e.g. {bad[0]}")
    rand_bytes = sum(payload_bytes(got[i]) for i in order)
    timings.append(
        Timing(
            f"random ds[i] x{len(order)}",
            t_rand,
            len(order),
            rand_bytes,
            "round trip ok" if not bad else "MISMATCH",
        )
    )

    # 4. take: one call for a batch of scattered rows.
    ids = rng.sample(range(n), min(n, TAKE_ROWS))
    t0 = time.perf_counter()
    taken = ds.take(ids)
    t_take = time.perf_counter() - t0
    bad = [
        i for i, rec in zip(ids, taken, strict=True) if i in sample and not matches(rec, sample[i])
    ]
    if len(taken) != len(ids) or bad:
        problems.append("take returned different records")
    timings.append(
        Timing(f"take({len(ids)} rows)", t_take, len(ids), sum(payload_bytes(r) for r in taken))
    )
    del taken, got

    # 5. Full iteration, all columns.
    t0 = time.perf_counter()
    count, nbytes, bad = 0, 0, []
    for i, rec in enumerate(bar(ds, total=n, desc="iterate", unit="rec")):
        count += 1
        nbytes += payload_bytes(rec)
        if i in sample and not matches(rec, sample[i]):
            bad.append(i)
    t_iter = time.perf_counter() - t0
    if bad:
        problems.append(
            f"iteration differs from the records written at {len(bad)} rows, e.g. {bad[0]}"
        )
    if count != n:
        problems.append(f"iteration gave {count} records, wrote {n}")
    timings.append(
        Timing("iterate (all columns)", t_iter, count, nbytes, "images as views, checked on read")
    )

    # 6. Projection: captions only; the image bytes are never touched.
    names = list(ds.schema.names)
    text_col: str | None = next((c for c in ("caption", "captions") if c in names), None)
    text_col = text_col or _first_string_column(info, names)
    if text_col is not None:
        t0 = time.perf_counter()
        count, nbytes = 0, 0
        for rec in bar(
            ds.iter(columns=[text_col]), total=n, desc=f"iterate {text_col}", unit="rec"
        ):
            count += 1
            nbytes += payload_bytes(rec)
            if set(rec) != {text_col}:
                problems.append(f"projection returned columns {sorted(rec)}")
                break
        t_proj = time.perf_counter() - t0
        timings.append(
            Timing(f"iterate ({text_col} only)", t_proj, count, nbytes, "other columns not read")
        )

    # 7. verify: every chunk checksum.
    t0 = time.perf_counter()
    report = ds.verify()
    t_verify = time.perf_counter() - t0
    if not report.ok:
        problems.append(f"verify failed: {'; '.join(map(str, report.errors[:3]))}")
    timings.append(
        Timing(
            "verify",
            t_verify,
            0,
            on_disk,
            f"{report.num_chunks:,} chunks, {'ok' if report.ok else 'FAILED'}",
        )
    )

    # 8. Streaming through a torch DataLoader, or plain ds.iter when that is not there.
    stream_note = _stream(ds, path, n, workers, quiet, timings, problems)

    # 9. One Molmo training batch, tokenized, shown as text.
    batch_view = _molmo_batch(path, timings, problems)

    _report(
        out,
        info,
        n,
        seed,
        path,
        keep,
        len(ds),
        on_disk,
        int(raw),
        len(shards),
        num_rg,
        t_open,
        t_first,
        timings,
        stream_note,
        batch_view,
        problems,
        time.perf_counter() - t_all,
    )
    return EXIT_OK if not problems else EXIT_FAILURE


def _first_string_column(info: dict[str, Any], names: list[str]) -> str | None:
    from pixmo_stream.cli.common import schema_to_dict

    with contextlib.suppress(Exception):
        for f in schema_to_dict(info.get("schema", {})).get("fields", []):
            if f["type"].get("kind") == "string":
                return str(f["name"])
    return names[0] if names else None


def _stream(
    ds: Any,
    path: str,
    n: int,
    workers: int,
    quiet: bool,
    timings: list[Timing],
    problems: list[str],
) -> str:
    try:
        loader, note = _streaming_loader(path, workers)
    except Exception as e:  # a half-finished streaming module must not sink the demo
        loader, note = None, f"StreamingDataset failed to start ({type(e).__name__}: {e})"
    if loader is None:
        t0 = time.perf_counter()
        count, nbytes = 0, 0
        first_s = None
        for rec in _progress(ds.iter(), total=n, desc="ds.iter", unit="rec", quiet=quiet):
            if first_s is None:
                first_s = time.perf_counter() - t0
            count += 1
            nbytes += payload_bytes(rec)
        timings.append(
            Timing(
                "stream (plain ds.iter)",
                time.perf_counter() - t0,
                count,
                nbytes,
                f"first record {human_seconds(first_s or 0)}",
            )
        )
        return f"no DataLoader run, streamed with plain ds.iter instead: {note}"
    t0 = time.perf_counter()
    count, nbytes = 0, 0
    first_s = None
    with _progress(total=n, desc="DataLoader", unit="rec", quiet=quiet) as pbar:
        for batch in loader:
            if first_s is None:
                first_s = time.perf_counter() - t0
            k = _batch_len(batch)
            count += k
            nbytes += payload_bytes(batch)
            pbar.update(k)
            if count >= n:
                break  # an infinite (mixture-style) stream: one epoch is enough
    if count < n:
        problems.append(f"the DataLoader gave {count} records, wrote {n}")
    timings.append(
        Timing(
            "stream+decode (DataLoader)",
            time.perf_counter() - t0,
            count,
            nbytes,
            f"first batch {human_seconds(first_s or 0)}"
            + (", incl. worker start" if workers else ""),
        )
    )
    return note


def _molmo_batch(path: str, timings: list[Timing], problems: list[str]) -> tuple[list[str], str]:
    """Molmo's batch of two records, as text (``pixmo_stream.demo_batch``)."""
    from pixmo_stream.demo_batch import show_batch

    t0 = time.perf_counter()
    try:
        lines, note = show_batch(path, rows=2)
    except Exception as e:  # shown as a problem, the rest of the demo still reports
        problems.append(f"the Molmo batch failed: {type(e).__name__}: {one_line(e)}")
        return [], "failed (see PROBLEMS)"
    if lines:
        timings.append(
            Timing(
                "Molmo batch (2 rows)", time.perf_counter() - t0, 2, 0, "incl. a BPE trained here"
            )
        )
    return lines, note


def _pack(items: list[str], width: int) -> list[str]:
    """Comma-separated items on lines of at most ``width`` characters, never split."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= width:
            lines[-1] += ", " + item
        else:
            if lines:
                lines[-1] += ","
            lines.append(item)
    return lines


def _column_note(c: dict[str, Any]) -> str:
    codec = "+".join(c["codecs"])
    ratio = f" {c['ratio']:.1f}x" if c["ratio"] and codec != "none" else ""
    return f"{c['name']} {human_bytes(c['stored_bytes'])} ({codec}{ratio})"


def _report(
    out: TextIO,
    info: dict[str, Any],
    n: int,
    seed: int,
    path: str,
    keep: bool,
    num_rows: int,
    on_disk: int,
    raw: int,
    num_shards: int,
    num_rg: int,
    t_open: float,
    t_first: float,
    timings: list[Timing],
    stream_note: str,
    batch_view: tuple[list[str], str],
    problems: list[str],
    total_s: float,
) -> None:
    p = out.write
    p(f"pixmo-stream demo: {n:,} PixMo-like records (seed {seed})\n")
    if keep:
        p(f"  dataset   {path}\n")
    else:
        p(
            "  dataset   a temporary directory, removed when the demo ends "
            "(--keep or --out DIR keeps it)\n"
        )
    p(
        f"  layout    {num_shards:,} shard{'s' if num_shards != 1 else ''}, "
        f"{num_rg:,} row group{'s' if num_rg != 1 else ''}, {num_rows:,} rows\n"
    )
    ratio = f"{raw / on_disk:.2f}x" if on_disk else "-"
    p(f"  size      {human_bytes(on_disk)} on disk, {human_bytes(raw)} of raw values ({ratio})\n")
    cols = sorted(column_totals(info), key=lambda c: -c["stored_bytes"])
    p("  columns   " + "\n            ".join(_pack([_column_note(c) for c in cols], 86)) + "\n")
    p(
        f"  open      {human_seconds(t_open)}; time to first record {human_seconds(t_first)} "
        "(open + ds[0])\n"
    )
    p("\n")
    width = max(len(t.name) for t in timings)
    for t in timings:
        note = f"  ({t.note})" if t.note else ""
        p(f"  {t.name.ljust(width)}  {human_seconds(t.seconds):>9}  {t.rate()}{note}\n")
    p("\n")
    p(f"  streaming: {stream_note}\n")
    p("  MB/s counts value bytes: images as stored, text as UTF-8, arrays as their buffers\n")
    lines, note = batch_view
    p(f"\n  one Molmo training batch: {note}\n")
    for line in lines:
        p("    " + line.replace("\n", "\n    ") + "\n")
    if problems:
        p(f"PROBLEMS ({len(problems)}):\n")
        for msg in problems:
            p(f"  - {msg}\n")
    else:
        p(f"all reads matched what was written; total {human_seconds(total_s)}\n")
