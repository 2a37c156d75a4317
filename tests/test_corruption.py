"""Damaged files: every error is a typed PixmoError naming the file; never a crash, never a
silently different value."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

import pixmo_stream as ps

GOLDEN = Path(__file__).parent / "golden" / "v1.0"


def read_everything(path: Path) -> list[dict]:
    ds = ps.Dataset(path)
    rows = list(ds)
    report = ds.verify()
    if not report.ok:
        raise ps.CorruptDataError(report.errors[0])
    return rows


@pytest.fixture()
def shard(tmp_path) -> Path:
    p = tmp_path / "shard.pxs"
    shutil.copy(GOLDEN / "shard-00000.pxs", p)
    return p


def test_every_single_byte_flip_is_an_error(shard):
    good = shard.read_bytes()
    expected = read_everything(shard)
    assert len(expected) == 3
    for at in range(len(good)):
        bad = bytearray(good)
        bad[at] ^= 0x01
        shard.write_bytes(bytes(bad))
        with pytest.raises(ps.PixmoError) as e:
            read_everything(shard)
        assert "shard.pxs" in str(e.value), (at, str(e.value))


def test_every_truncation_is_an_error(shard):
    good = shard.read_bytes()
    for n in range(len(good)):
        shard.write_bytes(good[:n])
        with pytest.raises(ps.CorruptDataError, match="shard.pxs"):
            read_everything(shard)


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
    with pytest.raises(ps.UnsupportedVersionError, match="version 2.0"):
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
