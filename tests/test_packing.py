"""Packing (`StreamingDataset(pack=Packing(...))`): every example once per epoch, no row over
either budget, equal rows per rank, exact resumption on other numbers of ranks and workers,
bad samples replaced in place without desynchronising ranks; and sample ids
(`record[ps.SAMPLE_KEY]`) that do not depend on the layout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pixmo_stream as ps  # noqa: E402
from pixmo_stream import _native, purepy  # noqa: E402

N = 400
GROUP = 20
MAX_TOKENS = 4096
MAX_CROPS = 24
OVERSIZE = {7, 123}  # examples over the token budget


def costs(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    tokens = rng.integers(60, 1800, n).astype(np.uint32)
    crops = rng.integers(1, 13, n).astype(np.uint16)
    tokens[sorted(i for i in OVERSIZE if i < n)] = 5000
    return tokens, crops


TOKENS, CROPS = costs()


def write(path: Path, n: int = N) -> str:
    with ps.Writer(path, row_group_rows=GROUP) as w:
        for i in range(n):
            w.write({"id": i, "caption": f"caption of {i} " * 10})
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    return write(tmp_path_factory.mktemp("pack") / "ds")


def packing(rows_per_batch: int = 3, window: int = 128, **kw) -> ps.Packing:
    return ps.Packing(
        max_tokens=MAX_TOKENS,
        max_crops=MAX_CROPS,
        rows_per_batch=rows_per_batch,
        costs=kw.pop("costs", (TOKENS, CROPS)),
        window=window,
    )


def dataset(path: str, **kw) -> ps.StreamingDataset:
    kw.setdefault("pack", packing())
    return ps.StreamingDataset(path, seed=3, columns=["id"], **kw)


def rows_of(step) -> list[tuple[int, ...]]:
    """A step's packed rows as tuples of example ids."""
    return [tuple(int(r["id"]) for r in row) for row in step]


def read(ds, num_workers: int = 0, steps: int | None = None):
    """`(rows read, loader)`: the packed rows of up to `steps` steps."""
    loader = ps.DataLoader(ds, num_workers=num_workers)
    out = []
    for k, step in enumerate(loader):
        assert 0 < len(step) <= ds.pack.rows_per_batch
        out.extend(rows_of(step))
        if steps is not None and k + 1 >= steps:
            break
    return out, loader


