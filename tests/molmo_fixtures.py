"""Shared by the Molmo batch tests: a small byte-level BPE trained in-process (deterministic)
and tiny PixMo-shaped datasets written with the presets' schemas."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

CORPUS = [
    "User: Describe this image. Assistant: A dog runs on the grass near a red ball.",
    "long_caption: What is in the picture? A cat sleeps on a blue sofa in the sun.",
    'Point to the dogs. <points x1="12.5" y1="40.0" alt="dog">dog</points> There are none.',
    "How many birds are there? Counting the birds shows a total of 3. transcript: um so there is",
    "The quick brown fox jumps over the lazy dog 0123456789 .,:;!?'\"<>=/",
]


def bpe(vocab_size: int = 400) -> Any:
    """A byte-level BPE with an <|endoftext|> token, trained on CORPUS (same result every run)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return tok


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "JPEG", quality=80)
    return out.getvalue()


SIZES = [(64, 48), (40, 90), (120, 50), (30, 30)]  # (width, height): tilings of 1-2 rows/cols


def write_preset(path: Path, preset: str, annotations: list[dict[str, Any]]) -> Path:
    """One record per entry of `annotations` (the preset's annotation fields), each with a
    small JPEG of SIZES and its stored width/height."""
    import pixmo_stream as ps
    from pixmo_stream.ingest.presets import get_preset

    schema = get_preset(preset).schema()
    with ps.Writer(str(path), schema) as w:
        for i, ann in enumerate(annotations):
            width, height = SIZES[i % len(SIZES)]
            w.write(
                {
                    "image": jpeg(width, height, i),
                    "image_url": f"https://example.com/{i}.jpg",
                    "image_sha256": None,
                    "source_sha256": None,
                    "sha256_mismatch": False,
                    "width": width,
                    "height": height,
                    **ann,
                }
            )
    return path
