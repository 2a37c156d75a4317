"""Molmo's image preprocessing (``overlap-and-resize-c2``, released settings) in Python, step
by step as Molmo's ``olmo/data/model_preprocessor.py`` computes it: PIL decode, torchvision's
antialiased float32 resize, numpy crops, patch ordering and ``image_input_idx``.

Two users: ``tests/test_image_molmo.py`` checks the Rust implementation against it, and
``benches/images.py`` times it as the baseline (what Molmo's own loader does per image).
Needs torch and torchvision, imported when first used.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
CROP, PATCH, WINDOW, MARGIN, MAX_CROPS = 336, 14, 224, 112, 12
# Token ids for the reference's token sequence (any distinct values do).
PATCH_ID, COL_ID, START_ID, END_ID = 1, 2, 3, 4


def load_rgb(data: bytes) -> np.ndarray:
    """Molmo's ``load_image``: PIL, ``convert("RGB")``, EXIF transpose."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        return np.array(ImageOps.exif_transpose(im.convert("RGB")))


def select_tiling(h: int, w: int) -> tuple[int, int]:
    cands = sorted(
        (
            (i, j)
            for i in range(1, MAX_CROPS + 1)
            for j in range(1, MAX_CROPS + 1)
            if i * j <= MAX_CROPS
        ),
        key=lambda t: (t[0] * t[1], t[0]),
    )
    res = np.array(cands, dtype=np.int32) * WINDOW
    with np.errstate(divide="ignore"):
        scale = (res.astype(np.float32) / np.array([h, w], dtype=np.float32)).min(-1)
    if (scale < 1).all():
        return cands[int(np.argmax(scale))]
    return cands[int(np.argmin(np.where(scale < 1, 10e9, scale)))]


def resize_and_pad(img: np.ndarray, out_h: int, out_w: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 [0, 1] canvas and its mask of real pixels. Sides clamped to 1 px, where
    Molmo's own code would make them 0 and fail."""
    import torch
    import torchvision.transforms.functional as tvf

    h, w = img.shape[:2]
    s = min(np.float32(out_h) / np.float32(h), np.float32(out_w) / np.float32(w))
    sh, sw = max(int(np.float32(h) * s), 1), max(int(np.float32(w) * s), 1)
    t = torch.from_numpy(img).permute(2, 0, 1).to(torch.float32) / 255.0
    t = tvf.resize(t, [sh, sw], tvf.InterpolationMode.BILINEAR, antialias=True).clip(0.0, 1.0)
    content = t.permute(1, 2, 0).numpy()
    top, left = (out_h - sh) // 2, (out_w - sw) // 2
    pads = [(top, out_h - sh - top), (left, out_w - sw - left)]
    return np.pad(content, pads + [(0, 0)]), np.pad(np.ones((sh, sw), dtype=bool), pads)


def to_patches(a: np.ndarray) -> np.ndarray:
    """[n, H, W, ...] -> [n, (H/14)*(W/14), 14*14*...]; patches and their pixels row-major."""
    n, hh, ww = a.shape[:3]
    a = a.reshape(n, hh // PATCH, PATCH, ww // PATCH, PATCH, *a.shape[3:]).swapaxes(2, 3)
    return a.reshape(n, (hh // PATCH) * (ww // PATCH), -1)


def layout(tiling: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``image_input_idx`` [n_crops, 144] and the image token sequence."""
    rows, cols = tiling
    blocks = []
    on = 0
    for i in range(rows):
        y0 = 0 if i == 0 else 2
        ch = 16 + (4 if i == 0 else 0) + (4 if i == rows - 1 else 0)
        for j in range(cols):
            x0 = 0 if j == 0 else 2
            cw = 16 + (4 if j == 0 else 0) + (4 if j == cols - 1 else 0)
            ph, pw = (ch + 1) // 2, (cw + 1) // 2
            block = np.full((12, 12), -1, dtype=np.int64)
            block[y0 : y0 + ph, x0 : x0 + pw] = np.arange(on, on + ph * pw).reshape(ph, pw)
            blocks.append(block)
            on += ph * pw
    order = np.stack(blocks).reshape(-1)
    raster = order.reshape(rows, cols, 12, 12).transpose(0, 2, 1, 3).reshape(-1)
    order[order >= 0] = raster[raster >= 0]
    order = np.concatenate([np.arange(144), np.where(order >= 0, order + 144, -1)])

    def tokens_across(n: int) -> int:
        return 12 if n == 1 else (20 + (n - 2) * 16 + 20) // 2

    glob = [START_ID] + ([PATCH_ID] * 12 + [COL_ID]) * 12 + [END_ID]
    hi = [START_ID] + ([PATCH_ID] * tokens_across(cols) + [COL_ID]) * tokens_across(rows) + [END_ID]
    tokens = np.array(glob + hi)
    positions = np.nonzero(tokens == PATCH_ID)[0]
    valid = order >= 0
    rank = np.zeros(len(positions), dtype=np.int64)
    rank[order[valid]] = np.arange(valid.sum())
    slot_rank = np.full(order.shape, -1)
    slot_rank[valid] = rank
    idx = np.where(slot_rank >= 0, positions[np.maximum(slot_rank, 0)], -100)
    return idx.reshape(-1, 144), tokens


def preprocess_rgb(img: np.ndarray) -> dict[str, Any]:
    """Crops [n, 576, 588], patch mask [n, 576], image_input_idx [n, 144], tokens, tiling."""
    h, w = img.shape[:2]
    tiling = select_tiling(h - MARGIN, w - MARGIN)
    canvas, mask = resize_and_pad(img, tiling[0] * WINDOW + MARGIN, tiling[1] * WINDOW + MARGIN)
    canvas = (canvas - MEAN) / STD
    glob, _ = resize_and_pad(img, CROP, CROP)
    glob = (glob - MEAN) / STD
    tiles = [(i * WINDOW, j * WINDOW) for i in range(tiling[0]) for j in range(tiling[1])]
    crops = [glob] + [canvas[y : y + CROP, x : x + CROP] for y, x in tiles]
    masks = np.stack([mask[y : y + CROP, x : x + CROP] for y, x in tiles])
    pmask = to_patches(masks).astype(np.float32).mean(-1)
    pmask = np.pad(pmask, [(0, 1), (0, 0)], constant_values=-1)
    idx, tokens = layout(tiling)
    return {
        "crops": to_patches(np.stack(crops)),
        "mask": pmask,
        "idx": idx,
        "tokens": tokens,
        "tiling": tiling,
    }


def preprocess(data: bytes) -> dict[str, Any]:
    """Encoded bytes to Molmo's inputs, as Molmo's loader does it."""
    return preprocess_rgb(load_rgb(data))
