"""pixmo-stream: compact columnar storage and fast streaming of multimodal training data.

import pixmo_stream as ps
with ps.Writer("data/", schema) as w:
    w.write({"image": jpeg_bytes, "caption": "..."})
ds = ps.Dataset("data/")
ds[0], ds.take([3, 1]), ds.iter(columns=["caption"])
"""

from __future__ import annotations

from typing import Any

from . import image
from ._native import (
    FORMAT_VERSION,
    BadSampleError,
    Blob,
    CorruptDataError,
    ImageDecodeError,
    PixmoError,
    SchemaError,
    StorageError,
    UnsupportedVersionError,
)
from .bad_samples import BadSample
from .dataset import Dataset, VerifyReport
from .decoding import Decode
from .packing import SAMPLE_KEY, Packing
from .schema import (
    DataType,
    Field,
    Schema,
    any_,
    array,
    binary,
    bool_,
    float32,
    float64,
    infer_schema,
    int8,
    int16,
    int32,
    int64,
    list_,
    string,
    struct,
    uint8,
    uint16,
    uint32,
    uint64,
)
from .writer import Writer, WriteSummary

__version__ = "0.1.0"

# torch-dependent names load on first use, so `import pixmo_stream` never imports torch.
_LAZY = {
    "StreamingDataset": "streaming",
    "DataLoader": "loader",
    "Mixture": "mixture",
    "root_size_rates": "mixture",
    "collate": "batching",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(f".{_LAZY[name]}", __name__)
        except ModuleNotFoundError as e:
            if e.name != "torch" and not (e.name or "").startswith("torch."):
                raise
            raise ModuleNotFoundError(
                f"pixmo_stream.{name} needs PyTorch, which is not installed: "
                "pip install 'pixmo-stream[torch]' (for a CPU-only build, first "
                "pip install torch --index-url https://download.pytorch.org/whl/cpu). "
                "Writing, reading (pixmo_stream.Dataset) and the CLI work without it.",
                name="torch",
            ) from e
        return getattr(module, name)
    raise AttributeError(f"module 'pixmo_stream' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazy names too, so that dir() and tab completion show them.
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "FORMAT_VERSION",
    "SAMPLE_KEY",
    "BadSample",
    "BadSampleError",
    "Blob",
    "CorruptDataError",
    "DataType",
    "Dataset",
    "Decode",
    "Field",
    "ImageDecodeError",
    "Packing",
    "PixmoError",
    "Schema",
    "SchemaError",
    "StorageError",
    "UnsupportedVersionError",
    "VerifyReport",
    "WriteSummary",
    "Writer",
    "any_",
    "array",
    "binary",
    "bool_",
    "float32",
    "float64",
    "image",
    "infer_schema",
    "int8",
    "int16",
    "int32",
    "int64",
    "list_",
    "string",
    "struct",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    *_LAZY,
]
