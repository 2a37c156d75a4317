"""Schema validation (FORMAT.md "Schema")."""

from __future__ import annotations

from typing import Any

from .constants import MAX_NESTING_DEPTH, NUMERIC_KINDS, SCALAR_KINDS, VARLEN_KINDS


def _check_fields(fields: Any, depth: int, err: Any) -> None:
    if not isinstance(fields, list):
        raise err("schema: 'fields' must be an array")
    names: set[str] = set()
    for f in fields:
        if not isinstance(f, dict) or not {"name", "type", "nullable"} <= set(f):
            raise err(f"schema: malformed field {f!r}")
        name = f["name"]
        if not isinstance(name, str) or not name:
            raise err(f"schema: field name {name!r} must be a non-empty string")
        if name in names:
            raise err(f"schema: duplicate field name {name!r}")
        names.add(name)
        if not isinstance(f["nullable"], bool):
            raise err(f"schema: field {name!r}: 'nullable' must be a bool")
        _check_type(f["type"], depth, err)


def _check_type(t: Any, depth: int, err: Any) -> None:
    if depth > MAX_NESTING_DEPTH:
        raise err(f"schema: types nest deeper than {MAX_NESTING_DEPTH} levels")
    if not isinstance(t, dict) or not isinstance(t.get("kind"), str):
        raise err(f"schema: malformed type {t!r}")
    kind = t["kind"]
    if kind in SCALAR_KINDS:
        return
    if kind == "array":
        if not isinstance(t.get("dtype"), str) or t["dtype"] not in NUMERIC_KINDS:
            raise err(f"schema: array dtype {t.get('dtype')!r} is not numeric")
        shape = t.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape
        ):
            raise err(f"schema: array shape {shape!r} must be a list of integers >= 1")
    elif kind == "list":
        if not isinstance(t.get("item_nullable"), bool):
            raise err("schema: list 'item_nullable' must be a bool")
        _check_type(t.get("item"), depth + 1, err)
    elif kind == "struct":
        if not t.get("fields"):
            raise err("schema: a struct needs at least one field")
        _check_fields(t["fields"], depth + 1, err)
    else:
        raise err(f"schema: unknown type kind {kind!r}")


def _check_schema(schema: Any, err: Any) -> None:
    if not isinstance(schema, dict) or "fields" not in schema:
        raise err("schema must be a map with 'fields'")
    _check_fields(schema["fields"], 1, err)
    meta = schema.get("metadata", {})
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise err("schema: 'metadata' must map str to str")


def _buffer_count(t: dict, nullable: bool) -> int:
    kind = t["kind"]
    if kind == "bool" or kind in NUMERIC_KINDS:
        n = 1
    elif kind in VARLEN_KINDS or kind == "array":
        n = 2
    elif kind == "list":
        n = 1 + _buffer_count(t["item"], t["item_nullable"])
    else:
        n = sum(_buffer_count(f["type"], f["nullable"]) for f in t["fields"])
    return n + (1 if nullable else 0)
