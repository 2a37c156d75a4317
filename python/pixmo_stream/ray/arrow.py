"""pixmo-stream types as Arrow types, and records as Arrow tables and back (no Ray here).

The mapping, one to one where Arrow has the type:

- scalars: their Arrow namesakes (``binary`` images as ``binary``, bytes as stored);
- ``array<T, (N, d1, ..., dk)>``: ``list<fixed_size_list<...<T, dk>..., d1>>`` (a point list
  ``(N, 2)`` is ``list<fixed_size_list<float32, 2>>``; ``(N,)`` is ``list<T>``), the
  Arrow type of a variable number of fixed-size rows, which every Arrow reader understands;
- ``list<T>``: ``list<T>``; ``struct``: ``struct``;
- ``any`` (msgpack objects): ``binary`` holding the msgpack bytes, the field marked with the
  metadata ``pixmo_stream.type = any``; `records_of` unpacks marked columns again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgpack
import numpy as np
import pyarrow as pa

from .._convert import dict_with_tuple_keys, pack_any
from ..schema import DataType, Field, Schema
from .errors import RayWriteError

ANY_KEY = b"pixmo_stream.type"
ANY_VALUE = b"any"

_SCALARS: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "binary": pa.binary(),
    "any": pa.binary(),
}


def arrow_type(t: DataType) -> pa.DataType:
    if t.kind == "array":
        assert t.dtype is not None
        inner = _SCALARS[t.dtype]
        for d in reversed(t.shape):
            inner = pa.list_(inner, int(d))
        return pa.list_(inner)
    if t.kind == "list":
        assert t.item is not None
        return pa.list_(pa.field("item", arrow_type(t.item), nullable=t.item_nullable))
    if t.kind == "struct":
        return pa.struct([arrow_field(f) for f in t.fields])
    return _SCALARS[t.kind]


def arrow_field(f: Field) -> pa.Field:
    meta = {ANY_KEY: ANY_VALUE} if f.type.kind == "any" else None
    return pa.field(f.name, arrow_type(f.type), nullable=f.nullable, metadata=meta)


def arrow_schema(schema: Schema, columns: Sequence[str] | None = None) -> pa.Schema:
    """The Arrow schema of ``schema`` (its ``columns`` only, in that order, when given)."""
    names = schema.names if columns is None else list(columns)
    return pa.schema([arrow_field(schema[n]) for n in names])


_NUMERIC = {v: k for k, v in _SCALARS.items() if k not in ("bool", "string", "binary", "any")}


def _array_of(t: pa.DataType) -> DataType | None:
    """``array<T, (N, ...)>`` for the Arrow types that are a variable number of fixed-size
    rows: ``list<fixed_size_list<...<T>>>`` and Ray's tensor columns (one tensor per row,
    its first dimension N)."""
    shape = getattr(t, "shape", None)
    scalar = getattr(t, "value_type", None)
    if isinstance(t, pa.ExtensionType) and shape is not None and scalar in _NUMERIC:
        per_row = tuple(int(d) for d in shape)
        if len(per_row) >= 1 and all(d >= 1 for d in per_row[1:]):
            return DataType("array", dtype=_NUMERIC[scalar], shape=per_row[1:])
        return None
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        return None
    inner, dims = t.value_type, []
    while pa.types.is_fixed_size_list(inner):
        dims.append(inner.list_size)
        inner = inner.value_type
    if not dims or inner not in _NUMERIC:
        return None
    return DataType("array", dtype=_NUMERIC[inner], shape=tuple(dims))


def _type_of(t: pa.DataType, metadata: Mapping[bytes, bytes] | None) -> DataType:
    if metadata and metadata.get(ANY_KEY) == ANY_VALUE:
        return DataType("any")
    arr = _array_of(t)
    if arr is not None:
        return arr
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        item = t.value_field
        return DataType(
            "list", item=_type_of(item.type, item.metadata), item_nullable=item.nullable
        )
    if pa.types.is_struct(t) and t.num_fields:
        return DataType("struct", fields=tuple(_field_of(t.field(i)) for i in range(t.num_fields)))
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return DataType("string")
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return DataType("binary")
    for name, scalar in _SCALARS.items():
        if t == scalar and name != "any":
            return DataType(name)
    raise RayWriteError(
        f"no pixmo-stream type for Arrow type {t}; cast the column, or pass a schema"
    )


def _field_of(f: pa.Field) -> Field:
    return Field(f.name, _type_of(f.type, f.metadata), nullable=f.nullable)


def schema_of_arrow(schema: pa.Schema) -> Schema:
    """The pixmo-stream schema for an Arrow schema: the inverse of `arrow_schema`, and
    ``list<fixed_size_list<T, k>>`` or a Ray tensor column as ``array<T, (N, k)>``; every
    field nullable as Arrow's are. A type with no counterpart (dates, decimals, a null
    column) raises `RayWriteError`: cast it, or pass a schema."""
    return Schema([_field_of(f) for f in schema])


def _plain(value: Any, t: DataType) -> Any:
    """A value as read from a dataset, in the Python form ``pa.array`` takes for its type."""
    if value is None:
        return None
    kind = t.kind
    if kind == "array":
        return value.tolist()
    if kind == "binary":  # a Blob as a view: Arrow copies it once, into its own buffer
        return value if isinstance(value, bytes) else memoryview(value)
    if kind == "any":
        return pack_any(value)
    if kind == "list":
        assert t.item is not None
        item = t.item
        if item.kind in ("array", "binary", "any", "list", "struct"):
            return [_plain(v, item) for v in value]
        return value
    if kind == "struct":
        return {f.name: _plain(value.get(f.name), f.type) for f in t.fields}
    return value


def _array_column(values: list[Any], t: DataType) -> pa.Array:
    """A top-level ``array`` column straight from its numpy values (no Python lists)."""
    assert t.dtype is not None
    lengths = np.array([0 if v is None else len(v) for v in values], dtype=np.int64)
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [np.ascontiguousarray(v, dtype=t.dtype).reshape(-1) for v in values if v is not None]
    flat = np.concatenate(present) if present else np.zeros(0, dtype=t.dtype)
    inner: pa.Array = pa.array(flat, type=_SCALARS[t.dtype])
    for d in reversed(t.shape):
        inner = pa.FixedSizeListArray.from_arrays(inner, int(d))
    mask = pa.array([v is None for v in values]) if any(v is None for v in values) else None
    return pa.ListArray.from_arrays(pa.array(offsets), inner, mask=mask)


def table_of(records: Sequence[dict[str, Any]], schema: pa.Schema, types: Schema) -> pa.Table:
    """An Arrow table of ``schema``'s columns of ``records`` (dicts as `Dataset` returns them;
    ``types`` is the dataset's schema)."""
    columns = []
    for f in schema:
        t = types[f.name].type
        values = [r[f.name] for r in records]
        if t.kind == "array":
            columns.append(_array_column(values, t))
        else:
            columns.append(pa.array([_plain(v, t) for v in values], type=f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _unpack(value: Any) -> Any:
    if value is None:
        return None
    return msgpack.unpackb(
        value, raw=False, strict_map_key=False, object_pairs_hook=dict_with_tuple_keys
    )


def records_of(table: pa.Table, max_rows: int = 1024) -> Iterator[list[dict[str, Any]]]:
    """The rows of ``table`` as dicts, ``max_rows`` at a time; columns marked as ``any``
    (`arrow_field`) are unpacked from msgpack."""
    marked = [f.name for f in table.schema if f.metadata and f.metadata.get(ANY_KEY) == ANY_VALUE]
    for batch in table.to_batches(max_chunksize=max_rows):
        rows = batch.to_pylist()
        for name in marked:
            for r in rows:
                r[name] = _unpack(r[name])
        yield rows
