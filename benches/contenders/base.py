"""What every contender implements. Each one writes with its own official writer and reads with
its own reader; the harness (``benches/run.py``) times the calls and checks that each read
returned the same records."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benches.common import NotSupported

__all__ = ["Contender", "NotSupported", "annotations", "from_annotations"]

# The annotation fields every reader must hand back as Python objects on a full scan.
ANNOTATION_KEYS = ("captions", "points", "point_labels", "point_counts", "qa", "meta")


def annotations(rec: dict[str, Any]) -> dict[str, Any]:
    """A record's annotations as plain JSON-able values (for formats that store JSON)."""
    return {
        "image_sha256": rec["image_sha256"],
        "image_url": rec["image_url"],
        "width": rec["width"],
        "height": rec["height"],
        "captions": rec["captions"],
        "points": rec["points"].tolist(),
        "point_labels": rec["point_labels"],
        "point_counts": rec["point_counts"],
        "qa": rec["qa"],
        "meta": rec["meta"],
    }


def from_annotations(image: bytes, blob: bytes | str) -> dict[str, Any]:
    rec = json.loads(blob)
    rec["image"] = image
    return rec


class Contender:
    """One storage format with its own writer and reader.

    ``name`` is the key used on the command line and in the JSON; ``label`` is what the table
    shows; ``package`` is the distribution that must be installed.
    """

    name: str = ""
    label: str = ""
    package: str = ""
    is_ours: bool = False

    def missing(self) -> str | None:
        """None when usable, else why not (e.g. 'not installed')."""
        import importlib

        try:
            importlib.import_module(self.module)
        except ImportError as e:
            return f"not installed ({e.name or self.package})"
        return None

    module: str = ""

    # --- writing ----------------------------------------------------------------------
    def write(self, records: Sequence[dict[str, Any]], out: Path) -> None:
        raise NotImplementedError

    # --- reading ----------------------------------------------------------------------
    def before_read(self, path: Path) -> None:
        """Runs untimed before each timed read (to undo what a previous read left behind)."""

    def open_first(self, path: Path) -> dict[str, Any]:
        """Open the dataset and return its first record (annotations materialized)."""
        raise NotImplementedError

    def scan(self, path: Path) -> Iterator[dict[str, Any]]:
        """Every record, images as undecoded bytes, annotations as Python objects."""
        raise NotImplementedError

    def scan_captions(self, path: Path) -> Iterator[list[str]]:
        """Every record's captions, reading no more than the format lets it avoid."""
        raise NotImplementedError

    def get_many(self, path: Path, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Records at ``indices``, one indexed lookup each, in that order."""
        raise NotSupported("no random access")

    def loader(
        self, path: Path, *, workers: int, decode: bool, batch_size: int, seed: int
    ) -> Iterable[list[dict[str, Any]]]:
        """A torch DataLoader (or the library's own) yielding shuffled batches (lists)."""
        raise NotSupported("no torch loader")
