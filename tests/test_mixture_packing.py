"""Packing a mixture (`Mixture(..., pack=Packing(...))`): every mixture position in exactly one
packed row, window after window, with the unpacked mixture's draws (so its rates); no row over
either budget; equal rows per rank; exact resumption on 1 -> 3 -> 2 ranks; bad samples
replaced in place by a row of their source that fits; and `Batches.mixture(..., pack=)`
formatting each source with its own formatter."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pixmo_stream as ps  # noqa: E402
from pixmo_stream import _native, purepy  # noqa: E402

SIZES = {"a": 30, "b": 90, "c": 60}
RATES = [0.2, 0.5, 0.3]
GROUP = 10
WINDOW = 64
MAX_TOKENS = 4096
MAX_CROPS = 24
SEED = 4


def source_costs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each source's own costs (from its size: a different table per source), a few over the
    token budget."""
    rng = np.random.default_rng(n)
    tokens = rng.integers(60, 1800, n).astype(np.uint32)
    crops = rng.integers(1, 13, n).astype(np.uint16)
    tokens[::37] = 5000
    return tokens, crops


COSTS = {n: source_costs(n) for n in SIZES.values()}


def costs_of(d: ps.Dataset) -> tuple[np.ndarray, np.ndarray]:
    return COSTS[len(d)]


def write(path: Path, n: int) -> str:
    with ps.Writer(path, row_group_rows=GROUP) as w:
        for i in range(n):
            w.write({"id": i, "caption": f"caption of {i} " * 10})
    return str(path)


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("mixpack")
    return [write(root / name, n) for name, n in SIZES.items()]


def packing(**kw) -> ps.Packing:
    return ps.Packing(
        max_tokens=MAX_TOKENS,
        max_crops=MAX_CROPS,
        rows_per_batch=kw.pop("rows_per_batch", 3),
        costs=kw.pop("costs", costs_of),
        window=kw.pop("window", WINDOW),
    )


def mixture(paths: list[str], length: int | None, **kw) -> ps.Mixture:
    sources = [ps.StreamingDataset(p, seed=i + 1, columns=["id"]) for i, p in enumerate(paths)]
    kw.setdefault("pack", packing())
    return ps.Mixture(sources, RATES, seed=SEED, length=length, sample_ids=True, **kw)


Row = tuple[tuple[int, int, int], ...]


def rows_of(step) -> list[Row]:
    """A step's packed rows as tuples of sample ids `(source, row, source epoch)`."""
    return [tuple(r[ps.SAMPLE_KEY] for r in row) for row in step]


def read(mix: ps.Mixture, num_workers: int = 0, steps: int | None = None):
    loader = ps.DataLoader(mix, num_workers=num_workers)
    out: list[Row] = []
    for k, step in enumerate(loader):
        assert 0 < len(step) <= mix.pack.rows_per_batch
        for row in step:
            for r in row:
                # The source key is there, and the record is the row its id names.
                assert r["__source__"] == r[ps.SAMPLE_KEY][0]
                assert r["id"] == r[ps.SAMPLE_KEY][1]
        out.extend(rows_of(step))
        if steps is not None and k + 1 >= steps:
            break
    return out, loader


def cost(sid: tuple[int, int, int]) -> tuple[int, int]:
    tokens, crops = COSTS[list(SIZES.values())[sid[0]]]
    return int(tokens[sid[1]]), int(crops[sid[1]])


def check_budgets(rows: list[Row]) -> None:
    for row in rows:
        t = sum(cost(s)[0] for s in row)
        c = sum(cost(s)[1] for s in row)
        if len(row) == 1 and (t > MAX_TOKENS or c > MAX_CROPS):
            continue  # an example over a budget has a row of its own
        assert t <= MAX_TOKENS and c <= MAX_CROPS, (row, t, c)


