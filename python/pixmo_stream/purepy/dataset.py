"""A dataset: a directory with a manifest, or a single shard."""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterator

import numpy as np

from .constants import MAJOR_VERSION, MANIFEST_NAME
from .decode import _fresh
from .errors import CorruptDataError, UnsupportedVersionError
from .schema import _check_schema
from .shard import Shard, _is_uint


class Dataset:
    """Rows of one or more shards, in dataset order. Use `open_dataset` to make one."""

    def __init__(self, path: str, shards: list[Shard], schema: dict) -> None:
        self.path = path
        self.shards = shards
        self.schema = schema
        self._names = [f["name"] for f in schema["fields"]]
        # (shard index, row group index, first global row, num rows) per row group.
        self._layout: list[tuple[int, int, int, int]] = []
        first = 0
        for s, shard in enumerate(shards):
            for g, (nrows, _) in enumerate(shard.row_groups):
                self._layout.append((s, g, first, nrows))
                first += nrows
        self._starts = np.array([x[2] for x in self._layout], dtype=np.int64)
        self._num_rows = first
        self._cache: tuple[int, dict[str, list]] | None = None

    def __len__(self) -> int:
        return self._num_rows

    def close(self) -> None:
        for s in self.shards:
            s.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _row_group(self, k: int) -> dict[str, list]:
        if self._cache is None or self._cache[0] != k:
            s, g, _, _ = self._layout[k]
            shard = self.shards[s]
            cols = {n: shard.read_chunk(g, c) for c, n in enumerate(self._names)}
            self._cache = (k, cols)
        return self._cache[1]

    def __getitem__(self, i: int) -> dict:
        i = operator.index(i)
        if i < 0:
            i += self._num_rows
        if not 0 <= i < self._num_rows:
            raise IndexError(f"row {i} out of range for a dataset of {self._num_rows} rows")
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        cols = self._row_group(k)
        j = i - self._layout[k][2]
        return {n: _fresh(cols[n][j]) for n in self._names}

    def __iter__(self) -> Iterator[dict]:
        for s, g, _, nrows in self._layout:
            shard = self.shards[s]
            cols = [shard.read_chunk(g, c) for c in range(len(self._names))]
            for j in range(nrows):
                yield {n: cols[c][j] for c, n in enumerate(self._names)}

    def read_column(self, name: str) -> list:
        if name not in self._names:
            raise KeyError(f"no column {name!r}; columns are {self._names}")
        c = self._names.index(name)
        out: list = []
        for s, g, _, _ in self._layout:
            out.extend(self.shards[s].read_chunk(g, c))
        return out

    def row_group_layout(self) -> list[tuple[int, int, int, int]]:
        return list(self._layout)

    def verify(self) -> int:
        """Check every chunk of every shard; raise CorruptDataError on the first problem.

        Returns the number of chunks checked.
        """
        n = 0
        for s, g, _, _ in self._layout:
            for c in range(len(self._names)):
                self.shards[s].read_chunk(g, c)
                n += 1
        return n


def _manifest_error(path: str, what: str) -> CorruptDataError:
    return CorruptDataError(f"manifest: {what}", path)


def _open_manifest(root: str) -> Dataset:
    mpath = os.path.join(root, MANIFEST_NAME)

    def err(what: str) -> CorruptDataError:
        return _manifest_error(mpath, what)

    with open(mpath, "rb") as f:
        try:
            m = json.loads(f.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise err(f"not valid UTF-8 JSON: {e}") from None
    if not isinstance(m, dict):
        raise err("not a JSON object")
    if m.get("format") != "pixmo-stream":
        raise err(f"format is {m.get('format')!r}, not 'pixmo-stream'")
    version = m.get("version")
    if not (isinstance(version, list) and len(version) == 2 and all(map(_is_uint, version))):
        raise err(f"malformed version {version!r}")
    if version[0] != MAJOR_VERSION:
        raise UnsupportedVersionError(f"{mpath}: manifest version {version}; reads major 1")
    _check_schema(m.get("schema"), err)
    schema = m["schema"]
    entries = m.get("shards")
    if not isinstance(entries, list):
        raise err("'shards' must be an array")
    shards: list[Shard] = []
    total_rows = total_bytes = 0
    try:
        for e in entries:
            if not isinstance(e, dict):
                raise err(f"malformed shard entry {e!r}")
            rel = e.get("file")
            if (
                not isinstance(rel, str)
                or not rel
                or rel.startswith(("/", "\\"))
                or ".." in rel.replace("\\", "/").split("/")
            ):
                raise err(f"shard file {rel!r} must be a relative path without '..'")
            if not (_is_uint(e.get("num_rows")) and _is_uint(e.get("num_bytes"))):
                raise err(f"shard {rel!r}: num_rows and num_bytes must be unsigned integers")
            spath = os.path.join(root, rel)
            if not os.path.exists(spath):
                raise FileNotFoundError(f"{spath}: shard listed in {mpath} is missing")
            if not os.path.isfile(spath):
                raise CorruptDataError("shard listed in the manifest is not a file", spath)
            size = os.stat(spath).st_size
            if size != e["num_bytes"]:
                raise CorruptDataError(
                    f"file is {size} bytes, the manifest says {e['num_bytes']} "
                    "(truncated or replaced)",
                    spath,
                )
            shard = Shard(spath)
            shards.append(shard)
            if shard.num_rows != e["num_rows"]:
                raise CorruptDataError(
                    f"footer has {shard.num_rows} rows, the manifest says {e['num_rows']}", spath
                )
            groups = [nrows for nrows, _ in shard.row_groups]
            if "row_groups" in e and groups != e["row_groups"]:
                raise CorruptDataError(
                    f"row groups {groups} differ from the manifest's {e['row_groups']}", spath
                )
            if shard.schema["fields"] != schema["fields"]:
                raise CorruptDataError("schema differs from the manifest's schema", spath)
            total_rows += shard.num_rows
            total_bytes += size
        if "num_rows" in m and m["num_rows"] != total_rows:
            raise err(f"num_rows {m['num_rows']} != the shards' total {total_rows}")
        if "num_bytes" in m and m["num_bytes"] != total_bytes:
            raise err(f"num_bytes {m['num_bytes']} != the shards' total {total_bytes}")
    except BaseException:
        for s in shards:
            s.close()
        raise
    return Dataset(root, shards, schema)


def open_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Open a dataset directory (with `manifest.json`) or a single `.pxs` shard file."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(p)
    if os.path.isdir(p):
        return _open_manifest(p)
    shard = Shard(p)
    return Dataset(p, [shard], shard.schema)
