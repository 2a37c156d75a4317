"""Datasets on object storage against an S3 server no one here wrote: moto's (``moto[server]``,
in this process, on 127.0.0.1). Writing, random reads, scans, a stream through DataLoader
workers, wrong credentials and a missing shard, each compared with the same records on disk."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pixmo_stream as ps
from pixmo_stream import synthetic
from test_object_store import plain

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

N = 24
BUCKET = "moto-bkt"


def write(path: str, **kw: Any) -> ps.WriteSummary:
    """N records in shards of a few row groups each."""
    with ps.Writer(
        path, synthetic.pixmo_schema(), row_group_rows=3, shard_bytes=1 << 20, **kw
    ) as w:
        for i in range(N):
            w.write(synthetic.make_record(i))
    assert w.summary is not None
    return w.summary


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """moto's server with an empty bucket: its endpoint and the storage options to use it."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                mp.delenv(name)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            opts = {"endpoint": endpoint, "allow_http": "true", "region": "us-east-1",
                    "access_key_id": "testing", "secret_access_key": "testing"}  # fmt: skip
            client(endpoint).create_bucket(Bucket=BUCKET)
            yield endpoint, opts
        finally:
            server.stop()


def client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("moto-local") / "ds"
    write(str(path))
    return path


@pytest.fixture(scope="module")
def url(moto: tuple[str, dict[str, str]], local: Path) -> str:
    """The dataset written to moto's bucket through `ps.Writer`."""
    _, opts = moto
    summary = write(f"s3://{BUCKET}/ds", storage_options=opts)
    assert summary.path == f"s3://{BUCKET}/ds" and summary.num_rows == N
    return summary.path


def test_written_objects_are_the_local_files(moto: Any, url: str, local: Path) -> None:
    endpoint, _ = moto
    s3 = client(endpoint)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="ds/")["Contents"]
    assert {o["Key"].removeprefix("ds/") for o in listed} == {f.name for f in local.iterdir()}
    for f in local.glob("*.pxs"):
        body = s3.get_object(Bucket=BUCKET, Key=f"ds/{f.name}")["Body"].read()
        assert body == f.read_bytes(), f.name  # shards are deterministic
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key="ds/manifest.json")["Body"].read())
    assert [s["file"] for s in manifest["shards"]] == sorted(f.name for f in local.glob("*.pxs"))


def test_reads_and_scans_give_the_records_on_disk(
    moto: Any, url: str, local: Path, tmp_path: Path
) -> None:
    _, opts = moto
    ref = ps.Dataset(local)
    assert ref.num_shards > 1
    for cache in (False, tmp_path / "cache"):
        ds = ps.Dataset(url, storage_options=opts, cache=cache)
        assert len(ds) == N and ds.schema == ref.schema
        assert [plain(r) for r in ds] == [plain(r) for r in ref]
        idx = [5, 0, N - 1, 5]
        assert [plain(r) for r in ds.take(idx)] == [plain(r) for r in ref.take(idx)]
        got = [r["captions"] for r in ds.iter(columns=["captions"])]
        assert got == [r["captions"] for r in ref.iter(columns=["captions"])]
        assert ds.verify().ok


def test_a_stream_through_dataloader_workers(
    moto: Any, url: str, local: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    _, opts = moto
    for cache in (False, tmp_path / "cache"):
        sds = ps.StreamingDataset(url, storage_options=opts, cache=cache, seed=2, shuffle_window=N)
        ref = ps.StreamingDataset(local, seed=2, shuffle_window=N)
        got = [plain(r) for r in ps.DataLoader(sds, batch_size=None, num_workers=2)]
        assert got == [plain(r) for r in ps.DataLoader(ref, batch_size=None, num_workers=2)]
        assert len(got) == N


def _set_auth(endpoint: str, after: str) -> None:
    """moto checks credentials on every request after `after` more ("inf": never)."""
    req = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=after.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(req, timeout=30).close()


def test_wrong_credentials_are_a_permission_error_naming_the_url(moto: Any, url: str) -> None:
    endpoint, opts = moto
    wrong = dict(opts, access_key_id="AKIAWRONGWRONGWRONG1", secret_access_key="wrong")
    _set_auth(endpoint, "0")
    try:
        with pytest.raises(PermissionError) as e:
            ps.Dataset(url, storage_options=wrong, cache=False)
        assert e.value.url == e.value.filename == f"{url}/manifest.json"
        with pytest.raises(PermissionError) as e:
            write(f"s3://{BUCKET}/refused", storage_options=wrong)
        assert not isinstance(e.value, ps.StorageError)
        assert e.value.url == e.value.filename == f"s3://{BUCKET}/refused"
        assert "InvalidAccessKeyId" in str(e.value) and "<?xml" not in str(e.value)
    finally:
        _set_auth(endpoint, "inf")


def test_a_missing_shard_is_file_not_found_naming_it(moto: Any, local: Path) -> None:
    endpoint, opts = moto
    holes = write(f"s3://{BUCKET}/holes", storage_options=opts).path
    client(endpoint).delete_object(Bucket=BUCKET, Key="holes/shard-00001.pxs")
    ds = ps.Dataset(holes, storage_options=opts, cache=False)
    first = ps.Dataset(local)._native.row_group_layout()
    row = next(g[2] for g in first if g[0] == 1)
    assert plain(ds[0]) == plain(ps.Dataset(local)[0])  # shard 0 is there
    with pytest.raises(FileNotFoundError) as e:
        ds[row]
    assert e.value.filename == f"{holes}/shard-00001.pxs"
    with pytest.raises(FileNotFoundError, match="shard-00001.pxs"):
        list(ds.iter(columns=["captions"]))
