"""``convert``: annotation tables plus an image source, into a pixmo-stream dataset.

The main process reads the annotations, groups them by image and hands batches of pending
records (annotations and where the image is) to worker processes, which read each image,
decode it in full and fill in its size and hash. Results come back in the order the
batches were handed out, so the output is the same records in the same order whatever the
number of workers. A missing or broken image skips its record (or keeps it without image)
and is counted and named in the report; it never stops the conversion.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa

import pixmo_stream as ps

from ..storage import is_url
from . import columns as C
from .errors import InputError
from .finishing import Finished, FinishOptions, Job, Pending, finish_batch
from .grouping import (
    GroupBatch,
    GroupIndex,
    contiguous,
    group_rows,
    iter_batches,
    single_rows,
)
from .images import CHECKS, Check
from .lazy_column import ParquetColumn
from .presets import Preset, check_columns
from .report import REPORT_NAME, ConvertReport, count_failure
from .sources import ImageRef, ImageSource
from .split import SPLITS, Split, select_groups

Engine = Literal["local", "ray"]
ENGINES: tuple[Engine, ...] = ("local", "ray")
BATCH_GROUPS = 64  # images per worker task: large enough to amortise pickling, small for order


# ---------------------------------------------------------------------------------------------
# Reading the annotations.


def parquet_files(paths: Sequence[str]) -> list[str]:
    """The files given, folders replaced by their ``*.parquet`` files, sorted."""
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, n) for n in os.listdir(p) if n.endswith(".parquet"))
            if not found:
                raise InputError(f"{p}: no .parquet files in this directory")
            files += found
        elif os.path.exists(p):
            files.append(p)
        else:
            raise FileNotFoundError(2, "No such file or directory", p)
    return files


def read_parquet(
    paths: Sequence[str], columns: Sequence[str] | None = None, skip: Sequence[str] = ()
) -> pa.Table:
    """One table of the given parquet files (directories: their ``*.parquet``, sorted), in
    order. Only ``columns`` that exist are read, and none of ``skip``."""
    import pyarrow.parquet as pq

    files = parquet_files(paths)
    tables = []
    for f in files:
        try:
            schema = pq.read_schema(f)
            names = schema.names if columns is None else columns
            wanted = [c for c in names if c in schema.names and c not in skip]
            tables.append(pq.read_table(f, columns=wanted))
        except (pa.ArrowException, OSError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise InputError(f"{f}: not a readable parquet file ({e})") from e
    if not tables:
        raise InputError("no input files")
    try:
        joined = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as e:
        raise InputError(f"the input files have different columns or types: {e}") from e
    del tables
    return contiguous(joined)


# ---------------------------------------------------------------------------------------------
# Turning a batch of grouped rows into pending records.


def _refs(
    preset: Preset, batch: GroupBatch, inline: ParquetColumn | None
) -> tuple[list[ImageRef], list[str | None]]:
    t, off = batch.table, batch.offsets
    names = t.column_names

    def first(col: str | None) -> list[Any]:
        if col is None or col not in names:
            return [None] * len(batch.groups)
        return C.first_per_group(t.column(col).to_pylist(), off)

    urls = first("image_url")
    files = first(preset.file_name_column)
    if inline is not None:
        data = inline.get(batch.input_rows[off[:-1]])
    elif preset.inline_images and preset.inline_images in names:
        data = C.first_per_group(C.inline_image_bytes(t.column(preset.inline_images)), off)
    else:
        data = [None] * len(batch.groups)
    refs = [ImageRef(u, f, d) for u, f, d in zip(urls, files, data, strict=True)]
    return refs, first(preset.published_sha256)


def pending_records(
    preset: Preset, batch: GroupBatch, inline: ParquetColumn | None = None
) -> list[Pending]:
    records = preset.annotate(batch)
    refs, shas = _refs(preset, batch, inline)
    out = []
    for i, rec in enumerate(records):
        rows = tuple(int(r) for r in batch.input_rows[batch.offsets[i] : batch.offsets[i + 1]])
        out.append(Pending(rec, refs[i], shas[i], rows))
    return out


# ---------------------------------------------------------------------------------------------
# The pipeline.


def _selected_groups(
    preset: Preset,
    table: pa.Table,
    index: GroupIndex,
    split: Split,
    seed: int,
    exclude_urls: set[str],
    report: ConvertReport,
) -> np.ndarray:
    groups = np.arange(len(index), dtype=np.int64)
    if exclude_urls and "image_url" not in table.column_names:
        raise InputError(f"{preset.name}: no image_url column to exclude images by")
    if exclude_urls:
        firsts = index.order[index.starts[:-1]]
        urls = table.column("image_url").take(pa.array(firsts)).to_pylist()
        keep = np.array([u not in exclude_urls for u in urls], dtype=bool)
        report.excluded_images = int((~keep).sum())
        groups = groups[keep]
    return select_groups(groups, split, preset.n_validation, seed)


def convert_table(
    preset: Preset,
    table: pa.Table,
    output: str,
    *,
    source: ImageSource,
    inputs: Sequence[str] = (),
    split: Split = "all",
    seed: int = 96817,
    exclude_urls: set[str] | frozenset[str] = frozenset(),
    workers: int = 0,
    check: Check = "decode",
    keep_missing: bool = False,
    shard_bytes: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    inline: ParquetColumn | None = None,
    on_total: Callable[[int], None] | None = None,
    more_tables: Iterable[tuple[str, pa.Table]] = (),
    engine: Engine = "local",
    address: str | None = None,
    storage_options: dict[str, Any] | None = None,
    fetch_report: dict[str, Any] | None = None,
) -> ConvertReport:
    """Converts an annotation table already in memory; see `convert` for the options.
    ``inline`` reads the preset's inline image column (left out of ``table``) lazily.
    ``more_tables`` (``(file, table)`` pairs, made one at a time) follow ``table`` for a
    preset of one record per row, so that an input of many files (WebDataset tars, parquet
    with inline images) is never in memory all at once; their rows count on from
    ``table``'s, and each must have ``table``'s columns. ``engine="ray"`` runs the batches
    as Ray tasks (`pixmo_stream.ray.convert`; ``address`` the cluster's). ``fetch_report``
    (the fetch's, when the images were downloaded first) goes into the report as it is."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if check not in CHECKS:
        raise ValueError(f"check must be one of {', '.join(CHECKS)}, got {check!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    check_output(output, engine)
    start = time.perf_counter()
    if inline is not None and inline.num_rows != table.num_rows:
        raise InputError(f"{inline.column}: {inline.num_rows} rows, the table {table.num_rows}")
    names = [*table.column_names, *([inline.column] if inline is not None else [])]
    check_columns(preset, names, ", ".join(inputs) or "the input")
    report = ConvertReport(
        preset.name, list(inputs), output, split, workers=workers, engine=engine, check=check
    )
    report.input_rows = table.num_rows
    report.fetch = fetch_report
    index = group_rows(table.column(preset.key)) if preset.key else single_rows(table.num_rows)
    report.images = len(index)
    groups = _selected_groups(preset, table, index, split, seed, set(exclude_urls), report)
    report.selected_images = len(groups)
    if on_total is not None:
        on_total(len(groups))
    opts = FinishOptions(source, check, keep_missing, preset.finish)
    excluded = set(exclude_urls)
    jobs = _jobs(preset, table, index, groups, inline, opts, more_tables, excluded, report)
    metadata = {**preset.metadata(), "split": split, "split_seed": str(seed)}
    kwargs: dict[str, Any] = {"overwrite": overwrite, "metadata": metadata}
    if storage_options:
        kwargs["storage_options"] = storage_options
    if shard_bytes is not None:
        kwargs["shard_bytes"] = shard_bytes
    if engine == "ray":
        from pixmo_stream.ray.convert import write_on_ray

        write_on_ray(
            jobs,
            output,
            preset.schema(),
            metadata=metadata,
            shard_bytes=shard_bytes,
            overwrite=overwrite,
            report=report,
            progress=progress,
            address=address,
        )
    else:
        _write_local(jobs, workers, output, preset.schema(), kwargs, report, progress)
    report.seconds = round(time.perf_counter() - start, 3)
    if not is_url(output):  # a store gets the dataset only: nothing here puts one object
        report.write(os.path.join(output, REPORT_NAME))
    return report


def check_output(output: str, engine: Engine) -> None:
    """Refuses what cannot be written: Ray tasks stage their parts beside the output, on a
    file system every node shares, so a URL output needs the local engine."""
    if engine == "ray" and is_url(output):
        raise InputError(
            f"{output}: engine 'ray' writes to a shared file system, not to a URL; use the "
            "local engine, or write locally and merge into the URL"
        )


def _write_local(
    jobs: Iterator[Job],
    workers: int,
    output: str,
    schema: ps.Schema,
    kwargs: dict[str, Any],
    report: ConvertReport,
    progress: Callable[[int], None] | None,
) -> None:
    with ps.Writer(output, schema, **kwargs) as writer:
        for outcomes in _run_jobs(jobs, workers):
            for rec, failure in outcomes:
                if failure is not None:
                    count_failure(report, failure, kept=rec is not None)
                if rec is not None:
                    writer.write(rec)
                    report.records_written += 1
                    report.sha256_mismatches += bool(rec["sha256_mismatch"])
            if progress is not None:
                progress(len(outcomes))


def _jobs(
    preset: Preset,
    table: pa.Table,
    index: GroupIndex,
    groups: np.ndarray,
    inline: ParquetColumn | None,
    opts: FinishOptions,
    more_tables: Iterable[tuple[str, pa.Table]],
    exclude_urls: set[str],
    report: ConvertReport,
) -> Iterator[Job]:
    for batch in iter_batches(table, index, groups, BATCH_GROUPS):
        yield pending_records(preset, batch, inline), opts
    base = table.num_rows
    for path, more in more_tables:
        if preset.key is not None:
            raise ValueError("more_tables is for presets of one record per row")
        if more.schema != table.schema:
            try:
                more = more.select(table.column_names).cast(table.schema)
            except (KeyError, pa.ArrowException) as e:
                raise InputError(
                    f"{path}: its columns differ from the first input's ({e}); convert it "
                    "on its own and merge the datasets"
                ) from e
        more = contiguous(more)
        n = more.num_rows
        rows = np.arange(n, dtype=np.int64)
        if exclude_urls:
            urls = more.column("image_url").to_pylist()
            keep = np.array([u not in exclude_urls for u in urls], dtype=bool)
            report.excluded_images += int((~keep).sum())
            rows = rows[keep]
        report.input_rows += n
        report.images += n
        report.selected_images += len(rows)
        for batch in iter_batches(more, single_rows(n), rows, BATCH_GROUPS):
            shifted = GroupBatch(batch.groups, batch.table, batch.offsets, batch.input_rows + base)
            yield pending_records(preset, shifted), opts
        base += n


def _run_jobs(jobs: Iterator[Job], workers: int) -> Iterator[list[Finished]]:
    if workers <= 1:
        for job in jobs:
            yield finish_batch(job)
        return
    # spawn, not fork: the parent may hold threads (a Writer's, torch's) that fork would
    # copy mid-flight. At most 2 batches per worker are in flight (Pool.imap would read the
    # whole input ahead), and results are taken in the order the batches were handed out.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        in_flight: deque[Any] = deque()
        for job in jobs:
            in_flight.append(pool.apply_async(finish_batch, (job,)))
            if len(in_flight) >= 2 * workers:
                yield in_flight.popleft().get()
        while in_flight:
            yield in_flight.popleft().get()