def plan_rows(epoch: int = 0, window: int = 128) -> list[tuple[int, ...]]:
    """The epoch's packed rows straight from the core's plan (row ids are the example ids)."""
    plan = _native.PackPlan(
        [GROUP] * (N // GROUP),
        TOKENS,
        CROPS,
        seed=3,
        epoch=epoch,
        window_rows=16384,
        max_tokens=MAX_TOKENS,
        max_crops=MAX_CROPS,
        pack_window=window,
    )
    ids, sizes, _ = plan.rows()
    bounds = [0, *np.cumsum(sizes, dtype=np.int64).tolist()]
    return [tuple(int(x) for x in ids[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def check_budgets(rows) -> None:
    for row in rows:
        tokens = int(TOKENS[list(row)].sum())
        crops = int(CROPS[list(row)].sum())
        if len(row) == 1 and row[0] in OVERSIZE:
            continue  # an oversize example has a row of its own
        assert tokens <= MAX_TOKENS and crops <= MAX_CROPS, (row, tokens, crops)


def test_every_example_once_per_epoch_and_no_row_over_budget(data):
    ds = dataset(data)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        rows, _ = read(ds)
        assert rows == plan_rows(epoch)
        assert sorted(i for row in rows for i in row) == list(range(N))
        check_budgets(rows)
        assert {row for row in rows if set(row) & OVERSIZE} == {(i,) for i in OVERSIZE}
        # Rows are well filled: few rows, not one example each.
        assert len(rows) < N / 3
    assert rows != plan_rows(0)


def test_costs_from_a_callable_once_per_dataset(data):
    seen = []

    def from_dataset(d: ps.Dataset):
        seen.append(len(d))
        return costs(len(d))

    ds = dataset(data, pack=packing(costs=from_dataset))
    rows, _ = read(ds)
    assert rows == plan_rows(0) and seen == [N]


def test_ranks_get_equal_rows(data):
    n = len(plan_rows(0))
    for world in (2, 3, 4):
        per_rank = []
        for rank in range(world):
            rows, _ = read(dataset(data, rank=rank, world_size=world))
            per_rank.append(rows)
        assert {len(r) for r in per_rank} == {-(-n // world)}
        # Rank r reads rows r, r + W, ... (the first rows again where the last step is short).
        plan = plan_rows(0)
        for rank, rows in enumerate(per_rank):
            assert rows == [plan[(i * world + rank) % n] for i in range(len(rows))]


def test_resume_on_1_then_3_then_2_ranks_reads_exactly_the_rest(data):
    plan = plan_rows(0)
    # One rank reads 4 steps.
    rows, loader = read(dataset(data), steps=4)
    state = loader.state_dict()
    assert state["position"] == 4 * 3 and state["pack"]["max_tokens"] == MAX_TOKENS
    read_rows = list(rows)
    # Three ranks, each with 2 DataLoader workers, read 3 steps each.
    states = []
    for rank in range(3):
        ds = dataset(data, rank=rank, world_size=3)
        ds.load_state_dict(state)
        rows, loader = read(ds, num_workers=2, steps=3)
        assert len(rows) == 9
        read_rows.extend(rows)
        states.append(loader.state_dict())
    assert all(s == states[0] for s in states)
    assert states[0]["position"] == 12 + 27
    # Two ranks finish the epoch.
    tail = []
    for rank in range(2):
        ds = dataset(data, rank=rank, world_size=2)
        ds.load_state_dict(states[0])
        rows, _ = read(ds)
        tail.append(rows)
    assert len(tail[0]) == len(tail[1])
    read_rows.extend(tail[0] + tail[1])
    counts = Counter(read_rows)
    assert set(counts) == set(plan)
    # Only padding repeats: at most one row, and only when the rest was odd.
    repeats = sum(c - 1 for c in counts.values())
    assert repeats == (len(plan) - 39) % 2
    assert sorted(set(i for row in read_rows for i in row)) == list(range(N))


def test_state_of_other_packing_is_refused(data):
    state = dataset(data).state_dict()
    other = dataset(data, pack=packing(window=64))
    with pytest.raises(ValueError, match="packing"):
        other.load_state_dict(state)
    unpacked = ps.StreamingDataset(data, seed=3, columns=["id"])
    with pytest.raises(ValueError, match="packing"):
        unpacked.load_state_dict(state)


def test_bad_arguments_are_refused(data):
    with pytest.raises(ValueError, match="batch_size"):
        dataset(data, batch_size=4)
    with pytest.raises(ValueError, match="costs for a dataset of 400 rows"):
        dataset(data, pack=packing(costs=costs(399)))
    with pytest.raises(ValueError, match="400 token costs but 399 crop costs"):
        ps.Packing(10, 2, 1, (TOKENS, CROPS[:-1]))
    with pytest.raises(ValueError, match="max_tokens"):
        ps.Packing(0, 2, 1, (TOKENS, CROPS))
    with pytest.raises(ValueError, match="batch_size=None"):
        ps.DataLoader(dataset(data), batch_size=4)


def damage_caption_chunk(path: Path, group: int) -> None:
    shard = next(iter(sorted(path.glob("*.pxs"))))
    sh = purepy.Shard(str(shard))
    chunk = sh.row_groups[group][1][sh.column_index("caption")]
    blob = bytearray(shard.read_bytes())
    blob[chunk["offset"] + chunk["stored_len"] // 2] ^= 0x21
    shard.write_bytes(bytes(blob))


def test_bad_samples_are_replaced_in_their_row_and_ranks_stay_in_step(tmp_path):
    path = write(tmp_path / "ds")
    damage_caption_chunk(tmp_path / "ds", 3)  # rows 60..79
    bad_rows = set(range(60, 80))
    plan = plan_rows(0)
    per_rank, replaced = [], []
    for rank in range(2):
        ds = ps.StreamingDataset(
            path,
            seed=3,
            pack=packing(),
            on_bad_sample="replace",
            rank=rank,
            world_size=2,
            collate_fn=lambda rows: {"rows": rows},
        )
        steps = list(ps.DataLoader(ds, num_workers=0))
        per_rank.append([[tuple(int(r["id"]) for r in row) for row in s["rows"]] for s in steps])
        replaced.extend(b for s in steps for b in s["bad_samples"])
        assert ds.bad_samples == sum(len(s["bad_samples"]) for s in steps)
    # Both ranks take the same steps of the same row counts; each row keeps its size.
    assert [len(s) for s in per_rank[0]] == [len(s) for s in per_rank[1]]
    n = len(plan)
    for rank in (0, 1):
        got = [row for s in per_rank[rank] for row in s]
        want = [plan[(i * 2 + rank) % n] for i in range(-(-n // 2))]
        assert [len(r) for r in got] == [len(r) for r in want]
        # Rows without a bad example are read as planned.
        assert all(g == w for g, w in zip(got, want, strict=True) if not set(w) & bad_rows)
    rows = [row for rank in (0, 1) for s in per_rank[rank] for row in s]
    assert {b.row for b in replaced} == bad_rows
    for b in replaced:
        # The replacement fits where the bad example was, so no row goes over its budgets.
        assert TOKENS[b.replacement] <= TOKENS[b.row] and CROPS[b.replacement] <= CROPS[b.row]
    assert not bad_rows & {i for row in rows for i in row}
    check_budgets(rows)


def sample_ids(ds, num_workers: int = 0) -> dict[int, tuple[int, int, int]]:
    out = {}
    for step in ps.DataLoader(ds, num_workers=num_workers):
        for row in step:
            for r in row:
                out[int(r["id"])] = r[ps.SAMPLE_KEY]
    return out


def test_sample_ids_are_the_same_on_every_layout(data):
    ds = dataset(data, sample_ids=True)
    ds.set_epoch(2)
    one = sample_ids(ds)
    assert one == {i: (0, i, 2) for i in range(N)}
    split = {}
    for rank in range(2):
        ds = dataset(data, sample_ids=True, rank=rank, world_size=2)
        ds.set_epoch(2)
        split.update(sample_ids(ds, num_workers=2))
    assert split == one


def test_sample_ids_unpacked_count_through_paths(tmp_path):
    a = write(tmp_path / "a", 30)
    b = write(tmp_path / "b", 20)
    ds = ps.StreamingDataset([a, b], seed=1, sample_ids=True, batch_size=7)
    ids = [s for batch in ds for s in batch[ps.SAMPLE_KEY]]
    assert sorted(ids) == [(0, i, 0) for i in range(50)]


def test_mixture_sample_ids_name_source_row_and_epoch(tmp_path):
    srcs = [
        ps.StreamingDataset(write(tmp_path / "a", 30), seed=1),
        ps.StreamingDataset(write(tmp_path / "b", 50), seed=2),
    ]

    def draws(rank: int, world: int, workers: int):
        mix = ps.Mixture(
            srcs, [1, 1], seed=4, length=200, rank=rank, world_size=world, sample_ids=True
        )
        return [
            (r["__source__"], int(r["id"]), r[ps.SAMPLE_KEY])
            for r in ps.DataLoader(mix, num_workers=workers)
        ]

    one = draws(0, 1, 0)
    for source, row, sid in one:
        assert sid[:2] == (source, row)
    # Each source's epoch e holds each of its rows once; wrapping starts the next epoch.
    per = Counter(sid for _, _, sid in one)
    assert set(per.values()) == {1}
    for s, n in ((0, 30), (1, 50)):
        epochs = [sid[2] for src, _, sid in one if src == s]
        assert epochs == sorted(epochs) and epochs[-1] >= 1
        assert all(Counter(epochs)[e] == n for e in range(epochs[-1]))
    two = sorted(draws(0, 2, 2) + draws(1, 2, 0))
    assert two == sorted(one)


def test_stateful_dataloader_resumes_each_worker(data):
    stateful = pytest.importorskip("torchdata.stateful_dataloader")

    def loader():
        ds = dataset(data)
        return stateful.StatefulDataLoader(ds, batch_size=None, num_workers=2)

    whole = [rows_of(s) for s in loader()]
    assert len(whole) == len(dataset(data))
    first = loader()
    it = iter(first)
    head = [rows_of(next(it)) for _ in range(3)]
    state = first.state_dict()
    del it
    again = loader()
    again.load_state_dict(state)
    assert head + [rows_of(s) for s in again] == whole


def test_bench_costs_and_molmo2_baseline_run():
    # benches/packing.py's cost model and its Molmo2 baseline, on a few examples (so the
    # bench cannot rot): Molmo's crop counts, and both packers keep every example.
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benches import packing as bench

    tokens, crops = bench.mix_costs(bench.MIXES["Molmo-like mix"], 300, 0)
    assert 2 <= crops.min() and crops.max() <= 13 and tokens.min() > 100
    rows = bench.molmo2_rows(tokens, crops, 128, buffer=16)
    plan, _ = bench.plan(tokens, crops, 128, 16384)
    bound = max(-(-int(tokens.sum()) // bench.MAX_TOKENS), -(-int(crops.sum()) // 128))
    assert bound <= plan.num_rows <= rows


def test_several_paths_pack_as_one(tmp_path):
    a = write(tmp_path / "a", 150)
    b = write(tmp_path / "b", 90)
    calls = []

    def from_dataset(d: ps.Dataset):
        calls.append(len(d))
        return costs(len(d))

    ds = ps.StreamingDataset([a, b], seed=1, pack=packing(costs=from_dataset), sample_ids=True)
    rows = [row for step in ds for row in step]
    ids = sorted(r[ps.SAMPLE_KEY] for row in rows for r in row)
    assert calls == [150, 90]
    assert ids == [(0, i, 0) for i in range(240)]
    t = np.concatenate([costs(150)[0], costs(90)[0]])
    for row in rows:
        if len(row) > 1:
            assert sum(int(t[r[ps.SAMPLE_KEY][1]]) for r in row) <= MAX_TOKENS
