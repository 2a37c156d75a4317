"""Reads release the GIL, and datasets work in forked and spawned worker processes."""

from __future__ import annotations

import multiprocessing as mp
import sys
import threading
import time

import numpy as np
import pytest

import pixmo_stream as ps


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "d"
    rng = np.random.default_rng(0)
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"])
    with ps.Writer(path, row_group_rows=256) as w:
        for i in range(4000):
            w.write({"i": i, "text": " ".join(rng.choice(words, 2000)), "blob": rng.bytes(2000)})
    return path


def test_verify_releases_the_gil(big):
    # No timing: with an hour-long switch interval the interpreter never takes the GIL from
    # the main thread, so the counter thread (which hands the GIL back after every tick) can
    # tick during verify() only if verify() releases the GIL itself. Held, it never ticks
    # there; released, it ticks as soon as the OS runs it (tried on up to 50 calls, so a
    # loaded machine that does not schedule it during one call cannot fail the test).
    ds = ps.Dataset(big)
    ticks = 0
    stop = threading.Event()
    started = threading.Event()

    def counter():
        nonlocal ticks
        started.set()
        while not stop.is_set():
            ticks += 1
            time.sleep(0)  # hands the GIL back

    old = sys.getswitchinterval()
    t = threading.Thread(target=counter)
    t.start()
    started.wait()
    sys.setswitchinterval(3600)
    try:
        during = 0
        for _ in range(50):
            before = ticks
            assert ds.verify().ok
            during = ticks - before
            if during:
                break
    finally:
        sys.setswitchinterval(old)
        stop.set()
        t.join()
    assert during > 0, "the counter never ran during verify(): the GIL was held"


def test_threads_read_in_parallel_and_agree(big):
    ds = ps.Dataset(big)
    want = [r["i"] for r in ds.iter(columns=["i"])]
    results: dict[int, list[int]] = {}
    barrier = threading.Barrier(4)

    def worker(k):
        barrier.wait()
        idx = list(range(k, len(ds), 4))
        results[k] = [r["i"] for r in ds.take(idx, columns=["i", "text"])]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert results[k] == want[k::4]


def _child_read(args):
    path, indices = args
    ds = ps.Dataset(path)
    return [(r["i"], len(r["text"]), r["blob"][:4]) for r in ds.take(indices)]


def _child_read_inherited(indices):
    return [(r["i"], len(r["text"]), r["blob"][:4]) for r in _INHERITED.take(indices)]


_INHERITED = None


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reading_in_worker_processes(big, method):
    ds = ps.Dataset(big)
    idx = [[3, 999, 3999], [0, 1, 2], [2048, 7]]
    want = [[(r["i"], len(r["text"]), r["blob"][:4]) for r in ds.take(i)] for i in idx]
    ctx = mp.get_context(method)
    with ctx.Pool(2) as pool:
        assert pool.map(_child_read, [(str(big), i) for i in idx]) == want


def test_forked_children_inherit_an_open_dataset(big):
    """Like DataLoader workers with fork: the parent already read (mapped, cached) chunks."""
    global _INHERITED
    _INHERITED = ps.Dataset(big)
    want = [
        [(r["i"], len(r["text"]), r["blob"][:4]) for r in _INHERITED.take(i)]
        for i in ([5, 6], [4000 - 1])
    ]
    with mp.get_context("fork").Pool(2) as pool:
        assert pool.map(_child_read_inherited, [[5, 6], [3999]]) == want
