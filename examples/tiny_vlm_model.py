"""A tiny VLM that consumes Molmo's batch exactly as Molmo's model does (``olmo/model.py``).

What a Molmo-class model reads from the batch, and how:

- ``input_ids`` [B, L]: -1 is padding; ``attention_mask = input_ids != -1`` (ids are then
  clamped to 0 before the embedding lookup);
- ``subsegment_ids`` [B, L] (when present): query i may attend to key j only where
  ``sub[i] <= sub[j]``, on top of the causal mask. This lets several annotations of one
  image share its prefix (10000) without seeing each other, and, in packed rows (each
  example offset by 100000 x k), keeps examples from attending to each other;
- ``position_ids`` [B, L]: positions restart per annotation and per packed example;
- ``images`` [B, C, 576, 588]: each crop's 24x24 patches of 14x14x3 pixels, float32
  CLIP-normalised or uint8 (normalised here, as a GPU would); padded crops run through the
  encoder too, as in Molmo;
- ``image_input_idx`` [B, C, 144]: where each crop's 2x2-pooled patch feature is *added*
  to the token embeddings; negative (-100 dropped overlap, -1 padding) means skip;
- ``labels`` and ``loss_masks``: cross entropy times the loss mask (negative = padding, so
  clamped to 0), summed, divided by the global sum of loss masks (``loss_weight_sum`` in
  packed batches: the same normaliser as unpacked).

The model itself is a toy (a linear patch encoder and a few transformer layers); only the
way it reads the batch matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PATCHES_PER_SIDE = 24  # a 336 px crop of 14 px patches
POOL = 2  # Molmo pools 2x2 patches into one image token


def attention_allowed(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """[B, L, L] bool: may query i attend to key j. Molmo's rule: both are real tokens,
    j <= i, and ``subsegment_ids[i] <= subsegment_ids[j]`` where the batch has them."""
    ids = batch["input_ids"]
    n = ids.shape[1]
    valid = ids != -1
    allowed = valid[:, :, None] & valid[:, None, :]
    allowed &= torch.ones(n, n, dtype=torch.bool, device=ids.device).tril()
    sub = batch.get("subsegment_ids")
    if sub is not None:
        allowed &= sub[:, :, None] <= sub[:, None, :]
    return allowed


def as_float_crops(images: torch.Tensor) -> torch.Tensor:
    """uint8 crops (0 where padded) normalised as Molmo normalises; float32 ones as they are."""
    if images.dtype != torch.uint8:
        return images.float()
    mean = torch.tensor(CLIP_MEAN, device=images.device).repeat(images.shape[-1] // 3)
    std = torch.tensor(CLIP_STD, device=images.device).repeat(images.shape[-1] // 3)
    return (images.float() / 255.0 - mean) / std


def loss_weight_sum(batch: Mapping[str, Any]) -> torch.Tensor:
    """The normaliser: ``loss_weight_sum`` of a packed batch, else the sum of the positive
    loss masks (Molmo's ``batch_size_in_tokens``; in data-parallel training all-reduce it)."""
    if "loss_weight_sum" in batch:
        return torch.as_tensor(batch["loss_weight_sum"], dtype=torch.float32).sum()
    masks = batch["loss_masks"]
    return (masks * (masks > 0)).sum()


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        att = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=bias
        )
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class TinyVLM(nn.Module):
    def __init__(
        self, vocab_size: int, d: int = 64, layers: int = 2, heads: int = 4, max_len: int = 4096
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab_size, d)
        self.wpe = nn.Embedding(max_len, d)
        self.patch = nn.Linear(14 * 14 * 3, d)  # the toy image encoder: one linear per patch
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab_size)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, 576, 588] -> [B, C, 144, d]: patch embeddings pooled 2x2."""
        b, c = images.shape[:2]
        f = self.patch(as_float_crops(images))
        side = PATCHES_PER_SIDE
        f = f.view(b * c, side, side, -1).permute(0, 3, 1, 2)
        f = F.avg_pool2d(f, POOL).permute(0, 2, 3, 1)
        return f.reshape(b, c, (side // POOL) ** 2, -1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["input_ids"]
        b, n = ids.shape
        x = self.wte(ids.clamp(min=0)) + self.wpe(batch["position_ids"].clamp(min=0))
        feats = self.image_features(batch["images"])
        idx = batch["image_input_idx"].reshape(b, -1).long()
        feats = feats.reshape(b, idx.shape[1], -1)
        valid = idx >= 0
        rows = torch.arange(b, device=ids.device)[:, None].expand_as(idx)
        # index_put with accumulate: features land where the image tokens are, added.
        x = x.index_put((rows[valid], idx[valid]), feats[valid], accumulate=True)
        allowed = attention_allowed(batch)
        bias = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device)
        # finfo.min rather than -inf, as Molmo: a padding query that may attend to nothing
        # then gets a uniform (ignored) distribution instead of NaN.
        bias = bias.masked_fill(~allowed, torch.finfo(x.dtype).min)[:, None]
        for block in self.blocks:
            x = block(x, bias)
        return self.head(self.norm(x))


def molmo_loss(logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Cross entropy x loss mask, summed, over the global loss weight (Molmo's train step)."""
    masks = batch["loss_masks"]
    weights = masks * (masks > 0)
    labels = batch["labels"].clamp(min=0)
    ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    return (ce * weights.flatten()).sum() / loss_weight_sum(batch)
