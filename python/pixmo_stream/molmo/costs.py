"""What each example costs in a packed row, known without decoding any image.

An example's crops and image tokens are a pure function of its image's EXIF-oriented size
(the ``width`` / ``height`` columns conversion stores): Molmo's tiling for that size gives
``tiling[0] * tiling[1] + 1`` crops and a fixed token count. Its text tokens are those of
``Formatter.bound(record)`` (every random choice at its longest), read from the text columns
only. The costs of a dataset are cached on disk, keyed by the dataset's manifest hash, the
formatter's settings, the tokenizer's fingerprint and the image settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from typing import Any

import numpy as np

from .tokens import text_length

COST_VERSION = 1


def _ceil_to(x: int, k: int) -> int:
    return (x + k - 1) // k * k


def _config_key(config: Any) -> tuple:
    # Token ids do not change counts; everything else about the crops may.
    return (
        config.max_crops,
        config.crop_size,
        config.patch_size,
        tuple(config.overlap_margins),
        config.pooling,
    )


def image_tokens_for_tiling(tiling: tuple[int, int], config: Any) -> int:
    """Image tokens Molmo writes for a ``(rows, cols)`` tiling: the global view's
    ``<im_start>``, 12 rows of 12 patches and ``<im_col>``, ``<im_end>``; then the same frame
    around the pooled high-resolution grid (its overlap margins dropped between tiles)."""
    crop = config.crop_size // config.patch_size
    left, right = config.overlap_margins
    window = crop - left - right
    pool = config.pooling

    def patches(n: int) -> int:
        if n == 1:
            return _ceil_to(crop, pool)
        return (
            _ceil_to(window + left, pool)
            + (n - 2) * _ceil_to(window, pool)
            + _ceil_to(window + right, pool)
        )

    side = -(-crop // pool)
    glob = side * (side + 1) + 2
    h, w = patches(tiling[0]) // pool, patches(tiling[1]) // pool
    return glob + h * (w + 1) + 2


def _config(key: tuple) -> Any:
    """The `MolmoConfig` whose geometry settings `key` holds."""
    from .._molmo import MolmoConfig

    return MolmoConfig(
        max_crops=key[0],
        crop_size=key[1],
        patch_size=key[2],
        overlap_margins=key[3],
        pooling=key[4],
    )


@lru_cache(maxsize=65536)
def _image_cost(height: int, width: int, key: tuple) -> tuple[int, int]:
    from .._molmo import molmo_geometry

    config = _config(key)
    try:
        tiling = molmo_geometry(height, width, config).tiling
    except ValueError:
        return _worst(key)
    return image_tokens_for_tiling(tiling, config), tiling[0] * tiling[1] + 1


@lru_cache(maxsize=64)
def _worst(key: tuple) -> tuple[int, int]:
    """The most tokens and crops any image can cost (for rows without a stored size)."""
    config = _config(key)
    tilings = [
        (i, j) for i in range(1, key[0] + 1) for j in range(1, key[0] + 1) if i * j <= key[0]
    ]
    return max(image_tokens_for_tiling(t, config) for t in tilings), key[0] + 1


def image_cost(height: int | None, width: int | None, config: Any = None) -> tuple[int, int]:
    """``(image tokens, crops)`` of an upright image of ``height`` x ``width`` under Molmo's
    preprocessing (`config`, default Molmo's); the worst case when the size is unknown."""
    from .._molmo import MolmoConfig

    key = _config_key(config or MolmoConfig())
    if height is None or width is None or height <= 0 or width <= 0:
        return _worst(key)
    return _image_cost(int(height), int(width), key)


def _formatter_key(formatter: Any) -> str:
    settings = {k: v for k, v in vars(formatter).items() if not k.startswith("_")}
    return json.dumps(settings, sort_keys=True, default=repr)


def _cache_path(cache_dir: str | os.PathLike | None, key: str) -> str:
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        cache_dir = os.path.join(base, "pixmo_stream", "molmo_costs")
    return os.path.join(os.fspath(cache_dir), f"{key}.npz")


def costs(
    dataset: Any,
    formatter: Any,
    tokenizer: Any,
    *,
    config: Any = None,
    max_tokens: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `dataset` (a `pixmo_stream.Dataset` or its path): ``(tokens uint32[N],
    crops uint16[N])``, what the row's example takes in a packed row.

    ``tokens`` = image tokens + text tokens of ``formatter.bound(record)`` (with the EOS of
    every answer), at most ``max_tokens`` (an example longer than a row loses whole
    annotations when laid out); rows without a stored size cost the most any image may.
    `tokenizer`: a `MolmoTokenizer`. Cached under `cache_dir` (default
    ``~/.cache/pixmo_stream/molmo_costs``)."""
    from .._molmo import MolmoConfig
    from ..dataset import Dataset
    from .tokenizer import MolmoTokenizer

    if not isinstance(dataset, Dataset):
        dataset = Dataset(dataset)
    if not isinstance(tokenizer, MolmoTokenizer):
        tokenizer = MolmoTokenizer(tokenizer)
    config = config or MolmoConfig()
    ckey = _config_key(config)
    key = hashlib.sha256(
        json.dumps(
            [
                COST_VERSION,
                int(dataset._native.manifest_hash),
                _formatter_key(formatter),
                tokenizer.fingerprint,
                list(ckey[:3]) + [list(ckey[3]), ckey[4]],
                max_tokens,
            ],
            default=repr,
        ).encode()
    ).hexdigest()[:40]
    path = _cache_path(cache_dir, key)
    if use_cache and os.path.exists(path):
        with np.load(path) as z:
            return z["tokens"], z["crops"]

    have = set(dataset.columns)
    size_cols = [c for c in ("height", "width") if c in have]
    cols = list(dict.fromkeys([*formatter.columns, *size_cols]))
    n = len(dataset)
    tokens = np.zeros(n, dtype=np.uint32)
    crops = np.zeros(n, dtype=np.uint16)
    i = 0
    for batch in dataset.iter_batches(columns=cols):
        examples = [formatter.bound(r) for r in batch]
        # Prompts repeat across records (templates, style prefixes): each once.
        unique = list(
            dict.fromkeys(m for ex in examples for a in ex.annotations for m in a.messages)
        )
        length = dict(
            zip(unique, (len(ids) for ids in tokenizer.encode_batch(unique)), strict=True)
        )
        for r, ex in zip(batch, examples, strict=True):
            text = text_length([[length[m] for m in a.messages] for a in ex.annotations])
            img_tokens, img_crops = image_cost(r.get("height"), r.get("width"), config)
            total = img_tokens + text
            tokens[i] = min(total, max_tokens) if max_tokens is not None else total
            crops[i] = img_crops
            i += 1
    if i != n:
        raise RuntimeError(f"{dataset.path}: read {i} rows, expected {n}")
    if use_cache:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, tokens=tokens, crops=crops)
        os.replace(tmp, path)
    return tokens, crops


__all__ = ["costs", "image_cost", "image_tokens_for_tiling"]
