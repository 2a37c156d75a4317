"""The type system: declare a `Schema` explicitly, or let `infer_schema` read one record.

Types mirror docs/FORMAT.md "Schema"; `Schema.to_dict()` is exactly the spec's form.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._native import Blob, SchemaError

NUMERIC_KINDS = (
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64",
)  # fmt: skip
SCALAR_KINDS = ("bool", *NUMERIC_KINDS, "string", "binary", "any")


@dataclass(frozen=True)
class DataType:
    """A column type. Build with the helpers (`string()`, `array("float32", (2,))`, ...)."""

    kind: str
    dtype: str | None = None  # array element type
    shape: tuple[int, ...] = ()  # array inner shape
    item: DataType | None = None  # list item type
    item_nullable: bool = False
    fields: tuple[Field, ...] = ()  # struct members

    def __post_init__(self) -> None:
        if self.kind in SCALAR_KINDS:
            return
        if self.kind == "array":
            if self.dtype not in NUMERIC_KINDS:
                raise SchemaError(
                    f"array dtype must be one of {', '.join(NUMERIC_KINDS)}, got {self.dtype!r}"
                )
            if any(int(d) < 1 for d in self.shape):
                raise SchemaError(f"array inner dimensions must be >= 1, got {self.shape}")
        elif self.kind == "list":
            if not isinstance(self.item, DataType):
                raise SchemaError("a list type needs an item type")
        elif self.kind == "struct":
            if not self.fields:
                raise SchemaError("a struct type needs at least one field")
        else:
            raise SchemaError(f"unknown type kind {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "array":
            return {"kind": "array", "dtype": self.dtype, "shape": list(self.shape)}
        if self.kind == "list":
            assert self.item is not None
            return {
                "kind": "list",
                "item": self.item.to_dict(),
                "item_nullable": self.item_nullable,
            }
        if self.kind == "struct":
            return {"kind": "struct", "fields": [f.to_dict() for f in self.fields]}
        return {"kind": self.kind}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataType:
        kind = d["kind"]
        if kind == "array":
            return cls("array", dtype=d["dtype"], shape=tuple(int(x) for x in d["shape"]))
        if kind == "list":
            return cls(
                "list", item=cls.from_dict(d["item"]), item_nullable=bool(d["item_nullable"])
            )
        if kind == "struct":
            return cls("struct", fields=tuple(Field.from_dict(f) for f in d["fields"]))
        return cls(kind)

    def __str__(self) -> str:
        if self.kind == "array":
            return f"array<{self.dtype}, (N{''.join(f', {d}' for d in self.shape)})>"
        if self.kind == "list":
            return f"list<{self.item}{'?' if self.item_nullable else ''}>"
        if self.kind == "struct":
            return "struct<" + ", ".join(str(f) for f in self.fields) + ">"
        return self.kind


@dataclass(frozen=True)
class Field:
    """A named, typed column (or struct member); `nullable` allows None."""

    name: str
    type: DataType
    nullable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError(f"field names must be non-empty strings, got {self.name!r}")
        if not isinstance(self.type, DataType):
            hint = ""
            suggest = {
                int: "int64",
                float: "float64",
                str: "string",
                bytes: "binary",
                bool: "bool_",
            }
            if isinstance(self.type, type) and self.type in suggest:
                hint = f" (for {self.type.__name__} values: ps.{suggest[self.type]}())"
            elif callable(self.type) and getattr(self.type, "__module__", "") == __name__:
                name = getattr(self.type, "__name__", "")
                name = {"bool": "bool_", "any": "any_"}.get(name, name)
                hint = f" (call it: ps.{name}())"
            raise SchemaError(
                f"field {self.name!r}: type must be a DataType such as ps.int32(), "
                f"got {self.type!r}{hint}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type.to_dict(), "nullable": self.nullable}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Field:
        return cls(d["name"], DataType.from_dict(d["type"]), bool(d["nullable"]))

    def __str__(self) -> str:
        return f"{self.name}: {self.type}{'?' if self.nullable else ''}"


def _make(kind: str):  # noqa: ANN202
    def ctor() -> DataType:
        return DataType(kind)

    ctor.__name__ = ctor.__qualname__ = kind
    ctor.__doc__ = f"The `{kind}` type."
    return ctor


bool_ = _make("bool")
int8, int16, int32, int64 = (_make(k) for k in ("int8", "int16", "int32", "int64"))
uint8, uint16, uint32, uint64 = (_make(k) for k in ("uint8", "uint16", "uint32", "uint64"))
float32, float64 = _make("float32"), _make("float64")
string, binary = _make("string"), _make("binary")
any_ = _make("any")


def array(dtype: str | np.dtype | type, shape: Iterable[int] | int = ()) -> DataType:
    """A numeric array with a variable outer dimension and a fixed inner `shape`:
    `array("float32", (2,))` holds (N, 2) point lists."""
    dims = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
    return DataType("array", dtype=np.dtype(dtype).name, shape=dims)


def list_(item: DataType, *, nullable_items: bool = False) -> DataType:
    """A variable-length list of `item`."""
    return DataType("list", item=item, item_nullable=nullable_items)


def struct(fields: Iterable[Field]) -> DataType:
    """A record of named members."""
    return DataType("struct", fields=tuple(fields))


@dataclass(frozen=True)
class Schema:
    """The columns of a dataset, in order."""

    fields: tuple[Field, ...]
    metadata: dict[str, str] = field(default_factory=dict, compare=False)

    def __init__(self, fields: Iterable[Field], metadata: Mapping[str, str] | None = None) -> None:
        fs = tuple(fields)
        if not fs:
            raise SchemaError("a schema needs at least one field")
        names = [f.name for f in fs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SchemaError(f"duplicate field names: {', '.join(sorted(dup))}")
        object.__setattr__(self, "fields", fs)
        object.__setattr__(self, "metadata", dict(metadata or {}))

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(f.name == name for f in self.fields)

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def to_dict(self) -> dict[str, Any]:
        return {"fields": [f.to_dict() for f in self.fields], "metadata": dict(self.metadata)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Schema:
        return cls([Field.from_dict(f) for f in d["fields"]], d.get("metadata") or {})

    @classmethod
    def from_json(cls, s: str) -> Schema:
        return cls.from_dict(json.loads(s))

    def __str__(self) -> str:
        return "\n".join(str(f) for f in self.fields)


def _infer_type(value: Any, path: str) -> DataType:
    if value is None:
        raise SchemaError(f"field '{path}': cannot infer a type from None; pass an explicit schema")
    if isinstance(value, bool | np.bool_):
        return bool_()
    if isinstance(value, bytes | bytearray | memoryview | Blob):
        return binary()
    if isinstance(value, str):
        return string()
    if isinstance(value, int):
        return int64()
    if isinstance(value, float):
        return float64()
    if isinstance(value, np.generic) and value.dtype.name in NUMERIC_KINDS:
        return DataType(value.dtype.name)
    if isinstance(value, np.ndarray):
        if value.dtype.name not in NUMERIC_KINDS or value.ndim == 0:
            raise SchemaError(
                f"field '{path}': cannot store a {value.dtype} array of {value.ndim} dims"
            )
        return array(value.dtype, value.shape[1:])
    if isinstance(value, Mapping):
        if not value:
            raise SchemaError(f"field '{path}': cannot infer a struct from an empty dict")
        return struct(
            Field(str(k), _infer_type(v, f"{path}.{k}"), nullable=True) for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        if not value:
            raise SchemaError(
                f"field '{path}': cannot infer the item type of an empty list; "
                "pass an explicit schema"
            )
        return list_(_infer_type(value[0], f"{path}[0]"))
    raise SchemaError(f"field '{path}': cannot infer a type for {type(value).__name__}")


def infer_schema(record: Mapping[str, Any]) -> Schema:
    """Infers a schema from one record: bytes→binary, str→string, int→int64, float→float64,
    bool→bool, numpy array→array (dtype, inner shape = shape[1:]), dict→struct, list→list of
    its first item's type. Every field is nullable. None or an empty list cannot be inferred
    (SchemaError): declare those fields explicitly."""
    if not isinstance(record, Mapping) or not record:
        raise SchemaError("cannot infer a schema: the first record must be a non-empty dict")
    return Schema(Field(str(k), _infer_type(v, str(k)), nullable=True) for k, v in record.items())
