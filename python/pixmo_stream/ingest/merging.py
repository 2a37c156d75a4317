"""``merge``: datasets written separately (on several machines, say) into one, without
rewriting a byte of any shard. Shards are hard-linked (or copied, or moved) under new names
and one new manifest, written as the Rust writer writes it (docs/FORMAT.md "The dataset
manifest", a fresh ``write_id``), is renamed into place last: until then the output is not
a dataset, so a merge that fails half-way never looks complete.

When an input or the output is a URL (``s3://``, ``gs://``, ``az://``, ``http(s)://``) the
shards cannot be linked or copied as files (pixmo-stream has no object-copy call), so the
records are rewritten instead: read with `Dataset`, written with `Writer` (shards uploaded one
by one, the manifest last), keeping the schema, the codecs and the order of the records.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..storage import CacheArg, is_url
from .errors import MergeError

MANIFEST = "manifest.json"
Mode = Literal["link", "copy", "move"]
MODES: tuple[Mode, ...] = ("link", "copy", "move")


@dataclass(frozen=True)
class MergeSummary:
    path: str
    num_rows: int
    num_shards: int
    num_bytes: int
    linked: int
    copied: int
    rewritten: bool = False  # records read and written again (a URL was involved)


def _read_manifest(path: str) -> dict[str, Any]:
    where = os.path.join(path, MANIFEST)
    try:
        with open(where, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise MergeError(f"{path}: not a dataset (no {MANIFEST}; is its write finished?)") from None
    except ValueError as e:
        raise MergeError(f"{where}: not valid JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != "pixmo-stream":
        raise MergeError(f"{where}: not a pixmo-stream manifest")
    if not isinstance(doc.get("version"), list) or doc["version"][:1] != [1]:
        raise MergeError(f"{where}: manifest version {doc.get('version')}; merge reads 1.x")
    return doc


def _one_schema(inputs: Sequence[str], schemas: list[dict[str, Any]]) -> dict[str, Any]:
    """The inputs' schema; `MergeError` naming the first input whose schema differs."""
    for p, other in zip(inputs[1:], schemas[1:], strict=True):
        if other != schemas[0]:
            raise MergeError(
                f"{p}: its schema differs from {inputs[0]}'s: "
                f"{_schema_difference(schemas[0], other)}"
            )
    return schemas[0]


def _schema_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    fa = {f["name"]: f for f in a.get("fields", [])}
    fb = {f["name"]: f for f in b.get("fields", [])}
    if list(fa) != list(fb):
        only_a, only_b = sorted(set(fa) - set(fb)), sorted(set(fb) - set(fa))
        parts = []
        if only_a:
            parts.append(f"only the first has {', '.join(only_a)}")
        if only_b:
            parts.append(f"only this one has {', '.join(only_b)}")
        return "; ".join(parts) or "the columns are in another order"
    for name in fa:
        if fa[name] != fb[name]:
            return f"column {name!r} differs: {json.dumps(fa[name])} vs {json.dumps(fb[name])}"
    return "the schemas' metadata differ"


def _place(src: str, dst: str, mode: Mode) -> bool:
    """Puts ``src`` at ``dst``; True when it was linked or moved, False when copied."""
    if mode == "move":
        try:
            os.rename(src, dst)
            return True
        except OSError:
            shutil.move(src, dst)
            return False
    if mode == "link":
        try:
            os.link(src, dst)
            return True
        except OSError:  # another file system, or links not supported: copy instead
            pass
    shutil.copyfile(src, dst)
    return False


