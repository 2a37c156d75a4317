# Hand-written stubs of the native module, checked by `python -m mypy.stubtest pixmo_stream._native`.
from collections.abc import Iterable, Sequence
from os import PathLike
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "PixmoError",
    "CorruptDataError",
    "BadSampleError",
    "SchemaError",
    "UnsupportedVersionError",
    "StorageError",
    "ImageDecodeError",
    "DEFAULT_MAX_PIXELS",
    "image_probe",
    "image_decode",
    "image_decode_many",
    "image_decode_batch",
    "image_placement",
    "image_jpeg_decoder",
    "image_molmo",
    "image_molmo_many",
    "image_molmo_geometry",
    "EpochPlan",
    "ConsumerRows",
    "MixtureRows",
    "rank_len",
    "worker_len",
    "mixture_counts",
    "ReadAhead",
    "PackPlan",
    "packed_read_ahead",
    "MixturePackPlan",
    "mixture_packed_read_ahead",
    "Writer",
    "Dataset",
    "RowGroupIter",
    "Blob",
    "HostBuffer",
    "GatheredCrops",
    "blob_from_ref",
    "FORMAT_VERSION",
    "__version__",
]

FORMAT_VERSION: tuple[int, int]
__version__: str

# (store options, (node cache directory, size limit) or None), for a URL
_StorageArg = tuple[dict[str, str], tuple[str, int] | None]

class PixmoError(Exception): ...
class CorruptDataError(PixmoError): ...
class BadSampleError(CorruptDataError): ...
class SchemaError(PixmoError): ...
class UnsupportedVersionError(PixmoError): ...
class StorageError(PixmoError, OSError): ...
class ImageDecodeError(PixmoError): ...

DEFAULT_MAX_PIXELS: int

def image_jpeg_decoder() -> str: ...
def image_probe(data: Any) -> tuple[str, int, int, int]: ...
def image_decode(
    data: Any, mode: str, width: int, height: int, fast: bool, max_pixels: int
) -> npt.NDArray[np.uint8]: ...
def image_decode_many(
    items: Iterable[Any],
    mode: str,
    width: int,
    height: int,
    fast: bool,
    max_pixels: int,
    threads: int,
) -> list[npt.NDArray[np.uint8] | ImageDecodeError]: ...
def image_decode_batch(
    items: Iterable[Any],
    mode: str,
    width: int,
    height: int,
    fast: bool,
    max_pixels: int,
    threads: int,
) -> tuple[npt.NDArray[np.uint8], list[ImageDecodeError | None]]: ...
def image_placement(
    src_height: int, src_width: int, mode: str, width: int, height: int
) -> tuple[int, int, int, int, int, int]: ...
def image_molmo(data: Any, cfg: tuple[Any, ...]) -> dict[str, Any]: ...
def image_molmo_many(
    items: Iterable[Any], cfg: tuple[Any, ...], threads: int
) -> list[dict[str, Any] | ImageDecodeError]: ...
def image_molmo_geometry(height: int, width: int, cfg: tuple[Any, ...]) -> dict[str, Any]: ...

@final
class GatheredCrops:
    @property
    def shape(self) -> tuple[int, int, int, int]: ...
    @property
    def shared(self) -> tuple[int, int, int] | None: ...
    def mark_sent(self) -> None: ...

@final
class HostBuffer:
    def __new__(cls, nbytes: int) -> HostBuffer: ...
    def __len__(self) -> int: ...

@final
class Blob:
    def __len__(self) -> int: ...
    def __bytes__(self) -> bytes: ...
    def tobytes(self) -> bytes: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __getitem__(self, key: Any, /) -> Any: ...
    def __reduce__(self) -> tuple[type[bytes], tuple[bytes]]: ...
    def _ipc_ref(
        self,
    ) -> (
        tuple[str, int, int, int, int, int, int, tuple[int, int, bytes, int, str] | None] | None
    ): ...

def blob_from_ref(
    path: str | PathLike[str],
    dev: int,
    ino: int,
    file_len: int,
    mtime_ns: int,
    offset: int,
    length: int,
    pages: tuple[int, int, bytes, int, str] | None = None,
) -> Blob: ...

