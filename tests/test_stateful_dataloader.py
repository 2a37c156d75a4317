"""torchdata's StatefulDataLoader checkpoints each worker's own stream: resuming with the same
number of workers continues exactly where every worker was (pixmo_stream.DataLoader is the one
whose checkpoints also resume on other numbers of ranks and workers)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
stateful = pytest.importorskip("torchdata.stateful_dataloader")

import pixmo_stream as ps  # noqa: E402

N = 53


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("stateful") / "ds"
    with ps.Writer(path, row_group_rows=5, shard_bytes=1 << 11) as w:
        for i in range(N):
            w.write({"id": i, "points": np.full((i % 3, 2), i, np.float32)})
    return str(path)


def ids(batch) -> list[int]:
    return [int(x) for x in batch["id"]]


def run(loader, limit=None):
    out = []
    for i, batch in enumerate(loader):
        out.append(ids(batch))
        if limit is not None and i + 1 >= limit:
            break
    return out


@pytest.mark.parametrize("workers", [0, 1, 3])
@pytest.mark.parametrize("batched_by", ["dataset", "loader"])
@pytest.mark.parametrize("stop_after", [1, 4, 7])
def test_resume_continues_every_worker_exactly(data, workers, batched_by, stop_after):
    def make():
        if batched_by == "dataset":
            ds = ps.StreamingDataset(data, seed=5, batch_size=4, read_threads=1)
            return stateful.StatefulDataLoader(ds, batch_size=None, num_workers=workers)
        ds = ps.StreamingDataset(data, seed=5, read_threads=1)
        return stateful.StatefulDataLoader(
            ds, batch_size=4, num_workers=workers, collate_fn=ps.collate
        )

    full = run(make())
    assert sorted(i for b in full for i in b) == list(range(N))
    loader = make()
    before = run(loader, limit=stop_after)
    state = loader.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    after = run(resumed)
    assert before + after == full


def test_resume_with_other_worker_count_is_refused(data):
    ds = ps.StreamingDataset(data, seed=1, batch_size=4)
    loader = stateful.StatefulDataLoader(ds, batch_size=None, num_workers=2)
    run(loader, limit=3)
    state = loader.state_dict()
    other = stateful.StatefulDataLoader(
        ps.StreamingDataset(data, seed=1, batch_size=4), batch_size=None, num_workers=1
    )
    with pytest.raises(Exception, match="same num_workers"):
        other.load_state_dict(state)
        run(other)


def test_mixture_resumes_the_same_stream(data):
    def make():
        mix = ps.Mixture(
            [ps.StreamingDataset(data, seed=1), ps.StreamingDataset(data, seed=2)],
            [0.7, 0.3],
            seed=9,
            length=40,
            batch_size=4,
        )
        return stateful.StatefulDataLoader(mix, batch_size=None, num_workers=2)

    full = run(make())
    loader = make()
    before = run(loader, limit=3)
    state = loader.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert before + run(resumed) == full
