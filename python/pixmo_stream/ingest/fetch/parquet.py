"""The ``(url, sha256)`` pairs of PixMo parquet files, read a column batch at a time."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence

from .errors import FetchError

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")

URL_COLUMN = "image_url"
SHA_COLUMN = "image_sha256"
_BATCH_ROWS = 65_536


def parquet_urls(
    paths: Sequence[str | os.PathLike[str]],
    *,
    url_column: str = URL_COLUMN,
    sha_column: str | None = SHA_COLUMN,
) -> Iterator[tuple[str, str | None]]:
    """Yield ``(url, sha256 or None)`` for every row of every file (repeats included).

    Only the two columns are read. ``sha_column`` is used where a file has it (pixmo-cap does
    not). Rows with a null URL are skipped.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in paths:
        try:
            pfile = pq.ParquetFile(path)
        except FileNotFoundError:
            raise
        except (pa.ArrowException, OSError) as exc:
            raise FetchError(f"{path}: not a readable parquet file: {exc}", path=str(path)) from exc
        names = pfile.schema_arrow.names
        if url_column not in names:
            raise FetchError(
                f"{path}: no {url_column!r} column (columns: {', '.join(names)})", path=str(path)
            )
        columns = [url_column] + ([sha_column] if sha_column and sha_column in names else [])
        for name in columns:
            kind = pfile.schema_arrow.field(name).type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                raise FetchError(f"{path}: column {name!r} is {kind}, not strings", path=str(path))
        row = 0
        try:
            for batch in pfile.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
                urls = batch.column(0).to_pylist()
                shas = batch.column(1).to_pylist() if len(columns) == 2 else [None] * len(urls)
                for url, sha in zip(urls, shas, strict=True):
                    if sha and not _SHA256.fullmatch(sha):
                        raise FetchError(
                            f"{path}: row {row}: {sha_column} {sha!r} is not 64 hex digits",
                            path=str(path),
                        )
                    if url is not None:
                        yield url, sha or None
                    row += 1
        except (pa.ArrowException, OSError) as exc:
            raise FetchError(f"{path}: cannot read parquet data: {exc}", path=str(path)) from exc
