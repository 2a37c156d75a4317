"""Mixture: rates, per-source sampling without replacement, worker independence, resumption."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

import pixmo_stream as ps  # noqa: E402

SIZES = [20, 45, 9]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    paths = []
    for s, n in enumerate(SIZES):
        path = tmp_path_factory.mktemp(f"mix{s}") / "ds"
        with ps.Writer(path, row_group_rows=4) as w:
            for i in range(n):
                w.write({"id": i, "src": s})
        paths.append(str(path))
    return paths


def mixture(paths, rates, **kw):
    return ps.Mixture([ps.StreamingDataset(p, seed=i) for i, p in enumerate(paths)], rates, **kw)


def keys(records):
    return [(int(r["__source__"]), int(r["id"])) for r in records]


def test_rates_match(sources):
    rates = [0.5, 0.3, 0.2]
    m = mixture(sources, rates, seed=1, length=6000)
    got = keys(m)
    assert len(got) == 6000
    for s, r in enumerate(rates):
        n = sum(1 for g in got if g[0] == s)
        sd = math.sqrt(6000 * r * (1 - r))
        assert abs(n - 6000 * r) < 5 * sd
    assert m.source_counts() == [sum(1 for g in got if g[0] == s) for s in range(3)]
    # Each source is drawn without replacement within each of its epochs.
    for s, size in enumerate(SIZES):
        ids = [i for src, i in got if src == s]
        for k in range(0, len(ids) - size, size):
            assert sorted(ids[k : k + size]) == list(range(size))


def test_independent_of_workers_and_resumable(sources):
    rates = [1.0, 2.0, 1.0]
    ref = keys(mixture(sources, rates, seed=4, length=90))
    loader = ps.DataLoader(mixture(sources, rates, seed=4, length=90), batch_size=7, num_workers=2)
    got = []
    for b in loader:
        got.extend(zip(b["__source__"], b["id"].tolist(), strict=True))
    assert got == ref
    # Stop after 3 batches, resume on 2 ranks with 1 worker each.
    m = mixture(sources, rates, seed=4, length=90)
    loader = ps.DataLoader(m, batch_size=7, num_workers=2)
    head = []
    for i, b in enumerate(loader):
        head.extend(zip(b["__source__"], b["id"].tolist(), strict=True))
        if i == 2:
            break
    state = json.loads(json.dumps(loader.state_dict()))
    assert state["position"] == 21
    tail = []
    for rank in range(2):
        m2 = mixture(sources, rates, seed=4, length=69, rank=rank, world_size=2)
        m2.load_state_dict(state)
        tail.append(keys(m2))
    merged = [x for pair in zip(*tail, strict=True) for x in pair]
    assert head + merged[:69] == ref[:21] + ref[21:90]


def test_passes_continue_the_stream(sources):
    m = mixture(sources, [1, 1, 1], seed=2, length=10)
    first = keys(m)
    second = keys(m)
    whole = keys(mixture(sources, [1, 1, 1], seed=2, length=20))
    assert first + second == whole


@pytest.mark.parametrize("world", [1, 3])
def test_len_counts_what_a_pass_yields(sources, world):
    """Samples unbatched; batches (the last one short) when the mixture batches, as for
    `StreamingDataset`, so that `len(loader)` is the number of steps."""
    for batch_size, workers in [(None, 0), (16, 0), (16, 2)]:
        m = mixture(
            sources, [1, 1, 1], length=100, batch_size=batch_size, rank=world - 1, world_size=world
        )
        got = list(ps.DataLoader(m, num_workers=workers))
        assert len(m) == len(got), (batch_size, workers)
    assert len(mixture(sources, [1, 1, 1], length=100, batch_size=16)) == 7


def test_root_size_rates():
    rates = ps.root_size_rates({"a": (0.6, {"x": 100, "y": 400}), "b": (0.4, {"z": 9})})
    assert rates["x"] == pytest.approx(0.6 * 10 / 30)
    assert rates["y"] == pytest.approx(0.6 * 20 / 30)
    assert rates["z"] == pytest.approx(0.4)
