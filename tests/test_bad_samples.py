"""The bad-sample policy: a damaged row group mid-epoch either stops the stream with an error
naming file, row group, column and row, or its rows are replaced deterministically (the same
replacements on every run, worker count and resumption) and counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pixmo_stream as ps  # noqa: E402
from pixmo_stream import purepy  # noqa: E402

N = 200
GROUP = 20
BAD_GROUP = 3  # rows 60..79


def write(path: Path) -> None:
    with ps.Writer(path, row_group_rows=GROUP) as w:
        for i in range(N):
            w.write({"id": i, "caption": f"caption of {i} " * 20, "pts": np.full((2, 2), i, "f4")})


def damage_caption_chunk(path: Path, group: int) -> None:
    shard = next(iter(sorted(path.glob("*.pxs"))))
    sh = purepy.Shard(str(shard))
    c = sh.column_index("caption")
    chunk = sh.row_groups[group][1][c]
    data = bytearray(shard.read_bytes())
    data[chunk["offset"] + chunk["stored_len"] // 2] ^= 0x21
    shard.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("bad") / "ds"
    write(path)
    damage_caption_chunk(path, BAD_GROUP)
    return str(path)


BAD_ROWS = set(range(BAD_GROUP * GROUP, (BAD_GROUP + 1) * GROUP))


def ids(batch) -> list[int]:
    return [int(x) for x in batch["id"]]


def run(ds, num_workers: int, limit: int | None = None):
    loader = ps.DataLoader(ds, num_workers=num_workers)
    seen, replaced = [], []
    for k, batch in enumerate(loader):
        seen.extend(ids(batch))
        replaced.extend(batch["bad_samples"])
        assert all(int(p[0, 0]) == i for p, i in zip(batch["pts"], batch["id"], strict=True))
        if limit is not None and k + 1 >= limit:
            break
    return seen, replaced, loader


def test_raise_names_file_row_group_column_and_row(damaged):
    ds = ps.StreamingDataset(damaged, seed=1, batch_size=16)
    with pytest.raises(ps.BadSampleError, match="caption") as e:
        list(ds)
    assert isinstance(e.value, ps.CorruptDataError)
    assert e.value.row_group == BAD_GROUP and e.value.column == "caption"
    assert e.value.row in BAD_ROWS and e.value.path.endswith(".pxs")
    assert f"row {e.value.row}" in str(e.value)
    # Without the damaged column, nothing damaged is read.
    assert len(list(ps.StreamingDataset(damaged, columns=["id"], batch_size=16))) == 13


@pytest.mark.parametrize("num_workers", [0, 2])
def test_replace_streams_every_other_row_and_counts_the_rest(damaged, num_workers):
    ds = ps.StreamingDataset(damaged, seed=1, batch_size=16, on_bad_sample="replace")
    seen, replaced, loader = run(ds, num_workers)
    assert len(seen) == N, "the epoch keeps its length"
    assert {b.row for b in replaced} == BAD_ROWS and len(replaced) == len(BAD_ROWS)
    assert all(b.row_group == BAD_GROUP and b.column == "caption" for b in replaced)
    assert all("corrupt data" in b.reason for b in replaced)
    assert not BAD_ROWS & set(seen)
    # Every good row once, plus one replacement (a good row) per bad one.
    extra = sorted(b.replacement for b in replaced)
    assert sorted(seen) == sorted(list(set(range(N)) - BAD_ROWS) + extra)
    assert ds.bad_samples == len(BAD_ROWS)
    assert loader.state_dict()["bad_samples"] == len(BAD_ROWS)
    if num_workers == 0:
        assert ds.bad_sample_log == replaced


def test_replacements_do_not_depend_on_workers_and_differ_by_epoch(damaged):
    def epoch(num_workers, e):
        ds = ps.StreamingDataset(damaged, seed=1, batch_size=16, on_bad_sample="replace")
        ds.set_epoch(e)
        seen, replaced, _ = run(ds, num_workers)
        return seen, sorted((b.row, b.replacement) for b in replaced)

    assert epoch(0, 0) == epoch(2, 0)
    assert epoch(0, 0)[1] != epoch(0, 1)[1]


@pytest.mark.parametrize("workers", [(2, 0), (0, 2), (2, 2)])
def test_resumption_is_exact_with_the_same_replacements(damaged, workers):
    full, full_bad, _ = run(
        ps.StreamingDataset(damaged, seed=4, batch_size=8, on_bad_sample="replace"), 0
    )
    ds = ps.StreamingDataset(damaged, seed=4, batch_size=8, on_bad_sample="replace")
    head, head_bad, loader = run(ds, workers[0], limit=9)
    state = json.loads(json.dumps(loader.state_dict()))
    assert state["position"] == len(head) == 72
    assert state["bad_samples"] == len(head_bad)
    ds2 = ps.StreamingDataset(damaged, seed=4, batch_size=8, on_bad_sample="replace")
    ds2.load_state_dict(state)
    tail, tail_bad, loader2 = run(ds2, workers[1])
    assert head + tail == full
    assert head_bad + tail_bad == full_bad
    assert loader2.state_dict()["bad_samples"] == len(BAD_ROWS)


def test_unbatched_records_and_mixtures_follow_the_policy(damaged, tmp_path):
    records = list(ps.StreamingDataset(damaged, seed=2, on_bad_sample="replace"))
    assert len(records) == N and not BAD_ROWS & {r["id"] for r in records}
    good = tmp_path / "good"
    write(good)
    sources = [ps.StreamingDataset(damaged, seed=5), ps.StreamingDataset(str(good), seed=6)]
    mix = ps.Mixture(sources, [0.5, 0.5], length=400, batch_size=20, on_bad_sample="replace")
    batches = list(ps.DataLoader(mix, num_workers=2))
    replaced = [b for batch in batches for b in batch["bad_samples"]]
    assert sum(len(batch["id"]) for batch in batches) == 400
    assert replaced and all(b.source == 0 and b.row in BAD_ROWS for b in replaced)
    assert mix.state_dict()["bad_samples"] == len(replaced) == mix.bad_samples
    with pytest.raises(ps.BadSampleError):
        list(ps.Mixture(sources, [0.5, 0.5], length=400, batch_size=20))


def test_policy_arguments_are_checked(damaged):
    with pytest.raises(ValueError, match="on_bad_sample"):
        ps.StreamingDataset(damaged, on_bad_sample="skip")
    with pytest.raises(ValueError, match="max_replacements"):
        ps.StreamingDataset(damaged, on_bad_sample="replace", max_replacements=0)
    # The default policy leaves the state as it was.
    assert "bad_samples" not in ps.StreamingDataset(damaged).state_dict()
