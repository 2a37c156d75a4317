"""`PixmoDatasink`: a Ray `Dataset` written as one pixmo-stream dataset, exactly once."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import ray
from ray.data import Datasink
from ray.data.block import Block, BlockAccessor

from ..schema import Schema
from ..writer import DEFAULT_SHARD_BYTES, Writer, WriteSummary
from .arrow import records_of, schema_of_arrow
from .errors import RayWriteError
from .staging import (
    StagedPart,
    check_output,
    commit,
    discard,
    new_attempt,
    open_root,
    staging_root,
)


class PixmoDatasink(Datasink[StagedPart | None]):
    """Writes a Ray Dataset into ``path`` as one pixmo-stream dataset.

    Each write task writes its blocks with `pixmo_stream.Writer` into a staging directory of
    its own beside ``path``; when every task is done, ``on_write_complete`` moves the shards
    of the attempts that returned into ``path`` and writes one manifest, last. A task that
    Ray retries (a worker killed, an exception with ``retry_exceptions``) writes a fresh
    directory and its earlier attempt is never committed, so every row is in the result
    exactly once and no stray shard is left behind.

    Rows are in the order of the write tasks (``ctx.task_idx``: the order in which Ray hands
    out the dataset's blocks), then of the blocks and rows within each task. That is the
    dataset's block order when Ray preserves it (`write_pixmo` turns
    ``DataContext.execution_options.preserve_order`` on for its write).

    ``schema`` (a `pixmo_stream.Schema`) is the one every task writes; without it, each task
    derives one from its blocks' Arrow schema (`schema_of_arrow`), and tasks whose blocks
    disagree (a column that is all null in one block, say) fail the commit with
    `RayWriteError`. Pass ``schema`` where Arrow cannot tell: points given as plain nested
    lists (``list<list<double>>``) are lists unless the schema says ``array``, while Arrow's
    ``list<fixed_size_list<T, k>>`` (what `read_pixmo` gives) and Ray's tensor columns are
    read as arrays. The other
    options are `Writer`'s; ``rows_per_write`` has Ray bundle blocks until a task has that
    many rows (fewer, larger parts; each task writes at least one shard). ``summary`` holds
    the `WriteSummary` once the write is committed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: Schema | None = None,
        *,
        overwrite: bool = False,
        metadata: Mapping[str, str] | None = None,
        shard_bytes: int = DEFAULT_SHARD_BYTES,
        rows_per_write: int | None = None,
        writer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.schema = schema
        self.overwrite = overwrite
        self.metadata = dict(metadata or {})
        self._writer_options: dict[str, Any] = {
            "shard_bytes": shard_bytes,
            **dict(writer_options or {}),
        }
        self._rows_per_write = rows_per_write
        self.summary: WriteSummary | None = None
        check_output(self.path, overwrite)

    @property
    def min_rows_per_write(self) -> int | None:
        return self._rows_per_write

    def on_write_start(self, schema: Any = None) -> None:
        check_output(self.path, self.overwrite)
        open_root(self.path)

    def write(self, blocks: Iterable[Block], ctx: Any) -> StagedPart | None:
        where = new_attempt(staging_root(self.path), int(ctx.task_idx))
        opts = {**self._writer_options, "metadata": self.metadata}
        writer: Writer | None = None
        try:
            for block in blocks:
                table = BlockAccessor.for_block(block).to_arrow()
                if writer is None:
                    schema = self.schema
                    if schema is None:
                        if table.num_rows == 0:
                            continue
                        schema = schema_of_arrow(table.schema)
                    writer = Writer(where, schema, **opts)
                for rows in records_of(table):
                    writer.write_many(rows)
            if writer is None:
                if self.schema is None:
                    return None  # no rows, and nothing to say what their schema is
                writer = Writer(where, self.schema, **opts)
            summary = writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        return StagedPart(int(ctx.task_idx), where, summary.num_rows, writer.schema)

    def on_write_complete(self, write_result: Any) -> None:
        parts = [p for p in write_result.write_returns if p is not None]
        self.summary = commit(
            parts, self.path, overwrite=self.overwrite, schema=self.schema, metadata=self.metadata
        )

    def on_write_failed(self, error: Exception) -> None:
        discard(staging_root(self.path))

    def get_name(self) -> str:
        return "PixmoStream"


def write_pixmo(
    dataset: ray.data.Dataset,
    path: str | os.PathLike[str],
    schema: Schema | None = None,
    *,
    overwrite: bool = False,
    metadata: Mapping[str, str] | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    ray_remote_args: Mapping[str, Any] | None = None,
    concurrency: int | None = None,
) -> WriteSummary:
    """Writes ``dataset`` into ``path`` (`PixmoDatasink`), its rows in the dataset's order,
    and returns the `WriteSummary`."""
    sink = PixmoDatasink(
        path, schema, overwrite=overwrite, metadata=metadata, shard_bytes=shard_bytes
    )
    ctx = dataset.context
    before = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    try:
        dataset.write_datasink(
            sink, ray_remote_args=dict(ray_remote_args or {}), concurrency=concurrency
        )
    finally:
        ctx.execution_options.preserve_order = before
    if sink.summary is None:
        raise RayWriteError(f"{sink.path}: Ray finished the write without committing it")
    return sink.summary
