"""Every CLI command that reads or writes a dataset takes a URL as well as a path, here
``s3://`` against the local S3 server (``tests/s3_server/``): the same output as for the
local copy, the store configured by flags or by the environment alone, and one-line errors
with exit codes for a missing dataset, a refusal (403) and a store that keeps failing."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixmo_fixtures as F
import pixmo_stream as ps
from pixmo_stream.cli import main
from s3_server import S3Server

BUCKET = "bkt"
ROWS = 9


def _image(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12 + i, 10 + i), (30 * i % 256, 90, 150)).save(
        buf, format="JPEG" if i % 2 else "PNG"
    )
    return buf.getvalue()


def _record(i: int) -> dict:
    return {
        "image": _image(i),
        "caption": f"record {i}",
        "points": np.arange(2 * (i % 3), dtype=np.float32).reshape(-1, 2),
        "count": i,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    root = tmp_path_factory.mktemp("s3")
    (root / BUCKET).mkdir()
    s3 = S3Server(root).start()
    try:
        yield s3
    finally:
        s3.stop()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine rows in several shards of two row groups or more."""
    path = tmp_path_factory.mktemp("cli-storage") / "ds"
    with ps.Writer(str(path), row_group_rows=2, shard_bytes=2048) as w:
        w.write_many(_record(i) for i in range(ROWS))
    assert ps.Dataset(str(path)).num_shards > 1
    return path


