"""Molmo's batch: v1's ``MMCollator(pad="to_max")`` output, and packed rows of several examples.

`collate` gives exactly the dict Molmo v1's collator gives (without its ``metadata`` list):
every row padded to ``seq_len`` tokens and ``max_crops`` crops with -1, ``subsegment_ids``
only when some example has several annotations (the others all ones then).

`collate_packed` puts several examples in one row of ``max_tokens`` tokens and ``max_crops``
crops: ``subsegment_ids`` offset by ``100000 * k`` for the row's ``k``-th example (Molmo2's
convention, so that no example attends to another under ``sub[i] <= sub[j]``), positions as
each example has them (restarting per example), ``image_input_idx`` offset by the tokens before
the example in its row, ``cu_seqlens`` / ``seq_lens`` for variable-length attention, and
``loss_weight_sum`` (the sum of positive loss weights, Molmo's loss normaliser).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._molmo import CLIP_MEAN, CLIP_STD

#: Subsegment offset between the examples of a packed row (Molmo2's EXAMPLE_SUBSEGMENT_INCREMENT).
EXAMPLE_SUBSEGMENT_INCREMENT = 100000
PAD = -1
TEXT_KEYS = ("input_tokens", "target_tokens", "loss_masks", "position_ids", "subsegment_ids")
_OUT = {"input_tokens": "input_ids", "target_tokens": "labels"}


def _image_pad(dtype: np.dtype) -> int:
    # uint8 crops cannot hold -1: their padded crops are 0 (`normalize_images` makes them -1).
    return 0 if dtype == np.uint8 else PAD


def _check_crops(n: int, max_crops: int, where: str) -> None:
    if n > max_crops:
        raise ValueError(
            f"{where} has {n} crops, more than max_crops={max_crops} (the global view counts: "
            "Molmo's 12 crops make 13)"
        )


Empty = Callable[[tuple[int, ...], Any], np.ndarray]


def _default_empty() -> Empty:
    from .._host import empty

    return empty


def collate(
    examples: Sequence[dict[str, np.ndarray]],
    seq_len: int = 2304,
    max_crops: int = 13,
    *,
    empty: Empty | None = None,
) -> dict[str, Any]:
    """Molmo v1's ``MMCollator(seq_len, pad="to_max", max_crops)`` of per-example arrays.

    `max_crops` counts every crop of the images axis, the global view included (13 for
    Molmo's ``max_crops=12``). Rows longer than `seq_len` are cut, as v1 does.
    `empty(shape, dtype)` makes the output arrays (in a DataLoader worker, shared memory that
    crosses to the main process as a reference; by default memory that the next batch
    reuses).
    Returns torch tensors: ``input_ids``, ``labels``, ``position_ids``, ``subsegment_ids``
    int64, ``loss_masks`` float32 ``[B, seq_len]``; ``images`` ``[B, max_crops, 576, 588]``
    (float32, or uint8 as given), ``image_masks`` float32 ``[B, max_crops, 576]``,
    ``image_input_idx`` int32 ``[B, max_crops, 144]``.
    """
    import torch

    if not examples:
        raise ValueError("collate needs at least one example")
    b = len(examples)
    empty = empty or _default_empty()
    out: dict[str, Any] = {}
    several = any("subsegment_ids" in ex for ex in examples)
    for key in TEXT_KEYS:
        if key == "subsegment_ids" and not several:
            continue
        arr = _full(empty, (b, seq_len), np.float32 if key == "loss_masks" else np.int64)
        for i, ex in enumerate(examples):
            v = ex.get(key)
            if v is None:  # only subsegment_ids: ones for single-annotation examples
                v = np.ones(len(ex["input_tokens"]), dtype=np.int64)
            n = min(len(v), seq_len)
            arr[i, :n] = v[:n]
        out[_OUT.get(key, key)] = torch.from_numpy(arr)
    first = examples[0]["images"]
    # The crops are most of the bytes: written once, by the read-ahead where it wrote them
    # into the batch already (`_gathered`), else here (no fill first, then copy).
    gathered = _gathered([ex["images"] for ex in examples], max_crops)
    images = gathered
    if images is None:
        images = empty((b, max_crops, *first.shape[1:]), first.dtype)
    masks = _full(empty, (b, max_crops, first.shape[1]), np.float32)
    idx = _full(empty, (b, max_crops, examples[0]["image_input_idx"].shape[1]), np.int32)
    for i, ex in enumerate(examples):
        n = len(ex["images"])
        _check_crops(n, max_crops, f"example {i}")
        if gathered is None:
            images[i, :n] = ex["images"]
            images[i, n:] = _image_pad(first.dtype)
        masks[i, :n] = ex["image_masks"]
        idx[i, :n] = ex["image_input_idx"]
    out["images"] = torch.from_numpy(images)
    out["image_input_idx"] = torch.from_numpy(idx)
    out["image_masks"] = torch.from_numpy(masks)
    return out


def _gathered(crops: Sequence[np.ndarray], max_crops: int) -> np.ndarray | None:
    """The batch tensor the read-ahead already wrote, when `crops` are the fronts of
    consecutive slots of one batch of gathered crops (``_native.GatheredCrops``: each slot a
    row's crops, then padding crops) of `max_crops` crops a slot; else None."""
    from .. import _native
    from .._host import owner as memory_owner

    owner = memory_owner(crops[0])
    if not isinstance(owner, _native.GatheredCrops) or owner.shape[1] != max_crops:
        return None
    rows, slot_crops, patches, values = owner.shape
    whole = np.frombuffer(owner, crops[0].dtype).reshape(owner.shape)
    start = crops[0].__array_interface__["data"][0] - whole.__array_interface__["data"][0]
    slot = whole.strides[0]
    if start % slot or start // slot + len(crops) > rows:
        return None
    first = start // slot
    for i, c in enumerate(crops):
        if (
            memory_owner(c) is not owner
            or c.dtype != whole.dtype
            or not c.flags.c_contiguous
            or c.shape[1:] != (patches, values)
            or c.__array_interface__["data"][0] != whole[first + i].__array_interface__["data"][0]
        ):
            return None
    return whole[first : first + len(crops)]


def _full(empty: Empty, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    out = empty(shape, dtype)
    out.fill(PAD)
    return out


def collate_packed(
    rows: Sequence[Sequence[dict[str, np.ndarray]]],
    max_tokens: int,
    max_crops: int,
    *,
    empty: Empty | None = None,
) -> dict[str, Any]:
    """Rows of several examples each (see the module's doc). Keys as `collate`'s (always with
    ``subsegment_ids``), ``[R, max_tokens]`` and ``[R, max_crops, ...]``, plus:

    - ``seq_lens`` int32 ``[R, E]``: each row's examples' lengths (0 after its last; E the
      most examples of a row in this batch);
    - ``cu_seqlens`` int32 ``[S + 1]``: boundaries of the examples in the flattened
      ``[R * max_tokens]`` batch, each row's padding its own segment, so that
      ``cu_seqlens[-1] == R * max_tokens`` (``flash_attn_varlen_func``'s layout);
    - ``loss_weight_sum`` float32 scalar: the sum of the positive ``loss_masks``, what Molmo
      divides the summed loss by (all-reduce it for the global batch).

    Raises ``ValueError`` for a row over either budget. `empty` as for `collate`.
    """
    import torch

    given = [ex for row in rows for ex in row]
    if not given:
        raise ValueError("collate_packed needs at least one example")
    r_n = len(rows)
    empty = empty or _default_empty()
    first = given[0]
    text = {
        k: _full(empty, (r_n, max_tokens), np.float32 if k == "loss_masks" else np.int64)
        for k in TEXT_KEYS
    }
    img0 = first["images"]
    images = empty((r_n, max_crops, *img0.shape[1:]), img0.dtype)
    masks = _full(empty, (r_n, max_crops, img0.shape[1]), np.float32)
    idx = _full(empty, (r_n, max_crops, first["image_input_idx"].shape[1]), np.int32)
    seq_lens = empty((r_n, max(1, *(len(r) for r in rows))), np.int32)
    seq_lens.fill(0)
    bounds = [0]
    for i, row in enumerate(rows):
        t = c = 0
        for k, ex in enumerate(row):
            n = len(ex["input_tokens"])
            m = len(ex["images"])
            if t + n > max_tokens or c + m > max_crops:
                raise ValueError(
                    f"packed row {i} needs more than {max_tokens} tokens or {max_crops} crops "
                    f"(at its example {k}: {t + n} tokens, {c + m} crops)"
                )
            for key in ("input_tokens", "target_tokens", "loss_masks", "position_ids"):
                text[key][i, t : t + n] = ex[key]
            sub = ex.get("subsegment_ids")
            offset = EXAMPLE_SUBSEGMENT_INCREMENT * k
            text["subsegment_ids"][i, t : t + n] = offset if sub is None else sub + offset
            images[i, c : c + m] = ex["images"]
            masks[i, c : c + m] = ex["image_masks"]
            e_idx = ex["image_input_idx"]
            idx[i, c : c + m] = np.where(e_idx >= 0, e_idx + t, e_idx)
            seq_lens[i, k] = n
            bounds.append(i * max_tokens + t + n)
            t += n
            c += m
        images[i, c:] = _image_pad(img0.dtype)
        if t < max_tokens:
            bounds.append((i + 1) * max_tokens)
    loss = text["loss_masks"]
    out = {_OUT.get(k, k): torch.from_numpy(v) for k, v in text.items()}
    out["images"] = torch.from_numpy(images)
    out["image_input_idx"] = torch.from_numpy(idx)
    out["image_masks"] = torch.from_numpy(masks)
    cu_seqlens = empty((len(bounds),), np.int32)
    cu_seqlens[:] = bounds
    weight_sum = empty((), np.float32)
    weight_sum[()] = loss[loss > 0].sum(dtype=np.float64)
    out["cu_seqlens"] = torch.from_numpy(cu_seqlens)
    out["seq_lens"] = torch.from_numpy(seq_lens)
    out["loss_weight_sum"] = torch.from_numpy(weight_sum)
    return out


def normalize_images(images: Any, image_input_idx: Any) -> Any:
    """uint8 crops ``[..., n_crops, 576, 588]`` (a torch tensor, on the GPU preferably) as
    Molmo's float32 crops: ``(x / 255 - CLIP_MEAN) / CLIP_STD`` per channel (padding inside a
    crop becomes ``-mean / std``, as Molmo pads before normalising), and -1 in the padded crops
    of the batch (those whose ``image_input_idx`` is all -1), as Molmo's collator pads."""
    import torch

    x = images.to(torch.float32).div_(255.0)
    shape = x.shape
    x = x.view(*shape[:-1], -1, 3)  # each patch is 14x14 pixels of 3 channels, row-major
    mean = torch.as_tensor(CLIP_MEAN, device=x.device)
    std = torch.as_tensor(CLIP_STD, device=x.device)
    x = x.sub_(mean).div_(std).view(shape)
    padded = (image_input_idx == PAD).all(dim=-1).to(x.device)
    x[padded] = PAD
    return x
