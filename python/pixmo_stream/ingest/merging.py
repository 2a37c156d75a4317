"""``merge``: datasets written separately (on several machines, say) into one, without
rewriting a byte of any shard. Shards are hard-linked (or copied, or moved) under new names
and one new manifest, written as the Rust writer writes it (docs/FORMAT.md "The dataset
manifest", a fresh ``write_id``), is renamed into place last: until then the output is not
a dataset, so a merge that fails half-way never looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

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
    inputs: Sequence[str], output: str, *, mode: Mode = "link", overwrite: bool = False
) -> MergeSummary:
    """Merges the datasets ``inputs`` (in order: their rows follow each other) into
    ``output``. Their schemas must be equal (`MergeError` names the first difference);
    dataset metadata keys on which they all agree are kept."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not inputs:
        raise MergeError("nothing to merge")
    for p in inputs:
        if not os.path.exists(p):
            raise FileNotFoundError(2, "No such file or directory", p)
    manifests = [_read_manifest(p) for p in inputs]
    schema = manifests[0]["schema"]
    for p, m in zip(inputs[1:], manifests[1:], strict=True):
        if m["schema"] != schema:
            raise MergeError(
                f"{p}: its schema differs from {inputs[0]}'s: "
                f"{_schema_difference(schema, m['schema'])}"
            )
    real_out = os.path.realpath(output)
    for p in inputs:
        real_in = os.path.realpath(p)
        if os.path.commonpath([real_in, real_out]) in (real_in, real_out):
            # Replacing the output would delete an input (or the input holds the output).
            raise MergeError(f"{output}: the output cannot be, hold or lie inside input {p}")
    if os.path.exists(output):
        if not os.path.isdir(output):
            raise MergeError(f"{output}: exists and is not a directory")
        if os.listdir(output):
            if not overwrite:
                raise MergeError(f"{output}: exists and is not empty (overwrite=True replaces it)")
            shutil.rmtree(output)
    os.makedirs(output, exist_ok=True)

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
