"""Molmo's tokenizer and per-example token layout (olmo/tokenizer.py, model_preprocessor.py):
extra token ids, EOS after answers, loss masks, subsegments, positions, image placement and
truncation, checked against expectations written out from Molmo's rules."""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest

pytest.importorskip("tokenizers")

from molmo_fixtures import bpe  # noqa: E402
from pixmo_stream import image  # noqa: E402
from pixmo_stream.molmo import ExampleTooLong, LayoutStats, MolmoTokenizer, layout  # noqa: E402
from pixmo_stream.molmo.tokenizer import EXTRA_TOKENS  # noqa: E402
from pixmo_stream.molmo.tokens import Special  # noqa: E402


@pytest.fixture(scope="module")
def tok() -> MolmoTokenizer:
    return MolmoTokenizer(bpe())


# ---- the tokenizer ---------------------------------------------------------------------------


def test_extra_tokens_follow_the_vocabulary_padded_to_its_size():
    base = bpe()
    t = MolmoTokenizer(base, vocab_size=512)
    assert [t.extra_ids[x] for x in EXTRA_TOKENS] == [512, 513, 514, 515, 516]
    # Each is one token inside text, and the caller's tokenizer is left unchanged.
    ids = t.encode(" User: hi<|image|> there<im_patch>").tolist()
    assert 516 in ids and 514 in ids
    assert base.token_to_id("<|image|>") is None
    with pytest.raises(ValueError, match="more than vocab_size"):
        MolmoTokenizer(base, vocab_size=100)


def test_without_a_size_they_go_after_the_vocabulary_and_bos_is_eos(tok):
    eos = tok._tok.token_to_id("<|endoftext|>")
    assert tok.eos_id == tok.bos_id == eos
    assert sorted(tok.extra_ids.values()) == list(range(400, 405))
    assert tok.image_token_ids == image.MolmoTokenIds(start=400, end=401, patch=402, col=403)


def test_extra_tokens_at_given_ids_are_written_in_place_of_the_added_ones():
    given = [900, 901, 902, 903, 904]
    t = MolmoTokenizer(bpe(), extra_ids=given)
    assert t.extra_ids["<|image|>"] == 904
    ids = t.encode("a<|image|>b").tolist()
    assert 904 in ids and max(i for i in ids if i != 904) < 400
    assert t.decode(ids) == "a<|image|>b"
    with pytest.raises(ValueError, match="distinct"):
        MolmoTokenizer(bpe(), extra_ids=[1, 1, 2, 3, 4])


def test_batch_encoding_equals_one_by_one_and_survives_pickling(tok):
    texts = [" User: Describe this image. Assistant:", " A dog runs.", "", " long_caption:"]
    got = tok.encode_batch(texts)
    assert [g.tolist() for g in got] == [tok.encode(t).tolist() for t in texts]
    assert all(g.dtype == np.int32 for g in got)
    again = pickle.loads(pickle.dumps(tok))
    assert again.encode(texts[0]).tolist() == got[0].tolist()
    assert again.fingerprint == tok.fingerprint


def test_a_transformers_fast_tokenizer_is_read_through_its_backend():
    class Fast:  # the attributes Molmo's HfTokenizerWrapper reads
        backend_tokenizer = bpe()
        bos_token_id = None
        eos_token_id = 0

    t = MolmoTokenizer(Fast())
    assert (t.bos_id, t.eos_id) == (0, 0)
    with pytest.raises(TypeError, match="tokenizers.Tokenizer"):
        MolmoTokenizer(object())


# ---- the layout ------------------------------------------------------------------------------

BOS, EOS, PROMPT = 0, 0, 404
SPECIAL = Special(bos=BOS, eos=EOS, image_prompt=PROMPT)
# A made-up image of 6 tokens: start, patch, patch, col, end, patch; the patches' features go
# at image positions 1, 2 and 5, one pooled patch dropped (-100).
IMG = np.array([400, 402, 402, 403, 401, 402], dtype=np.int32)
IDX = np.array([[1, 2], [-100, 5]], dtype=np.int32)


