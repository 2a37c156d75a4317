"""A real vocabulary: Qwen's byte-level BPE ranks, as the ``dashscope`` wheel ships them
(``dashscope/resources/qwen.tiktoken``; installed by the ``test`` extra, never committed),
the tokenizer of Molmo-7B-D (Qwen2-7B). Converted to a ``tokenizers`` BPE here, it must encode
exactly as ``tiktoken`` does with the same ranks, and `MolmoTokenizer` must put Molmo's extra
tokens at 152064-152068 with BOS = EOS = ``<|endoftext|>`` (151643), as Molmo-7B-D has them."""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tokenizers")
tiktoken = pytest.importorskip("tiktoken")

from pixmo_stream import molmo  # noqa: E402
from pixmo_stream.molmo.tokens import Special  # noqa: E402

# Qwen's pre-tokenizer split (dashscope/tokenizers/qwen_tokenizer.py, the same as Qwen2's).
PAT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TEXTS = [
    " User: Point to the dogs in this image. Assistant:",
    ' <points x1="12.5" y1="40.0" x2="45.6" y2="30.0" alt="dog">dog</points>',
    ' Counting the <points x1="1.0" y1="2.0" alt="cup">cup</points> shows a total of 1.',
    " long_caption 83:",
    " A café in Zürich: 3 people, naïve art, 東京 and emoji 🐕\n\ttabs  and   spaces.",
]


def _ranks() -> dict[bytes, int]:
    spec = importlib.util.find_spec("dashscope")
    if spec is None or spec.origin is None:
        pytest.skip("dashscope (Qwen's BPE ranks) is not installed: pip install '.[test]'")
    path = Path(spec.origin).parent / "resources" / "qwen.tiktoken"
    if not path.exists():
        pytest.skip(f"{path} is not in this dashscope version")
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _byte_chars() -> dict[int, str]:
    # GPT-2's printable stand-ins for bytes, as the ByteLevel pre-tokenizer writes them.
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def _to_tokenizers(ranks: dict[bytes, int]):
    """The same BPE as a ``tokenizers.Tokenizer``: each token's merges are its splits into two
    tokens, ranked by the token's rank (how tiktoken merges)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    chars = _byte_chars()

    def text(b: bytes) -> str:
        return "".join(chars[x] for x in b)

    vocab = {text(t): r for t, r in ranks.items()}
    merges = []
    for token, _ in sorted(ranks.items(), key=lambda kv: kv[1]):
        splits = [
            (token[:i], token[i:])
            for i in range(1, len(token))
            if token[:i] in ranks and token[i:] in ranks
        ]
        splits.sort(key=lambda p: (ranks[p[0]], ranks[p[1]]))
        merges.extend((text(a), text(b)) for a, b in splits)
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PAT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL))
    return tok


@pytest.fixture(scope="module")
def qwen():
    ranks = _ranks()
    enc = tiktoken.Encoding(
        "qwen", pat_str=PAT, mergeable_ranks=ranks,
        special_tokens={t: 151643 + i for i, t in enumerate(SPECIAL)},
    )  # fmt: skip
    return molmo.MolmoTokenizer(_to_tokenizers(ranks), vocab_size=152064), enc


def test_molmo_7b_d_ids_with_qwens_vocabulary(qwen):
    tok, enc = qwen
    assert tok.eos_id == tok.bos_id == 151643
    assert [tok.extra_ids[t] for t in molmo.EXTRA_TOKENS] == list(range(152064, 152069))
    for text in TEXTS:
        assert tok.encode(text).tolist() == enc.encode_ordinary(text), text
    assert [x.tolist() for x in tok.encode_batch(TEXTS)] == [enc.encode_ordinary(t) for t in TEXTS]
    # <|image|> is one token between the text's own.
    ids = tok.encode(" User: <|image|> What is this? Assistant:").tolist()
    assert ids == enc.encode_ordinary(" User: ") + [152068] + enc.encode_ordinary(
        " What is this? Assistant:"
    )


def test_a_layout_in_qwens_ids(qwen):
    tok, enc = qwen
    img = np.array([152064, 152066, 152067, 152065], dtype=np.int32)
    msgs = tok.encode_batch([TEXTS[0], TEXTS[1]])
    out = molmo.layout(
        [msgs], img, np.array([[1]], np.int32), Special(tok.bos_id, tok.eos_id, tok.image_prompt_id)
    )
    want = [*img, *enc.encode_ordinary(TEXTS[0]), *enc.encode_ordinary(TEXTS[1]), 151643]
    assert out["target_tokens"].tolist() == want
    assert out["input_tokens"].tolist() == [151643, *want[:-1]]
    assert tok.decode(out["target_tokens"][out["loss_masks"] > 0]) == TEXTS[1] + "<|endoftext|>"
