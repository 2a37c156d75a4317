"""Datasets on object storage, against a local S3-compatible server (tests/s3_server/):
the same records as from disk on every read path, ranged reads only of what is needed, the
node cache shared by processes, failing servers, and crash-safe writes to a bucket."""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.s3_server import Gate, S3Server

import pixmo_stream as ps
from pixmo_stream import synthetic

ROOT = Path(__file__).resolve().parent.parent
N = 240
ROWS_PER_GROUP = 4  # ~330 KB of images a row group, ~12 row groups a shard


def plain(rec: dict[str, Any]) -> bytes:
    """A record as comparable bytes (arrays and Blobs as lists and bytes)."""

    def conv(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return (v.dtype.str, v.shape, v.tolist())
        if isinstance(v, ps.Blob):
            return bytes(v)
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, list):
            return [conv(x) for x in v]
        return v

    return pickle.dumps(conv(rec))


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return [synthetic.make_record(i) for i in range(N)]


def write(path: str, records: list[dict[str, Any]], **kw: Any) -> ps.WriteSummary:
    with ps.Writer(
        path,
        synthetic.pixmo_schema(),
        row_group_rows=ROWS_PER_GROUP,
        shard_bytes=4 << 20,
        **kw,
    ) as w:
        for r in records:
            w.write(r)
    assert w.summary is not None
    return w.summary


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]]) -> Any:
    """A server whose bucket `bkt` holds the dataset `ds` (written through the server), and
    the same dataset on local disk."""
    root = tmp_path_factory.mktemp("s3")
    (root / "bkt").mkdir()
    local = tmp_path_factory.mktemp("local") / "ds"
    write(str(local), records)
    with S3Server(root) as s3:
        write("s3://bkt/ds", records, storage_options=s3.storage_options())
        yield s3, root, local


def test_every_read_path_gives_the_records_on_disk(store: Any, tmp_path: Path) -> None:
    s3, root, local = store
    opts = s3.storage_options()
    assert sorted(os.listdir(root / "bkt" / "ds")) == sorted(os.listdir(local))
    for cache in (False, tmp_path / "cache"):
        ds = ps.Dataset("s3://bkt/ds", storage_options=opts, cache=cache)
        ref = ps.Dataset(local)
        assert len(ds) == len(ref) == N
        assert ds.path == "s3://bkt/ds" and ds.schema == ref.schema
        assert [plain(r) for r in ds] == [plain(r) for r in ref]
        idx = [7, 200, 3, 7, 239]
        assert [plain(r) for r in ds.take(idx)] == [plain(r) for r in ref.take(idx)]
        assert plain(ds[-1]) == plain(ref[-1])
        got = [plain(r) for b in ds.iter_batches(columns=["captions", "points"]) for r in b]
        want = [plain(r) for b in ref.iter_batches(columns=["captions", "points"]) for r in b]
        assert got == want
        assert ds.verify().ok


def test_a_url_may_name_one_shard(store: Any) -> None:
    s3, _, local = store
    one = ps.Dataset("s3://bkt/ds/shard-00001.pxs", storage_options=s3.storage_options())
    ref = ps.Dataset(local / "shard-00001.pxs")
    assert [plain(r) for r in one] == [plain(r) for r in ref]


def test_streaming_through_dataloader_workers(store: Any, tmp_path: Path) -> None:
    """Forked DataLoader workers make their own runtime and connections (the parent's were
    used before the fork) and read the same records, shuffled, as from disk."""
    pytest.importorskip("torch")
    s3, _, local = store
    opts = s3.storage_options()
    ps.Dataset("s3://bkt/ds", storage_options=opts, cache=False)[0]  # the parent uses a pool
    for cache in (False, tmp_path / "cache"):
        sds = ps.StreamingDataset(
            "s3://bkt/ds", storage_options=opts, cache=cache, seed=3, shuffle_window=64
        )
        ref = ps.StreamingDataset(local, seed=3, shuffle_window=64)
        loader = ps.DataLoader(sds, batch_size=None, num_workers=2)
        ref_loader = ps.DataLoader(ref, batch_size=None, num_workers=2)
        got = [plain(r) for r in loader]
        assert got == [plain(r) for r in ref_loader]
        assert len(got) == N


