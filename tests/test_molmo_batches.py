"""Molmo's collated batch (v1 MMCollator, pad="to_max"), packed rows, per-example costs and
the `Batches` stream option, from small PixMo-shaped datasets and a BPE trained in the test."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("tokenizers")
torch = pytest.importorskip("torch")

import pixmo_stream as ps  # noqa: E402
from molmo_fixtures import bpe, jpeg, write_preset  # noqa: E402
from pixmo_stream import image, molmo  # noqa: E402
from pixmo_stream.molmo.tokens import Special  # noqa: E402

SAMPLE = "__sample__"


@pytest.fixture(scope="module")
def tok() -> molmo.MolmoTokenizer:
    return molmo.MolmoTokenizer(bpe())


@pytest.fixture(scope="module")
def cap(tmp_path_factory) -> Any:
    anns = [{"captions": [f"A dog number {i}."], "transcripts": [["um a dog"]]} for i in range(8)]
    return write_preset(tmp_path_factory.mktemp("cap") / "cap", "pixmo-cap", anns)


@pytest.fixture(scope="module")
def qa(tmp_path_factory) -> Any:
    anns = [
        {
            "questions": [f"What is {i}?", "Where is the cat?"],
            "answers": [f"It is {i}.", "On the sofa."],
        }
        for i in range(6)
    ]
    return write_preset(tmp_path_factory.mktemp("qa") / "qa", "pixmo-ask-model-anything", anns)


def records(path: Any, batches: molmo.Batches, source: int = 0) -> list[dict[str, Any]]:
    """Decoded records in row order, with the sample ids the stream gives (epoch 0)."""
    ds = ps.StreamingDataset(
        str(path), columns=batches.columns(source), decode=batches.decode, shuffle=False
    )
    out = list(ds)
    for row, r in enumerate(out):
        r[SAMPLE] = (source, row, 0)
    return out


def example(
    tok: molmo.MolmoTokenizer, n_annotations: int, size=(64, 48), normalize=True
) -> dict[str, Any]:
    cfg = image.MolmoConfig(token_ids=tok.image_token_ids, normalize=normalize)
    im = image.molmo_preprocess(jpeg(*size), cfg)
    anns = [tok.encode_batch([f" User: q{k} Assistant:", f" a{k}"]) for k in range(n_annotations)]
    out = molmo.layout(
        anns,
        im.image_tokens,
        im.image_input_idx,
        Special(tok.bos_id, tok.eos_id, tok.image_prompt_id),
    )
    out["images"], out["image_masks"] = im.crops, im.patch_mask
    return out


# ---- collate: Molmo v1's batch ---------------------------------------------------------------


def test_collate_is_molmo_v1s_batch(tok):
    multi, single = example(tok, 3), example(tok, 1, size=(30, 30))
    b = molmo.collate([multi, single], seq_len=2304, max_crops=13)
    assert set(b) == {
        "input_ids", "labels", "loss_masks", "position_ids", "subsegment_ids",
        "images", "image_input_idx", "image_masks",
    }  # fmt: skip
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in b.items()}
    assert shapes == {
        "input_ids": ((2, 2304), torch.int64),
        "labels": ((2, 2304), torch.int64),
        "loss_masks": ((2, 2304), torch.float32),
        "position_ids": ((2, 2304), torch.int64),
        "subsegment_ids": ((2, 2304), torch.int64),
        "images": ((2, 13, 576, 588), torch.float32),
        "image_input_idx": ((2, 13, 144), torch.int32),
        "image_masks": ((2, 13, 576), torch.float32),
    }
    for i, ex in enumerate([multi, single]):
        n, c = len(ex["input_tokens"]), len(ex["images"])
        for key, out in [
            ("input_tokens", "input_ids"),
            ("target_tokens", "labels"),
            ("loss_masks", "loss_masks"),
            ("position_ids", "position_ids"),
        ]:
            assert b[out][i, :n].tolist() == ex[key].tolist()
            assert (b[out][i, n:] == -1).all()  # every pad is -1, loss_masks too
        assert (b["images"][i, :c].numpy() == ex["images"]).all() and (
            b["images"][i, c:] == -1
        ).all()
        assert (b["image_masks"][i, c:] == -1).all() and (b["image_input_idx"][i, c:] == -1).all()
    # The single-annotation row has ones where the multi-annotation one has subsegments.
    n1 = len(single["input_tokens"])
    assert (b["subsegment_ids"][1, :n1] == 1).all() and (b["subsegment_ids"][1, n1:] == -1).all()
    # Without any multi-annotation row there is no subsegment_ids at all.
    assert "subsegment_ids" not in molmo.collate([single], seq_len=2304, max_crops=13)


def test_collate_cuts_rows_at_seq_len_and_refuses_too_many_crops(tok):
    ex = example(tok, 2)
    b = molmo.collate([ex], seq_len=100, max_crops=13)
    assert b["input_ids"][0].tolist() == ex["input_tokens"][:100].tolist()
    with pytest.raises(ValueError, match="more than max_crops=1"):
        molmo.collate([ex], seq_len=100, max_crops=1)


def test_uint8_crops_normalised_on_the_device_equal_molmos_floats(tok):
    u8 = example(tok, 1, size=(120, 50), normalize=False)
    f32 = example(tok, 1, size=(120, 50))
    b = molmo.collate(
        [u8, example(tok, 1, size=(30, 30), normalize=False)], seq_len=2304, max_crops=13
    )
    assert b["images"].dtype == torch.uint8
    x = molmo.normalize_images(b["images"], b["image_input_idx"])
    c = len(f32["images"])
    assert x.dtype == torch.float32
    # uint8 rounding: within one level over the smallest std.
    np.testing.assert_allclose(x[0, :c].numpy(), f32["images"], atol=1.0 / 255 / 0.26 + 1e-4)
    assert (x[0, c:] == -1).all() and (x[1, 2:] == -1).all()


# ---- packed rows -----------------------------------------------------------------------------


def test_collate_packed_keeps_examples_apart(tok):
    exs = [example(tok, 2), example(tok, 1, size=(30, 30)), example(tok, 3, size=(40, 90))]
    rows = [[exs[0], exs[1]], [exs[2]]]
    budget = sum(len(e["input_tokens"]) for e in rows[0]) + 5
    b = molmo.collate_packed(rows, max_tokens=budget, max_crops=13)
    n0, n1, n2 = (len(e["input_tokens"]) for e in exs)
    assert b["seq_lens"].tolist() == [[n0, n1], [n2, 0]]
    assert b["cu_seqlens"].tolist() == [0, n0, n0 + n1, budget, budget + n2, 2 * budget]
    sub = b["subsegment_ids"]
    assert sub[0, :n0].tolist() == exs[0]["subsegment_ids"].tolist()
    assert (sub[0, n0 : n0 + n1] == 100000).all()  # a single annotation: one subsegment
    assert (sub[0, n0 + n1 :] == -1).all()
    # No token of example 1 may attend to example 0 under Molmo's sub[i] <= sub[j] rule.
    assert sub[0, n0 : n0 + n1].min() > sub[0, :n0].max()
    assert b["position_ids"][0, n0 : n0 + n1].tolist() == list(range(n1))
    # Image features land on <im_patch> inputs of their own example.
    patch = tok.extra_ids["<im_patch>"]
    for r in range(2):
        idx = b["image_input_idx"][r]
        valid = idx[idx >= 0]
        assert (b["input_ids"][r, valid] == patch).all()
        assert len(valid) == (b["input_ids"][r] == patch).sum()
    c0, c1 = len(exs[0]["images"]), len(exs[1]["images"])
    assert b["image_input_idx"][0, c0 : c0 + c1].clamp(min=0).max() >= n0
    assert (b["images"][0, c0 + c1 :] == -1).all()
    # The loss normaliser is what the unpacked batch's positive loss masks sum to.
    flat = molmo.collate(exs, seq_len=2304, max_crops=13)["loss_masks"]
    assert torch.isclose(b["loss_weight_sum"], flat[flat > 0].sum())
    with pytest.raises(ValueError, match="packed row 0"):
        molmo.collate_packed(rows, max_tokens=n0 + n1 - 1, max_crops=13)
    with pytest.raises(ValueError, match="crops"):
        molmo.collate_packed(rows, max_tokens=budget, max_crops=c0)


# ---- Batches ---------------------------------------------------------------------------------


def test_batches_from_a_stream_are_molmos_batch_of_the_formatted_records(tok, cap):
    batches = molmo.Batches(tok, molmo.Formatter("pixmo-cap"), seq_len=1600)
    ds = batches.stream(str(cap), batch_size=4, shuffle=False)
    got = list(ps.DataLoader(ds))
    assert len(got) == 2
    b = got[0]
    assert b["input_ids"].shape == (4, 1600) and b["images"].shape == (4, 13, 576, 588)
    for i in range(4):
        answer = b["labels"][i][b["loss_masks"][i] > 0].tolist()
        assert tok.decode(answer) == f" A dog number {i}.<|endoftext|>"
        want = image.molmo_preprocess(jpeg(*[(64, 48), (40, 90), (120, 50), (30, 30)][i], i))
        np.testing.assert_array_equal(b["images"][i, : want.n_crops].numpy(), want.crops)
    # The same batches with DataLoader workers.
    again = list(
        ps.DataLoader(batches.stream(str(cap), batch_size=4, shuffle=False), num_workers=2)
    )
    for x, y in zip(got, again, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_every_choice_comes_from_the_example_rng_of_its_sample_id(tok, qa):
    f = molmo.Formatter("pixmo-ask-model-anything")
    batches = molmo.Batches(tok, f, seed=7)
    recs = records(qa, batches)
    got = batches.examples(recs)
    for r, g in zip(recs, got, strict=True):
        ex = f.format(r, molmo.example_rng(7, 0, "pixmo-ask-model-anything", r[SAMPLE][1]))
        text = "".join(m for a in ex.annotations for m in a.messages)
        t = g["target_tokens"]
        assert tok.decode(t[(t != tok.eos_id) & (t < 400)]) == text  # without image tokens
    # The same sample id always draws the same; another epoch draws anew.
    again = batches.examples(recs)
    assert all(
        np.array_equal(a["input_tokens"], b["input_tokens"])
        for a, b in zip(got, again, strict=True)
    )
    for r in recs:
        r[SAMPLE] = (0, r[SAMPLE][1], 1)
    later = batches.examples(recs)
    assert any(
        not np.array_equal(a["input_tokens"], b["input_tokens"])
        for a, b in zip(got, later, strict=True)
    )


def test_a_mixture_formats_each_source_with_its_own_formatter(tok, cap, qa):
    batches = molmo.Batches(
        tok, [molmo.Formatter("pixmo-cap"), molmo.Formatter("pixmo-ask-model-anything")]
    )
    mix = batches.mixture([str(cap), str(qa)], [0.5, 0.5], batch_size=4, length=8)
    seen = set()
    for b in ps.DataLoader(mix):
        assert b["input_ids"].shape == (4, 2304)
        for i in range(4):
            text = tok.decode(b["labels"][i][b["loss_masks"][i] > 0].tolist())
            seen.add("dog" in text)
            # Captions have one annotation; the QA records two (subsegments, weights).
            if "dog" not in text:
                assert np.isclose(b["loss_masks"][i].max().item(), np.sqrt(0.5))
    assert seen == {True, False}


def test_costs_bound_every_example_and_are_cached(tok, qa, tmp_path):
    f = molmo.Formatter("pixmo-ask-model-anything")
    batches = molmo.Batches(tok, f)
    tokens, crops = molmo.costs(str(qa), f, tok, cache_dir=tmp_path)
    assert tokens.dtype == np.uint32 and crops.dtype == np.uint16 and len(tokens) == 6
    for seed in range(3):
        batches.seed = seed
        for r, ex in zip(records(qa, batches), batches.examples(records(qa, batches)), strict=True):
            row = r[SAMPLE][1]
            assert len(ex["input_tokens"]) <= tokens[row]
            assert len(ex["images"]) == crops[row]
    # Read back from the cache without tokenizing; other settings are another entry.
    broken = molmo.MolmoTokenizer(bpe())
    broken.encode_batch = None  # type: ignore[method-assign]
    t2, c2 = molmo.costs(str(qa), f, broken, cache_dir=tmp_path)
    assert (t2 == tokens).all() and (c2 == crops).all()
    with pytest.raises(TypeError):
        molmo.costs(
            str(qa),
            molmo.Formatter("pixmo-ask-model-anything", how_many_prefix=False),
            broken,
            cache_dir=tmp_path,
        )


def _Packing(max_tokens: int, max_crops: int | None) -> ps.Packing:
    return ps.Packing(max_tokens, max_crops, rows_per_batch=2, costs=molmo.costs)


def test_packed_rows_from_records(tok, qa, cap):
    batches = molmo.Batches(
        tok, molmo.Formatter("pixmo-ask-model-anything"), pack=_Packing(4096, 26)
    )
    assert batches.pack.costs == batches.costs  # filled in: computed by Batches
    recs = records(qa, batches)
    b = batches([recs[:3], recs[3:5]])
    assert b["input_ids"].shape == (2, 4096) and b["images"].shape == (2, 26, 576, 588)
    lens = [len(e["input_tokens"]) for e in batches.examples(recs[:5])]
    assert b["seq_lens"].tolist() == [lens[:3], [*lens[3:5], 0]]
    flat = molmo.collate(batches.examples(recs[:5]), 2304, 13)["loss_masks"]
    assert torch.isclose(b["loss_weight_sum"], flat[flat > 0].sum())


def test_a_packed_row_over_its_budget_loses_whole_annotations(tok, qa):
    batches = molmo.Batches(
        tok, molmo.Formatter("pixmo-ask-model-anything"), pack=_Packing(4096, 26)
    )
    recs = records(qa, batches)[:2]
    full = [len(e["input_tokens"]) for e in batches.examples(recs)]
    budget = sum(full) - 3
    batches.pack = batches._packing(_Packing(budget, 26))
    b = batches([recs])
    lens = b["seq_lens"][0].tolist()
    assert sum(lens) <= budget and batches.stats.dropped_annotations == 1
    # The shortened example is a single conversation now: one subsegment, loss weight 1.
    short = int(np.argmax(np.array(full) - np.array(lens)))
    start = sum(lens[:short])
    sub = b["subsegment_ids"][0, start : start + lens[short]]
    assert (sub == 100000 * short).all()
    # Each fits alone with one annotation, the two together do not.
    batches.pack = batches._packing(_Packing(max(lens) + 1, 26))
    b = batches([recs])
    assert len([n for n in b["seq_lens"][0].tolist() if n]) == 1 and batches.stats.too_long == 1
    # An example whose image and first turn exceed the row alone is left out likewise.
    batches.pack = batches._packing(_Packing(min(lens) - 10, 26))
    with pytest.raises(ValueError, match="no record of this batch"):
        batches([recs, recs[:1]])
    assert batches.stats.too_long == 4
    # Unpacked, it is replaced by the batch's next example that fits (none here).
    with pytest.raises(ValueError, match="no record of this batch"):
        molmo.Batches(tok, molmo.Formatter("pixmo-ask-model-anything"), seq_len=50)(recs)


def test_batches_pickle_for_spawned_workers(tok, qa):
    import pickle

    f = molmo.Formatter("pixmo-ask-model-anything", templates={"user_qa": ["{question}"]})
    batches = molmo.Batches(tok, f, pack=_Packing(4096, 26), seed=3)
    again = pickle.loads(pickle.dumps(batches))
    assert again.pack.costs.__self__ is again
    recs = records(qa, batches)
    for a, b in zip(batches.examples(recs), again.examples(recs), strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("size", [(640, 480), (1920, 1080), (300, 2000), (50, 50), (3000, 100)])
def test_image_costs_from_the_stored_size_equal_the_preprocessing(size):
    from pixmo_stream.molmo.costs import image_cost

    width, height = size
    im = image.molmo_preprocess(jpeg(width, height))
    assert image_cost(height, width) == (len(im.image_tokens), im.n_crops)
    # Unknown size: the most any image may cost (12 crops and the global view).
    tokens, crops = image_cost(None, None)
    assert crops == 13 and tokens >= len(im.image_tokens)


def test_a_packed_stream_gives_every_example_once_in_rows_within_budget(tok, qa, tmp_path):
    pack = ps.Packing(max_tokens=1200, max_crops=6, rows_per_batch=2, costs=molmo.costs)
    f = molmo.Formatter("pixmo-ask-model-anything")
    batches = molmo.Batches(tok, f, max_crops=2, pack=pack, cost_cache=tmp_path)
    answers = []
    for epoch in range(2):
        ds = batches.stream(str(qa), seed=1)
        ds.set_epoch(epoch)
        seen = []
        for b in ps.DataLoader(ds):
            assert b["input_ids"].shape[1] == 1200 and b["images"].shape[1] == 6
            for r in range(b["input_ids"].shape[0]):
                lens = [n for n in b["seq_lens"][r].tolist() if n]
                assert sum(lens) <= 1200
                start = 0
                for n in lens:
                    t = b["labels"][r, start : start + n]
                    m = b["loss_masks"][r, start : start + n] > 0
                    seen.append(tok.decode(t[m].tolist()))
                    start += n
        answers.append(sorted(seen))
    # Each record once per epoch (its two answers in either order).
    for got in answers:
        assert len(got) == 6
        assert all(f"It is {i}." in "".join(got) for i in range(6))
    # Every image here is one tile and the global view (costs from the stored sizes).
    assert batches.costs(ps.Dataset(str(qa)))[1].tolist() == [2, 2, 2, 2, 2, 2]


def test_records_with_nothing_to_train_on_are_replaced_in_a_batch_and_left_out_of_a_row(
    tok, tmp_path
):
    anns = [{"captions": [f"A dog number {i}."], "transcripts": [[]]} for i in range(4)]
    anns[1] = {"captions": [], "transcripts": []}
    path = write_preset(tmp_path / "cap", "pixmo-cap", anns)
    batches = molmo.Batches(tok, molmo.Formatter("pixmo-cap"), seq_len=1600)
    recs = records(path, batches)
    b = batches(recs)
    texts = [tok.decode(b["labels"][i][b["loss_masks"][i] > 0].tolist()) for i in range(4)]
    assert [t.split(".")[0] for t in texts] == [f" A dog number {i}" for i in (0, 2, 2, 3)]
    assert torch.equal(b["images"][1], b["images"][2]) and batches.stats.empty_records == 1
    batches.pack = batches._packing(_Packing(4096, 26))
    p = batches([recs[:2], recs[1:2]])
    assert p["seq_lens"].tolist() == [[len(batches.examples(recs[:1])[0]["input_tokens"])], [0]]
    assert (p["input_ids"][1] == -1).all() and batches.stats.empty_records == 3
    with pytest.raises(ValueError, match="no record of this batch"):
        batches(recs[1:2] * 2)


@pytest.mark.parametrize("normalize", [True, False], ids=["float32", "uint8"])
def test_the_read_ahead_writes_the_batch_crops_in_place(tok, tmp_path, monkeypatch, normalize):
    """Without workers, the read-ahead writes each image's crops straight into its row of the
    batch tensor (padding crops after them), and `collate` hands that buffer out uncopied; a
    bad image's replacement takes its row. The values are `molmo_preprocess`'s of the row read."""
    import importlib

    collate_mod = importlib.import_module("pixmo_stream.molmo.collate")
    anns = [{"captions": [f"A dog number {i}."], "transcripts": [["um a dog"]]} for i in range(8)]
    path = write_preset(tmp_path / "cap", "pixmo-cap", anns)
    rows = list(ps.Dataset(str(path)).iter())
    broken = 5
    with ps.Writer(str(tmp_path / "bad"), ps.Dataset(str(path)).schema) as w:
        for i, r in enumerate(rows):
            w.write({**r, "image": b"\xff\xd8 not a jpeg" if i == broken else bytes(r["image"])})
    used = []
    real = collate_mod._gathered

    def spy(*args):
        out = real(*args)
        used.append(out is not None)
        return out

    monkeypatch.setattr(collate_mod, "_gathered", spy)
    batches = molmo.Batches(tok, molmo.Formatter("pixmo-cap"), normalize=normalize, exact=normalize)

    def stream(**kw):
        return batches.stream(
            str(tmp_path / "bad"), batch_size=4, shuffle=False, on_bad_sample="replace", **kw
        )

    got = list(ps.DataLoader(stream()))
    assert used == [True, True]
    # The same stream's records (a collate_fn of our own: each record's crops its own array).
    read = list(ps.DataLoader(stream(collate_fn=lambda records: records)))
    pad = -1 if normalize else 0
    seen = set()
    for b, records in zip(got, read, strict=True):
        assert len(b[ps.bad_samples.BATCH_KEY]) == (1 if records is read[1] else 0)
        for i, r in enumerate(records):
            row = r["__sample__"][1]
            seen.add(row)
            want = image.molmo_preprocess(bytes(rows[row]["image"]), batches.image_config)
            n = want.n_crops
            np.testing.assert_array_equal(b["images"][i, :n].numpy(), want.crops)
            np.testing.assert_array_equal(r["image"], want.crops)
            assert (b["images"][i, n:] == pad).all()
    assert broken not in seen and len(seen) >= 7


@pytest.mark.parametrize("normalize", [False, True])
def test_a_dropped_batchs_buffer_takes_a_later_batch_whole(tok, tmp_path, normalize):
    """The read-ahead reuses the crops buffer of a batch the consumer dropped for a later
    batch (no fresh pages to zero); every slot of it is written again: a row with fewer crops
    than the row before it in that buffer gets padding, not the old crops."""
    anns = [{"captions": [f"A cat number {i}."], "transcripts": [["um a cat"]]} for i in range(24)]
    path = write_preset(tmp_path / "cap", "pixmo-cap", anns)
    rows = list(ps.Dataset(str(path)).iter())
    batches = molmo.Batches(tok, molmo.Formatter("pixmo-cap"), normalize=normalize, exact=normalize)

    def stream(**kw):
        return batches.stream(str(path), batch_size=3, seed=7, read_ahead=1, **kw)

    read = [[r["__sample__"][1] for r in b] for b in ps.DataLoader(stream(collate_fn=list))]
    pad = -1 if normalize else 0
    addresses = []
    for b, order in zip(ps.DataLoader(stream()), read, strict=True):
        addresses.append(b["images"].data_ptr())
        for i, row in enumerate(order):
            want = image.molmo_preprocess(bytes(rows[row]["image"]), batches.image_config)
            n = want.n_crops
            np.testing.assert_array_equal(b["images"][i, :n].numpy(), want.crops)
            assert (b["images"][i, n:] == pad).all()
        del b
    assert len(addresses) == 8 and len(set(addresses)) < len(addresses)
