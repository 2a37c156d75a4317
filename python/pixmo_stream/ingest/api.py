"""`convert`: the one call behind ``pixmo-stream convert``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .errors import InputError
from .images import Check
from .inputs import (
    detect,
    file_name_column,
    hf_saved_files,
    image_column,
    read_arrow_stream,
    read_jsonl,
    read_webdataset,
)
from .lazy_column import ParquetColumn
from .passthrough import passthrough_preset
from .pipeline import (
    ENGINES,
    ConvertReport,
    Engine,
    check_output,
    convert_table,
    parquet_files,
    read_parquet,
)
from .presets import PRESETS, Preset, get_preset
from .sources import FolderImages, ImageSource, InlineImages, Naming, NoImages
from .split import MOLMO_SPLIT_SEED, Split

if TYPE_CHECKING:
    from .fetch import FetchOptions

CLOCKS = "pixmo-clocks"
PRESET_NAMES = (*sorted(PRESETS), CLOCKS)


def excluded_urls(paths: Sequence[str]) -> set[str]:
    """The ``image_url`` values of parquet files (pixmo-points-eval, to hold its images out
    of pixmo-points training as Molmo does)."""
    if not paths:
        return set()
    table = read_parquet(paths, ["image_url"])
    if "image_url" not in table.column_names:
        raise InputError(f"{', '.join(paths)}: no image_url column to exclude images by")
    return {u for u in table.column("image_url").to_pylist() if u}


def pq_names(path: str) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def _folder(images: str | None, naming: Naming) -> ImageSource:
    return FolderImages(images, naming) if images else NoImages()


def _tables(kind: str, inputs: Sequence[str]) -> Iterator[tuple[str, pa.Table]]:
    """A generic input's files, one table each, read as they are asked for."""
    for p in inputs:
        if kind == "hf-disk":
            for f in hf_saved_files(p):
                yield f, read_arrow_stream(f)
        elif kind == "jsonl":
            yield p, read_jsonl(p)
        elif kind == "webdataset":
            tars = [p]
            if os.path.isdir(p):
                tars = sorted(os.path.join(p, n) for n in os.listdir(p) if n.endswith(".tar"))
            for tar in tars:
                yield tar, read_webdataset([tar])
        else:
            for f in parquet_files([p]):
                yield f, read_parquet([f])


def _generic(
    inputs: Sequence[str], images: str | None, naming: Naming
) -> tuple[pa.Table, Iterator[tuple[str, pa.Table]], Preset, ImageSource]:
    kinds = {detect(p) for p in inputs}
    if len(kinds) != 1:
        raise InputError(f"the inputs are of different kinds ({', '.join(sorted(kinds))})")
    kind = kinds.pop()
    tables = _tables(kind, inputs)
    try:
        _, table = next(tables)
    except StopIteration:
        raise InputError(f"{', '.join(inputs)}: no input files") from None
    inline = image_column(table)
    if inline is not None:
        preset = passthrough_preset(
            kind, table.schema, description=f"{kind} with inline images", inline_images=inline
        )
        return table, tables, preset, InlineImages()
    if images is None:
        raise InputError(
            f"{', '.join(inputs)}: no image bytes in the input; give the image folder "
            "(--images DIR)"
        )
    name_col = file_name_column(table)
    if name_col is None and "image_url" not in table.column_names:
        raise InputError(
            f"{', '.join(inputs)}: no column names the images (looked for image_url and "
            f"{', '.join(('file_name', 'image_path', 'path', 'image'))})"
        )
    if name_col is not None:
        naming = "filename"
    preset = passthrough_preset(
        kind,
        table.schema,
        description=f"{kind} annotations with an image folder",
        file_name_column=name_col,
        exclude=(name_col,) if name_col else (),
    )
    return table, tables, preset, FolderImages(images, naming)


