"""The demo's look at one training batch: Molmo's batch from the demo's dataset, each row's
tokens detokenized, the image-token spans shown as ``<image: 7 crops, 1,009 tokens>`` and the
tokens the model is trained on (loss mask > 0) in ``[[ ]]``.

``describe_row`` works on any Molmo v1 batch (numpy arrays or torch tensors), so it is also a
way to look at a batch in a notebook."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

LOSS_OPEN, LOSS_CLOSE = "[[", "]]"
EXAMPLE_STRIDE = 100000  # packed rows: example k's subsegment ids are offset by k x this


def _np(x: Any) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def describe_row(
    batch: dict[str, Any],
    row: int,
    decode: Callable[[list[int]], str],
    image_ids: Sequence[int],
    max_text: int | None = None,
) -> str:
    """Row ``row`` of a Molmo batch as text: its ``labels`` (the tokens themselves;
    ``input_ids`` are the same behind BOS) detokenized by ``decode``, runs of image tokens
    (``image_ids``) as ``<image: N crops, T tokens>``, tokens with loss in ``[[ ]]``, and
    where annotations (``subsegment_ids``) and packed examples begin; text pieces longer
    than ``max_text`` characters are shortened in the middle."""
    labels = _np(batch["labels"])[row]
    loss = _np(batch["loss_masks"])[row]
    n = int((labels != -1).sum())
    sub = None
    if "subsegment_ids" in batch:
        # subsegment ids (like image_input_idx) go with input_ids, one place behind labels
        s = _np(batch["subsegment_ids"])[row]
        sub = np.concatenate([s[1:n], s[n - 1 : n]])
    idx = _np(batch["image_input_idx"])[row].reshape(_np(batch["image_input_idx"]).shape[1], -1)
    is_image = np.isin(labels[:n], np.asarray(image_ids))
    packed = sub is not None and bool((sub[:n] >= EXAMPLE_STRIDE).any())
    parts: list[str] = []
    i = 0
    where: tuple[int, int] = (-1, -1)  # (example, annotation) of the last token shown
    while i < n:
        if sub is not None:
            example, part = divmod(int(sub[i]), EXAMPLE_STRIDE)
            if packed and example != where[0]:
                parts.append(f"\n-- example {example} of the packed row --\n")
            elif part != 10000 and part != where[1] and where[1] not in (-1, 10000):
                parts.append(f"\n-- annotation {part} --\n")
            where = (example, part)
        j = i + 1
        if is_image[i]:
            while j < n and is_image[j]:
                j += 1
            crops = int(((idx > i) & (idx <= j)).any(axis=1).sum())
            parts.append(f"<image: {crops:,} crops, {j - i:,} tokens>")
        else:
            trained = loss[i] > 0
            while (
                j < n
                and not is_image[j]
                and (loss[j] > 0) == trained
                and (sub is None or sub[j] == sub[i])
            ):
                j += 1
            text = decode([int(t) for t in labels[i:j]])
            text = _elide(text, max_text) if max_text else text
            parts.append(f"{LOSS_OPEN}{text}{LOSS_CLOSE}" if trained else text)
        i = j
    pad = len(labels) - n
    tail = f" <pad x {pad:,}>" if pad else ""
    return "".join(parts) + tail


def _elide(text: str, limit: int) -> str:
    if len(text) <= limit + 20:  # shorten only where it saves a good part of a line
        return text
    keep = limit // 2
    return f"{text[:keep]}…({len(text) - 2 * keep:,} chars)…{text[-keep:]}"


def _tiny_tokenizer(path: str, formatter: Any, records: int = 200) -> Any:
    """A byte-level BPE trained here on the dataset's conversations (the demo has no model's
    tokenizer to download), with ``<|endoftext|>`` as EOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from . import Dataset

    ds = Dataset(path)
    corpus = [
        message
        for record in itertools.islice(ds.iter(columns=list(formatter.columns)), records)
        for annotation in formatter.bound(record).annotations
        for message in annotation.messages
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def show_batch(path: str, rows: int = 2, width: int = 160) -> tuple[list[str], str]:
    """One Molmo v1 batch of ``rows`` pixmo-points records of ``path`` (pointing style), as
    text lines; or no lines and why (torch or tokenizers not installed)."""
    try:
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        return (
            [],
            f"no Molmo batch shown: {e.name} is not installed (pip install 'pixmo-stream[molmo]')",
        )
    from . import DataLoader, molmo

    formatter = molmo.Formatter("pixmo-points", "pointing")
    tok = molmo.MolmoTokenizer(_tiny_tokenizer(path, formatter))
    batches = molmo.Batches(tok, formatter, seq_len=2304, max_crops=12)
    batch = next(iter(DataLoader(batches.stream(path, batch_size=rows, seed=0), num_workers=0)))
    shapes = ", ".join(
        f"{k} {list(v.shape)} {str(v.dtype).replace('torch.', '')}" for k, v in batch.items()
    )
    lines = [f"keys: {shapes}"]
    ids = list(tok.image_token_ids)
    for r in range(len(batch["input_ids"])):
        text = describe_row(batch, r, lambda t: tok.decode(t), ids, max_text=width)
        lines.append(f"row {r}: " + text.replace("\n", "\n  "))
    note = (
        "molmo.Batches(seq_len=2304, max_crops=12) over the demo's pixmo-points data, pointing "
        "style, a small BPE trained here; [[ ]] marks the tokens with loss (the answers)"
    )
    return lines, note