def ids(*lens: int) -> list[np.ndarray]:
    """Messages of the given lengths with distinct ids (10, 11, ...; never EOS or image)."""
    out, nxt = [], 10
    for n in lens:
        out.append(np.arange(nxt, nxt + n, dtype=np.int32))
        nxt += n
    return out


def test_one_annotation_is_a_plain_conversation_after_the_image():
    user, answer, user2, answer2 = ids(3, 2, 2, 1)
    out = layout([[user, answer, user2, answer2]], IMG, IDX, SPECIAL)
    target = [*IMG, *user, *answer, EOS, *user2, *answer2, EOS]
    loss = [0] * 6 + [0] * 3 + [1] * 3 + [0] * 2 + [1] * 2
    assert out["target_tokens"].tolist() == target
    assert out["input_tokens"].tolist() == [BOS, *target[:-1]]
    assert out["loss_masks"].tolist() == loss and out["loss_masks"].dtype == np.float32
    assert out["position_ids"].tolist() == list(range(len(target)))
    assert "subsegment_ids" not in out
    # Shifted by one for BOS; the dropped patch stays -100.
    assert out["image_input_idx"].tolist() == [[2, 3], [-100, 6]]
    assert (out["input_tokens"][[2, 3, 6]] == 402).all()


def test_several_annotations_share_the_image_prefix_with_subsegments_and_positions():
    a1 = ids(2, 3)
    a2 = ids(1, 1, 2, 2)
    out = layout([a1, a2], IMG, IDX, SPECIAL)
    l1, l2 = 2 + 3 + 1, 1 + 1 + 1 + 2 + 2 + 1
    target = [*IMG, *a1[0], *a1[1], EOS, *a2[0], *a2[1], EOS, *a2[2], *a2[3], EOS]
    assert out["target_tokens"].tolist() == target
    w = np.float32(math.sqrt(1 / 2))
    loss = [0] * 6 + [0, 0, w, w, w, w] + [0, w, w, 0, 0, w, w, w]
    assert out["loss_masks"].tolist() == [np.float32(x) for x in loss]
    # Per target token: 10000 on the image, k on annotation k; aligned with the inputs
    # (one to the right, the first repeated).
    by_target = [10000] * 6 + [1] * l1 + [2] * l2
    sub = [10000, *by_target[:-1]]
    assert out["subsegment_ids"].tolist() == sub
    # Each annotation's positions continue from the prefix (BOS + image: 0..6).
    prefix = 7
    pos = (
        list(range(prefix))
        + list(range(prefix, prefix + l1))
        + list(range(prefix, prefix + l2 - 1))
    )
    assert out["position_ids"].tolist() == pos
    # A token of subsegment s sees the earlier tokens of subsegment >= s: its position is
    # their count (Molmo's cumsum rule), checked token by token.
    for i, s in enumerate(sub):
        assert pos[i] == sum(1 for j in range(i) if sub[j] >= s)


def test_unweighted_annotations_keep_loss_one():
    out = layout([ids(1, 1), ids(1, 1)], IMG, IDX, SPECIAL, weighting=None)
    assert set(out["loss_masks"].tolist()) == {0.0, 1.0}


def test_the_image_goes_where_the_image_prompt_stands():
    user = np.array([10, 11, PROMPT, 12], dtype=np.int32)
    answer = np.array([13], dtype=np.int32)
    out = layout([[user, answer]], IMG, IDX, SPECIAL)
    target = [10, 11, *IMG, 12, 13, EOS]
    assert out["target_tokens"].tolist() == target
    # The image starts at token 2, input position 3.
    assert out["image_input_idx"].tolist() == [[4, 5], [-100, 8]]
    assert (out["input_tokens"][[4, 5, 8]] == 402).all()
    # With several annotations its subsegment is its token position (Molmo's rule).
    two = layout(
        [[user, answer], [np.array([20], np.int32), np.array([21], np.int32)]], IMG, IDX, SPECIAL
    )
    by_target = [1, 1] + [2] * 6 + [1, 1, 1] + [2, 2, 2]
    assert two["subsegment_ids"].tolist() == [1, *by_target[:-1]]
    with pytest.raises(ValueError, match=re.escape("2 <|image|> tokens")):
        layout([[np.array([PROMPT, PROMPT], np.int32), answer]], IMG, IDX, SPECIAL)


