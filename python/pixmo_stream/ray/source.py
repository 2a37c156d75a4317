"""`PixmoDatasource`: a pixmo-stream dataset read into Ray, one read task per row-group range."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import ray
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from .._native import CorruptDataError
from ..dataset import Dataset, check_columns, column_list
from ..storage import is_url
from .arrow import arrow_schema, table_of

MANIFEST = "manifest.json"

# Ray's BlockMetadata and ReadTask gained and lost a `schema` over the versions this supports.
_METADATA_HAS_SCHEMA = "schema" in {f.name for f in dataclasses.fields(BlockMetadata)}
_TASK_TAKES_SCHEMA = "schema" in inspect.signature(ReadTask.__init__).parameters


def _manifest(path: str) -> dict[str, Any]:
    if not os.path.isdir(path):  # a single shard has no manifest
        return {"write_id": None, "num_bytes": os.path.getsize(path)}
    with open(os.path.join(path, MANIFEST), encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def _read_range(
    path: str,
    identity: int | None,
    columns: list[str],
    row_groups: list[tuple[int, int]],
    storage_options: dict[str, Any] | None = None,
) -> Iterator[pa.Table]:
    """One Arrow table per row group of ``row_groups`` (``(first_row, num_rows)`` pairs)."""
    ds = Dataset(path, storage_options=storage_options)
    if ds._native.manifest_hash != identity:
        raise CorruptDataError(
            f"{path}: the dataset was rewritten after Ray planned the read; read it again"
        )
    schema = arrow_schema(ds.schema, columns)
    for first, n in row_groups:
        yield table_of(ds.take(range(first, first + n), columns), schema, ds.schema)


class PixmoDatasource(Datasource):
    """Reads the dataset at ``path`` (a directory, or one ``.pxs`` shard) into Ray: read
    tasks over runs of consecutive row groups, each yielding an Arrow table per row group
    (which Ray may join into larger blocks), in storage order, so that the Ray dataset's
    block order is the dataset's row order. ``columns`` projects: only
    those columns are read (image bytes are never touched when ``image`` is left out).

    Types map as `pixmo_stream.ray.arrow` says: images as Arrow ``binary``, ``(N, k)``
    arrays as ``list<fixed_size_list<T, k>>``, lists and structs as Arrow's, ``any`` as
    msgpack bytes (unpacked again by `PixmoDatasink`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str] | None = None,
        *,
        storage_options: dict[str, Any] | None = None,
    ):
        super().__init__()
        text = os.fspath(path)
        # A URL (s3://, gs://, ...) is read by every task from the store, with these options.
        self.path = text if is_url(text) else os.path.abspath(text)
        self.storage_options = storage_options
        ds = Dataset(self.path, storage_options=storage_options)
        wanted = column_list(columns)
        if wanted is not None:
            check_columns(wanted, ds.columns, self.path)
        self.columns = ds.columns if wanted is None else wanted
        # Tasks check they read the dataset that was planned (not one written over it since).
        self._identity = ds._native.manifest_hash
        manifest = {} if is_url(self.path) else _manifest(self.path)
        self._layout = [(first, n) for _, _, first, n in ds.row_group_layout()]
        self._schema = arrow_schema(ds.schema, self.columns)
        self._num_rows = len(ds)
        self._num_bytes = int(manifest.get("num_bytes") or 0)

    def get_name(self) -> str:
        return "PixmoStream"

    def estimate_inmemory_data_size(self) -> int | None:
        return self._num_bytes or None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        groups = self._layout
        if not groups:
            return []
        n_tasks = len(groups) if parallelism <= 0 else min(parallelism, len(groups))
        tasks = []
        for k in range(n_tasks):
            part = groups[k * len(groups) // n_tasks : (k + 1) * len(groups) // n_tasks]
            rows = sum(n for _, n in part)
            meta: dict[str, Any] = dict(
                num_rows=rows,
                size_bytes=max(1, self._num_bytes * rows // max(1, self._num_rows)),
                input_files=None,
                exec_stats=None,
            )
            if _METADATA_HAS_SCHEMA:
                meta["schema"] = self._schema
            read = functools.partial(
                _read_range,
                self.path,
                self._identity,
                self.columns,
                part,
                self.storage_options,
            )
            kwargs: dict[str, Any] = {}
            if _TASK_TAKES_SCHEMA:
                kwargs["schema"] = self._schema
            if per_task_row_limit is not None:
                kwargs["per_task_row_limit"] = per_task_row_limit
            tasks.append(ReadTask(read, BlockMetadata(**meta), **kwargs))
        return tasks


def read_pixmo(
    path: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    *,
    override_num_blocks: int | None = None,
    preserve_order: bool = True,
    storage_options: dict[str, Any] | None = None,
    **read_args: Any,
) -> ray.data.Dataset:
    """The dataset at ``path`` as a Ray Dataset (`PixmoDatasource`); ``columns`` projects.

    Its rows come in storage order: ``preserve_order`` turns Ray's
    ``execution_options.preserve_order`` on for this dataset (and those made from it);
    ``False`` lets Ray hand blocks on as they are ready, in no set order. Other arguments
    go to `ray.data.read_datasource`. ``path`` may be a URL (``s3://...``): each read task
    reads its row groups from the store, through the node cache of its machine, with
    ``storage_options`` over the environment's settings."""
    ds = ray.data.read_datasource(
        PixmoDatasource(path, columns, storage_options=storage_options),
        override_num_blocks=override_num_blocks,
        **read_args,
    )
    if preserve_order:
        ds.context.execution_options.preserve_order = True
    return ds