def test_a_cold_stream_reads_only_what_its_batches_need(store: Any, tmp_path: Path) -> None:
    """A shuffled stream's first batch reads the pages of its own images, not the chunks of
    every row group its rows come from; without a cache, an epoch reads about the dataset
    once, not each chunk once a row."""
    pytest.importorskip("torch")
    s3, root, local = store
    opts = s3.storage_options()
    total = sum(f.stat().st_size for f in (root / "bkt" / "ds").iterdir())
    ref = [plain(r) for r in ps.StreamingDataset(local, seed=9, shuffle_window=N)]
    for cache in (False, tmp_path / "cache"):
        sds = ps.StreamingDataset(
            "s3://bkt/ds",
            storage_options=opts,
            cache=cache,
            seed=9,
            shuffle_window=N,
            batch_size=8,
            collate_fn=lambda b: b,
            read_threads=1,
        )
        s3.reset()
        it = iter(sds)
        first = next(it)
        if cache is False:
            # 8 rows from ~8 row groups: far less than those row groups' chunks.
            assert s3.bytes_sent < 0.15 * total, (s3.bytes_sent, total)
        got = [plain(r) for r in first] + [plain(r) for b in it for r in b]
        assert got == ref
        if cache is False:
            # Whole 64 KiB pages around ~80 KB images: under twice the data (reading each
            # row group whole for every batch that needs it would be ~3x here).
            assert s3.bytes_sent < 2 * total, (s3.bytes_sent, total)


def test_a_mixture_of_a_bucket_and_a_local_dataset(store: Any) -> None:
    pytest.importorskip("torch")
    s3, _, local = store
    remote = ps.StreamingDataset("s3://bkt/ds", storage_options=s3.storage_options(), seed=1)
    here = ps.StreamingDataset(local, seed=1)
    mix = ps.Mixture([remote, here], [0.5, 0.5], seed=5, length=100)
    ref = ps.Mixture(
        [ps.StreamingDataset(local, seed=1), ps.StreamingDataset(local, seed=1)],
        [0.5, 0.5],
        seed=5,
        length=100,
    )
    assert [plain(r) for r in mix] == [plain(r) for r in ref]


