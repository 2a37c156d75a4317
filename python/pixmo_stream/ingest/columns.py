"""Arrow columns of one batch of grouped rows, turned into the per-image lists a record
holds. Points go through numpy (one array per row), never through a Python dict per point.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

EMPTY_POINTS = np.zeros((0, 2), dtype=np.float64)


def _array(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def per_group(values: list[Any], offsets: np.ndarray) -> list[list[Any]]:
    """``values`` (one per row) cut into one list per group."""
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def first_per_group(values: list[Any], offsets: np.ndarray) -> list[Any]:
    """The first non-null value of each group (a per-image fact repeated on every row)."""
    out = []
    for i in range(len(offsets) - 1):
        out.append(next((v for v in values[offsets[i] : offsets[i + 1]] if v is not None), None))
    return out


def _floats(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)


def _list_parts(arr: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Offsets and values of a list array, a null list read as empty."""
    if pa.types.is_fixed_size_list(arr.type):
        size = arr.type.list_size
        return np.arange(len(arr) + 1, dtype=np.int64) * size, arr.values
    return np.asarray(arr.offsets.to_numpy(), dtype=np.int64), arr.values


def _xy_values(values: pa.Array) -> np.ndarray:
    """``(M, 2)`` float64 from a list's values: structs ``{x, y}`` or ``[x, y]`` pairs."""
    if pa.types.is_struct(values.type):
        xy = np.stack([_floats(values.field("x")), _floats(values.field("y"))], axis=1)
    else:
        offsets, flat = _list_parts(values)
        if len(values) and not np.all(np.diff(offsets) == 2):
            raise ValueError("a point is not an [x, y] pair")
        xy = _floats(flat)[offsets[0] : offsets[-1]].reshape(-1, 2)
    return xy


def _rows_of(offsets: np.ndarray, xy: np.ndarray, valid: np.ndarray | None) -> list[np.ndarray]:
    base = offsets[0]
    out = []
    for i in range(len(offsets) - 1):
        if valid is not None and not valid[i]:
            out.append(EMPTY_POINTS)
        else:
            out.append(np.ascontiguousarray(xy[offsets[i] - base : offsets[i + 1] - base]))
    return out


def _validity(arr: pa.Array) -> np.ndarray | None:
    return None if arr.null_count == 0 else np.asarray(arr.is_valid().to_numpy(False))


def point_lists(col: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    """``list<{x, y}>`` (pixmo-points, points-eval) or ``list<[x, y]>``: one ``(N, 2)``
    float64 array per row (the published precision); a null list is empty."""
    arr = _array(col)
    offsets, values = _list_parts(arr)
    xy = _xy_values(values[offsets[0] : offsets[-1]] if len(arr) else values[:0])
    return _rows_of(offsets, xy, _validity(arr))


def struct_of_lists_points(col: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    """``{x: list<float>, y: list<float>}`` (pixmo-count): one ``(N, 2)`` array per row; a
    null struct or null lists are empty."""
    arr = _array(col)
    xs, ys = arr.field("x"), arr.field("y")
    x_off, x_val = _list_parts(xs)
    y_off, y_val = _list_parts(ys)
    if not np.array_equal(np.diff(x_off), np.diff(y_off)):
        raise ValueError("points.x and points.y have different lengths in a row")
    x = _floats(x_val)[x_off[0] : x_off[-1]]
    y = _floats(y_val)[y_off[0] : y_off[-1]]
    xy = np.stack([x, y], axis=1)
    valid = _validity(arr)
    for part in (_validity(xs), _validity(ys)):
        if part is not None:
            valid = part if valid is None else valid & part
    return _rows_of(x_off, xy, valid)


def point_group_lists(col: pa.ChunkedArray | pa.Array) -> list[list[np.ndarray]]:
    """``list<list<[x, y]>>`` (point-explanations: one list per point group): per row, one
    ``(N, 2)`` array per group."""
    arr = _array(col)
    row_off, groups = _list_parts(arr)
    groups = groups[row_off[0] : row_off[-1]] if len(arr) else groups[:0]
    per_group_points = point_lists(groups)
    valid = _validity(arr)
    base = row_off[0]
    return [
        [] if valid is not None and not valid[i] else per_group_points[a - base : b - base]
        for i, (a, b) in enumerate(zip(row_off[:-1], row_off[1:], strict=True))
    ]


def inline_image_bytes(col: pa.ChunkedArray | pa.Array) -> list[bytes | None]:
    """HF ``Image`` structs ``{bytes, path}`` or a plain binary column: the bytes per row."""
    arr = _array(col)
    if pa.types.is_struct(arr.type):
        arr = arr.field("bytes")
    return arr.to_pylist()


def mask_structs(col: pa.ChunkedArray | pa.Array) -> list[list[dict[str, Any]]]:
    """pixmo-points-eval's ``masks`` (per row a list of HxW bool masks, as nested lists):
    per row a list of ``{height, width, bits}``, ``bits`` the mask packed 8 pixels a byte,
    row-major (``np.packbits``; unpack with ``np.unpackbits(bits, count=h*w)``)."""
    out = []
    for masks in _array(col).to_pylist():
        row = []
        for mask in masks or []:
            m = np.asarray(mask, dtype=bool)
            if m.ndim != 2:
                m = m.reshape(0, 0) if m.size == 0 else m.reshape(m.shape[0], -1)
            row.append(
                {
                    "height": int(m.shape[0]),
                    "width": int(m.shape[1]),
                    "bits": np.packbits(m, axis=None).tobytes(),
                }
            )
        out.append(row)
    return out
