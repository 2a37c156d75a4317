"""The bad-sample policy of `StreamingDataset` and `Mixture` (`on_bad_sample=`).

A sample that cannot be used (a chunk or page that fails its checksum, an image that does not
decode, is empty or has more pixels than allowed) either stops the stream with
`BadSampleError` naming file, row group, column and row (`"raise"`, the default), or is
replaced (`"replace"`) by a row of the same source chosen from `(seed, epoch, row)` only, so
every rank and every resumed run makes the same replacement and ranks stay in step. Replaced
samples are counted (`bad_samples` on the dataset and in its `state_dict()`) and listed in
each batch under the key `"bad_samples"`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

POLICIES = ("raise", "replace")

#: Key of the list of replaced samples in each batch (under `on_bad_sample="replace"`).
BATCH_KEY = "bad_samples"


class BadSample(NamedTuple):
    """A sample that was replaced: where it is, why, and which row was read instead."""

    path: str
    row_group: int | None
    column: str | None
    #: Row of the dataset (or mixture source) `source`.
    row: int
    replacement: int
    reason: str
    source: int


def check_policy(on_bad_sample: str, max_replacements: int) -> None:
    if on_bad_sample not in POLICIES:
        raise ValueError(f"on_bad_sample must be one of {POLICIES}, not {on_bad_sample!r}")
    if not isinstance(max_replacements, int) or not 1 <= max_replacements <= 1 << 16:
        raise ValueError("max_replacements must be an int between 1 and 65536")


def mix_seed(seed: int, epoch: int) -> int:
    """The replacement seed of one epoch: replacements differ between epochs, never between
    ranks or runs."""
    mask = (1 << 64) - 1
    return (seed * 0x9E3779B97F4A7C15 + epoch + 1) & mask


def reports(native: list[tuple]) -> list[tuple[int, BadSample]]:
    """`(position in the batch, BadSample)` pairs from the native read-ahead's tuples."""
    out = []
    for position, source, row, replacement, path, row_group, column, reason in native:
        out.append((position, BadSample(path, row_group, column, row, replacement, reason, source)))
    return out


def count_in(item: Any) -> int:
    """Replaced samples listed in a batch (0 for anything that is not a batch dict)."""
    if isinstance(item, dict):
        listed = item.get(BATCH_KEY)
        if isinstance(listed, list):
            return len(listed)
    return 0
