"""One dataset written by many tasks, committed once.

Each task attempt writes a complete dataset of its own (shards and manifest) into a fresh
directory under the staging root, ``.NAME.pixmo-staging`` beside the output (the same file
system, so that committing moves files instead of copying them). A retried task writes a
new directory; only the parts whose attempts returned are committed, by
`pixmo_stream.ingest.merge()` in ``move`` mode (shards renamed into the output, one manifest
written last), and the root is then removed with every stale attempt in it. Nothing in the
output is touched until the commit, so a failed write leaves an existing output as it was.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..ingest.merging import merge
from ..schema import Schema
from ..writer import Writer, WriteSummary
from .errors import RayWriteError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class StagedPart:
    """What one successful task attempt wrote: a dataset at ``path``."""

    index: int  # the task's position in the input: parts are committed in this order
    path: str
    num_rows: int
    schema: Schema | None = None  # what it wrote


def _check_schemas(parts: list[StagedPart], output: str) -> None:
    first = parts[0]
    for p in parts[1:]:
        if p.schema is None or first.schema is None or p.schema == first.schema:
            continue
        theirs = {f.name: f for f in p.schema}
        ours = {f.name: f for f in first.schema}
        diff = [
            f"{name}: {ours[name] if name in ours else '(none)'} vs "
            f"{theirs[name] if name in theirs else '(none)'}"
            for name in dict.fromkeys([*ours, *theirs])
            if ours.get(name) != theirs.get(name)
        ]
        raise RayWriteError(
            f"{output}: write tasks {first.index} and {p.index} wrote different schemas "
            f"({'; '.join(diff) or 'the columns are in another order'}); pass schema= so that "
            "every task writes the same one"
        )


def staging_root(output: str) -> str:
    out = os.path.abspath(output)
    return os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.pixmo-staging")


def open_root(output: str) -> str:
    """A fresh, empty staging root for a write to ``output`` (an earlier write's leftovers,
    never committed, are removed)."""
    root = staging_root(output)
    discard(root)
    os.makedirs(root)
    return root


def new_attempt(root: str, index: int) -> str:
    """Creates a directory no other attempt uses (a retried task gets a new one). Only the
    driver creates the root: an attempt still running after its write was given up (and the
    root removed) fails here instead of leaving files behind."""
    path = os.path.join(root, f"part-{index:06d}-{uuid.uuid4().hex}")
    try:
        os.mkdir(path)
    except FileNotFoundError:
        raise RayWriteError(
            f"{root}: the staging directory is gone (the write was given up or finished)"
        ) from None
    return path


def check_output(output: str, overwrite: bool) -> None:
    """Refuses an output that cannot be written, before any work is done."""
    if os.path.exists(output):
        if not os.path.isdir(output):
            raise RayWriteError(f"{output}: exists and is not a directory")
        if os.listdir(output) and not overwrite:
            raise RayWriteError(
                f"{output}: exists and is not empty; pass overwrite=True to replace it"
            )


def discard(root: str) -> None:
    shutil.rmtree(root, ignore_errors=True)


def commit(
    parts: Iterable[StagedPart],
    output: str,
    *,
    overwrite: bool,
    schema: Schema | None = None,
    metadata: Mapping[str, str] | None = None,
) -> WriteSummary:
    """Makes ``output`` the parts' rows in index order; removes the staging root."""
    ordered = sorted(parts, key=lambda p: p.index)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.index == b.index:
            raise RayWriteError(f"{output}: two attempts of task {a.index} both returned")
    root = staging_root(output)
    try:
        if not ordered:
            if schema is None:
                raise RayWriteError(
                    f"{output}: no rows to write and no schema given: cannot write an empty "
                    "dataset without a schema"
                )
            summary = Writer(
                output, schema, overwrite=overwrite, metadata=dict(metadata or {})
            ).close()
            return summary
        _check_schemas(ordered, output)
        merged = merge([p.path for p in ordered], output, mode="move", overwrite=overwrite)
        return WriteSummary(merged.path, merged.num_rows, merged.num_shards, merged.num_bytes)
    finally:
        discard(root)
