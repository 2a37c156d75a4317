"""Damaged files: every error is a typed PixmoError naming the file; never a crash, never a
silently different value."""

from __future__ import annotations

import pickle
import shutil
import struct
from pathlib import Path

import pytest

import pixmo_stream as ps

GOLDEN_ROOT = Path(__file__).parent / "golden"
GOLDEN = GOLDEN_ROOT / "v1.0"
CURRENT = GOLDEN_ROOT / "v{}.{}".format(*ps.FORMAT_VERSION)


def read_everything(path: Path) -> list[dict]:
    """Reads every value, every image byte included, without calling `verify()`."""
    ds = ps.Dataset(path)
    rows = list(ds)
    for r in rows:
        for v in r.values():
            if isinstance(v, ps.Blob):
                bytes(v)  # a blob's pages are verified when its bytes are first read
    return rows


def verify_only(path: Path) -> None:
    report = ps.Dataset(path).verify()
    if not report.ok:
        raise ps.CorruptDataError(report.errors[0])


@pytest.fixture(params=["v1.0", CURRENT.name])
def shard(request, tmp_path) -> Path:
    p = tmp_path / "shard.pxs"
    shutil.copy(GOLDEN_ROOT / request.param / "shard-00000.pxs", p)
    return p


@pytest.mark.parametrize("check", [read_everything, verify_only])
def test_every_single_byte_flip_is_an_error(shard, check):
    good = shard.read_bytes()
    assert len(read_everything(shard)) == 3
    for at in range(len(good)):
        bad = bytearray(good)
        bad[at] ^= 0x01
        shard.write_bytes(bytes(bad))
        with pytest.raises(ps.PixmoError) as e:
            check(shard)
        assert "shard.pxs" in str(e.value), (at, str(e.value))


def test_every_truncation_is_an_error(shard):
    good = shard.read_bytes()
    for n in range(len(good)):
        shard.write_bytes(good[:n])
        with pytest.raises(ps.CorruptDataError, match="shard.pxs"):
            read_everything(shard)


def image_chunk(path: Path) -> tuple[int, int, int]:
    """(row group, file offset, stored length) of the largest `image` chunk of a shard."""
    from pixmo_stream import purepy

    sh = purepy.Shard(str(path))
    c = sh.column_index("image")
    g, col = max(enumerate(sh.row_groups), key=lambda gc: gc[1][1][c]["stored_len"])
    return g, col[1][c]["offset"], col[1][c]["stored_len"]


@pytest.fixture()
def paged_shard(tmp_path) -> Path:
    """A shard whose image chunk spans three 64 KiB pages: rows 3 (small) and 4 (150 KB)."""
    p = tmp_path / "paged.pxs"
    shutil.copy(CURRENT / "shard-00001.pxs", p)
    return p


def test_damage_in_one_page_fails_only_the_values_on_it(paged_shard):
    g, off, length = image_chunk(paged_shard)
    assert length > 2 * 65536
    good = ps.Dataset(paged_shard)
    small, big = bytes(good[0]["image"]), bytes(good[1]["image"])
    assert len(big) > 150_000
    data = bytearray(paged_shard.read_bytes())
    data[off + 2 * 65536 + 100] ^= 0x40  # page 2 holds only the end of the big image
    paged_shard.write_bytes(bytes(data))

    for zero_copy in (True, False):
        ds = ps.Dataset(paged_shard, zero_copy=zero_copy)
        # The other image of the chunk lies on page 0 only: it reads, unchanged.
        assert bytes(ds[0]["image"]) == small
        assert ds.take([1], columns=["id"]) == [{"id": 4}]  # other columns of the row read
        with pytest.raises(ps.CorruptDataError, match="paged.pxs") as e:
            ds[1]
        assert e.value.row_group == g and e.value.column == "image"
        assert "page 2" in str(e.value)
        if zero_copy:
            # A scan hands out views without reading them; a view verifies its pages when its
            # bytes are first read, so the intact image reads and the damaged one raises.
            scanned = [r["image"] for r in ds.iter(columns=["image"])]
            assert bytes(scanned[0]) == small and len(scanned[1]) == len(big)
            for read in (bytes, memoryview, lambda b: b == big, pickle.dumps):
                with pytest.raises(ps.CorruptDataError, match="page 2"):
                    read(scanned[1])
        else:
            with pytest.raises(ps.CorruptDataError, match="page 2"):
                list(ds.iter(columns=["image"]))
    report = ps.Dataset(paged_shard).verify()
    assert not report.ok and "page 2" in report.errors[0]


