"""What users get wrong, and odd files: each gives a clear, typed error at the first call that
can know, never a crash, a hang, a silent empty epoch or a value that cannot be read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import pixmo_stream as ps


def small(path, n=10, **options):
    with ps.Writer(path, ps.Schema([ps.Field("id", ps.int64())]), **options) as w:
        for i in range(n):
            w.write({"id": i})
    return path


def test_any_values_the_reader_would_refuse_are_refused_when_written(tmp_path):
    def nested(depth):
        v = 0
        for _ in range(depth):
            v = [v]
        return v

    with ps.Writer(tmp_path / "d", ps.Schema([ps.Field("x", ps.any_())])) as w:
        w.write({"x": nested(512)})  # the limit (MAX_MSGPACK_DEPTH) is allowed
        with pytest.raises(ps.SchemaError, match="more than 512 levels") as e:
            w.write({"x": nested(513)})
        assert e.value.field == "x" and e.value.record == 1
        w.write({"x": 1})
    ds = ps.Dataset(tmp_path / "d")
    assert ds.verify().ok and ds[1]["x"] == 1  # the row group beside it still reads
    assert ds[0]["x"] == nested(512)


def test_a_float_too_large_for_float32_is_refused_not_stored_as_inf(tmp_path):
    with ps.Writer(tmp_path / "d", ps.Schema([ps.Field("f", ps.float32())])) as w:
        with pytest.raises(ps.SchemaError, match="out of range for float32"):
            w.write({"f": 1e300})
        w.write({"f": float("inf")})  # infinities and NaN are values, not overflows
        w.write({"f": 1e-300})  # underflows to 0 as floats do
        w.write({"f": 3.4028235e38})  # float32's largest, as it prints: rounds to it
    got = [r["f"] for r in ps.Dataset(tmp_path / "d")]
    assert got == [float("inf"), 0.0, float(np.finfo(np.float32).max)]


def test_a_manifest_whose_counts_only_add_up_by_wrapping_is_refused(tmp_path):
    small(tmp_path / "d", row_group_rows=4, shard_bytes=1)
    p = tmp_path / "d" / "manifest.json"
    m = json.loads(p.read_text())
    assert len(m["shards"]) == 3
    # 2^63 + 2^63 + (rows of the last shard) wraps to the true total in u64.
    for s in m["shards"][:2]:
        s["num_rows"] = 2**63
        s["row_groups"] = [2**62, 2**62]
    p.write_text(json.dumps(m))
    with pytest.raises(ps.CorruptDataError, match="do not add up"):
        ps.Dataset(tmp_path / "d")


def test_huge_consistent_row_counts_fail_the_stream_instead_of_ending_it(tmp_path):
    # (Before: a read-ahead thread panicked allocating the window, and the epoch ended empty.)
    small(tmp_path / "d")
    p = tmp_path / "d" / "manifest.json"
    m = json.loads(p.read_text())
    m["shards"][0]["num_rows"] = m["num_rows"] = 2**62
    m["shards"][0]["row_groups"] = [2**61, 2**61]
    p.write_text(json.dumps(m))
    with pytest.raises(ValueError, match="row counts of the manifest"):
        next(iter(ps.StreamingDataset(tmp_path / "d", shuffle=False)))


def test_a_fifo_or_directory_where_a_file_belongs_is_refused_without_blocking(tmp_path):
    small(tmp_path / "d")
    shard = tmp_path / "d" / "shard-00000.pxs"
    shard.unlink()
    os.mkfifo(shard)
    os.mkfifo(tmp_path / "fifo.pxs")
    # In a child with a timeout: opening a FIFO for reading blocks until a writer comes.
    code = textwrap.dedent(
        f"""
        import pixmo_stream as ps
        for path, i in [({str(tmp_path / "d")!r}, 0), ({str(tmp_path / "fifo.pxs")!r}, None)]:
            try:
                ds = ps.Dataset(path)
                ds[i]
            except ps.CorruptDataError as e:
                print("refused:", e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("not a regular file") == 2, out.stdout
    shard.unlink()
    shard.mkdir()
    with pytest.raises(ps.CorruptDataError, match="not a regular file"):
        ps.Dataset(tmp_path / "d")[0]
    if os.path.exists("/proc/self/status"):  # a regular file that cannot be mapped
        with pytest.raises(ps.CorruptDataError, match="cannot be memory-mapped"):
            ps.Dataset("/proc/self/status")


def test_a_writer_used_from_two_threads_says_it_is_not_thread_safe(tmp_path):
    schema = ps.Schema([ps.Field("b", ps.binary())])
    errors: list[Exception] = []
    blob = b"x" * (1 << 20)  # big rows: the calls overlap while one has the GIL released
    with ps.Writer(tmp_path / "d", schema, row_group_rows=1) as w:

        def run():
            for _ in range(40):
                try:
                    w.write({"b": blob})
                except RuntimeError as e:
                    errors.append(e)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors and all("not thread-safe" in str(e) for e in errors), errors[:1]
    assert len(ps.Dataset(tmp_path / "d")) == 80 - len(errors)  # each write stored or refused


def test_close_after_a_failed_write_says_what_failed(tmp_path):
    # A file-size limit stands in for a full disk: the shard write fails with EFBIG.
    code = textwrap.dedent(
        f"""
        import resource, signal
        import pixmo_stream as ps
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        w = ps.Writer({str(tmp_path / "d")!r}, ps.Schema([ps.Field("b", ps.binary())]),
                      row_group_rows=1, shard_bytes=150_000)
        try:
            for i in range(20):  # the 8th row alone is larger than a file may grow
                w.write({{"b": bytes([i]) * (300_000 if i == 7 else 60_000)}})
        except OSError as e:
            print("write:", e)
        try:
            w.close()
        except ValueError as e:
            print("close:", e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    write_line, close_line = out.stdout.strip().splitlines()
    assert write_line.startswith("write:") and ".pxs.tmp" in write_line
    assert "stopped on an earlier error" in close_line and ".pxs.tmp" in close_line
    assert not (tmp_path / "d" / "manifest.json").exists()
    finished = sorted(p.name for p in (tmp_path / "d").glob("*.pxs"))
    assert finished, "shards finished before the error stay on disk"


def test_streaming_arguments_and_states_are_checked_when_given(tmp_path):
    d = small(tmp_path / "d")
    for kwargs in ({"seed": -1}, {"shuffle_window": 0}, {"read_ahead": 0}, {"batch_size": 2.5}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            ps.StreamingDataset(d, **kwargs)
    sd = ps.StreamingDataset(d, shuffle=False)
    good = sd.state_dict()
    for key, bad in (("position", -5), ("position", "3"), ("position", 2.9), ("epoch", True)):
        with pytest.raises(ValueError, match=key):
            sd.load_state_dict({**good, key: bad})
    sd.load_state_dict({**good, "position": 4})
    assert [r["id"] for r in sd] == list(range(4, 10))
    # A dataset far larger than its rows is not allocated for, whatever the batch size.
    assert [b["id"].tolist() for b in ps.StreamingDataset(d, shuffle=False, batch_size=2**40)] == [
        list(range(10))
    ]


def test_mixture_batches_itself_and_explains_sources_with_other_columns(tmp_path):
    a = ps.StreamingDataset(small(tmp_path / "a"))
    with ps.Writer(tmp_path / "b") as w:
        for i in range(10):
            w.write({"caption": f"c{i}"})
    b = ps.StreamingDataset(tmp_path / "b")
    with pytest.raises(ValueError, match="pass batch_size to the Mixture"):
        ps.Mixture([a, ps.StreamingDataset(tmp_path / "b", batch_size=4)], [0.5, 0.5])
    with pytest.raises(ValueError, match="different keys.*collate_fn"):
        list(ps.Mixture([a, b], [0.5, 0.5], length=32, batch_size=16, source_key=None))
    texts = ps.Mixture(
        [a, b],
        [0.5, 0.5],
        length=32,
        batch_size=16,
        collate_fn=lambda recs: [str(r.get("id", r.get("caption"))) for r in recs],
    )
    assert sum(len(batch) for batch in texts) == 32


def test_a_field_named_like_a_mask_is_not_overwritten():
    from pixmo_stream.batching import collate

    recs = [{"pts": np.zeros((i, 2), np.float32), "pts_mask": i} for i in range(3)]
    with pytest.raises(ValueError, match="mask_suffix"):
        collate(recs)
    assert set(collate(recs, mask_suffix="_valid")) == {"pts", "pts_valid", "pts_mask"}


def test_batches_keep_their_keys_and_types_when_a_null_is_in_them(tmp_path):
    with ps.Writer(tmp_path / "d") as w:  # an inferred schema: every field nullable
        for i in range(8):
            pts = None if i == 5 else np.full((i, 2), i, np.float32)
            w.write({"w": None if i == 3 else i, "ok": i % 2 == 0, "pts": pts, "s": "x"})
    batches = list(ps.StreamingDataset(tmp_path / "d", batch_size=4, shuffle=False))
    a, b = batches
    assert a.keys() == b.keys() == {"w", "w_mask", "ok", "ok_mask", "pts", "pts_mask", "s"}
    for k in ("w", "w_mask", "ok", "pts", "pts_mask"):
        assert a[k].dtype == b[k].dtype, k
    assert a["w"].tolist() == [0, 1, 2, 0] and a["w_mask"].tolist() == [True, True, True, False]
    assert b["w"].tolist() == [4, 5, 6, 7] and b["w_mask"].all()
    assert b["pts_mask"][1].sum() == 0  # record 5's null points: an empty array
    assert b["pts_mask"][2].sum() == 6 and float(b["pts"][2, 0, 0]) == 6.0


def test_datasets_read_as_one_must_have_one_schema(tmp_path):
    small(tmp_path / "a")
    with ps.Writer(tmp_path / "b") as w:
        w.write({"id": "not an int"})
    with pytest.raises(ps.SchemaError, match="schema differs"):
        ps.StreamingDataset([tmp_path / "a", tmp_path / "b"])
    # The same fields in another order are the same records.
    for name, rec in (("c", {"x": 1, "s": "a"}), ("d", {"s": "b", "x": 2})):
        with ps.Writer(tmp_path / name) as w:
            w.write(rec)
    both = ps.StreamingDataset([tmp_path / "c", tmp_path / "d"], shuffle=False)
    assert list(both) == [{"x": 1, "s": "a"}, {"s": "b", "x": 2}]


def test_a_touched_or_copied_manifest_is_not_a_rewrite(tmp_path):
    import shutil

    small(tmp_path / "d", row_group_rows=4, shard_bytes=1)
    ds = ps.Dataset(tmp_path / "d")
    sd = ps.StreamingDataset(tmp_path / "d", shuffle=False)
    assert ds[0]["id"] == 0
    manifest = tmp_path / "d" / "manifest.json"
    os.utime(manifest, (1, 1))  # a purge script's touch: same bytes, other mtime
    shutil.copy(manifest, tmp_path / "m")
    os.replace(tmp_path / "m", manifest)  # same bytes, another inode
    assert ds[9]["id"] == 9  # opens another shard: checked, and still the same dataset
    assert [r["id"] for r in sd] == list(range(10))


def test_writer_options_are_checked_when_given(tmp_path):
    for kwargs, msg in (
        ({"shard_bytes": -1}, "shard_bytes must be in"),
        ({"row_group_rows": 0}, "row_group_rows must be in"),
        ({"zstd_level": 30}, "zstd_level must be in"),
        ({"row_group_bytes": 1.5}, "row_group_bytes must be an integer"),
        ({"metadata": {"n": 3}}, "metadata maps str to str"),
    ):
        with pytest.raises((ValueError, TypeError), match=msg):
            ps.Writer(tmp_path / "d", **kwargs)
