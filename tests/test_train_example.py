"""examples/train_tiny_vlm.py: a tiny VLM trains on pixmo-stream's Molmo batches, unpacked and
packed, reading them exactly as Molmo's model does.

The strongest check of "exactly": the same examples give the same loss whether collated one per
row (v1) or packed several per row. That holds only if the packed row's ``subsegment_ids`` keep
examples from attending to each other, positions restart per example, ``image_input_idx`` is
offset to where each example's image tokens are, and ``loss_weight_sum`` is the unpacked
normaliser.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")
collation = pytest.importorskip("pixmo_stream.molmo.collate")

ROOT = Path(__file__).resolve().parent.parent


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location(
        "train_tiny_vlm", ROOT / "examples" / "train_tiny_vlm.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_tiny_vlm"] = mod
    spec.loader.exec_module(mod)
    return mod


T = load_example()


def example(rng: np.random.Generator, crops: int, answers: int, vocab: int) -> dict[str, Any]:
    """Per-example arrays as Molmo's preprocessor makes them: BOS, an image of ``crops``
    crops (each crop's 144 pooled patches on its own image tokens, a few dropped as -100),
    then ``answers`` annotations (several: subsegments, restarting positions, 1/sqrt(n))."""
    img_len = crops * 144 + 2
    turns = [rng.integers(1, vocab, size=int(rng.integers(4, 12))) for _ in range(answers)]
    tokens = np.concatenate([rng.integers(1, vocab, size=img_len), *turns])
    loss = np.zeros(len(tokens), np.float32)
    sub = np.full(len(tokens), 10000)
    at = img_len
    for k, t in enumerate(turns, start=1):
        loss[at + len(t) // 2 : at + len(t)] = 1 / math.sqrt(answers) if answers > 1 else 1
        sub[at : at + len(t)] = k
        at += len(t)
    idx = (np.arange(crops * 144) + 2).reshape(crops, 144).astype(np.int32)  # +1 BOS
    idx[:, rng.integers(0, 144, size=5)] = -100
    ex = {
        "input_tokens": np.concatenate([[0], tokens[:-1]]),
        "target_tokens": tokens,
        "loss_masks": loss,
        "images": rng.standard_normal((crops, 576, 588)).astype(np.float32),
        "image_masks": np.ones((crops, 576), np.float32),
        "image_input_idx": idx,
    }
    if answers > 1:
        sub = np.concatenate([sub[:1], sub[:-1]])
        pos = np.zeros_like(sub)
        for s in np.unique(sub):
            pos = np.where(sub == s, np.cumsum(sub >= s) - 1, pos)
        ex["subsegment_ids"], ex["position_ids"] = sub, pos
    else:
        ex["position_ids"] = np.arange(len(tokens))
    return ex


def test_packed_rows_give_the_loss_of_the_same_examples_unpacked() -> None:
    rng = np.random.default_rng(0)
    vocab = 50
    examples = [example(rng, 2, 3, vocab), example(rng, 1, 1, vocab), example(rng, 1, 2, vocab)]
    unpacked = collation.collate(examples, seq_len=400, max_crops=3)
    packed = collation.collate_packed([examples[:2], examples[2:]], max_tokens=800, max_crops=4)
    torch.manual_seed(0)
    model = T.TinyVLM(vocab).eval()
    with torch.no_grad():
        a = T.molmo_loss(model(unpacked), unpacked)
        b = T.molmo_loss(model(packed), packed)
    assert float(T.loss_weight_sum(unpacked)) == pytest.approx(float(packed["loss_weight_sum"]))
    assert float(a) == pytest.approx(float(b), rel=1e-5)
    # Without the subsegment mask the packed row's second example would see the first.
    del packed["subsegment_ids"]
    with torch.no_grad():
        c = T.molmo_loss(model(packed), packed)
    assert abs(float(c) - float(a)) > 1e-4


def test_packed_attention_never_crosses_examples() -> None:
    rng = np.random.default_rng(1)
    examples = [example(rng, 1, 1, 20), example(rng, 1, 2, 20), example(rng, 1, 1, 20)]
    packed = collation.collate_packed([examples], max_tokens=600, max_crops=3)
    allowed = T.attention_allowed(packed)[0]
    lens = packed["seq_lens"][0].tolist()
    owner = np.repeat(np.arange(len(lens)), lens)
    n = len(owner)
    same = owner[:, None] == owner[None, :]
    assert not allowed[:n, :n].numpy()[~same].any()
    assert allowed[:n, :n].numpy()[same].any()


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    return T.demo_dataset(str(tmp_path_factory.mktemp("tiny-vlm")), records=48)


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
def test_tiny_vlm_loss_goes_down(demo_data: str, packed: bool) -> None:
    if packed:
        pytest.importorskip("pixmo_stream.packing")
    argv = ["--data", demo_data, "--steps", "30"] + (["--packed"] if packed else [])
    losses = T.main(argv)
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.6 * first, losses
