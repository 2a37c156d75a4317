"""Readable one-line summaries of values and records (what ``head`` prints)."""

from __future__ import annotations

from typing import Any

from pixmo_stream._native import Blob


def sniff_image(data: bytes | bytearray | memoryview | Blob) -> str:
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
