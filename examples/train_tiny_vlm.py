"""Train a tiny VLM on pixmo-stream's Molmo batches, on CPU, in under a minute.

    python examples/train_tiny_vlm.py              # unpacked rows, as Molmo v1 trains
    python examples/train_tiny_vlm.py --packed     # several examples per row

It writes the demo's data (a small pixmo-points-shaped parquet and its images, converted with
the ``pixmo-points`` preset, as ``pixmo-stream demo`` does), trains a small byte-level BPE
with Molmo's extra tokens, streams Molmo's batch with ``pixmo_stream.molmo.Batches`` and
trains a few dozen steps, printing the loss. The model consumes the batch exactly as Molmo's
model does (``olmo/model.py`` and the loss of ``olmo/train.py``):

- ``input_ids`` [B, L]: -1 is padding; ``attention_mask = input_ids != -1`` (ids are then
  clamped to 0 before the embedding lookup);
- ``subsegment_ids`` [B, L] (when present): query i may attend to key j only where
  ``sub[i] <= sub[j]``, on top of the causal mask. This lets several annotations of one
  image share its prefix (10000) without seeing each other, and, in packed rows (each
  example offset by 100000 x k), keeps examples from attending to each other;
- ``position_ids`` [B, L]: positions restart per annotation and per packed example;
- ``images`` [B, C, 576, 588]: each crop's 24x24 patches of 14x14x3 pixels, float32
  CLIP-normalised (with ``--uint8``, uint8 crops normalised in the training step by
  ``pixmo_stream.molmo.normalize_images``, as a GPU would); padded crops run through the
  encoder too, as in Molmo;
- ``image_input_idx`` [B, C, 144]: where each crop's 2x2-pooled patch feature is *added*
  to the token embeddings; negative (-100 dropped overlap, -1 padding) means skip;
- ``labels`` and ``loss_masks``: cross entropy times the loss mask (negative = padding, so
  clamped to 0), summed, divided by the sum of the loss masks over the global batch
  (``loss_weight_sum`` in packed batches: the same normaliser as unpacked; all-reduce it
  in data-parallel training, as Molmo does).

The model itself is a toy (a linear patch encoder and a few transformer layers); only the
way it reads the batch matters.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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
        f = self.patch(images)
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


# ---- data --------------------------------------------------------------------------------
EXTRA_TOKENS = ("<im_start>", "<im_end>", "<im_patch>", "<im_col>", "<|image|>")


def demo_dataset(root: str, records: int = 64, seed: int = 0) -> str:
    """The demo's data: a pixmo-points-shaped parquet and its images, converted with the
    ``pixmo-points`` preset (``pixmo-stream convert --preset pixmo-points`` on the real one)."""
    from pixmo_stream.demo_source import make_source
    from pixmo_stream.ingest import convert

    src = make_source(os.path.join(root, "src"), records, seed, "small", set())
    path = os.path.join(root, "dataset")
    convert(src.parquet, path, preset="pixmo-points", images=src.images)
    return path


def tiny_tokenizer(path: str, vocab_size: int = 1024) -> Any:
    """A byte-level BPE trained in-process (deterministic) on the dataset's conversations,
    ``<|endoftext|>`` as EOS (and BOS), then Molmo's five extra tokens. A real run passes
    its model's tokenizer instead (a ``tokenizer.json`` path, or a transformers tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    import pixmo_stream as ps
    from pixmo_stream import molmo

    fmt = molmo.Formatter("pixmo-points", "pointing")
    corpus = [
        message
        for record in ps.Dataset(path).iter(columns=list(fmt.columns))
        for annotation in fmt.bound(record).annotations
        for message in annotation.messages
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(list(EXTRA_TOKENS))
    return tok


def molmo_batches(
    path: str,
    tokenizer: Any,
    *,
    packed: bool,
    batch_size: int,
    seq_len: int,
    max_crops: int,
    uint8: bool = False,
    seed: int = 0,
) -> Iterator[dict[str, torch.Tensor]]:
    """Molmo's batch from pixmo-stream: all a trainer changes to use it. Unpacked: rows of
    ``seq_len`` tokens, one example each (Molmo v1); packed: rows of ``2 * seq_len`` tokens
    holding as many examples as fit, ``batch_size // 2`` rows per step."""
    import pixmo_stream as ps
    from pixmo_stream import molmo

    pack = None
    if packed:  # planned from each example's cost (tokens, crops), known before decoding
        pack = ps.Packing(
            max_tokens=2 * seq_len,
            max_crops=3 * (max_crops + 1),
            rows_per_batch=max(1, batch_size // 2),
            costs=molmo.costs,  # each example's tokens and crops, from its text and size
        )
    batches = molmo.Batches(
        tokenizer,
        molmo.Formatter("pixmo-points", "pointing"),
        seq_len=seq_len,
        max_crops=max_crops,
        pack=pack,
        normalize=not uint8,  # uint8: a quarter of the bytes; normalised in the step
        exact=not uint8,  # uint8: the fast decode (pixels within a few levels)
        seed=seed,
    )
    ds = batches.stream(path, batch_size=batch_size, seed=seed)
    loader = ps.DataLoader(ds, num_workers=0)
    while True:  # epochs, until the caller stops
        yield from loader


# ---- training ----------------------------------------------------------------------------
def train(
    batches: Iterator[Mapping[str, torch.Tensor]],
    vocab_size: int,
    steps: int = 40,
    lr: float = 3e-3,
    seed: int = 0,
    log: Any = print,
) -> list[float]:
    """``steps`` optimizer steps on ``batches``; the loss of each step."""
    torch.manual_seed(seed)
    model = TinyVLM(vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for step, batch in zip(range(steps), batches, strict=False):
        if batch["images"].dtype == torch.uint8:  # on the GPU in a real run
            from pixmo_stream.molmo import normalize_images

            batch["images"] = normalize_images(batch["images"], batch["image_input_idx"])
        loss = molmo_loss(model(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0 or step == steps - 1:
            log(f"step {step:3d}  loss {losses[-1]:.3f}")
    return losses


def main(argv: list[str] | None = None) -> list[float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packed", action="store_true", help="several examples per row")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--records", type=int, default=64, help="images in the demo's data")
    ap.add_argument("--batch-size", type=int, default=4, help="rows per step")
    ap.add_argument("--seq-len", type=int, default=512, help="tokens per row (unpacked)")
    ap.add_argument("--max-crops", type=int, default=1, help="crops per image (+ the global)")
    ap.add_argument("--uint8", action="store_true", help="uint8 crops, normalised in the step")
    ap.add_argument("--data", help="an existing pixmo-points dataset (default: the demo's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # a toy: the other core decodes images (read-ahead threads)
    with tempfile.TemporaryDirectory(prefix="tiny-vlm-") as tmp:
        t0 = time.perf_counter()
        path = args.data or demo_dataset(tmp, args.records)
        tok = tiny_tokenizer(path)
        batches = molmo_batches(
            path,
            tok,
            packed=args.packed,
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            max_crops=args.max_crops,
            uint8=args.uint8,
        )
        losses = train(batches, tok.get_vocab_size(), steps=args.steps)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(
        f"{'packed' if args.packed else 'unpacked'}: loss {first:.3f} -> {last:.3f} "
        f"(mean of the first and last 5 steps), {time.perf_counter() - t0:.1f} s"
    )
    return losses


if __name__ == "__main__":
    main()
