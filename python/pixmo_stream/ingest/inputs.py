"""Generic inputs, read without per-format glue: a folder of images with a JSONL or parquet
of annotations, HF ``datasets`` saved to disk (Arrow files) or as parquet with inline image
bytes, and WebDataset tar shards. Each becomes an Arrow table and a preset that stores its
columns as they are (`passthrough`), one record per row.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from .errors import InputError

# Columns that name an image file, in the order they are looked for.
FILE_NAME_COLUMNS = ("file_name", "image_path", "image_file", "path", "filename", "image")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")


def read_jsonl(path: str) -> pa.Table:
    import pyarrow.json as pj

    try:
        return pj.read_json(path)
    except pa.ArrowInvalid as e:
        raise InputError(f"{path}: not JSON lines ({e})") from e


def hf_saved_files(path: str) -> list[str]:
    """The Arrow files of a ``Dataset.save_to_disk`` directory, in order (``state.json``)."""
    state_path = os.path.join(path, "state.json")
    try:
        with open(state_path, encoding="utf-8") as f:
            return [os.path.join(path, d["filename"]) for d in json.load(f)["_data_files"]]
    except FileNotFoundError:
        raise InputError(f"{path}: not a saved HF dataset (no state.json)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{state_path}: not a saved HF dataset's state ({e})") from e


def read_arrow_stream(path: str) -> pa.Table:
    """One Arrow IPC stream file (what ``save_to_disk`` writes)."""
    try:
        with pa.memory_map(path) as source:
            return pa.ipc.open_stream(source).read_all()
    except (pa.ArrowException, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise InputError(f"{path}: listed in state.json but missing") from e
        raise InputError(f"{path}: not an Arrow stream ({e})") from e


def read_hf_saved(path: str) -> pa.Table:
    """A whole ``Dataset.save_to_disk`` directory as one table."""
    return pa.concat_tables([read_arrow_stream(f) for f in hf_saved_files(path)])


def read_webdataset(paths: Sequence[str]) -> pa.Table:
    """WebDataset tars: members that share a key (the name up to its first dot after the
    last slash) form one sample; the image member becomes ``image``, a ``.json`` member's
    fields become columns, ``.txt``/``.cls`` members become text columns named after their
    extension. Samples keep tar order."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            with tarfile.open(path, "r:*") as tar:
                current: dict[str, Any] | None = None
                for member in tar:
                    if not member.isfile():
                        continue
                    base = os.path.basename(member.name)
                    if "." not in base:
                        continue
                    stem, ext = base.split(".", 1)
                    key = os.path.join(os.path.dirname(member.name), stem)
                    if current is None or current["__key__"] != key:
                        current = {"__key__": key, "__url__": path}
                        rows.append(current)
                    f = tar.extractfile(member)
                    data = f.read() if f is not None else b""
                    _add_member(current, ext.lower(), data, f"{path}:{member.name}")
        except (tarfile.TarError, OSError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise InputError(f"{path}: not a readable tar file ({e})") from e
    return pa.Table.from_pylist(rows)


def _add_member(sample: dict[str, Any], ext: str, data: bytes, where: str) -> None:
    if ext in IMAGE_EXTENSIONS:
        sample["image"] = data
    elif ext == "json":
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise InputError(f"{where}: not JSON ({e})") from e
        if isinstance(doc, dict):
            sample.update({k: v for k, v in doc.items() if k not in ("image", "__key__")})
        else:
            sample["json"] = doc
    elif ext in ("txt", "cls", "text", "caption"):
        sample[ext] = data.decode("utf-8", errors="replace")
    else:
        sample[ext] = data


def detect(path: str) -> str:
    """The kind of a generic input: ``hf-disk``, ``webdataset``, ``jsonl`` or ``parquet``."""
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "state.json")):
            return "hf-disk"
        if any(n.endswith(".parquet") for n in os.listdir(path)):
            return "parquet"
        if any(n.endswith(".tar") for n in os.listdir(path)):
            return "webdataset"
        raise InputError(f"{path}: no parquet, tar or saved HF dataset in this directory")
    name = path.lower()
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return "webdataset"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise InputError(f"{path}: cannot tell the input's format from its name")


def image_column(table: pa.Table) -> str | None:
    """The column holding image bytes: an HF ``Image`` struct ``{bytes, path}`` or binary."""
    for name in ("image", "img", "jpg", "png"):
        if name in table.column_names:
            t = table.schema.field(name).type
            if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0:
                return name
            if pa.types.is_binary(t) or pa.types.is_large_binary(t):
                return name
    return None


def file_name_column(table: pa.Table) -> str | None:
    for name in FILE_NAME_COLUMNS:
        if name in table.column_names and pa.types.is_string(table.schema.field(name).type):
            return name
    return None
