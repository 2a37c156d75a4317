"""The random generator of one example: a pure function of (seed, epoch, dataset, row).

Every random choice made while formatting an example (which template, whether the style
prefix is kept, which transcript, the annotation order) is drawn from this generator, so an
example's conversation is the same on every rank and worker, in any process, and after a
resumption, whatever order examples are visited in.
"""

from __future__ import annotations

import hashlib

import numpy as np


def example_rng(seed: int, epoch: int, dataset: str, row: int) -> np.random.Generator:
    """A fresh ``numpy.random.Generator`` for one example.

    ``seed`` is the run's seed, ``epoch`` the epoch that drew the example, ``dataset`` the
    name of its dataset (a mixture source's name: two datasets' row 7 draw differently) and
    ``row`` its row in that dataset. All must be non-negative integers.
    """
    for name, value in (("seed", seed), ("epoch", epoch), ("row", row)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"example_rng: {name} must be a non-negative integer, got {value!r}")
    # 64 bits of the name's sha256: distinct names collide with probability ~2^-64.
    key = int.from_bytes(hashlib.sha256(dataset.encode("utf-8")).digest()[:8], "little")
    entropy = [int(seed), int(epoch), key, int(row)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