def test_an_example_must_end_with_an_answer():
    with pytest.raises(ValueError, match="must be an answer"):
        layout([ids(2, 1, 1)], IMG, IDX, SPECIAL)


# ---- too long --------------------------------------------------------------------------------


def test_whole_annotations_that_do_not_fit_are_dropped_and_counted():
    anns = [ids(3, 3), ids(3, 3), ids(3, 3)]  # 7 tokens each with EOS
    stats = LayoutStats()
    out = layout(anns, IMG, IDX, SPECIAL, max_tokens=6 + 14 + 6, stats=stats)
    assert len(out["target_tokens"]) == 6 + 14
    assert (stats.examples, stats.dropped_annotations, stats.dropped_turns) == (1, 1, 0)
    # The weights are those of the two kept annotations.
    assert np.isclose(out["loss_masks"].max(), math.sqrt(1 / 2))
    # One left: a plain conversation.
    one = layout(anns, IMG, IDX, SPECIAL, max_tokens=6 + 13, stats=stats)
    assert "subsegment_ids" not in one and one["loss_masks"].max() == 1.0
    assert stats.dropped_annotations == 3


def test_a_long_conversation_keeps_its_first_whole_turns_and_never_cuts_an_answer():
    conv = ids(2, 4, 2, 4, 2, 4)  # three turns of 7 tokens
    stats = LayoutStats()
    out = layout([conv], IMG, IDX, SPECIAL, max_tokens=6 + 14 + 5, stats=stats)
    assert out["target_tokens"].tolist() == [*IMG, *conv[0], *conv[1], EOS, *conv[2], *conv[3], EOS]
    assert (stats.dropped_annotations, stats.dropped_turns) == (0, 1)
    with pytest.raises(ExampleTooLong, match="first turn"):
        layout([conv], IMG, IDX, SPECIAL, max_tokens=6 + 6)


def test_v1s_cut_keeps_everything_for_the_collator_to_cut():
    stats = LayoutStats()
    anns = [ids(3, 3), ids(3, 3)]
    out = layout(anns, IMG, IDX, SPECIAL, max_tokens=10, truncate="cut", stats=stats)
    assert len(out["target_tokens"]) == 6 + 14 and stats.cut_examples == 1
    with pytest.raises(ValueError, match="truncate"):
        layout(anns, IMG, IDX, SPECIAL, truncate="middle")


def test_layout_with_a_real_image_and_tokenizer(tok):
    from molmo_fixtures import jpeg

    cfg = image.MolmoConfig(token_ids=tok.image_token_ids)
    im = image.molmo_preprocess(jpeg(64, 48), cfg)
    msgs = tok.encode_batch([" User: Describe this image. Assistant:", " A dog runs."])
    out = layout(
        [msgs],
        im.image_tokens,
        im.image_input_idx,
        Special(tok.bos_id, tok.eos_id, tok.image_prompt_id),
    )
    idx = out["image_input_idx"]
    valid = idx[idx >= 0]
    # Every kept pooled patch lands on an <im_patch> input, each exactly once.
    assert (out["input_tokens"][valid] == tok.extra_ids["<im_patch>"]).all()
    assert (
        len(set(valid.tolist()))
        == len(valid)
        == (out["input_tokens"] == tok.extra_ids["<im_patch>"]).sum()
    )
    assert tok.decode(out["target_tokens"][out["loss_masks"] > 0]) == " A dog runs.<|endoftext|>"


def test_a_tokenizer_json_file_or_folder(tmp_path, tok):
    bpe().save(str(tmp_path / "tokenizer.json"))
    for given in (tmp_path / "tokenizer.json", str(tmp_path)):
        t = MolmoTokenizer(given)
        assert t.extra_ids == tok.extra_ids and t.fingerprint == tok.fingerprint
    with pytest.raises(ValueError, match="not a tokenizers tokenizer.json"):
        MolmoTokenizer(tmp_path / "missing.json")
