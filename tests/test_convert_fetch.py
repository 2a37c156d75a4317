"""``convert --fetch``: a PixMo parquet whose images are on a web server becomes a dataset in
one command, fetched as ``pixmo-stream fetch`` fetches (its options, its report); what the
server does not give is skipped and counted under the fetch's reason, and a second run costs
no request for what the first one downloaded."""

from __future__ import annotations

import argparse
import hashlib
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

import pixmo_stream as ps
from fault_server import FaultServer, image_for
from pixmo_stream.cli import main
from pixmo_stream.cli.app import build_parser
from pixmo_stream.ingest import molmo_cache_name


def _cap_parquet(path: Path, urls: list[str], shas: list[str | None] | None = None) -> Path:
    rows = []
    for i, u in enumerate(urls):
        rows.append(dict(image_url=u, caption=f"caption {i}", transcripts=[f"t{i}a"]))
    fields = [
        ("image_url", pa.string()),
        ("caption", pa.string()),
        ("transcripts", pa.list_(pa.string())),
    ]
    if shas is not None:
        for row, sha in zip(rows, shas, strict=True):
            row["image_sha256"] = sha
        fields.append(("image_sha256", pa.string()))
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(fields)), path)
    return path


def test_convert_fetch_downloads_then_converts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FaultServer(lifetime=60) as server:
        paths = ["/img/a", "/img/b", "/404/c", "/html/d", "/img/e"]
        urls = [server.url(p) for p in paths]
        parquet = _cap_parquet(tmp_path / "cap.parquet", urls)
        cache, out = tmp_path / "cache", tmp_path / "out"
        argv = ["--quiet", "convert", str(parquet), "--preset", "pixmo-cap", "--fetch",
                "--images", str(cache), "-o", str(out)]  # fmt: skip
        assert main(argv) == 0
        text = capsys.readouterr().out
        assert "not_found" in text and "bad_content" in text  # the fetch report is printed
        ds = ps.Dataset(str(out))
        assert [r["image_url"] for r in ds.iter(columns=["image_url"])] == [
            urls[0],
            urls[1],
            urls[4],
        ]
        assert bytes(ds[0]["image"]) == image_for("/img/a")
        assert (cache / molmo_cache_name(urls[0])).read_bytes() == image_for("/img/a")
        assert not (cache / molmo_cache_name(urls[2])).exists()  # a failure is never a file
        report = json.loads((out / "convert-report.json").read_text())
        assert report["skipped"] == {"not_found": 1, "bad_content": 1}
        first = server.total_requests()

        # Again: images already in the cache and permanent failures cost no request.
        assert main([*argv, "--overwrite"]) == 0
        capsys.readouterr()
        assert server.total_requests() == first
        assert len(ps.Dataset(str(out))) == 3


