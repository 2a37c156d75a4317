"""The local S3 server (``tests/s3_server/``) answers as S3 does where clients rely on it.

Driven with boto3 and with obstore, the Python binding of the Rust ``object_store`` crate our
core uses: what obstore does against this server, our Rust client does too.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3_server import S3Server, S3ServerProcess, parse_range

boto3 = pytest.importorskip("boto3")
obstore = pytest.importorskip("obstore")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, ResponseStreamingError  # noqa: E402
from obstore.store import HTTPStore, S3Store  # noqa: E402

BUCKET = "bkt"
MiB = 1 << 20
# Fail fast: a test waits on the server, not on backoff.
FAST_RETRY = {
    "max_retries": 3,
    "backoff": {
        "init_backoff": datetime.timedelta(milliseconds=20),
        "max_backoff": datetime.timedelta(milliseconds=100),
        "base": 2.0,
    },
    "retry_timeout": datetime.timedelta(seconds=10),
}


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    (tmp_path / "root" / BUCKET).mkdir(parents=True)
    with S3Server(tmp_path / "root") as server:
        yield server


def _boto(endpoint: str, **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, **config),
    )


@pytest.fixture
def client(s3: S3Server) -> Iterator[Any]:
    c = _boto(s3.endpoint)
    yield c
    c.close()


@pytest.fixture
def store(s3: S3Server) -> S3Store:
    return S3Store(
        BUCKET,
        config=s3.storage_options(),
        client_options={"timeout": "1s"},
        retry_config=FAST_RETRY,
    )


def _code(e: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


# --- boto3 -------------------------------------------------------------------------------------


def test_put_get_head(client: Any, s3: S3Server) -> None:
    body = os.urandom(70_000)
    put = client.put_object(
        Bucket=BUCKET, Key="a/b.bin", Body=body, ContentType="image/jpeg", Metadata={"x": "1"}
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'  # S3's ETag of a plain PUT
    got = client.get_object(Bucket=BUCKET, Key="a/b.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"] and got["ContentType"] == "image/jpeg"
    assert got["Metadata"] == {"x": "1"}
    head = client.head_object(Bucket=BUCKET, Key="a/b.bin")
    assert head["ContentLength"] == len(body) and head["ETag"] == put["ETag"]
    assert abs(head["LastModified"].timestamp() - time.time()) < 60
    assert (s3.root / BUCKET / "a" / "b.bin").read_bytes() == body
    assert not list((s3.root / ".s3-tmp").iterdir())  # written aside, then renamed


@pytest.mark.parametrize(
    ("header", "span"),
    [("bytes=10-19", (10, 20)), ("bytes=990-", (990, 1000)), ("bytes=-7", (993, 1000)),
     ("bytes=995-5000", (995, 1000)), ("bytes=-5000", (0, 1000))],
)  # fmt: skip
def test_ranges(client: Any, header: str, span: tuple[int, int]) -> None:
    body = bytes(range(250)) * 4
    client.put_object(Bucket=BUCKET, Key="r", Body=body)
    got = client.get_object(Bucket=BUCKET, Key="r", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {span[0]}-{span[1] - 1}/1000"
    assert got["Body"].read() == body[span[0] : span[1]]


def test_unsatisfiable_range_and_ignored_ranges(client: Any) -> None:
    client.put_object(Bucket=BUCKET, Key="r", Body=b"x" * 100)
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=BUCKET, Key="r", Range="bytes=100-")
    assert _code(e) == (416, "InvalidRange")
    assert parse_range("bytes=0-1,5-6", 100) is None  # several ranges: the whole object
    assert parse_range("items=0-1", 100) is None
    with pytest.raises(Exception, match="InvalidRange"):
        parse_range("bytes=-0", 100)


def test_missing_key_and_bucket(client: Any) -> None:
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=BUCKET, Key="nope")
    assert _code(e) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket="no-such-bucket", Key="k")
    assert _code(e) == (404, "NoSuchBucket")
    with pytest.raises(ClientError) as e:
        client.head_object(Bucket=BUCKET, Key="nope")
    assert _code(e)[0] == 404
    client.put_object(Bucket=BUCKET, Key="dir/file", Body=b"1")
    with pytest.raises(ClientError) as e:  # a "directory" is not an object
        client.get_object(Bucket=BUCKET, Key="dir")
    assert _code(e) == (404, "NoSuchKey")


def test_buckets(client: Any) -> None:
    client.create_bucket(Bucket="fresh")
    client.head_bucket(Bucket="fresh")
    assert {b["Name"] for b in client.list_buckets()["Buckets"]} == {BUCKET, "fresh"}
    client.put_object(Bucket="fresh", Key="k", Body=b"1")
    with pytest.raises(ClientError) as e:
        client.delete_bucket(Bucket="fresh")
    assert _code(e) == (409, "BucketNotEmpty")
    client.delete_object(Bucket="fresh", Key="k")
    client.delete_bucket(Bucket="fresh")
    with pytest.raises(ClientError) as e:
        client.head_bucket(Bucket="fresh")
    assert _code(e)[0] == 404


KEYS = ["a.txt", "d/1", "d/2", "d/e/3", "d/e/4", "d/f/5", "d/g", "sp ace+plus/é", "z"]


def _fill(client: Any) -> None:
    for k in KEYS:
        client.put_object(Bucket=BUCKET, Key=k, Body=k.encode())


def _expected(prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
    keys, prefixes = [], []
    for k in KEYS:
        if not k.startswith(prefix):
            continue
        i = k.find(delimiter, len(prefix)) if delimiter else -1
        if i < 0:
            keys.append(k)
        elif k[: i + 1] not in prefixes:
            prefixes.append(k[: i + 1])
    return keys, prefixes


@pytest.mark.parametrize(("prefix", "delimiter"), [("", ""), ("", "/"), ("d/", "/"), ("d/e", "")])
@pytest.mark.parametrize("page", [1, 2, 1000])
def test_list_v2_paginates(client: Any, prefix: str, delimiter: str, page: int) -> None:
    _fill(client)
    keys, prefixes, pages = [], [], 0
    kw = {"Bucket": BUCKET, "Prefix": prefix, "Delimiter": delimiter}
    for resp in client.get_paginator("list_objects_v2").paginate(
        **kw, PaginationConfig={"PageSize": page}
    ):
        pages += 1
        assert resp["KeyCount"] <= page
        keys += [c["Key"] for c in resp.get("Contents", [])]
        prefixes += [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
    assert (keys, prefixes) == _expected(prefix, delimiter)
    if page == 1:
        assert pages == len(keys) + len(prefixes)


def test_list_v2_start_after_and_sizes(client: Any) -> None:
    _fill(client)
    resp = client.list_objects_v2(Bucket=BUCKET, StartAfter="d/e/3")
    assert [c["Key"] for c in resp["Contents"]] == KEYS[4:]
    c = resp["Contents"][0]
    assert c["Size"] == len("d/e/4") and c["ETag"] == f'"{hashlib.md5(b"d/e/4").hexdigest()}"'
    assert resp["IsTruncated"] is False and "NextContinuationToken" not in resp


def test_list_v1(client: Any) -> None:
    _fill(client)
    keys, prefixes = [], []
    for resp in client.get_paginator("list_objects").paginate(
        Bucket=BUCKET, Delimiter="/", PaginationConfig={"PageSize": 2}
    ):
        keys += [c["Key"] for c in resp.get("Contents", [])]
        prefixes += [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
    assert (keys, prefixes) == _expected("", "/")


def test_multipart(client: Any, s3: S3Server) -> None:
    up = client.create_multipart_upload(Bucket=BUCKET, Key="mp", ContentType="x/y")["UploadId"]
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    etags = [
        client.upload_part(Bucket=BUCKET, Key="mp", UploadId=up, PartNumber=i + 1, Body=p)["ETag"]
        for i, p in enumerate(parts)
    ]
    assert etags == [f'"{hashlib.md5(p).hexdigest()}"' for p in parts]
    listing = [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]
    with pytest.raises(ClientError) as e:
        client.complete_multipart_upload(
            Bucket=BUCKET, Key="mp", UploadId=up, MultipartUpload={"Parts": listing[::-1]}
        )
    assert _code(e) == (400, "InvalidPartOrder")
    with pytest.raises(ClientError):  # not there until completed
        client.head_object(Bucket=BUCKET, Key="mp")
    done = client.complete_multipart_upload(
        Bucket=BUCKET, Key="mp", UploadId=up, MultipartUpload={"Parts": listing}
    )
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-2"'  # S3's multipart ETag
    got = client.get_object(Bucket=BUCKET, Key="mp")
    assert got["Body"].read() == b"".join(parts) and got["ContentType"] == "x/y"
    assert not list((s3.root / ".s3-uploads").iterdir())


def test_multipart_too_small_and_abort(client: Any, s3: S3Server) -> None:
    up = client.create_multipart_upload(Bucket=BUCKET, Key="mp")["UploadId"]
    listing = [
        {"PartNumber": n, "ETag": client.upload_part(
            Bucket=BUCKET, Key="mp", UploadId=up, PartNumber=n, Body=b"x" * 100
        )["ETag"]}
        for n in (1, 2)
    ]  # fmt: skip
    with pytest.raises(ClientError) as e:  # parts but the last must be >= 5 MiB, as on S3
        client.complete_multipart_upload(
            Bucket=BUCKET, Key="mp", UploadId=up, MultipartUpload={"Parts": listing}
        )
    assert _code(e) == (400, "EntityTooSmall")
    client.abort_multipart_upload(Bucket=BUCKET, Key="mp", UploadId=up)
    with pytest.raises(ClientError) as e:
        client.upload_part(Bucket=BUCKET, Key="mp", UploadId=up, PartNumber=3, Body=b"x")
    assert _code(e) == (404, "NoSuchUpload")
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET)
    # An upload never completed leaves no object either.
    client.create_multipart_upload(Bucket=BUCKET, Key="never")
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET)


def test_boto3_managed_transfers(client: Any, s3: S3Server, tmp_path: Path) -> None:
    body = os.urandom(17 * MiB)  # above boto3's 8 MiB threshold: multipart up, ranged down
    client.upload_fileobj(io.BytesIO(body), BUCKET, "big")
    assert s3.ops["UploadPart"] == 3 and s3.ops["CompleteMultipartUpload"] == 1
    out = tmp_path / "big"
    client.download_file(BUCKET, "big", str(out))
    assert out.read_bytes() == body


def test_copy_and_delete(client: Any, s3: S3Server) -> None:
    client.put_object(Bucket=BUCKET, Key="src/a", Body=b"abc", ContentType="t/a")
    client.copy_object(Bucket=BUCKET, Key="dst/a", CopySource={"Bucket": BUCKET, "Key": "src/a"})
    got = client.get_object(Bucket=BUCKET, Key="dst/a")
    assert got["Body"].read() == b"abc" and got["ContentType"] == "t/a"
    client.delete_object(Bucket=BUCKET, Key="src/a")
    client.delete_object(Bucket=BUCKET, Key="src/a")  # deleting what is gone succeeds, as on S3
    assert not (s3.root / BUCKET / "src").exists()  # no empty "directory" left
    client.put_object(Bucket=BUCKET, Key="x", Body=b"1")
    resp = client.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": "x"}, {"Key": "dst/a"}, {"Key": "gone"}]}
    )
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["dst/a", "gone", "x"]
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET)


def test_conditional_requests(client: Any) -> None:
    etag = client.put_object(Bucket=BUCKET, Key="c", Body=b"1")["ETag"]
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=BUCKET, Key="c", IfNoneMatch=etag)
    assert _code(e)[0] == 304
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=BUCKET, Key="c", IfMatch='"other"')
    assert _code(e) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as e:
        client.put_object(Bucket=BUCKET, Key="c", Body=b"2", IfNoneMatch="*")
    assert _code(e) == (412, "PreconditionFailed")
    assert client.get_object(Bucket=BUCKET, Key="c", IfMatch=etag)["Body"].read() == b"1"


# --- request bodies ------------------------------------------------------------------------------


def _raw_put(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


def test_aws_chunked_bodies(s3: S3Server, client: Any) -> None:
    from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

    data = os.urandom(200_000)
    # What boto3 sends by default (over https): unsigned chunks and a trailing CRC32.
    framed = AwsChunkedWrapper(
        io.BytesIO(data), Crc32Checksum, "x-amz-checksum-crc32", chunk_size=65536
    ).read()
    trailer = {
        "Content-Encoding": "aws-chunked",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data)),
    }
    assert _raw_put(s3.url(BUCKET, "chunked"), framed, trailer)[0] == 200
    got = client.get_object(Bucket=BUCKET, Key="chunked")
    assert got["Body"].read() == data and "ContentEncoding" not in got
    # SigV4-signed chunks (signatures are not checked), no trailer.
    sig = ";chunk-signature=" + "0" * 64
    signed = f"{len(data):x}{sig}\r\n".encode() + data + f"\r\n0{sig}\r\n\r\n".encode()
    headers = {
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-decoded-content-length": str(len(data)),
    }
    assert _raw_put(s3.url(BUCKET, "signed"), signed, headers)[0] == 200
    assert (s3.root / BUCKET / "signed").read_bytes() == data
    # A wrong trailing checksum is refused and stores nothing.
    bad = framed.replace(b"x-amz-checksum-crc32:", b"x-amz-checksum-crc32:AAAA")
    status, body = _raw_put(
        s3.url(BUCKET, "bad"), bad, {**headers, "Content-Encoding": "aws-chunked"}
    )
    assert status == 400 and b"BadDigest" in body
    assert not (s3.root / BUCKET / "bad").exists()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_boto3_sends_aws_chunked(tmp_path: Path) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    with S3Server(tmp_path / "root", ssl_context=ctx) as server:
        c = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
            verify=str(cert),
        )
        try:
            c.create_bucket(Bucket=BUCKET)
            data = os.urandom(300_000)
            c.put_object(Bucket=BUCKET, Key="k", Body=io.BytesIO(data))
            assert (
                c.get_object(Bucket=BUCKET, Key="k", Range="bytes=-10")["Body"].read()
                == (data[-10:])
            )
        finally:
            c.close()
        puts = [e for e in server.stats(log=True)["log"] if e["op"] == "PutObject"]
        assert puts and puts[0].get("aws_chunked")  # boto3's default over https
        assert (server.root / BUCKET / "k").read_bytes() == data


# --- obstore (the object_store crate) ------------------------------------------------------------


def test_obstore_roundtrip(store: S3Store, s3: S3Server, tmp_path: Path) -> None:
    put = obstore.put(store, "p/one", b"0123456789")
    assert bytes(obstore.get(store, "p/one").bytes()) == b"0123456789"
    assert bytes(obstore.get_range(store, "p/one", start=2, end=5)) == b"234"
    assert bytes(obstore.get_range(store, "p/one", start=7, length=3)) == b"789"
    ranges = obstore.get_ranges(store, "p/one", starts=[0, 8], ends=[1, 10])
    assert [bytes(r) for r in ranges] == [b"0", b"89"]
    suffix = obstore.get(store, "p/one", options={"range": {"suffix": 4}})
    assert bytes(suffix.bytes()) == b"6789"
    head = obstore.head(store, "p/one")
    assert head["size"] == 10 and head["e_tag"] == put["e_tag"]
    obstore.copy(store, "p/one", "p/two")
    obstore.rename(store, "p/two", "q/three")
    listed = obstore.list_with_delimiter(store)
    assert listed["common_prefixes"] == ["p", "q"] and listed["objects"] == []
    assert [m["path"] for m in obstore.list(store, "q").collect()] == ["q/three"]
    obstore.delete(store, "q/three")
    with pytest.raises(FileNotFoundError):
        obstore.get(store, "q/three")
    with pytest.raises(FileNotFoundError):
        obstore.head(store, "nope")


def test_obstore_listing_pages(store: S3Store, s3: S3Server) -> None:
    (s3.root / BUCKET / "many").mkdir()
    for i in range(1005):  # S3 pages at 1000 keys
        (s3.root / BUCKET / "many" / f"{i:05d}").write_bytes(b"")
    paths = [m["path"] for batch in obstore.list(store, "many") for m in batch]
    assert paths == [f"many/{i:05d}" for i in range(1005)]
    assert s3.ops["ListObjectsV2"] == 2


def test_obstore_multipart_put(store: S3Store, s3: S3Server, tmp_path: Path) -> None:
    data = os.urandom(12 * MiB)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    with open(src, "rb") as f:  # over 10 MB: obstore goes multipart (5 MiB parts)
        obstore.put(store, "big", f)
    assert s3.ops["CreateMultipartUpload"] == 1 and s3.ops["UploadPart"] == 3
    assert s3.ops["CompleteMultipartUpload"] == 1
    assert bytes(obstore.get(store, "big").bytes()) == data
    assert obstore.head(store, "big")["e_tag"].endswith('-3"')


def test_obstore_conditional_put(store: S3Store) -> None:
    first = obstore.put(store, "c", b"1", mode="create")
    with pytest.raises(obstore.exceptions.AlreadyExistsError):
        obstore.put(store, "c", b"2", mode="create")
    second = obstore.put(store, "c", b"3", mode={"e_tag": first["e_tag"]})
    with pytest.raises(obstore.exceptions.PreconditionError):
        obstore.put(store, "c", b"4", mode={"e_tag": first["e_tag"]})
    with pytest.raises(obstore.exceptions.NotModifiedError):
        obstore.get(store, "c", options={"if_none_match": second["e_tag"]})


def test_http_store_on_the_same_urls(s3: S3Server) -> None:
    (s3.root / BUCKET / "d").mkdir()
    (s3.root / BUCKET / "d" / "f").write_bytes(b"abcdef")
    http = HTTPStore.from_url(f"{s3.endpoint}/{BUCKET}", client_options={"allow_http": True})
    assert bytes(obstore.get_range(http, "d/f", start=1, end=3)) == b"bc"
    assert bytes(obstore.get(http, "d/f").bytes()) == b"abcdef"
    assert obstore.head(http, "d/f")["size"] == 6
    with pytest.raises(FileNotFoundError):
        obstore.get(http, "d/missing")
    assert s3.ops["GetObject"] == 3 and s3.ops["HeadObject"] == 1


# --- faults and instrumentation ------------------------------------------------------------------


def test_503_then_success(client: Any, store: S3Store, s3: S3Server) -> None:
    client.put_object(Bucket=BUCKET, Key="k", Body=b"payload")
    s3.inject("503", count=1, match=f"{BUCKET}/k")
    assert client.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"payload"
    s3.inject("503", count=2)
    s3.inject("500", count=1)
    assert bytes(obstore.get(store, "k").bytes()) == b"payload"
    assert s3.statuses[503] == 3 and s3.statuses[500] == 1
    assert not s3.faults  # all used up


def test_429_and_forbidden(store: S3Store, s3: S3Server) -> None:
    obstore.put(store, "k", b"1")
    s3.inject("429", count=1, match=f"{BUCKET}/k", methods=["GET"])
    assert bytes(obstore.get(store, "k").bytes()) == b"1"  # object_store retries 429
    assert s3.statuses[429] == 1
    s3.forbid(f"{BUCKET}/secret/*")
    obstore.put(store, "public", b"1")
    with pytest.raises(obstore.exceptions.PermissionDeniedError):
        obstore.get(store, "secret/x")


def test_dropped_connection(client: Any, store: S3Store, s3: S3Server) -> None:
    data = os.urandom(2 * MiB)
    obstore.put(store, "k", data)
    s3.reset()
    s3.inject("drop", count=1, match=f"{BUCKET}/k")
    with pytest.raises(ResponseStreamingError):  # boto3's get_object does not retry bodies
        client.get_object(Bucket=BUCKET, Key="k")["Body"].read()
    assert s3.key_stats(f"{BUCKET}/k") == {"requests": 1, "bytes": MiB}
    # object_store resumes a cut body with a ranged GET of the rest.
    s3.inject("drop", count=1, match=f"{BUCKET}/k", fraction=0.25)
    assert bytes(obstore.get(store, "k").bytes()) == data
    log = [(e["status"], e.get("range")) for e in s3.stats(log=True)["log"]][-2:]
    assert log == [(200, None), (206, f"bytes={MiB // 2}-{2 * MiB - 1}")]
    s3.inject("close", count=1)  # cut before any response: retried
    assert bytes(obstore.get(store, "k").bytes()) == data


def test_stall(store: S3Store, s3: S3Server) -> None:
    obstore.put(store, "k", b"x" * 1000)
    s3.inject("stall", count=1, seconds=3)  # past the store's 1 s timeout: retried
    t = time.perf_counter()
    assert bytes(obstore.get(store, "k").bytes()) == b"x" * 1000
    assert 1.0 <= time.perf_counter() - t < 2.9
    s3.inject("stall", count=1, seconds=0.3, fraction=0.5)  # mid-body, under the timeout
    t = time.perf_counter()
    assert bytes(obstore.get(store, "k").bytes()) == b"x" * 1000
    assert time.perf_counter() - t >= 0.3


def test_latency_and_counters(store: S3Store, s3: S3Server) -> None:
    obstore.put(store, "k", b"x" * 5000)
    s3.reset()
    s3.latency = 0.1
    t = time.perf_counter()
    obstore.get_range(store, "k", start=0, end=1000)
    assert time.perf_counter() - t >= 0.1
    s3.latency = 0.0
    obstore.get(store, "k").bytes()
    obstore.head(store, "k")
    assert s3.requests == 3 and s3.bytes_sent == 6000
    assert s3.ops == {"GetObject": 2, "HeadObject": 1}
    assert s3.key_stats(f"{BUCKET}/k") == {"requests": 3, "bytes": 6000}
    s3.reset()
    assert s3.requests == 0 and s3.stats()["keys"] == {}


def test_separate_process_and_admin(tmp_path: Path) -> None:
    (tmp_path / BUCKET).mkdir()
    (tmp_path / BUCKET / "k").write_bytes(b"y" * 4096)
    with S3ServerProcess(tmp_path, latency=0.05) as proc:
        store = S3Store(BUCKET, config=proc.storage_options(), retry_config=FAST_RETRY)
        t = time.perf_counter()
        assert bytes(obstore.get_range(store, "k", start=0, end=100)) == b"y" * 100
        assert time.perf_counter() - t >= 0.05
        stats = proc.stats()
        assert stats["requests"] == 1 and stats["bytes_sent"] == 100
        assert stats["keys"] == {f"{BUCKET}/k": {"requests": 1, "bytes": 100}}
        proc.reset()
        proc.set_latency(0.0)
        proc.inject("503", count=1)
        proc.configure({"forbidden": [f"{BUCKET}/no*"]})
        assert bytes(obstore.get(store, "k").bytes()) == b"y" * 4096
        with pytest.raises(obstore.exceptions.PermissionDeniedError):
            obstore.get(store, "nope")
        stats = proc.stats(log=True)
        assert stats["statuses"] == {"503": 1, "200": 1, "403": 1}
        assert [e["op"] for e in stats["log"]] == ["GetObject"] * 3
        req = urllib.request.Request(f"{proc.endpoint}/_admin/faults", data=b"{", method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        e.value.close()
        assert e.value.code == 400
    assert json.loads(json.dumps(stats))  # stats are JSON
