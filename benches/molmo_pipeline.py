"""Molmo v1's training loader, in Python, per example: the baseline of benches/molmo_batches.py.

What Molmo's loader does for one pixmo-points example, in a torch DataLoader worker:
PIL decode (``benches.molmo_reference``: Molmo's ``overlap-and-resize-c2`` preprocessing
step by step, torchvision's float32 resize), the conversations (``pixmo_stream.molmo``'s
``Formatter``, pure Python like Molmo's formatter: one pointing annotation per label, in a
shuffled order), each message tokenized, the image's tokens spliced in front, and v1's
``MMCollator(pad="to_max")``. Tokens and collation are a plain reimplementation following
Molmo's ``model_preprocessor.py`` / ``collator.py`` (read, not copied). Needs torch,
torchvision, tokenizers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from benches import molmo_reference as ref

EXTRA_TOKENS = ("<im_start>", "<im_end>", "<im_patch>", "<im_col>", "<|image|>")
EOS = "<|endoftext|>"


def tiny_bpe(vocab_size: int = 600) -> Any:
    """A small byte-level BPE trained in-process (deterministic), EOS then Molmo's five
    extra tokens appended after the vocabulary, as Molmo places them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "Point to all occurrences of dog. Please say 'There are none.' if it is not in the "
        "image. Where are the Locate every Show me where",
        ' User: Assistant: <points x1="12.5" y1="45.0" x2="3.1" y2="99.9" alt="cat">cat</points>',
        '<point x="50.0" y="7.5" alt="a red car">a red car</point> There are none.',
        "the a of and in on with person tree window car sign people building 0123456789",
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[EOS],
        show_progress=False,
    )
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    tok.add_special_tokens(list(EXTRA_TOKENS))
    return tok


class TextSide:
    """Tokenization and Molmo's token layout of one example (``MultiModalPreprocessor``)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        self.eos = tokenizer.token_to_id(EOS)
        ids = [tokenizer.token_to_id(t) for t in EXTRA_TOKENS]
        self.start, self.end, self.patch, self.col = ids[:4]
        # the reference's placeholder ids -> this tokenizer's
        self.image_ids = np.zeros(5, dtype=np.int64)
        self.image_ids[[ref.PATCH_ID, ref.COL_ID, ref.START_ID, ref.END_ID]] = [
            self.patch,
            self.col,
            self.start,
            self.end,
        ]

    def example(self, image: dict[str, Any], convs: Sequence[Sequence[str]]) -> dict[str, Any]:
        tokens: list[int] = []
        masks: list[float] = []
        subs: list[int] = []
        for k, conv in enumerate(convs, start=1):
            for j, msg in enumerate(conv):
                ids = self.tok.encode(msg, add_special_tokens=False).ids
                if j % 2:
                    ids.append(self.eos)
                tokens += ids
                masks += [float(j % 2)] * len(ids)
                subs += [k] * len(ids)
        text = np.array(tokens, dtype=np.int64)
        loss = np.array(masks, dtype=np.float32)
        if len(convs) > 1:
            loss *= math.sqrt(1 / len(convs))
        img = self.image_ids[image["tokens"]]
        all_tokens = np.concatenate([img, text])
        out = {
            "input_tokens": np.concatenate([[self.eos], all_tokens[:-1]]),  # BOS is EOS
            "target_tokens": all_tokens,
            "loss_masks": np.concatenate([np.zeros(len(img), np.float32), loss]),
            "images": image["crops"],
            "image_masks": image["mask"],
            "image_input_idx": np.where(image["idx"] < 0, image["idx"], image["idx"] + 1).astype(
                np.int32
            ),
        }
        if len(convs) > 1:
            sub = np.concatenate([np.full(len(img), 10000), subs])
            sub = np.concatenate([sub[:1], sub[:-1]])
            pos = np.zeros_like(sub)
            for s in np.unique(sub):
                pos = np.where(sub == s, np.cumsum(sub >= s) - 1, pos)
            out["subsegment_ids"], out["position_ids"] = sub, pos
        else:
            out["position_ids"] = np.arange(len(all_tokens), dtype=np.int64)
        return out


TEXT_KEYS = ("input_tokens", "target_tokens", "loss_masks", "subsegment_ids", "position_ids")
IMAGE_KEYS = ("images", "image_masks", "image_input_idx")


def collate_v1(batch: list[dict[str, Any]], seq_len: int, max_crops: int) -> dict[str, Any]:
    """v1's ``MMCollator(pad="to_max")``: every row ``seq_len`` tokens and ``max_crops`` crops
    (the global view included), cut where longer, every pad -1."""
    import torch

    def pad(arrays: list[np.ndarray], n: int, dtype: Any) -> Any:
        out = np.full((len(arrays), n, *arrays[0].shape[1:]), -1, dtype=dtype)
        for i, a in enumerate(arrays):
            out[i, : len(a)] = a[:n]
        return torch.from_numpy(out)

    if any("subsegment_ids" in ex for ex in batch):
        for ex in batch:
            ex.setdefault("subsegment_ids", np.ones_like(ex["input_tokens"]))
    out: dict[str, Any] = {}
    for key in TEXT_KEYS:
        if key in batch[0]:
            dtype = np.float32 if key == "loss_masks" else np.int64
            out[key] = pad([ex[key] for ex in batch], seq_len, dtype)
    for key in IMAGE_KEYS:
        out[key] = pad([ex[key] for ex in batch], max_crops, batch[0][key].dtype)
    out["input_ids"] = out.pop("input_tokens")
    out["labels"] = out.pop("target_tokens")
    return out


class MolmoV1Dataset:
    """Map-style, as Molmo's ``DeterministicDataset``: record ``idx`` of a pixmo-stream
    dataset (opened lazily in each worker), ``rng = RandomState(seed + idx + len * epoch)``,
    then Molmo's preprocessing in Python."""

    def __init__(self, path: str, tokenizer: Any, seed: int = 0, epoch: int = 0) -> None:
        from pixmo_stream.molmo.formatting import Formatter

        self.path, self.seed, self.epoch = path, seed, epoch
        self.text = TextSide(tokenizer)
        self.formatter = Formatter("pixmo-points", "pointing")
        self._ds: Any = None
        import pixmo_stream as ps

        self.n = len(ps.Dataset(path))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if self._ds is None:
            import pixmo_stream as ps

            self._ds = ps.Dataset(self.path)
        rec = self._ds[idx]
        from pixmo_stream.molmo.rng import example_rng

        image = ref.preprocess(bytes(rec["image"]))
        conv = self.formatter.format(rec, example_rng(self.seed, self.epoch, "pixmo-points", idx))
        return self.text.example(image, [a.messages for a in conv.annotations])


def loader(
    path: str, tokenizer: Any, batch_size: int, workers: int, seq_len: int, max_crops: int
) -> Any:
    """Molmo's pipeline: a torch DataLoader over ``MolmoV1Dataset`` with v1's collator."""
    import functools

    import torch.utils.data

    ds = MolmoV1Dataset(path, tokenizer)
    return torch.utils.data.DataLoader(
        ds,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=functools.partial(collate_v1, seq_len=seq_len, max_crops=max_crops),
        persistent_workers=False,
        generator=torch.Generator().manual_seed(0),
    )