def test_convert_fetch_needs_a_cache_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parquet = _cap_parquet(tmp_path / "cap.parquet", ["http://127.0.0.1:9/x"])
    argv = ["--quiet", "convert", str(parquet), "--preset", "pixmo-cap", "--fetch", "-o",
            str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    assert "--fetch needs --images" in capsys.readouterr().err


def test_convert_fetch_takes_fetchs_options_and_names_each_failures_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FaultServer(lifetime=60) as server:
        paths = ["/img/a", "/drip/b", "/404/c", "/noai/d", "/img/e"]
        urls = [server.url(p) for p in paths]
        right = hashlib.sha256(image_for("/img/a")).hexdigest()
        parquet = _cap_parquet(tmp_path / "cap.parquet", urls, [right, None, None, None, "0" * 64])
        cache, out = tmp_path / "cache", tmp_path / "out"
        # The drip sends a byte every 0.2 s: with the fetcher's default --timeout (20 s) it
        # would hold the conversion that long; here it ends at 0.5 s as a timeout.
        argv = ["--quiet", "convert", str(parquet), "--preset", "pixmo-cap", "--fetch",
                "--images", str(cache), "-o", str(out), "--json", "--timeout", "0.5",
                "--sha", "strict", "--retries", "0", "--concurrency", "2", "--per-host", "2",
                "--user-agent", "pixmo-test/1.0"]  # fmt: skip
        assert main(argv) == 0
        printed = json.loads(capsys.readouterr().out)  # --json: the report and nothing else
        report = json.loads((out / "convert-report.json").read_text())
        assert printed == report
        reasons = {"timeout": 1, "not_found": 1, "opted_out": 1, "sha_mismatch": 1}
        assert report["skipped"] == reasons
        assert report["records_written"] == 1
        by_url = {f["image_url"]: f for f in report["failures"]}
        assert by_url[urls[1]]["cause"] == "timeout"
        assert "within 0.5 s" in by_url[urls[1]]["detail"]
        assert "HTTP 404" in by_url[urls[2]]["detail"]
        assert "X-Robots-Tag: noai" in by_url[urls[3]]["detail"]
        assert by_url[urls[4]]["cause"] == "sha_mismatch"  # --sha strict: not kept
        # The fetch's own JSON report, as `pixmo-stream fetch` writes it, in the cache and in
        # the conversion's report.
        fetched = json.loads((cache / ".pixmo-fetch-report.json").read_text())
        assert fetched == report["fetch"]
        assert {k: v for k, v in fetched["outcomes"].items() if v} == {"ok": 1, **reasons}
        assert set(server.user_agents) == {"pixmo-test/1.0"}
        assert server.max_in_flight <= 2
        assert server.count("/drip/b") == 1  # --retries 0, and a timeout is left for a re-run


def test_convert_shares_fetchs_option_definitions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = {}
    parser, _ = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            commands = action.choices
    fetch = {a.option_strings[0]: a for a in commands["fetch"]._actions if a.option_strings}
    convert = {a.option_strings[0]: a for a in commands["convert"]._actions if a.option_strings}
    shared = [
        "--concurrency", "--per-host", "--per-host-rate", "--timeout", "--connect-timeout",
        "--deadline", "--max-bytes", "--retries", "--backoff", "--backoff-max",
        "--retry-after-cap", "--user-agent", "--sha", "--opt-out", "--retry-permanent",
    ]  # fmt: skip
    for name in shared:
        f, c = fetch[name], convert[name]
        assert (c.dest, c.default, c.metavar, c.choices, c.help) == (
            f.dest, f.default, f.metavar, f.choices, f.help
        ), name  # fmt: skip
    # A fetch option without --fetch would be silently ignored: it is refused.
    parquet = _cap_parquet(tmp_path / "cap.parquet", ["http://127.0.0.1:9/x"])
    argv = ["--quiet", "convert", str(parquet), "--preset", "pixmo-cap", "--timeout", "5",
            "-o", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    assert "are for --fetch" in capsys.readouterr().err


def test_ctrl_c_while_fetching_keeps_the_downloads_and_exits_130(tmp_path: Path) -> None:
    # The server answers 3 requests and holds the rest until the signal has been sent.
    with FaultServer(hold_after=3) as server:
        urls = [server.url(f"/img/{i}") for i in range(12)]
        parquet = _cap_parquet(tmp_path / "cap.parquet", urls)
        cache, out = tmp_path / "cache", tmp_path / "out"
        root = Path(__file__).resolve().parent.parent
        proc = subprocess.Popen(
            [sys.executable, "-m", "pixmo_stream.cli", "--quiet", "convert", str(parquet),
             "--preset", "pixmo-cap", "--fetch", "--images", str(cache), "-o", str(out),
             "--concurrency", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(root / "python")},
        )  # fmt: skip
        guard = time.monotonic() + 120  # only a broken fetcher waits this long
        while sum(1 for u in urls if (cache / molmo_cache_name(u)).exists()) < 3:
            assert proc.poll() is None and time.monotonic() < guard, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        server.release()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout and "interrupted" in stderr
    fetched = json.loads((cache / ".pixmo-fetch-report.json").read_text())
    assert fetched["interrupted"] and fetched["outcomes"]["ok"] == 3
    assert not (out / "manifest.json").exists()  # nothing converted
