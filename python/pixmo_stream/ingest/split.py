"""Held-out splits carved from train the way Molmo carves them.

Molmo (``olmo/data/pixmo_datasets.py``) groups each dataset by image, then calls HF
``Dataset.train_test_split(test_size=n_val, seed=96817)``, which takes the first ``n_val``
entries of ``numpy.random.default_rng(96817).permutation(num_images)`` as validation
(2,048 images; 1,024 for point-explanations). This module draws the same permutation over
the images in their first-appearance order; the records of each split keep input order.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Split = Literal["all", "train", "validation"]
SPLITS: tuple[Split, ...] = ("all", "train", "validation")
MOLMO_SPLIT_SEED = 96817


def validation_positions(num_images: int, n_validation: int, seed: int) -> np.ndarray:
    """Positions (0..num_images-1, sorted) of the held-out images."""
    perm = np.random.default_rng(seed).permutation(num_images)
    return np.sort(perm[: min(n_validation, num_images)])


def select_groups(groups: np.ndarray, split: Split, n_validation: int, seed: int) -> np.ndarray:
    """The groups of ``split``. A dataset that publishes its own splits (``n_validation``
    0: pixmo-count, pixmo-docs, points-eval) only has ``all``: convert each published split."""
    if split == "all":
        return groups
    if n_validation <= 0:
        raise ValueError(
            f"split {split!r}: this dataset publishes its own splits; convert the published "
            "split's file with split 'all'"
        )
    held = np.zeros(len(groups), dtype=bool)
    held[validation_positions(len(groups), n_validation, seed)] = True
    return groups[held] if split == "validation" else groups[~held]
