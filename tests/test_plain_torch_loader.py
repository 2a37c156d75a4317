"""A plain `torch.utils.data.DataLoader` over a StreamingDataset or Mixture: the set-ups that
work give the right shapes, the ones that would batch twice (or hit torch's default_collate
with records of different lengths) are refused at the first batch, saying what to pass."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pixmo_stream as ps  # noqa: E402

DataLoader = torch.utils.data.DataLoader


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain") / "ds"
    with ps.Writer(path, row_group_rows=8) as w:
        for i in range(24):
            w.write({"id": i, "points": np.full((1 + i % 3, 2), i, np.float32)})
    return path


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("loader_batch", [{}, {"batch_size": 4}])
def test_batching_twice_is_refused(data, num_workers, loader_batch):
    ds = ps.StreamingDataset(data, batch_size=8)
    loader = DataLoader(ds, num_workers=num_workers, **loader_batch)
    with pytest.raises(Exception, match=r"pass batch_size=None") as e:
        next(iter(loader))
    assert "StreamingDataset(batch_size=8) yields finished batches" in str(e.value)


def test_dataset_batches_loader_passes_through(data):
    ds = ps.StreamingDataset(data, batch_size=8, shuffle=False)
    batches = list(DataLoader(ds, batch_size=None))
    assert [b["id"].shape for b in batches] == [(8,)] * 3
    assert batches[0]["points"].shape == (8, 3, 2)  # padded to the longest, no leading 1
    assert sorted(int(i) for b in batches for i in b["id"]) == list(range(24))


def test_default_collate_over_records_of_different_lengths_is_refused(data):
    ds = ps.StreamingDataset(data)
    with pytest.raises(
        ValueError, match=r"points vary in length.*collate_fn=pixmo_stream\.collate"
    ):
        next(iter(DataLoader(ds, batch_size=4)))
    mix = ps.Mixture([ps.StreamingDataset(data)], [1.0], length=8)
    with pytest.raises(ValueError, match="Mixture: points vary in length"):
        next(iter(DataLoader(mix, batch_size=4)))


def test_records_with_pixmo_collate_or_fixed_shapes_work(data, tmp_path):
    ds = ps.StreamingDataset(data, shuffle=False)
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=ps.collate)))
    assert batch["id"].tolist() == [0, 1, 2, 3]
    assert batch["points"].shape == (4, 3, 2)
    # Only fixed-size fields read: torch's default_collate stacks them as it would anything.
    only_ids = ps.StreamingDataset(data, shuffle=False, columns=["id"])
    assert next(iter(DataLoader(only_ids, batch_size=4)))["id"].tolist() == [0, 1, 2, 3]
    # Records one at a time (batch_size=None) are passed on as they are.
    rec = next(iter(DataLoader(ds, batch_size=None)))
    assert rec["points"].shape == (1, 2)


def test_pixmo_loader_is_unaffected(data):
    ds = ps.StreamingDataset(data, shuffle=False)
    batches = list(ps.DataLoader(ds, batch_size=6, num_workers=0))
    assert [b["id"].shape[0] for b in batches] == [6] * 4
    batched = ps.StreamingDataset(data, batch_size=6)
    assert sum(b["id"].shape[0] for b in ps.DataLoader(batched, num_workers=0)) == 24
