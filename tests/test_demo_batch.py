"""The demo's batch display: one row of Molmo's batch as text a person can check."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from pixmo_stream.demo_batch import describe_row

# Token ids of a toy vocabulary: words, EOS, and Molmo's image tokens.
WORDS = {10: " User:", 11: " hi", 12: " Assistant:", 13: " yes", 14: " no", 2: "<eos>"}
START, END, PATCH, COL = 90, 91, 92, 93
IMAGE_IDS = [START, END, PATCH, COL]


def decode(ids: list[int]) -> str:
    return "".join(WORDS[i] for i in ids)


def row(tokens: list[int], loss: list[float], sub: list[int] | None, length: int) -> dict:
    """One Molmo row as the preprocessor and v1's collator make it (pads -1)."""
    n = len(tokens)
    pad = length - n
    batch = {
        "labels": np.array([tokens + [-1] * pad]),
        "input_ids": np.array([[2] + tokens[:-1] + [-1] * pad]),
        "loss_masks": np.array([loss + [-1.0] * pad], dtype=np.float32),
    }
    if sub is not None:
        shifted = [sub[0]] + sub[:-1]  # subsegment ids go with input_ids
        batch["subsegment_ids"] = np.array([shifted + [-1] * pad])
    return batch


def image(offset: int) -> tuple[list[int], np.ndarray]:
    """A 2-crop image: <im_start> 2 patches <im_col> <im_end> twice; idx of its 4 patches."""
    toks = [START, PATCH, PATCH, COL, END, START, PATCH, PATCH, COL, END]
    patches = [i for i, t in enumerate(toks) if t == PATCH]
    idx = np.full((3, 2), -1)  # 3 crop slots (one padding), 2 pooled patches each
    idx[0] = [offset + 1 + p for p in patches[:2]]  # +1: positions in input_ids (BOS)
    idx[1] = [offset + 1 + p for p in patches[2:]]
    return toks, idx


def test_image_span_text_and_loss_spans() -> None:
    img, idx = image(0)
    text = [10, 11, 12, 13, 2]
    b = row(img + text, [0.0] * 10 + [0, 0, 0, 1, 1], None, 20)
    b["image_input_idx"] = idx[None]
    got = describe_row(b, 0, decode, IMAGE_IDS)
    assert got == "<image: 2 crops, 10 tokens> User: hi Assistant:[[ yes<eos>]] <pad x 5>"


def test_annotations_and_packed_examples_are_marked() -> None:
    # Example 0: an image then two annotations (weights 1/sqrt(2)); example 1: one annotation.
    img, idx0 = image(0)
    ann = [10, 11, 12, 13, 2]
    w = 1 / np.sqrt(2)
    ex0 = img + ann + [10, 11, 12, 14, 2]
    loss0 = [0.0] * 10 + [0, 0, 0, w, w] * 2
    sub0 = [10000] * 10 + [1] * 5 + [2] * 5
    img1, idx1 = image(len(ex0))
    ex1 = img1 + ann
    loss1 = [0.0] * 10 + [0, 0, 0, 1, 1]
    sub1 = [100000 + 10000] * 10 + [100000 + 1] * 5
    b = row(ex0 + ex1, loss0 + loss1, sub0 + sub1, 40)
    b["image_input_idx"] = np.concatenate([idx0[:2], idx1[:2]])[None]
    got = describe_row(b, 0, decode, IMAGE_IDS)
    assert got.count("<image: 2 crops, 10 tokens>") == 2
    assert "-- annotation 2 --" in got
    assert got.index("example 0") < got.index("annotation 2") < got.index("example 1")
    assert got.count("[[ yes<eos>]]") == 2 and got.count("[[ no<eos>]]") == 1
    assert got.endswith("<pad x 5>")


def test_the_demo_shows_one_molmo_batch() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("tokenizers")
    from pixmo_stream import demo

    out = io.StringIO()
    assert demo.run(records=8, workers=0, quiet=True, out=out) == 0
    text = out.getvalue()
    view = text[text.index("one Molmo training batch") :]
    assert "input_ids [2, 2304] int64" in view and "images [2, 13, 576, 588] float32" in view
    rows = [line for line in view.splitlines() if line.lstrip().startswith("row ")]
    assert len(rows) == 2
    for row in rows:
        assert re.search(r"row \d: <image: \d+ crops, [\d,]+ tokens> User: ", row), row
        assert "Assistant:[[ " in row