@final
class Dataset:
    def __new__(
        cls,
        path: str | PathLike[str],
        zero_copy: bool = True,
        storage: _StorageArg | None = None,
    ) -> Dataset: ...
    def __len__(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def is_remote(self) -> bool: ...
    @property
    def metadata(self) -> dict[str, str]: ...
    @property
    def manifest_hash(self) -> int | None: ...
    @property
    def num_shards(self) -> int: ...
    @property
    def num_row_groups(self) -> int: ...
    def schema_json(self) -> str: ...
    def row_group_layout(self) -> list[tuple[int, int, int, int]]: ...
    def take(
        self, indices: list[int], columns: list[str] | None = None
    ) -> list[dict[str, Any]]: ...
    def get(self, index: int, columns: list[str] | None = None) -> dict[str, Any]: ...
    def iter_row_groups(self, columns: list[str] | None = None) -> RowGroupIter: ...
    def iter_rows(self, columns: list[str] | None = None) -> RowGroupIter: ...
    def verify(self) -> tuple[int, list[str]]: ...
    def info_json(self) -> str: ...

@final
class RowGroupIter:
    def __iter__(self) -> RowGroupIter: ...
    def __next__(self) -> Any: ...  # a list of records (iter_row_groups) or one (iter_rows)

@final
class Writer:
    def __new__(
        cls,
        path: str | PathLike[str],
        schema_json: str,
        *,
        shard_bytes: int,
        row_group_bytes: int,
        row_group_rows: int,
        zstd_level: int,
        codecs: dict[str, str],
        overwrite: bool,
        metadata: dict[str, str],
        storage_options: dict[str, str] | None = None,
    ) -> Writer: ...
    def write(self, record: Any) -> None: ...
    def write_many(self, records: Iterable[Any]) -> int: ...
    @property
    def rows_written(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> tuple[str, int, int, int]: ...
    def abort(self) -> None: ...

@final
class EpochPlan:
    def __new__(
        cls,
        row_groups: list[int],
        *,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        window_rows: int = 16384,
    ) -> EpochPlan: ...
    @property
    def num_rows(self) -> int: ...
    @property
    def epoch(self) -> int: ...
    def windows(self) -> list[tuple[int, int]]: ...
    def all_rows(self) -> npt.NDArray[np.uint64]: ...
    def consumer_rows(
        self,
        *,
        start: int = 0,
        world_size: int = 1,
        rank: int = 0,
        num_workers: int = 1,
        worker: int = 0,
        block: int = 1,
        pad: bool = False,
    ) -> ConsumerRows: ...

@final
class ConsumerRows:
    def next_rows(self, n: int) -> npt.NDArray[np.uint64]: ...
    @property
    def remaining(self) -> int: ...

@final
class MixtureRows:
    def __new__(
        cls,
        weights: list[float],
        seed: int,
        counts_at_start: list[int],
        sources: list[tuple[list[int], int, bool, int, int]],
        *,
        num_positions: int,
        start: int = 0,
        world_size: int = 1,
        rank: int = 0,
        num_workers: int = 1,
        worker: int = 0,
        block: int = 1,
    ) -> MixtureRows: ...
    def next_rows(
        self, n: int
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]: ...
    @property
    def remaining(self) -> int: ...

@final
class ReadAhead:
    @staticmethod
    def for_plan(
        paths: list[str],
        columns: list[str] | None = None,
        *,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        window_rows: int = 16384,
        start: int = 0,
        world_size: int = 1,
        rank: int = 0,
        num_workers: int = 1,
        worker: int = 0,
        block: int = 1,
        pad: bool = False,
        batch_rows: int = 64,
        threads: int = 2,
        depth: int = 2,
        skip: int = 0,
        verify_blobs: bool = True,
        expect: list[int | None] | None = None,
        replace: tuple[int, int] | None = None,
        decode: tuple[str, int, int, bool, int, str, tuple[Any, ...] | None, str] | None = None,
        storage: Sequence[_StorageArg | None] | None = None,
    ) -> ReadAhead: ...
    @staticmethod
    def for_mixture(
        paths: list[str],
        columns: list[list[str] | None],
        weights: list[float],
        seed: int,
        counts_at_start: list[int],
        sources: list[tuple[list[int], int, bool, int, int]],
        *,
        num_positions: int,
        start: int = 0,
        world_size: int = 1,
        rank: int = 0,
        num_workers: int = 1,
        worker: int = 0,
        block: int = 1,
        batch_rows: int = 64,
        threads: int = 2,
        depth: int = 2,
        skip: int = 0,
        verify_blobs: bool = True,
        expect: list[int | None] | None = None,
        replace: tuple[int, int] | None = None,
        decode: tuple[str, int, int, bool, int, str, tuple[Any, ...] | None, str] | None = None,
        storage: Sequence[_StorageArg | None] | None = None,
    ) -> ReadAhead: ...
    def next_batch(
        self,
    ) -> (
        tuple[
            list[dict[str, Any]],
            list[int],
            list[int],
            list[tuple[int, int, int, int, str, int | None, str | None, str]],
            npt.NDArray[np.uint8] | None,
            list[int],
            list[int],
        ]
        | None
    ): ...
    @property
    def started(self) -> bool: ...
    def close(self) -> None: ...

@final
class PackPlan:
    def __new__(
        cls,
        row_groups: list[int],
        tokens: npt.NDArray[np.uint32],
        crops: npt.NDArray[np.uint16],
        *,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        window_rows: int = 16384,
        max_tokens: int = 16384,
        max_crops: int = ...,
        pack_window: int = 16384,
        row_counts: list[int] | None = None,
    ) -> PackPlan: ...
    @property
    def num_rows(self) -> int: ...
    def row_counts(self) -> list[int]: ...
    def rows(
        self,
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint32], list[bool]]: ...

def packed_read_ahead(
    paths: list[str],
    columns: list[str] | None,
    tokens: npt.NDArray[np.uint32],
    crops: npt.NDArray[np.uint16],
    *,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    window_rows: int = 16384,
    max_tokens: int = 16384,
    max_crops: int = ...,
    pack_window: int = 16384,
    row_counts: list[int] | None = None,
    start: int = 0,
    world_size: int = 1,
    rank: int = 0,
    num_workers: int = 1,
    worker: int = 0,
    block: int = 1,
    pad: bool = True,
    threads: int = 2,
    depth: int = 2,
    skip: int = 0,
    verify_blobs: bool = True,
    expect: list[int | None] | None = None,
    replace: tuple[int, int] | None = None,
    decode: tuple[str, int, int, bool, int, str, tuple[Any, ...] | None, str] | None = None,
    storage: Sequence[_StorageArg | None] | None = None,
) -> ReadAhead: ...

_Anchor = tuple[int, int, list[int]]

@final
class MixturePackPlan:
    def __new__(
        cls,
        weights: list[float],
        seed: int,
        sources: list[tuple[list[int], int, bool, int, int]],
        tokens: list[npt.NDArray[np.uint32]],
        crops: list[npt.NDArray[np.uint16]],
        *,
        max_tokens: int = 16384,
        max_crops: int = ...,
        pack_window: int = 16384,
    ) -> MixturePackPlan: ...
    def seek(self, anchor: _Anchor, row: int) -> _Anchor: ...
    def rows(
        self, anchor: _Anchor, start: int, n: int
    ) -> tuple[
        npt.NDArray[np.uint64],
        npt.NDArray[np.uint64],
        npt.NDArray[np.uint64],
        npt.NDArray[np.uint32],
        list[bool],
    ]: ...

def mixture_packed_read_ahead(
    plan: MixturePackPlan,
    paths: list[str],
    columns: list[list[str] | None],
    anchor: _Anchor,
    *,
    num_positions: int,
    start: int = 0,
    world_size: int = 1,
    rank: int = 0,
    num_workers: int = 1,
    worker: int = 0,
    block: int = 1,
    threads: int = 2,
    depth: int = 2,
    skip: int = 0,
    verify_blobs: bool = True,
    expect: list[int | None] | None = None,
    replace: tuple[int, int] | None = None,
    decode: tuple[str, int, int, bool, int, str, tuple[Any, ...] | None, str] | None = None,
    storage: Sequence[_StorageArg | None] | None = None,
) -> ReadAhead: ...
def rank_len(
    num_positions: int, *, start: int = 0, world_size: int = 1, pad: bool = False
) -> int: ...
def worker_len(
    num_positions: int,
    *,
    start: int = 0,
    world_size: int = 1,
    num_workers: int = 1,
    worker: int = 0,
    block: int = 1,
    pad: bool = False,
) -> int: ...
def mixture_counts(weights: list[float], seed: int, start: int, end: int) -> list[int]: ...