def merge(
    inputs: Sequence[str],
    output: str,
    *,
    mode: Mode = "link",
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    cache: CacheArg = True,
    cache_limit: int | str | None = None,
    progress: Callable[[int], None] | None = None,
) -> MergeSummary:
    """Merges the datasets ``inputs`` (in order: their rows follow each other) into
    ``output``. Their schemas must be equal (`MergeError` names the first difference);
    dataset metadata keys on which they all agree are kept.

    Any of them may be a URL: the records are then rewritten rather than the shards linked
    (``mode`` "move" is refused), the store configured by ``storage_options`` (and the
    environment), the inputs read through the node cache ``cache`` as `Dataset` reads them;
    ``progress(n)`` is called as records are written."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not inputs:
        raise MergeError("nothing to merge")
    for p in inputs:
        if not is_url(p) and not os.path.exists(p):
            raise FileNotFoundError(2, "No such file or directory", p)
    if any(is_url(p) for p in [*inputs, output]):
        if mode == "move":
            raise MergeError("mode 'move' is for local datasets; with a URL, records are copied")
        _check_distinct(inputs, output)
        return _merge_by_rewrite(
            inputs, output, overwrite, storage_options, cache, cache_limit, progress
        )
    manifests = [_read_manifest(p) for p in inputs]
    schema = _one_schema(inputs, [m["schema"] for m in manifests])
    _check_distinct(inputs, output)
    _prepare_local_output(output, overwrite)

    shards: list[dict[str, Any]] = []
    linked = copied = 0
    for p, m in zip(inputs, manifests, strict=True):
        for s in m.get("shards", []):
            src = os.path.join(p, s["file"])
            try:
                size = os.path.getsize(src)
            except FileNotFoundError:
                raise MergeError(f"{src}: a shard its manifest lists is missing") from None
            if size != int(s["num_bytes"]):
                raise MergeError(
                    f"{src}: the file is {size:,} bytes, its manifest says {int(s['num_bytes']):,}"
                )
            name = f"shard-{len(shards):05d}.pxs"
            if _place(src, os.path.join(output, name), mode):
                linked += 1
            else:
                copied += 1
            shards.append(
                {
                    "file": name,
                    "num_rows": int(s["num_rows"]),
                    "num_bytes": int(s["num_bytes"]),
                    "row_groups": [int(r) for r in s["row_groups"]],
                }
            )
    metadata = dict(manifests[0].get("metadata") or {})
    for m in manifests[1:]:
        other = m.get("metadata") or {}
        metadata = {k: v for k, v in metadata.items() if other.get(k) == v}
    manifest = _manifest(schema, shards, metadata)
    _write_manifest(output, manifest)
    return MergeSummary(
        output, manifest["num_rows"], len(shards), manifest["num_bytes"], linked, copied
    )


def _check_distinct(inputs: Sequence[str], output: str) -> None:
    """Replacing the output must not delete an input (nor may an input hold the output)."""
    out = _location(output)
    for p in inputs:
        where = _location(p)
        if (
            where == out
            or where.startswith(out.rstrip("/") + "/")
            or out.startswith(where.rstrip("/") + "/")
        ):
            raise MergeError(f"{output}: the output cannot be, hold or lie inside input {p}")


def _location(path: str) -> str:
    return path.rstrip("/") if is_url(path) else os.path.realpath(path)


def _prepare_local_output(output: str, overwrite: bool) -> None:
    if os.path.exists(output):
        if not os.path.isdir(output):
            raise MergeError(f"{output}: exists and is not a directory")
        if os.listdir(output):
            if not overwrite:
                raise MergeError(f"{output}: exists and is not empty (overwrite=True replaces it)")
            shutil.rmtree(output)
    os.makedirs(output, exist_ok=True)


def _merge_by_rewrite(
    inputs: Sequence[str],
    output: str,
    overwrite: bool,
    storage_options: Mapping[str, Any] | None,
    cache: CacheArg,
    cache_limit: int | str | None,
    progress: Callable[[int], None] | None,
) -> MergeSummary:
    """Reads every record of ``inputs`` and writes them, in order, to ``output``."""
    import pixmo_stream as ps

    opened = [
        ps.Dataset(p, storage_options=storage_options, cache=cache, cache_limit=cache_limit)
        for p in inputs
    ]
    infos = [d.info() for d in opened]  # every shard opened: a missing one is named now
    _one_schema(inputs, [info["schema"] for info in infos])
    metadata = dict(opened[0].metadata)
    for d in opened[1:]:
        metadata = {k: v for k, v in metadata.items() if d.metadata.get(k) == v}
    if not is_url(output):
        _prepare_local_output(output, overwrite)
    try:
        writer = ps.Writer(
            output,
            opened[0].schema,
            overwrite=overwrite or not is_url(output),  # a local output was prepared above
            metadata=metadata,
            storage_options=storage_options,
            **_layout(infos),
        )
    except ValueError as e:
        if "already holds a dataset" not in str(e):
            raise
        raise MergeError(
            f"{output}: holds a dataset already (or shards of an unfinished write); "
            "overwrite=True replaces it"
        ) from None
    with writer:
        for d in opened:
            for batch in d.iter_batches():
                writer.write_many(batch)
                if progress is not None:
                    progress(len(batch))
    done = writer.close()  # the summary of the close at the end of the block
    return MergeSummary(output, done.num_rows, done.num_shards, done.num_bytes, 0, 0, True)


def _layout(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """Writer options that keep the inputs' codecs (a column's, when all its chunks share
    one) and aim at shards of the inputs' largest size and row groups of at most their
    largest number of rows."""
    codecs: dict[str, set[str]] = {}
    shard_bytes = rows = 0
    for info in infos:
        for shard in info.get("shards", []):
            shard_bytes = max(shard_bytes, int(shard.get("num_bytes", 0)))
            for rg in shard.get("row_groups", []):
                rows = max(rows, int(rg.get("num_rows", 0)))
                for col in rg.get("columns", []):
                    codecs.setdefault(col["name"], set()).add(str(col["codec"]))
    out: dict[str, Any] = {"codecs": {k: v.pop() for k, v in codecs.items() if len(v) == 1}}
    if shard_bytes:
        out["shard_bytes"] = shard_bytes
    if rows:
        out["row_group_rows"] = rows
    return out


def _manifest(
    schema: dict[str, Any], shards: list[dict[str, Any]], metadata: dict[str, str]
) -> dict[str, Any]:
    import pixmo_stream as ps

    # Keys in the order the Rust writer's serde struct writes them.
    return {
        "format": "pixmo-stream",
        "version": [1, 2],
        "schema": schema,
        "num_rows": sum(s["num_rows"] for s in shards),
        "num_bytes": sum(s["num_bytes"] for s in shards),
        "shards": shards,
        "created_by": f"pixmo-stream {ps.__version__}",
        "metadata": dict(sorted(metadata.items())),  # a BTreeMap in Rust: sorted keys
        "write_id": uuid.uuid4().hex,
    }


def _write_manifest(output: str, manifest: dict[str, Any]) -> None:
    tmp = os.path.join(output, MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(output, MANIFEST))
