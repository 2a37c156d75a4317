"""Decoded arrays cross from DataLoader workers to the main process as references to shared
memory, not as pickled bytes: whether the default collate or the user's `collate_fn` batches
them, the main process gets the same values as without workers, and no shared memory is left
behind when the loader ends or a worker is killed."""

from __future__ import annotations

import gc
import io
import os
import signal
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pixmo_stream.image")

from PIL import Image  # noqa: E402

import pixmo_stream as ps  # noqa: E402

N = 40
MEMFD = "memfd:pixmo-stream-batch"


def jpeg(i: int) -> bytes:
    h, w = 40 + (i * 7) % 50, 50 + (i * 13) % 60
    yy, xx = np.mgrid[0:h, 0:w]
    px = np.stack([(xx * 3 + i) % 256, (yy * 5 + 2 * i) % 256, (xx + yy) % 256], -1)
    buf = io.BytesIO()
    Image.fromarray(px.astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    path = tmp_path_factory.mktemp("transport") / "ds"
    with ps.Writer(path, row_group_rows=8) as w:
        for i in range(N):
            w.write({"id": i, "image": jpeg(i)})
    return str(path)


def as_records(batch: list[dict]) -> list[dict]:
    return batch


def stream(
    photos: str, workers: int, decode, *, user: bool, loader_batches: bool = False, **kwargs
):
    collate = as_records if user else None
    # (worker processes, also where pixmo_stream.DataLoader would read in this process)
    kwargs.setdefault("in_process", False)
    if loader_batches:
        ds = ps.StreamingDataset(photos, seed=3, decode=decode)
        if user:
            kwargs["collate_fn"] = collate
        return ps.DataLoader(ds, batch_size=8, num_workers=workers, **kwargs)
    ds = ps.StreamingDataset(photos, seed=3, batch_size=8, decode=decode, collate_fn=collate)
    return ps.DataLoader(ds, num_workers=workers, **kwargs)


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert type(b) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


class Received:
    """Bytes the main process unpickles from its workers (torch's result queue)."""

    def __init__(self, monkeypatch):
        self.bytes = 0
        loads = ForkingPickler.loads

        def counting(data, *args, **kwargs):
            self.bytes += len(data)
            return loads(data, *args, **kwargs)

        monkeypatch.setattr(ForkingPickler, "loads", counting)


def pixel_bytes(batches) -> int:
    total = 0
    for b in batches:
        for r in b if isinstance(b, list) else [b]:
            for v in r.values():
                for x in v if isinstance(v, list) else [v]:
                    if isinstance(x, (np.ndarray, torch.Tensor)):
                        total += x.nbytes
    return total


def memfd_maps() -> list[str]:
    gc.collect()  # (a loader left unfinished may sit in a reference cycle until then)
    with open("/proc/self/maps") as f:
        return [line for line in f if MEMFD in line]


@pytest.mark.parametrize("loader_batches", [False, True], ids=["dataset batches", "loader"])
@pytest.mark.parametrize("decode", ["rgb", ps.Decode(resize=(32, 48))], ids=["rgb", "resize"])
def test_a_user_collate_fns_arrays_arrive_unpickled_and_equal(
    photos, decode, loader_batches, monkeypatch
):
    expected = list(stream(photos, 0, decode, user=True, loader_batches=loader_batches))
    received = Received(monkeypatch)
    got = list(stream(photos, 2, decode, user=True, loader_batches=loader_batches))
    assert_same(expected, got)
    pixels = pixel_bytes(got)
    assert pixels > 100_000
    # The records' other values and the references: a few hundred bytes a record.
    assert received.bytes < pixels / 10, (received.bytes, pixels)


def test_spawned_workers_send_references_too(photos, monkeypatch):
    expected = list(stream(photos, 0, "rgb", user=True))
    received = Received(monkeypatch)
    got = list(stream(photos, 2, "rgb", user=True, multiprocessing_context="spawn"))
    assert_same(expected, got)
    assert received.bytes < pixel_bytes(got) / 10


def test_a_child_forked_while_a_batch_lives_does_not_release_it(photos):
    """Only the receiving process tells the worker a batch is dropped: a process forked from
    it (the workers of another loader) exits without doing so, and the batch stays intact."""
    decode = ps.Decode(resize=(32, 48))
    loader = stream(photos, 2, decode, user=False, persistent_workers=True)
    kept = list(loader)
    pid = os.fork()
    if pid == 0:
        del kept
        gc.collect()
        os._exit(0)
    os.waitpid(pid, 0)
    loader.set_epoch(1)  # (the same workers, reading another order into what is released)
    for _ in loader:
        pass
    assert_same(list(stream(photos, 0, decode, user=False)), kept)


@pytest.mark.parametrize("loader_batches", [False, True], ids=["dataset batches", "loader"])
@pytest.mark.parametrize("decode", ["rgb", ps.Decode(resize=(32, 48))], ids=["rgb", "resize"])
def test_default_collate_with_workers_equals_without(photos, decode, loader_batches):
    expected = stream(photos, 0, decode, user=False, loader_batches=loader_batches)
    got = stream(photos, 2, decode, user=False, loader_batches=loader_batches)
    # Compared as they come and dropped: the workers reuse the memory of dropped batches.
    n = 0
    for a, b in zip(expected, got, strict=True):
        assert_same(a, b)
        n += 1
    assert n == N // 8


def in_worker_memory(t) -> bool:
    """Whether a tensor's bytes lie in a worker's shared-memory file mapped here."""
    for line in memfd_maps():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= t.data_ptr() and t.data_ptr() + t.nbytes <= hi:
            return True
    return False


@pytest.mark.parametrize("decode", ["rgb", ps.Decode(resize=(32, 48))], ids=["rgb", "resize"])
def test_the_default_collates_images_arrive_in_the_workers_memory(photos, decode):
    """One file a batch, made or filled by the worker, not a copy of each image into a
    shared-memory file of its own (torch's way)."""
    batch = next(iter(stream(photos, 2, decode, user=False)))
    images = batch["image"] if isinstance(batch["image"], list) else [batch["image"]]
    assert all(in_worker_memory(t) for t in images)
    assert len({line.split()[-2] for line in memfd_maps()}) == 1  # (one file: one inode)


def test_batches_kept_are_not_overwritten_by_later_ones(photos):
    """A worker reuses a batch's memory only once the main process has dropped it."""
    decode = ps.Decode(resize=(32, 48))
    kept = list(stream(photos, 2, decode, user=False))
    for _ in range(2):  # later epochs, while the first one's batches are alive
        for _ in stream(photos, 2, decode, user=False):
            pass
    assert_same(list(stream(photos, 0, decode, user=False)), kept)


def test_molmo_batches_with_workers_equal_without(photos):
    from pixmo_stream.image import MolmoConfig

    decode = ps.Decode(molmo=MolmoConfig(exact=False, normalize=False, max_crops=2))
    for user in (False, True):
        expected = list(stream(photos, 0, decode, user=user))
        assert_same(expected, list(stream(photos, 2, decode, user=user)))


def named_shm(pids: set[int]) -> list[str]:
    """Names in /dev/shm made by these processes (torch's names hold the pid) or by us."""
    names = os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []
    return [n for n in names if "pixmo" in n or any(f"_{p}_" in n for p in pids)]


def test_no_shared_memory_is_left_when_the_loader_ends(photos):
    loader = stream(photos, 2, "rgb", user=True)
    it = iter(loader)
    batches = [next(it)]
    pids = {os.getpid()} | {w.pid for w in it.gi_frame.f_locals["it"]._workers}
    batches += list(it)
    assert memfd_maps()  # (the batches lie in the workers' memory)
    del batches, it
    assert memfd_maps() == []
    assert named_shm(pids) == []


def test_no_shared_memory_is_left_when_a_worker_is_killed(photos):
    loader = stream(photos, 2, "rgb", user=True)
    it = iter(loader)
    first = next(it)
    workers = it.gi_frame.f_locals["it"]._workers
    pids = {os.getpid()} | {w.pid for w in workers}
    os.kill(workers[0].pid, signal.SIGKILL)
    # torch names the dead worker; or, when its death is not visible yet, the batch it was
    # sending fails to arrive (as with torch's own shared tensors).
    with pytest.raises((RuntimeError, ConnectionError, EOFError)):
        for _ in it:
            pass
    assert_same(list(stream(photos, 0, "rgb", user=True))[0], first)
    del first, it
    # The files have no name: the dead worker's pages went with it, nothing is in /dev/shm.
    # (A batch torch's signal handler interrupted while it was being unpickled here may stay
    # mapped in this process until it exits.)
    assert named_shm(pids) == []
    assert len(memfd_maps()) <= 1
    # Later loaders are not disturbed.
    expected = list(stream(photos, 0, "rgb", user=True))
    assert_same(expected, list(stream(photos, 2, "rgb", user=True)))


def test_copies_can_be_forced(photos, monkeypatch):
    monkeypatch.setenv("PIXMO_STREAM_WORKER_IPC", "copy")
    received = Received(monkeypatch)
    before = memfd_maps()
    got = list(stream(photos, 2, "rgb", user=True))
    assert received.bytes > pixel_bytes(got)
    assert memfd_maps() == before


def test_molmo_batches_from_workers_are_written_once_in_shared_memory(tmp_path, monkeypatch):
    """`molmo.Batches` collates straight into the worker's shared memory: every tensor of the
    batch lies in it, nothing of the crops is pickled, and the batches equal those made
    without workers."""
    pytest.importorskip("tokenizers")
    from molmo_fixtures import bpe, write_preset
    from pixmo_stream import molmo

    anns = [{"captions": [f"A dog number {i}."], "transcripts": [["um a dog"]]} for i in range(8)]
    cap = write_preset(tmp_path / "cap", "pixmo-cap", anns)
    batches = molmo.Batches(molmo.MolmoTokenizer(bpe()), molmo.Formatter("pixmo-cap"))

    def loader(workers: int):
        ds = batches.stream(str(cap), batch_size=4, shuffle=False)
        return ps.DataLoader(ds, num_workers=workers)

    expected = list(loader(0))
    received = Received(monkeypatch)
    got = list(loader(2))
    assert_same(expected, got)
    for b in got:
        assert all(in_worker_memory(t) for t in b.values()), [
            k for k, t in b.items() if not in_worker_memory(t)
        ]
    crops = sum(b["images"].nbytes for b in got)
    assert received.bytes < crops / 100, (received.bytes, crops)
    # The crops are where the worker's read-ahead wrote them (a file of their own), not a
    # copy in the file the rest of the batch was collated into.
    for b in got:
        assert memfd_inode(b["images"]) != memfd_inode(b["input_ids"])


def memfd_inode(t) -> str:
    """The inode of the worker's shared-memory file a tensor lies in."""
    for line in memfd_maps():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= t.data_ptr() and t.data_ptr() + t.nbytes <= hi:
            return line.split()[4]
    raise AssertionError("not in a worker's shared memory")


def test_molmo_batches_from_workers_kept_or_dropped_are_those_made_without(tmp_path):
    """A worker's read-ahead reuses a shared crops file only once the main process has
    dropped every batch over it: batches kept stay intact while later ones are made, and
    batches dropped as they come (their files reused) are still the right ones."""
    pytest.importorskip("tokenizers")
    from molmo_fixtures import bpe, write_preset
    from pixmo_stream import molmo

    anns = [{"captions": [f"A cow number {i}."], "transcripts": [["um a cow"]]} for i in range(40)]
    cap = write_preset(tmp_path / "cap", "pixmo-cap", anns)
    batches = molmo.Batches(molmo.MolmoTokenizer(bpe()), molmo.Formatter("pixmo-cap"))

    def loader(workers: int):
        ds = batches.stream(str(cap), batch_size=2, seed=3)
        return ps.DataLoader(ds, num_workers=workers, in_process=False)

    expected = list(loader(0))
    kept = list(loader(2))  # (20 batches alive: more than a worker keeps files for)
    for _ in range(2):
        for b, want in zip(loader(2), expected, strict=True):
            assert_same(want, b)
            del b
    assert_same(expected, kept)