@pytest.fixture
def s3(server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """The server with no faults; the node cache and the writer's staging under tmp_path,
    and no AWS settings from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "PIXMO_STREAM_CACHE")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIXMO_STREAM_CACHE", str(tmp_path / "node-cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "staging"))
    (tmp_path / "staging").mkdir()
    yield server
    server.clear_faults()


def put(s3: S3Server, local: Path, key: str) -> str:
    """Copies a local dataset into the bucket (the server's files) and returns its URL."""
    target = s3.root / BUCKET / key
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(local, target)
    return f"s3://{BUCKET}/{key}"


def flags(s3: S3Server) -> list[str]:
    out = []
    for key, value in s3.storage_options().items():
        out += ["--storage-option", f"{key}={value}"]
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def timeless(text: str) -> str:
    """Output without what depends on the clock (verify's durations and speeds)."""
    text = re.sub(r"checked in [^,)\n]+(, [^)\n]+/s)?", "checked in T", text)
    return re.sub(r"decode \([^)]*\)", "decode (T)", text)


def records(path: str, **options: object) -> list[dict]:
    return [{k: bytes(v) if isinstance(v, ps.Blob) else v for k, v in r.items()}
            for r in ps.Dataset(path, **options)]  # fmt: skip


def same(a: object, b: object) -> bool:
    """Equal records: lists and dicts compared item by item, arrays by shape and values."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.asarray(a).shape == np.asarray(b).shape and np.array_equal(a, b)
    return a == b


def test_inspect_verify_head_read_a_bucket_as_they_read_the_local_copy(
    s3: S3Server, local: Path, tmp_path: Path, capsys
) -> None:
    url = put(s3, local, "same")
    shard = sorted(p.name for p in local.glob("*.pxs"))[1]
    for argv in (
        ["inspect"], ["inspect", "--json"], ["inspect", "--shards"], ["verify"],
        ["verify", "--decode"], ["head", "-n", "3"], ["head", "-n", "2", "-c", "caption,count"],
    ):  # fmt: skip
        for where, local_where in ((url, str(local)), (f"{url}/manifest.json", str(local))):
            code, out, err = run(capsys, *argv, where, *flags(s3), "--no-cache")
            want_code, want, _ = run(capsys, *argv, local_where)
            assert (code, err) == (want_code, ""), (argv, err)
            assert timeless(out.replace(url, str(local))) == timeless(want), argv
    code, out, err = run(capsys, "inspect", f"{url}/{shard}", *flags(s3))
    assert code == 0, err
    assert out.replace(url, str(local)) == run(capsys, "inspect", str(local / shard))[1]
    # Through the node cache (a folder of its own, with a size limit), images to a local folder.
    code, out, err = run(
        capsys, "head", url, "-n", "4", "--images-to", str(tmp_path / "img"), *flags(s3),
        "--cache", str(tmp_path / "cache"), "--cache-limit", "50MB",
    )  # fmt: skip
    assert code == 0, err and "wrote 4 image files" in out
    run(capsys, "head", str(local), "-n", "4", "--images-to", str(tmp_path / "img-local"))
    written = sorted(p.name for p in (tmp_path / "img").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "img-local").iterdir())
    for name in written:
        want = (tmp_path / "img-local" / name).read_bytes()
        assert (tmp_path / "img" / name).read_bytes() == want
    assert any((tmp_path / "cache").rglob("*")), "the node cache was not used"


def test_verify_names_the_bad_shard_of_a_bucket(s3: S3Server, local: Path, capsys) -> None:
    url = put(s3, local, "bad")
    shard = sorted(p.name for p in local.glob("*.pxs"))[1]
    victim = s3.root / BUCKET / "bad" / shard
    data = bytearray(victim.read_bytes())
    data[80] ^= 0xFF  # inside the first chunk of the first row group
    victim.write_bytes(bytes(data))
    code, out, err = run(capsys, "verify", url, *flags(s3), "--no-cache")
    assert code == 1, err
    assert f"bad shard {shard}:" in out and out.count("bad shard") == 1
    # A shard the manifest lists, missing: the dataset does not open; bad data, not usage.
    victim.unlink()
    code, out, err = run(capsys, "verify", url, *flags(s3), "--no-cache")
    assert code == 1 and "does not open" in out and f"{url}/{shard}" in out, (out, err)
    code, _, err = run(capsys, "inspect", url, *flags(s3), "--no-cache")
    assert code == 1 and f"no such object: {url}/{shard}" in err and "Traceback" not in err


def test_the_environment_alone_configures_the_store(
    s3: S3Server, local: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    url = put(s3, local, "env")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    code, out, err = run(capsys, "inspect", url)
    assert code == 0 and f"rows        {ROWS}" in out, err
    code, out, err = run(capsys, "verify", url)
    assert code == 0 and out.startswith("OK:"), err
    code, out, err = run(capsys, "head", url, "-n", "1")
    assert code == 0 and "record 0" in out, err
    code, out, err = run(capsys, "merge", url, "-o", f"s3://{BUCKET}/env-merged")
    assert code == 0, err
    assert same(records(f"s3://{BUCKET}/env-merged"), records(str(local)))
    assert os.listdir(os.environ["TMPDIR"]) == []  # the staged shards are gone


def test_convert_writes_to_a_bucket_the_records_of_a_local_convert(
    s3: S3Server, tmp_path: Path, capsys
) -> None:
    parquet, images = F.pixmo_points(tmp_path / "points.parquet")
    cache = F.write_cache(tmp_path / "cache", {F.url(i): images[i] for i in range(4)})
    args = ["convert", str(parquet), "--preset", "pixmo-points", "--images", str(cache)]
    assert run(capsys, *args, "-o", str(tmp_path / "out"))[0] == 0
    url = f"s3://{BUCKET}/converted"
    code, text, err = run(
        capsys, *args, "-o", url, *flags(s3), "--report", str(tmp_path / "report.json"),
    )  # fmt: skip
    assert code == 0, err
    assert f"3 records to {url}" in text and "missing 1" in text
    assert json.loads((tmp_path / "report.json").read_text())["skipped"] == {"missing": 1}
    bucket_files = sorted(os.listdir(s3.root / BUCKET / "converted"))
    assert "manifest.json" in bucket_files and "convert-report.json" not in bucket_files
    opts = {"storage_options": s3.storage_options(), "cache": False}
    assert same(records(url, **opts), records(str(tmp_path / "out")))
    assert ps.Dataset(url, **opts).metadata == ps.Dataset(str(tmp_path / "out")).metadata
    # The URL holds a dataset now: --overwrite or nothing, and nothing is touched first.
    code, _, err = run(capsys, *args, "-o", url, *flags(s3))
    assert code == 2 and f"{url} already holds a dataset" in err and "--overwrite" in err
    code, _, err = run(capsys, *args, "-o", url, *flags(s3), "--overwrite", "--json")
    assert code == 0, err
    assert same(records(url, **opts), records(str(tmp_path / "out")))
    # Inputs are local; Ray stages on a shared file system.
    code, _, err = run(capsys, "convert", url, "--preset", "pixmo-points", "-o", "x")
    assert code == 2 and "local inputs only" in err
    code, _, err = run(capsys, *args, "-o", url, "--engine", "ray")
    assert code == 2 and "--engine ray" in err


def test_merge_to_from_and_within_a_bucket(
    s3: S3Server, local: Path, tmp_path: Path, capsys
) -> None:
    with ps.Writer(str(tmp_path / "b"), shard_bytes=1024, codecs={"caption": "none"}) as w:
        w.write_many(_record(i) for i in range(ROWS, ROWS + 4))
    want = records(str(local)) + records(str(tmp_path / "b"))
    assert run(capsys, "merge", str(local), str(tmp_path / "b"), "-o", str(tmp_path / "m"))[0] == 0
    assert same(records(str(tmp_path / "m")), want)

    up = f"s3://{BUCKET}/merged"
    code, out, err = run(capsys, "merge", str(local), str(tmp_path / "b"), "-o", up, *flags(s3))
    assert code == 0, err
    assert f"{ROWS + 4} rows" in out and "rewritten" in out and up in out
    opts = {"storage_options": s3.storage_options(), "cache": False}
    assert same(records(up, **opts), want)
    assert _codecs(up, **opts)["caption"] == ["zstd"]  # the inputs differ: the default
    assert run(capsys, "merge", str(tmp_path / "b"), "-o", f"{up}-b", *flags(s3))[0] == 0
    assert _codecs(f"{up}-b", **opts)["caption"] == ["none"]  # b's own, kept
    code, _, err = run(capsys, "merge", str(local), "-o", up, *flags(s3))
    assert code == 1 and "holds a dataset already" in err

    url_b = put(s3, tmp_path / "b", "b")
    down = tmp_path / "down"
    code, _, err = run(capsys, "merge", up, url_b, "-o", str(down), *flags(s3), "--no-cache")
    assert code == 0, err
    assert same(records(str(down)), want + records(str(tmp_path / "b")))
    assert run(capsys, "verify", str(down))[0] == 0
    code, _, err = run(capsys, "merge", up, "-o", f"{up}/inner", *flags(s3))
    assert code == 1 and "cannot be, hold or lie inside" in err
    code, _, err = run(capsys, "merge", up, "-o", str(tmp_path / "mv"), "--mode", "move")
    assert code == 2 and "--mode move" in err


def _codecs(path: str, **options: object) -> dict[str, list[str]]:
    from pixmo_stream.cli.common import column_totals

    return {c["name"]: c["codecs"] for c in column_totals(ps.Dataset(path, **options).info())}


def test_a_missing_dataset_or_bucket_is_a_usage_error_naming_the_url(s3: S3Server, capsys) -> None:
    for url in (f"s3://{BUCKET}/nowhere", "s3://no-such-bucket/data"):
        for command in ("inspect", "verify", "head"):
            code, out, err = run(capsys, command, url, *flags(s3))
            assert code == 2, (command, out, err)
            assert err == f"pixmo-stream: error: no dataset at {url} (no {url}/manifest.json)\n"
        code, _, err = run(capsys, "merge", url, "-o", "out", *flags(s3))
        assert code == 2 and url in err and "Traceback" not in err


def test_a_refusal_and_a_failing_store_are_one_line_each(s3: S3Server, local: Path, capsys) -> None:
    url = put(s3, local, "secret")
    s3.forbid(f"{BUCKET}/secret/*")
    for command in ("inspect", "verify", "head"):
        code, out, err = run(capsys, command, url, *flags(s3), "--no-cache")
        assert code == 1, (command, out, err)
        assert err.startswith(f"pixmo-stream: error: permission denied: {url}/manifest.json")
        assert err.count("\n") == 1 and "<?xml" not in err and "Traceback" not in err
    s3.clear_faults()
    s3.inject("503", count=1000, match=f"{BUCKET}/secret/*")
    code, _, err = run(capsys, "inspect", url, *flags(s3), "--no-cache")
    assert code == 3 and err.startswith(f"pixmo-stream: error: storage error: {url}/")
    assert err.count("\n") == 1


def test_a_refused_write_exits_as_a_refused_read_does(s3: S3Server, local: Path, capsys) -> None:
    (s3.root / "locked").mkdir(exist_ok=True)
    s3.forbid("locked*")
    url = "s3://locked/merged"
    code, out, err = run(capsys, "merge", str(local), "-o", url, *flags(s3))
    assert code == 1, (out, err)
    assert err.startswith(f"pixmo-stream: error: permission denied: {url} (")
    assert err.count("\n") == 1 and "<?xml" not in err and "Traceback" not in err


def test_bad_storage_flags_are_usage_errors(s3: S3Server, local: Path, capsys) -> None:
    url = put(s3, local, "flags")
    assert run(capsys, "inspect", url, "--storage-option", "endpoint")[0] == 2
    assert run(capsys, "inspect", url, "--cache-limit", "lots")[0] == 2
    assert run(capsys, "inspect", url, "--cache", "x", "--no-cache")[0] == 2
    code, _, err = run(capsys, "inspect", url, *flags(s3), "--storage-option", "bogus=1")
    assert code == 2 and "bogus" in err and "a bug?" not in err
    code, _, err = run(capsys, "convert", str(local), "-o", url, "--storage-option", "bogus=1")
    assert code == 2 and "bogus" in err
    for command in ("inspect", "verify", "head", "merge", "convert"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "--storage-option KEY=VALUE" in text and "AWS_ENDPOINT_URL" in text
        assert ("--no-cache" in text) == (command != "convert")