def chunk_ranges(local: Path) -> dict[str, list[tuple[int, int, int, str]]]:
    """Every chunk's (row group, start, end, column) by shard file, from the footers."""
    info = json.loads(ps.Dataset(local)._native.info_json())
    out: dict[str, list[tuple[int, int, int, str]]] = {}
    for shard in info["shards"]:
        pos, spans = 64, []
        for g, rg in enumerate(shard["row_groups"]):
            for col in rg["columns"]:
                spans.append((g, pos, pos + col["stored_len"], col["name"]))
                pos += -(-col["stored_len"] // 64) * 64
        out[shard["file"]] = spans
    return out


def served_ranges(s3: S3Server) -> list[tuple[str, int, int]]:
    """(key, start, end) of every ranged GET the server answered since its last reset."""
    out = []
    for e in s3.stats(log=True)["log"]:
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", e.get("range", ""))
        if e["method"] == "GET" and m:
            out.append((e["key"], int(m[1]), int(m[2]) + 1))
    return out


def test_projection_downloads_no_image_bytes(store: Any, records: list[dict[str, Any]]) -> None:
    s3, root, local = store
    ds = ps.Dataset("s3://bkt/ds", storage_options=s3.storage_options(), cache=False)
    s3.reset()
    captions = [r["captions"] for r in ds.iter(columns=["captions"])]
    assert captions == [r["captions"] for r in records]
    images = {
        (f"bkt/ds/{f}", a, b)
        for f, spans in chunk_ranges(local).items()
        for _, a, b, col in spans
        if col == "image"
    }
    sizes = {f"bkt/ds/{f.name}": f.stat().st_size for f in (root / "bkt" / "ds").iterdir()}
    # Opening a shard reads its first 64 bytes and a guess at its end, with the footer.
    reads = [r for r in served_ranges(s3) if r[1] > 0 and r[2] != sizes[r[0]]]
    assert reads
    for key, start, end in reads:
        for k, a, b in images:
            assert k != key or end <= a or start >= b, f"{key} {start}-{end} reads an image"
    total = sum(f.stat().st_size for f in (root / "bkt" / "ds").iterdir())
    assert s3.bytes_sent < 0.1 * total


def test_a_random_read_fetches_one_row_group(store: Any) -> None:
    s3, _, local = store
    ds = ps.Dataset("s3://bkt/ds", storage_options=s3.storage_options(), cache=False)
    ds[0]  # opens shard 0 (reads its footer)
    s3.reset()
    ds[ROWS_PER_GROUP * 2 + 1]  # row group 2 of the same shard
    spans = [(a, b) for g, a, b, _ in chunk_ranges(local)["shard-00000.pxs"] if g == 2]
    assert len(chunk_ranges(local)["shard-00000.pxs"]) > 3 * len(spans)
    # Its chunks lie side by side: one request, for exactly that row group's bytes.
    assert served_ranges(s3) == [
        ("bkt/ds/shard-00000.pxs", spans[0][0], -(-spans[-1][1] // 64) * 64)
    ], s3.stats(log=True)["log"]


def _read_all(url: str, opts: dict[str, str], cache: str, out: Any) -> None:
    ds = ps.Dataset(url, storage_options=opts, cache=cache)
    out.put([plain(r) for r in ds])


def test_the_cache_is_shared_by_processes_and_works_offline(
    store: Any, tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    s3, root, local = store
    opts = s3.storage_options()
    cache = str(tmp_path / "cache")
    total = sum(f.stat().st_size for f in (root / "bkt" / "ds").iterdir())
    s3.reset()
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_read_all, args=("s3://bkt/ds", opts, cache, q)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    want = [plain(r) for r in ps.Dataset(local)]
    assert all(r == want for r in results)
    # Three readers at once, one download of each chunk (footers may be read by each).
    chunk_bytes = s3.bytes_sent
    assert chunk_bytes < 1.3 * total, (chunk_bytes, total)
    # Warm: nothing more is read but the manifest.
    s3.reset()
    again = ps.Dataset("s3://bkt/ds", storage_options=opts, cache=cache)
    assert [plain(r) for r in again] == want
    assert s3.requests == 1 and s3.ops.get("GetObject", 0) + s3.ops.get("GET", 0) <= 1
    # Offline (the store unreachable): the cached manifest, footers and chunks.
    dead = dict(opts, endpoint="http://127.0.0.1:9", offline="true")
    offline = ps.Dataset("s3://bkt/ds", storage_options=dead, cache=cache)
    assert [plain(r) for r in offline] == want
    # Without `offline`, an unreachable store is an error, never a silent stale copy.
    dead = dict(opts, endpoint="http://127.0.0.1:9", max_retries="0", connect_timeout="1s")
    with pytest.raises(ps.StorageError, match="manifest.json"):
        ps.Dataset("s3://bkt/ds", storage_options=dead, cache=cache)
    with pytest.raises(ps.StorageError, match="offline"):
        ps.Dataset("s3://bkt/other", storage_options=dict(opts, offline="1"), cache=cache)
    # A damaged cache entry is noticed (checksums) and read again from the store.
    entries = [p for p in Path(cache).rglob("*") if p.is_file() and "." not in p.name]
    for p in entries:
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))
    assert [plain(r) for r in ps.Dataset("s3://bkt/ds", storage_options=opts, cache=cache)] == want


def test_a_failing_server_is_retried(store: Any) -> None:
    s3, _, local = store
    want = [plain(r) for r in ps.Dataset(local)]
    opts = dict(s3.storage_options(), timeout="3s")
    for kind in ("503", "429", "500", "drop", "close"):
        s3.clear_faults()
        s3.inject(kind, count=3, match="bkt/ds/*")
        ds = ps.Dataset("s3://bkt/ds", storage_options=opts, cache=False)
        assert [plain(r) for r in ds] == want, kind
        assert not s3.faults, f"{kind}: the faults were not all met"
    s3.clear_faults()
    # A stall past the request deadline is given up on and retried.
    s3.inject("stall", count=1, match="bkt/ds/shard-*", seconds=10)
    t = time.monotonic()
    ds = ps.Dataset("s3://bkt/ds", storage_options=dict(opts, timeout="1s"), cache=False)
    assert [plain(r) for r in ds] == want
    assert time.monotonic() - t < 9
    s3.clear_faults()


def test_errors_name_the_url(store: Any) -> None:
    s3, _, _ = store
    opts = dict(s3.storage_options(), max_retries="1", retry_timeout="5s", timeout="2s")
    with pytest.raises(FileNotFoundError, match="s3://bkt/nothing/manifest.json"):
        ps.Dataset("s3://bkt/nothing", storage_options=opts)
    with pytest.raises(FileNotFoundError, match="nobucket"):
        ps.Dataset("s3://nobucket/ds", storage_options=opts)
    s3.forbid("bkt/ds/shard-00002.pxs")
    try:
        ds = ps.Dataset("s3://bkt/ds", storage_options=opts, cache=False)
        with pytest.raises(PermissionError, match="s3://bkt/ds/shard-00002.pxs") as e:
            list(ds)
        assert e.value.url == "s3://bkt/ds/shard-00002.pxs"
    finally:
        s3.clear_faults()
    s3.inject("500", count=100, match="bkt/ds/shard-00001.pxs")
    try:
        ds = ps.Dataset("s3://bkt/ds", storage_options=opts, cache=False)
        with pytest.raises(ps.StorageError, match="shard-00001.pxs") as e:
            ds.take([next(g[2] for g in ds._native.row_group_layout() if g[0] == 1)])
        assert isinstance(e.value, OSError)
    finally:
        s3.clear_faults()
    with pytest.raises(ValueError, match="unknown storage option 'colour'"):
        ps.Dataset("s3://bkt/ds", storage_options={"colour": "blue"})
    for bad in ("", "127.0.0.1:9000", "http://", "http://[bad"):
        with pytest.raises(ValueError, match="not an http"):
            ps.Dataset("s3://bkt/ds", storage_options=dict(opts, endpoint=bad), cache=False)


def test_plain_http_range_reads(store: Any) -> None:
    s3, _, local = store
    url = f"{s3.endpoint}/bkt/ds"
    ds = ps.Dataset(url, storage_options={"allow_http": "true"}, cache=False)
    assert [plain(r) for r in ds.take([5, 100])] == [
        plain(r) for r in ps.Dataset(local).take([5, 100])
    ]


CRASH = textwrap.dedent(
    """
    import os, sys
    import pixmo_stream as ps
    from pixmo_stream import synthetic
    opts = dict(zip(sys.argv[2::2], sys.argv[3::2]))
    with ps.Writer(sys.argv[1], synthetic.pixmo_schema(), row_group_rows=16,
                   shard_bytes=4 << 20, overwrite=True, storage_options=opts) as w:
        for i in range(100_000):
            w.write(synthetic.make_record(i % 50))
            if i == 200:
                print("writing", flush=True)
    """
)


def test_a_crash_mid_write_never_looks_complete(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, root, _ = store
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where shards are staged before upload
    opts = s3.storage_options()
    args = [x for kv in opts.items() for x in kv]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"), TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH, "s3://bkt/crash", *args],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"writing"
    deadline = time.monotonic() + 60
    while not any((root / "bkt" / "crash").glob("shard-*.pxs")):
        assert time.monotonic() < deadline, "no shard was uploaded"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()
    with pytest.raises(FileNotFoundError, match="still being written") as e:
        ps.Dataset("s3://bkt/crash", storage_options=opts)
    assert "s3://bkt/crash/manifest.json" in str(e.value)
    with pytest.raises(ValueError, match="already holds"):
        write("s3://bkt/crash", [synthetic.make_record(0)], storage_options=opts)
    # An exception inside the writer's block leaves no manifest either; overwrite replaces.
    with pytest.raises(RuntimeError):
        with ps.Writer(
            "s3://bkt/crash", synthetic.pixmo_schema(), overwrite=True, storage_options=opts
        ) as w:
            w.write(synthetic.make_record(0))
            raise RuntimeError("stop")
    with pytest.raises(FileNotFoundError):
        ps.Dataset("s3://bkt/crash", storage_options=opts)
    summary = write(
        "s3://bkt/crash",
        [synthetic.make_record(i) for i in range(20)],
        storage_options=opts,
        overwrite=True,
    )
    assert summary.path == "s3://bkt/crash" and summary.num_rows == 20
    assert len(ps.Dataset("s3://bkt/crash", storage_options=opts)) == 20
    # No staging directory is left behind (the killed writer's is removed by the next one).
    assert not list(tmp_path.glob("pixmo-stream-upload-*"))
    shutil.rmtree(root / "bkt" / "crash")


def test_environment_configuration(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s3, _, local = store
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    ds = ps.Dataset("s3://bkt/ds", cache=False)
    assert plain(ds[3]) == plain(ps.Dataset(local)[3])


def test_a_captions_scan_opens_each_shard_once(store: Any, records: list[dict[str, Any]]) -> None:
    """The scan's reading threads start on the same shard: one of them reads its header and
    footer, the others wait for it (they used to read them once per row group)."""
    s3, root, local = store
    ds = ps.Dataset("s3://bkt/ds", storage_options=s3.storage_options(), cache=False)
    assert ds.num_row_groups >= 8 * ds.num_shards / 2  # several row groups a shard
    s3.reset()
    assert [r["captions"] for r in ds.iter(columns=["captions"])] == [
        r["captions"] for r in records
    ]
    opened = collections.Counter(key for key, start, _ in served_ranges(s3) if start == 0)
    assert opened == {f"bkt/ds/{f.name}": 1 for f in local.glob("*.pxs")}
    # What is read: each shard's first 64 bytes and end, and the captions' chunks.
    captions = sum(b - a for spans in chunk_ranges(local).values() for _, a, b, c in spans
                   if c == "captions")  # fmt: skip
    ends = sum(min(64 << 10, max(8 << 10, f.stat().st_size // 256)) + 64
               for f in local.glob("*.pxs"))  # fmt: skip
    assert s3.bytes_sent <= 1.1 * (captions + ends) + 64 * ds.num_row_groups


def _finishes_after_another_thread(gate: Gate, call: Callable[[], None]) -> list[str]:
    """Runs `call`, which waits on the store behind `gate`, while another Python thread takes
    200 turns and then releases the gate: the order the two finish in. Had `call` held the
    GIL while it waited, the other thread could not run until the store answered."""
    order: list[str] = []
    go = threading.Event()

    def other() -> None:
        go.wait()
        for _ in range(200):
            time.sleep(0)
        order.append("other thread")
        gate.release()

    thread = threading.Thread(target=other)
    thread.start()
    go.set()
    try:
        call()
    finally:
        order.append("call")
        gate.release()
        thread.join()
    return order


def test_dropping_a_scan_lets_other_threads_run_while_the_store_is_stalled(store: Any) -> None:
    s3, _, _ = store
    # A request held past its deadline fails (max_retries=0): a GIL held would show as the
    # wrong order below rather than as a hang.
    opts = dict(s3.storage_options(), timeout="20s", max_retries="0")
    ds = ps.Dataset("s3://bkt/ds", storage_options=opts, cache=False)
    gate = s3.gate("bkt/ds/shard-00001.pxs")
    try:
        scans = [ds.iter(columns=["captions"])]
        next(scans[0])  # shard 0; the reading threads run ahead into shard 1
        assert gate.arrived.wait(60), "no reading thread asked for shard 1"
        assert _finishes_after_another_thread(gate, scans.clear) == ["other thread", "call"]
    finally:
        s3.clear_faults()


def test_a_scan_into_a_missing_shard_lets_other_threads_run(store: Any, tmp_path: Path) -> None:
    s3, root, _ = store
    opts = dict(s3.storage_options(), timeout="20s", max_retries="0")
    # One row group a shard: the scan's threads read one shard each.
    with ps.Writer("s3://bkt/holes", synthetic.pixmo_schema(), row_group_rows=4,
                   shard_bytes=1 << 16, storage_options=opts) as w:  # fmt: skip
        w.write_many(synthetic.make_record(i) for i in range(16))
    ds = ps.Dataset("s3://bkt/holes", storage_options=opts, cache=False)
    assert ds.num_shards == ds.num_row_groups > 2
    (root / "bkt" / "holes" / "shard-00000.pxs").unlink()
    gate = s3.gate("bkt/holes/shard-00001.pxs")
    try:
        scans = [ds.iter(columns=["captions"])]
        with pytest.raises(FileNotFoundError) as e:
            next(scans[0])
        assert e.value.filename == "s3://bkt/holes/shard-00000.pxs"
        assert gate.arrived.wait(60), "no reading thread asked for shard 1"
        assert _finishes_after_another_thread(gate, scans.clear) == ["other thread", "call"]
    finally:
        s3.clear_faults()
        shutil.rmtree(root / "bkt" / "holes")


def test_a_refused_writer_raises_permission_error_naming_the_url(store: Any) -> None:
    s3, root, _ = store
    (root / "locked").mkdir(exist_ok=True)
    s3.forbid("locked*")
    try:
        with pytest.raises(PermissionError) as e:
            write(
                "s3://locked/ds", [synthetic.make_record(0)], storage_options=s3.storage_options()
            )
        assert not isinstance(e.value, ps.StorageError)
        assert e.value.url == e.value.filename == "s3://locked/ds"
        assert "s3://locked/ds" in str(e.value) and "AccessDenied" in str(e.value)
        assert "<?xml" not in str(e.value)
    finally:
        s3.clear_faults()


def test_a_cold_epoch_reads_each_image_chunks_first_pages_once(store: Any, tmp_path: Path) -> None:
    """Batches that read an image chunk sparsely before it is in the node cache share its
    buffer table and offsets (they used to fetch them once a batch): the chunk's first byte
    is served at most twice, once for them and once when the whole chunk is cached."""
    s3, _, local = store
    sds = ps.StreamingDataset("s3://bkt/ds", storage_options=s3.storage_options(),
                              cache=tmp_path / "cache", seed=4, shuffle_window=N, batch_size=8,
                              collate_fn=lambda b: b)  # fmt: skip
    s3.reset()
    assert sum(len(b) for b in sds) == N
    served = served_ranges(s3)
    firsts = {(f"bkt/ds/{f}", a) for f, spans in chunk_ranges(local).items()
              for _, a, _, c in spans if c == "image"}  # fmt: skip
    times = collections.Counter(
        (key, a) for key, start, end in served for k, a in firsts if k == key and start <= a < end
    )
    assert times and max(times.values()) <= 2, times.most_common(3)
