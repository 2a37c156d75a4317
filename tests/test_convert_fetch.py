"""``convert --fetch``: a PixMo parquet whose images are on a web server becomes a dataset in
one command; what the server does not give is skipped and counted, and a second run costs no
request for what the first one downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pixmo_stream as ps
from fault_server import FaultServer, image_for
from pixmo_stream.cli import main
from pixmo_stream.ingest import molmo_cache_name


def _cap_parquet(path: Path, urls: list[str]) -> Path:
    rows = []
    for i, u in enumerate(urls):
        # Two rows per image, as PixMo repeats the URL on every annotation row.
        rows.append(dict(image_url=u, caption=f"caption {i}", transcripts=[f"t{i}a"]))
    schema = pa.schema(
        [
            ("image_url", pa.string()),
            ("caption", pa.string()),
            ("transcripts", pa.list_(pa.string())),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
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
        assert report["skipped"] == {"missing": 2}
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
