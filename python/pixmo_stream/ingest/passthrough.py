"""Columns stored as they are: pixmo-clocks' rendering metadata and the annotations of
generic inputs (a JSONL or parquet beside an image folder, HF datasets, WebDataset json).

Arrow types map onto pixmo-stream types one to one where they can (integers, floats, bools,
strings, binaries, lists and structs of those); anything else is stored as ``any`` (msgpack).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

import pixmo_stream as ps

from .grouping import GroupBatch
from .presets import IMAGE_FIELD_NAMES, Preset

_INTS = {
    pa.int8(): "int8", pa.int16(): "int16", pa.int32(): "int32", pa.int64(): "int64",
    pa.uint8(): "uint8", pa.uint16(): "uint16", pa.uint32(): "uint32", pa.uint64(): "uint64",
}  # fmt: skip


def ps_type(t: pa.DataType) -> ps.DataType:
    if t in _INTS:
        return ps.DataType(_INTS[t])
    if pa.types.is_floating(t):
        return ps.float32() if t == pa.float32() else ps.float64()
    if pa.types.is_boolean(t):
        return ps.bool_()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return ps.string()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return ps.binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return ps.list_(ps_type(t.value_type), nullable_items=True)
    if pa.types.is_struct(t) and t.num_fields:
        return ps.struct(
            [
                ps.Field(t.field(i).name, ps_type(t.field(i).type), nullable=True)
                for i in range(t.num_fields)
            ]
        )
    return ps.any_()


def passthrough_preset(
    name: str,
    schema: pa.Schema,
    *,
    description: str,
    exclude: tuple[str, ...] = (),
    key: str | None = None,
    inline_images: str | None = None,
    file_name_column: str | None = None,
    published_sha256: str | None = None,
) -> Preset:
    """A preset that stores every column of ``schema`` but the image's own (one record per
    row; with ``key``, one per key, every column a list)."""
    skip = set(exclude) | set(IMAGE_FIELD_NAMES)
    skip |= {c for c in (inline_images, published_sha256) if c}
    names = [n for n in schema.names if n not in skip]
    fields = []
    for n in names:
        t = ps_type(schema.field(n).type)
        fields.append(ps.Field(n, ps.list_(t, nullable_items=True) if key else t, nullable=True))

    def annotate(batch: GroupBatch) -> list[dict[str, Any]]:
        cols = {n: batch.table.column(n).to_pylist() for n in names}
        out = []
        for i in range(len(batch.groups)):
            a, b = int(batch.offsets[i]), int(batch.offsets[i + 1])
            out.append({n: (v[a:b] if key else v[a]) for n, v in cols.items()})
        return out

    return Preset(
        name,
        description,
        key=key,
        required=(),
        optional=tuple(schema.names),
        fields=tuple(fields),
        annotate=annotate,
        published_sha256=published_sha256,
        inline_images=inline_images,
        file_name_column=file_name_column,
    )
