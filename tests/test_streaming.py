"""StreamingDataset and pixmo_stream.DataLoader: splitting, epochs, exact elastic resumption."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pixmo_stream as ps  # noqa: E402

N = 61  # rows; prime, so no world size divides it


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "ds"
    with ps.Writer(path, row_group_rows=6, shard_bytes=1 << 11) as w:
        for i in range(N):
            w.write({"id": i, "text": f"t{i}", "points": np.full((i % 3, 2), i, np.float32)})
    return str(path)


def ids_of(item):
    if isinstance(item, dict) and isinstance(item["id"], torch.Tensor):
        return [int(x) for x in item["id"]]
    return [int(item["id"])]


def run_rank(ds, num_workers, batch_size=None, limit=None, **kw):
    """Iterate one rank's DataLoader; returns (ids in the order seen, loader)."""
    loader = ps.DataLoader(ds, batch_size=batch_size, num_workers=num_workers, **kw)
    seen = []
    for i, item in enumerate(loader):
        seen.extend(ids_of(item))
        if limit is not None and i + 1 >= limit:
            break
    return seen, loader


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("remainder", ["pad", "drop"])
def test_epoch_covers_every_sample(data, world, remainder):
    per_rank = []
    for rank in range(world):
        workers = (rank + world) % 4  # 0-3 workers across the matrix
        ds = ps.StreamingDataset(
            data, seed=3, rank=rank, world_size=world, remainder=remainder, read_threads=1
        )
        seen, _ = run_rank(ds, workers, batch_size=2 if rank % 2 else None)
        per_rank.append(seen)
    lengths = {len(s) for s in per_rank}
    assert len(lengths) == 1, "every rank yields the same number of samples"
    everything = [i for s in per_rank for i in s]
    if remainder == "drop":
        assert len(everything) == N - N % world
        assert len(set(everything)) == len(everything)
    else:
        assert len(everything) == -(-N // world) * world
        assert set(everything) == set(range(N))
        assert len(everything) - len(set(everything)) < world


def test_order_does_not_depend_on_workers(data):
    orders = []
    for workers in (0, 1, 3):
        ds = ps.StreamingDataset(data, seed=5, rank=0, world_size=1)
        orders.append(run_rank(ds, workers, batch_size=4)[0])
    assert orders[0] == orders[1] == orders[2]
    assert sorted(orders[0]) == list(range(N))
    assert orders[0] != list(range(N))


def test_spawn_workers_give_the_same_epoch(data):
    """The spawn start method pickles the dataset into fresh interpreters (no fork)."""
    ds = ps.StreamingDataset(data, seed=5, rank=0, world_size=1)
    want = run_rank(ds, 0, batch_size=4)[0]
    ds = ps.StreamingDataset(data, seed=5, rank=0, world_size=1)
    got = run_rank(ds, 2, batch_size=4, multiprocessing_context="spawn")[0]
    assert got == want and sorted(got) == list(range(N))


def test_epochs_and_seeds(data):
    def order(seed, epoch):
        ds = ps.StreamingDataset(data, seed=seed, shuffle_window=12)
        ds.set_epoch(epoch)
        return [r["id"] for r in ds]

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)
    assert [r["id"] for r in ps.StreamingDataset(data, shuffle=False)] == list(range(N))


def test_batches_and_columns(data):
    ds = ps.StreamingDataset(data, batch_size=8, columns=["id", "points"], seed=0)
    batches = list(ds)
    assert [len(b["id"]) for b in batches] == [8] * 7 + [5]
    b = batches[0]
    # An inferred schema's fields are nullable: "id" comes with its mask (all True here).
    assert set(b) == {"id", "id_mask", "points", "points_mask"} and b["id_mask"].all()
    assert b["points"].shape[0] == 8 and b["points"].shape[2] == 2
    for i, pid in enumerate(b["id"].tolist()):
        assert int(b["points_mask"][i].sum()) == pid % 3


def test_no_thread_before_iteration(data):
    import os

    def threads():
        return len(os.listdir("/proc/self/task"))

    before = threads()
    ds = ps.StreamingDataset(data, batch_size=1, read_threads=2, read_ahead=1)
    it = iter(ds)
    assert threads() == before
    next(it)
    assert threads() > before
    it.close()  # stops and joins the read threads
    assert threads() == before


@pytest.mark.parametrize("trial", range(4))
def test_resume_elastic(data, trial):
    rng = random.Random(trial)
    world1, world2 = rng.randint(1, 4), rng.randint(1, 4)
    workers1, workers2 = rng.randint(0, 2), rng.randint(0, 2)
    batch = rng.choice([None, 1, 3])
    epoch = rng.randint(0, 5)
    first, states = [], []
    stop = rng.randint(0, -(-N // world1) // (batch or 1))
    for rank in range(world1):
        ds = ps.StreamingDataset(data, seed=7, rank=rank, world_size=world1, batch_size=batch)
        ds.set_epoch(epoch)
        seen, loader = run_rank(ds, workers1, limit=stop) if stop else ([], None)
        first.extend(seen)
        states.append(json.loads(json.dumps((loader if loader is not None else ds).state_dict())))
    assert all(s == states[0] for s in states)
    second = []
    for rank in range(world2):
        ds = ps.StreamingDataset(data, seed=7, rank=rank, world_size=world2, batch_size=batch)
        ds.load_state_dict(states[0])
        ds.set_epoch(epoch)  # the training loop's call keeps the loaded state
        second.extend(run_rank(ds, workers2)[0])
    everything = first + second
    assert set(everything) == set(range(N)), "nothing lost"
    assert len(everything) - N < world1 + world2, "repeats only from padding"
    if stop == 0:
        assert len(everything) == -(-N // world2) * world2


def test_resume_in_process_exact(data):
    ds = ps.StreamingDataset(data, seed=11, remainder="drop")
    it = iter(ds)
    head = [next(it)["id"] for _ in range(17)]
    state = ds.state_dict()
    assert state["position"] == 17
    ds2 = ps.StreamingDataset(data, seed=11, remainder="drop")
    ds2.load_state_dict(state)
    tail = [r["id"] for r in ds2]
    assert sorted(head + tail) == list(range(N))


def test_persistent_workers_follow_epochs(data):
    ds = ps.StreamingDataset(data, seed=2, batch_size=5)
    loader = ps.DataLoader(ds, num_workers=2, persistent_workers=True)
    reference = ps.StreamingDataset(data, seed=2, batch_size=5)
    for epoch in (0, 1, 3):
        loader.set_epoch(epoch)
        reference.set_epoch(epoch)
        got = [i for b in loader for i in ids_of(b)]
        assert got == [i for b in reference for i in ids_of(b)]


def test_mismatched_state_is_rejected(data):
    ds = ps.StreamingDataset(data, seed=1)
    state = ds.state_dict()
    other = ps.StreamingDataset(data, seed=2)
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(state)


def test_collate_pads_and_keeps_strings():
    batch = ps.collate(
        [
            {"a": 1, "f": 0.5, "s": "x", "p": np.zeros((2, 2), np.float32), "b": True},
            {"a": 2, "f": 1.5, "s": "y", "p": np.ones((0, 2), np.float32), "b": False},
        ]
    )
    assert batch["a"].tolist() == [1, 2]
    assert batch["s"] == ["x", "y"]
    assert batch["p"].shape == (2, 2, 2)
    assert batch["p_mask"].tolist() == [[True, True], [False, False]]
    assert batch["b"].dtype == torch.bool