def test_every_position_once_window_after_window_at_the_mixtures_rates(paths):
    mix = mixture(paths, length=100)
    rows, _ = read(mix)
    assert len(rows) == 100 and len(mix) == 34
    check_budgets(rows)
    assert sum(len(r) for r in rows) > 2.5 * len(rows)  # several examples a row
    # The state names the pack window holding row 100: the rows before it hold exactly the
    # positions of the windows before it.
    state = mix.state_dict()
    done, first = state["position"] // WINDOW, state["pack"]["window_row"]
    assert state["pack"]["row"] == 100 and 0 < first <= 100 and state["position"] == done * WINDOW
    # The unpacked mixture draws those positions: the same samples, window by window.
    plain = ps.Mixture(
        [ps.StreamingDataset(p, seed=i + 1, columns=["id"]) for i, p in enumerate(paths)],
        RATES,
        seed=SEED,
        length=done * WINDOW,
        sample_ids=True,
    )
    drawn = [r[ps.SAMPLE_KEY] for r in plain]
    plan = mix._pack.plan()
    anchor, by_window = mix._pack.origin(), Counter()
    for g, row in enumerate(rows[:first]):
        anchor = tuple(plan.seek(anchor, g))
        for sid in row:
            by_window[(anchor[0], sid)] += 1
    want = Counter((q // WINDOW, sid) for q, sid in enumerate(drawn))
    assert by_window == want
    # So each source's share is the unpacked mixture's, and the state's counts are its draws.
    per_source = Counter(sid[0] for row in rows[:first] for sid in row)
    counts = _native.mixture_counts(RATES, SEED, 0, done * WINDOW)
    assert [per_source[s] for s in range(3)] == counts == state["counts"]
    # A source smaller than the stream wraps into its next epoch: each epoch holds each row once.
    a = Counter(sid for row in rows for sid in row if sid[0] == 0)
    assert set(a.values()) == {1} and max(sid[2] for sid in a) >= 1


def test_passes_continue_the_stream(paths):
    whole, _ = read(mixture(paths, length=60))
    mix = mixture(paths, length=30)
    first, loader = read(mix)
    second = [row for step in loader for row in rows_of(step)]
    assert first + second == whole


def test_ranks_get_equal_rows(paths):
    whole, _ = read(mixture(paths, length=75))
    for world in (2, 3, 4):
        per_rank = [read(mixture(paths, 70, rank=r, world_size=world))[0] for r in range(world)]
        n = -(-70 // world)
        assert {len(rows) for rows in per_rank} == {n}
        for rank, rows in enumerate(per_rank):
            assert rows == [whole[i * world + rank] for i in range(n)]


def test_resume_on_1_then_3_then_2_ranks_reads_exactly_the_rest(paths):
    length = 90
    rows, loader = read(mixture(paths, length), steps=4)
    state = loader.state_dict()
    assert state["pack"]["row"] == 12
    read_rows = list(rows)
    # Three ranks, each with 2 DataLoader workers, read 3 steps each.
    states = []
    for rank in range(3):
        mix = mixture(paths, length, rank=rank, world_size=3)
        mix.load_state_dict(state)
        rows, loader = read(mix, num_workers=2, steps=3)
        assert len(rows) == 9
        read_rows.extend(rows)
        states.append(loader.state_dict())
    assert all(s == states[0] for s in states)
    assert states[0]["pack"]["row"] == 12 + 27
    # Two ranks read a pass from there.
    tail = []
    for rank in range(2):
        mix = mixture(paths, length, rank=rank, world_size=2)
        mix.load_state_dict(states[0])
        tail.append(read(mix)[0])
    assert len(tail[0]) == len(tail[1]) == length // 2
    read_rows.extend(tail[0] + tail[1])
    # Exactly the stream's first 39 + 90 rows, none twice.
    whole, _ = read(mixture(paths, 39 + length))
    assert sorted(read_rows) == sorted(whole)
    assert len(set(whole)) == len(whole)


def test_state_of_other_packing_is_refused(paths):
    state = mixture(paths, 10).state_dict()
    with pytest.raises(ValueError, match="packing"):
        mixture(paths, 10, pack=packing(window=32)).load_state_dict(state)
    with pytest.raises(ValueError, match="packing"):
        mixture(paths, 10, pack=None).load_state_dict(state)
    with pytest.raises(ValueError, match="packing"):
        mixture(paths, 10).load_state_dict(mixture(paths, 10, pack=None).state_dict())


def test_bad_arguments_are_refused(paths):
    with pytest.raises(ValueError, match="batch_size"):
        mixture(paths, 10, batch_size=4)
    with pytest.raises(ValueError, match="callable"):
        mixture(paths, 10, pack=packing(costs=COSTS[30]))
    with pytest.raises(ValueError, match="costs for a dataset of 90 rows"):
        mixture(paths, 10, pack=packing(costs=lambda d: COSTS[30]))


def damage_id_chunk(path: Path, group: int) -> None:
    shard = next(iter(sorted(path.glob("*.pxs"))))
    sh = purepy.Shard(str(shard))
    chunk = sh.row_groups[group][1][sh.column_index("id")]
    blob = bytearray(shard.read_bytes())
    blob[chunk["offset"] + chunk["stored_len"] // 2] ^= 0x21
    shard.write_bytes(bytes(blob))


def test_bad_samples_are_replaced_in_their_row_by_one_that_fits(tmp_path, paths):
    clean, _ = read(mixture(paths, 40))
    damaged = list(paths)
    damaged[1] = write(tmp_path / "b", SIZES["b"])
    damage_id_chunk(tmp_path / "b", 2)  # rows 20..29 of source 1
    bad_rows = {(1, r) for r in range(20, 30)}
    per_rank, replaced = [], []
    for rank in range(2):
        mix = mixture(
            damaged,
            40,
            rank=rank,
            world_size=2,
            on_bad_sample="replace",
            collate_fn=lambda rows: {"rows": rows},
        )
        steps = list(ps.DataLoader(mix))
        per_rank.append([rows_of(s["rows"]) for s in steps])
        replaced.extend(b for s in steps for b in s["bad_samples"])
        assert mix.bad_samples == sum(len(s["bad_samples"]) for s in steps)
    # Both ranks take the same steps of the same rows; each row keeps its size.
    assert [len(s) for s in per_rank[0]] == [len(s) for s in per_rank[1]]
    got = [
        row for i in range(20) for row in (per_rank[0][i // 3][i % 3], per_rank[1][i // 3][i % 3])
    ]
    assert [len(r) for r in got] == [len(r) for r in clean]
    for g, w in zip(got, clean, strict=True):
        if not {s[:2] for s in w} & bad_rows:
            assert g == w
    assert replaced and {(b.source, b.row) for b in replaced} <= bad_rows
    for b in replaced:
        # The replacement is a row of the same source whose costs fit where the bad one was.
        tokens, crops = COSTS[SIZES["b"]]
        assert tokens[b.replacement] <= tokens[b.row] and crops[b.replacement] <= crops[b.row]
    assert not bad_rows & {s[:2] for row in got for s in row}
    check_budgets(got)


# ---- Batches.mixture(..., pack=) ---------------------------------------------------------------


def test_batches_mixture_packs_each_source_with_its_own_formatter(tmp_path):
    pytest.importorskip("tokenizers")
    from molmo_fixtures import bpe, write_preset
    from pixmo_stream import molmo

    cap = write_preset(
        tmp_path / "cap",
        "pixmo-cap",
        [{"captions": [f"A dog number {i}."], "transcripts": [["um a dog"]]} for i in range(8)],
    )
    qa = write_preset(
        tmp_path / "qa",
        "pixmo-ask-model-anything",
        [{"questions": [f"What is {i}?"], "answers": [f"It is {i}."]} for i in range(6)],
    )
    tok = molmo.MolmoTokenizer(bpe())
    pack = ps.Packing(max_tokens=1200, max_crops=6, rows_per_batch=2, costs=molmo.costs)
    formatters = [molmo.Formatter("pixmo-cap"), molmo.Formatter("pixmo-ask-model-anything")]
    batches = molmo.Batches(tok, formatters, max_crops=2, pack=pack, cost_cache=tmp_path)
    paths = [str(cap), str(qa)]
    mix = batches.mixture(paths, [0.5, 0.5], length=8, seed=2)
    seen = []
    for b in ps.DataLoader(mix):
        assert b["input_ids"].shape == (2, 1200) and b["images"].shape[1] == 6
        for r in range(2):
            lens = [n for n in b["seq_lens"][r].tolist() if n]
            assert sum(lens) <= 1200
            start = 0
            for n in lens:
                t, m = b["labels"][r, start : start + n], b["loss_masks"][r, start : start + n]
                text = tok.decode(t[m > 0].tolist())
                found = re.search(r"dog number (\d)", text) or re.search(r"It is (\d)", text)
                assert found, text
                seen.append((0 if "dog" in text else 1, int(found[1])))
                start += n
    # The same rows as the packed mixture's records: each source formatted by its own formatter.
    plain = batches.mixture(paths, [0.5, 0.5], length=8, seed=2, collate_fn=None)
    want = [r[ps.SAMPLE_KEY][:2] for step in plain for row in step for r in row]
    assert sorted(seen) == sorted(want) and {s for s, _ in want} == {0, 1}


def test_persistent_workers_continue_the_stream(paths):
    whole, _ = read(mixture(paths, length=60))
    mix = mixture(paths, length=30)
    loader = ps.DataLoader(mix, num_workers=2, persistent_workers=True)
    passes = [[row for step in loader for row in rows_of(step)] for _ in range(2)]
    assert passes[0] + passes[1] == whole
    assert mix.state_dict()["pack"]["row"] == 60


def test_stateful_dataloader_resumes_each_worker(paths):
    stateful = pytest.importorskip("torchdata.stateful_dataloader")

    def loader():
        return stateful.StatefulDataLoader(mixture(paths, 45), batch_size=None, num_workers=2)

    whole = [rows_of(s) for s in loader()]
    assert len(whole) == 15
    first = loader()
    it = iter(first)
    head = [rows_of(next(it)) for _ in range(5)]
    state = first.state_dict()
    del it
    again = loader()
    again.load_state_dict(state)
    assert head + [rows_of(s) for s in again] == whole