def test_damaged_padding_after_a_paged_chunk_is_found_with_its_last_page(paged_shard):
    _, off, length = image_chunk(paged_shard)
    assert length % 64, "the chunk needs padding after it for this test"
    data = bytearray(paged_shard.read_bytes())
    data[off + length] = 1
    paged_shard.write_bytes(bytes(data))
    ds = ps.Dataset(paged_shard)
    assert bytes(ds[0]["image"])  # page 0 is intact
    with pytest.raises(ps.CorruptDataError, match="padding"):
        ds[1]


def test_wrong_number_of_page_checksums_is_corrupt(paged_shard):
    """A footer whose page_xxh3 does not match the chunk's page count is refused at open,
    by both readers."""
    import msgpack

    from pixmo_stream import purepy

    data = paged_shard.read_bytes()
    (flen,) = struct.unpack_from("<Q", data, len(data) - 24)
    fstart = len(data) - 24 - flen
    footer = msgpack.unpackb(data[fstart : len(data) - 24])
    col = next(c for rg in footer["row_groups"] for c in rg["columns"] if "page_xxh3" in c)
    col["page_xxh3"] = col["page_xxh3"][:-8]
    new = msgpack.packb(footer)
    trailer = struct.pack("<QIHH8s", len(new), purepy.crc32c(new), *ps.FORMAT_VERSION, b"PIXMOSTR")
    paged_shard.write_bytes(data[:fstart] + new + trailer)  # the footer starts where it did
    with pytest.raises(ps.CorruptDataError, match="page_xxh3"):
        ps.Dataset(paged_shard)
    with pytest.raises(purepy.CorruptDataError, match="page_xxh3"):
        purepy.open_dataset(str(paged_shard))


def test_truncated_shard_in_a_dataset_names_the_shard(tmp_path):
    d = tmp_path / "d"
    shutil.copytree(GOLDEN, d)
    p = d / "shard-00001.pxs"
    p.write_bytes(p.read_bytes()[:-10])
    ds = ps.Dataset(d)  # the manifest opens fine; the shard is checked when first used
    assert ds[0]["id"] == 0
    with pytest.raises(ps.CorruptDataError, match="shard-00001.pxs.*manifest says"):
        ds[4]
    report = ds.verify()
    assert not report.ok and any("shard-00001.pxs" in e for e in report.errors)


def test_unknown_major_version_is_refused(shard):
    data = bytearray(shard.read_bytes())
    data[8:10] = struct.pack("<H", 2)
    data[-12:-10] = struct.pack("<H", 2)
    shard.write_bytes(bytes(data))
    with pytest.raises(
        ps.UnsupportedVersionError, match=r"version 2\.\d+; this reader reads major version 1"
    ):
        ps.Dataset(shard)


def test_newer_minor_version_is_read(shard):
    data = bytearray(shard.read_bytes())
    data[10:12] = struct.pack("<H", 7)
    data[-10:-8] = struct.pack("<H", 7)
    shard.write_bytes(bytes(data))
    assert len(list(ps.Dataset(shard))) == 3


def test_garbled_manifest(tmp_path):
    d = tmp_path / "d"
    shutil.copytree(GOLDEN, d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(ps.CorruptDataError, match="manifest.json"):
        ps.Dataset(d)
    (d / "manifest.json").write_text('{"format": "pixmo-stream", "version": [9, 0]}')
    with pytest.raises(ps.UnsupportedVersionError):
        ps.Dataset(d)


def test_not_a_shard(tmp_path):
    p = tmp_path / "x.pxs"
    p.write_bytes(b"<html>404 not found</html>" * 10)
    with pytest.raises(ps.CorruptDataError, match="magic"):
        ps.Dataset(p)


def test_streaming_over_a_damaged_page_raises_and_stops(paged_shard):
    pytest.importorskip("torch")
    _, off, _ = image_chunk(paged_shard)
    data = bytearray(paged_shard.read_bytes())
    data[off + 65536 + 7] ^= 0x01  # page 1: only the big image (row 4) lies on it
    paged_shard.write_bytes(bytes(data))
    sds = ps.StreamingDataset(str(paged_shard), shuffle=True, seed=3)
    with pytest.raises(ps.CorruptDataError, match="paged.pxs.*page 1"):
        list(sds)
    # Without the image column nothing damaged is read.
    assert sorted(r["id"] for r in ps.StreamingDataset(str(paged_shard), columns=["id"])) == [
        3,
        4,
        5,
    ]
