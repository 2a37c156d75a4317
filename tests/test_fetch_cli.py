"""``pixmo-stream fetch``: parquet input, exit codes, and surviving kill -9 and Ctrl-C."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fault_server import FaultServer, image_for
from pixmo_stream.ingest.fetch import FetchState, Outcome, cache_name, fetch_images
from pixmo_stream.ingest.fetch.command import add_parser, main, run, standalone_parser

ROOT = Path(__file__).resolve().parent.parent


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_pixmo_parquet(path: Path, urls: list[str], shas: list[str | None] | None) -> None:
    """A PixMo-shaped table: one row per annotation, so each URL repeats."""
    rows = [(u, i) for u in urls for i in range(3)]
    table = {"image_url": [u for u, _ in rows], "label": [f"point {i}" for _, i in rows]}
    if shas is not None:
        by_url = dict(zip(urls, shas, strict=True))
        table["image_sha256"] = [by_url[u] for u, _ in rows]
    pq.write_table(pa.table(table), path)


def parse(argv: list[str]) -> argparse.Namespace:
    return standalone_parser().parse_args(argv)


def test_fetch_reads_parquet_deduplicates_and_reports(tmp_path):
    with FaultServer() as srv:
        urls = [srv.url(f"/img/{i}") for i in range(5)] + [srv.url("/404/a"), srv.url("/img/m")]
        shas = [sha(image_for(f"/img/{i}")) for i in range(5)] + [None, "0" * 64]
        write_pixmo_parquet(tmp_path / "points.parquet", urls, shas)
        cache = tmp_path / "cache"
        out = io.StringIO()
        args = parse(
            [
                "fetch",
                str(tmp_path / "points.parquet"),
                "--cache",
                str(cache),
                "-q",
                "--sha",
                "strict",
            ]
        )
        assert run(args, out) == 0

        assert all(srv.count(f"/img/{i}") == 1 for i in range(5))  # 3 rows each, one request
        report = json.loads((cache / ".pixmo-fetch-report.json").read_text())
        assert report["total"] == 7
        assert report["outcomes"]["ok"] == 5
        assert report["outcomes"]["not_found"] == 1
        assert report["outcomes"]["sha_mismatch"] == 1
        assert report["success_rate"] == pytest.approx(5 / 7, abs=1e-6)
        assert "not_found" in out.getvalue() and "5 of 7 images cached" in out.getvalue()
        for i in range(5):
            assert (cache / cache_name(urls[i])).read_bytes() == image_for(f"/img/{i}")


def test_pixmo_cap_has_no_sha_column(tmp_path):
    with FaultServer() as srv:
        write_pixmo_parquet(tmp_path / "cap.parquet", [srv.url("/img/cap")], None)
        report_path = tmp_path / "r.json"
        args = parse(
            [
                "fetch",
                str(tmp_path / "cap.parquet"),
                "--cache",
                str(tmp_path / "c"),
                "--report",
                str(report_path),
                "--json",
            ]
        )
        out = io.StringIO()
        assert run(args, out) == 0
        assert json.loads(out.getvalue())["outcomes"]["ok"] == 1
        assert json.loads(report_path.read_text())["outcomes"]["ok"] == 1


def test_exit_codes(tmp_path, capsys):
    cache = str(tmp_path / "cache")
    pq.write_table(pa.table({"url": ["http://127.0.0.1:9/x"]}), tmp_path / "other.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")

    assert main([str(tmp_path / "missing.parquet"), "--cache", cache]) == 2
    assert "missing.parquet" in capsys.readouterr().err
    assert main([str(tmp_path / "other.parquet"), "--cache", cache]) == 1
    assert "no 'image_url' column (columns: url)" in capsys.readouterr().err
    assert main([str(tmp_path / "junk.parquet"), "--cache", cache]) == 1
    assert "junk.parquet: not a readable parquet file" in capsys.readouterr().err
    pq.write_table(
        pa.table(
            {
                "image_url": ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"],
                "image_sha256": ["0" * 64, "not-a-hash"],
            }
        ),
        tmp_path / "badsha.parquet",
    )
    assert main([str(tmp_path / "badsha.parquet"), "--cache", cache]) == 1
    assert "badsha.parquet: row 1: image_sha256 'not-a-hash'" in capsys.readouterr().err
    pq.write_table(pa.table({"image_url": [1, 2]}), tmp_path / "ints.parquet")
    assert main([str(tmp_path / "ints.parquet"), "--cache", cache]) == 1
    assert "column 'image_url' is int64, not strings" in capsys.readouterr().err
    assert main([str(tmp_path / "other.parquet")]) == 2  # --cache is required
    assert main([str(tmp_path / "other.parquet"), "--cache", cache, "--retries", "-1"]) == 2
    assert main([str(tmp_path / "other.parquet"), "--cache", cache, "--max-bytes", "lots"]) == 2
    # The run completed, though nothing could be fetched: 0.
    assert (
        main(
            [
                str(tmp_path / "other.parquet"),
                "--cache",
                cache,
                "--url-column",
                "url",
                "--retries",
                "0",
                "-q",
            ]
        )
        == 0
    )
    assert "connect_error" in capsys.readouterr().out


def test_help_describes_every_option():
    parser = argparse.ArgumentParser(prog="pixmo-stream")
    sub = parser.add_subparsers()
    fetch = add_parser(sub)
    for action in fetch._actions:
        assert action.help, action.option_strings
    text = fetch.format_help()
    for outcome in Outcome:
        assert outcome.value in text


def _fetch_subprocess(parquet: Path, cache: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pixmo_stream.ingest.fetch",
            str(parquet),
            "--cache",
            str(cache),
            "--concurrency",
            "4",
            "--per-host",
            "4",
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_until_cached(cache: Path, n: int, proc: subprocess.Popen[str]) -> None:
    """Until ``n`` images are in the cache. The server answers only the first ``n`` requests
    and holds the rest, so the run cannot finish before the test acts, however loaded the
    machine is, and once those ``n`` are cached nothing else is under way."""
    deadline = time.monotonic() + 120  # a guard: only a broken fetcher waits this long
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.is_dir() and sum(not p.name.startswith(".") for p in cache.iterdir()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{n} images were not cached (exit {proc.poll()})")


def test_rerun_after_kill_9_finishes_without_downloading_twice(tmp_path):
    n = 60
    with FaultServer(hold_after=24) as srv:
        urls = [srv.url(f"/img/{i}") for i in range(n)]
        write_pixmo_parquet(tmp_path / "p.parquet", urls, None)
        cache = tmp_path / "cache"
        proc = _fetch_subprocess(tmp_path / "p.parquet", cache)
        _wait_until_cached(cache, 24, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        srv.release()

        done_before = {u for u in urls if (cache / cache_name(u)).exists()}
        assert len(done_before) == 24
        requested_before = {u: srv.count(u.split(str(srv.port), 1)[1]) for u in urls}

        report = fetch_images(urls, cache, progress=False)

        assert report.count(Outcome.OK) == n
        for u in urls:
            path = u.split(str(srv.port), 1)[1]
            assert (cache / cache_name(u)).read_bytes() == image_for(path)
            extra = srv.count(path) - requested_before[u]
            assert extra == (0 if u in done_before else 1), u
        assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_ctrl_c_stops_cleanly_and_keeps_what_is_done(tmp_path):
    n = 60
    with FaultServer(hold_after=16) as srv:
        urls = [srv.url(f"/img/{i}") for i in range(n)]
        write_pixmo_parquet(tmp_path / "p.parquet", urls, None)
        cache = tmp_path / "cache"
        proc = _fetch_subprocess(tmp_path / "p.parquet", cache)
        # Requests after the 16th wait unanswered until the signal has been sent.
        _wait_until_cached(cache, 16, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        srv.release()
        assert proc.returncode == 130, err
        assert "interrupted" in out

        report = json.loads((cache / ".pixmo-fetch-report.json").read_text())
        assert report["interrupted"]
        done = [u for u in urls if (cache / cache_name(u)).exists()]
        assert report["outcomes"]["ok"] == len(done) == 16
        assert report["outcomes"]["not_attempted"] == n - len(done)
        state = FetchState(cache)
        assert all(state.get(u) is not None for u in done)  # committed before it exited
        assert len(state) == len(done)