def convert(
    inputs: Sequence[str] | str,
    output: str,
    *,
    preset: str | None = None,
    images: str | None = None,
    naming: Naming = "url-sha256",
    split: Split = "all",
    seed: int = MOLMO_SPLIT_SEED,
    exclude: Sequence[str] = (),
    workers: int = 0,
    check: Check = "decode",
    keep_missing: bool = False,
    shard_bytes: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    source: ImageSource | None = None,
    on_total: Callable[[int], None] | None = None,
    engine: Engine = "local",
    address: str | None = None,
    storage_options: dict[str, Any] | None = None,
    fetch: FetchOptions | None = None,
    fetch_progress: bool = False,
) -> ConvertReport:
    """Converts ``inputs`` into a dataset at ``output`` and returns the report (also written
    to ``output/convert-report.json`` when ``output`` is a local directory).

    ``output`` may be a URL (``s3://bucket/prefix``, ``gs://``, ``az://``; the local engine
    only): shards are staged locally and uploaded as they are finished, the manifest last,
    the store configured by ``storage_options`` over the environment, as for `Writer`. The
    inputs and ``images`` are local.

    ``preset`` names a PixMo dataset (`PRESET_NAMES`); without one the input is generic (a
    JSONL or parquet with an image folder, a saved HF dataset, WebDataset tars). ``images``
    is a local folder, its files named as Molmo's cache names them (``naming="url-sha256"``)
    or by file name (``"filename"``). ``split`` selects Molmo's held-out split (``train`` or
    ``validation``, ``seed`` as Molmo's); ``exclude`` lists parquet files whose images are
    left out first (pixmo-points-eval for pixmo-points). ``workers`` > 1 reads and checks
    images in that many processes; the records and their order do not depend on it.
    ``source`` replaces the image source (one that downloads, say): any `ImageSource`.
    ``progress(n)`` is called as records are done, ``on_total(n)`` once the number of
    images to convert is known. ``engine="ray"`` reads, checks and writes the images in Ray
    tasks (``pip install 'pixmo-stream[ray]'``), on the cluster at ``address`` (or the one
    this process is connected to, or a new local one): the records and their order are a
    local run's (docs/RAY.md).

    ``fetch`` (a `pixmo_stream.ingest.fetch.FetchOptions`) first downloads the images the
    parquet inputs' ``image_url`` column names into ``images`` as ``pixmo-stream fetch`` does
    (resumable; its JSON report written there too, a progress bar with ``fetch_progress``),
    then converts them: an image that could not be downloaded is skipped (or kept without
    image) under its fetch outcome (``not_found``, ``timeout``, ...) instead of ``missing``,
    and the report holds the fetch report under ``fetch``. Ctrl-C while fetching raises
    `pixmo_stream.ingest.fetch.FetchInterrupted`.
    """
    if engine not in ENGINES:  # before the input is read
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    check_output(output, engine)
    if engine == "ray" and images is not None:
        images = os.path.abspath(images)  # Ray's workers need not share this process's cwd
    paths = [inputs] if isinstance(inputs, str) else list(inputs)
    if not paths:
        raise InputError("no inputs")
    fetched = None
    if fetch is not None:
        source, fetched = _fetch(paths, images, naming, source, fetch, fetch_progress)
    src: ImageSource
    inline: ParquetColumn | None = None
    more: Iterator[tuple[str, pa.Table]] = iter(())
    if preset is None:
        table, more, chosen, src = _generic(paths, images, naming)
    elif preset == CLOCKS:
        table = read_parquet(paths)
        name_col = "image" if images and "image" in table.column_names else None
        chosen = passthrough_preset(
            CLOCKS,
            table.schema,
            description="clock renderings' metadata (images only when you supply them)",
            file_name_column=name_col,
            exclude=(name_col,) if name_col else (),
        )
        src = _folder(images, "filename")
    else:
        chosen = get_preset(preset)
        wanted = [*chosen.required, *chosen.optional]
        if chosen.inline_images:
            # The images stay in the files until a batch asks for them.
            table = read_parquet(paths, wanted, skip=[chosen.inline_images])
            files = parquet_files(paths)
            if chosen.inline_images in pq_names(files[0]):
                inline = ParquetColumn(files, chosen.inline_images)
            src = InlineImages()
        else:
            table = read_parquet(paths, wanted)
            src = _folder(images, naming)
    return convert_table(
        chosen,
        table,
        output,
        source=src if source is None else source,
        inputs=paths,
        split=split,
        seed=seed,
        exclude_urls=excluded_urls(list(exclude)),
        workers=workers,
        check=check,
        keep_missing=keep_missing,
        shard_bytes=shard_bytes,
        overwrite=overwrite,
        progress=progress,
        inline=inline,
        on_total=on_total,
        more_tables=more,
        engine=engine,
        address=address,
        storage_options=storage_options,
        fetch_report=fetched,
    )


def _fetch(
    paths: Sequence[str],
    images: str | None,
    naming: Naming,
    source: ImageSource | None,
    options: FetchOptions,
    progress: bool,
) -> tuple[ImageSource, dict[str, Any]]:
    """Downloads the inputs' images into ``images``; the source that reads them back."""
    from .fetch import FetchedImages, fetch_parquet_images

    if not images:
        raise InputError("fetching needs images=DIR, the folder to download into")
    if naming != "url-sha256" or source is not None:
        raise InputError(
            "fetching reads the images it downloads, named as Molmo's cache names them: "
            "leave naming and source as they are"
        )
    parquets = [p for p in paths if p.endswith(".parquet") or os.path.isdir(p)]
    if not parquets:
        raise InputError("fetching reads image URLs from parquet inputs; none given")
    report = fetch_parquet_images(parquet_files(parquets), images, options, progress=progress)
    return FetchedImages(images), report.to_dict()
