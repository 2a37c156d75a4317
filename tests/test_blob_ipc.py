"""Images cross from DataLoader workers to the main process as references into the shard
file (the receiver maps the same bytes), not as copies; `pickle` still gives `bytes`."""

from __future__ import annotations

import os
import pickle
import shutil
from multiprocessing.reduction import ForkingPickler

import pytest

import pixmo_stream as ps
from pixmo_stream import _native


def image(i: int) -> bytes:
    return bytes([0xFF, 0xD8]) + bytes((i * 7 + j) % 256 for j in range(20_000 + 997 * i))


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "ds"
    with ps.Writer(path, row_group_rows=4, shard_bytes=1 << 17) as w:
        for i in range(24):
            w.write({"id": i, "image": image(i)})
    assert len(list(path.glob("*.pxs"))) > 1
    return path


def test_a_blob_crosses_processes_as_a_reference(data):
    blob = ps.Dataset(data)[7]["image"]
    assert isinstance(blob, ps.Blob)
    sent = ForkingPickler.dumps(blob)
    assert len(sent) < 500 < len(blob)
    got = pickle.loads(sent)
    assert isinstance(got, ps.Blob) and got == image(7) and bytes(got) == image(7)
    # Plain pickle (files, other machines) still carries the bytes themselves.
    assert pickle.loads(pickle.dumps(blob)) == image(7)
    assert type(pickle.loads(pickle.dumps(blob))) is bytes


def test_a_reference_survives_another_working_directory(data, tmp_path, monkeypatch):
    monkeypatch.chdir(data.parent)
    blob = ps.Dataset("ds")[9]["image"]  # opened by a relative path
    sent = ForkingPickler.dumps(blob)
    monkeypatch.chdir(tmp_path)
    assert pickle.loads(sent) == image(9)


def test_copy_can_be_forced(data, monkeypatch):
    monkeypatch.setenv("PIXMO_STREAM_BLOB_IPC", "copy")
    got = pickle.loads(ForkingPickler.dumps(ps.Dataset(data)[3]["image"]))
    assert type(got) is bytes and got == image(3)


def test_a_replaced_shard_is_refused_not_misread(data):
    blob = ps.Dataset(data)[20]["image"]
    ref = blob._ipc_ref()
    assert ref is not None
    path = ref[0]
    sent = ForkingPickler.dumps(blob)
    # Same path, same size, another file (as a rewrite of the dataset would leave it).
    shutil.copy(path, str(path) + ".new")
    os.replace(str(path) + ".new", path)
    with pytest.raises(ps.CorruptDataError, match=os.path.basename(path)):
        pickle.loads(sent)


def test_a_reference_outside_the_file_is_an_error(data):
    ref = list(ps.Dataset(data)[0]["image"]._ipc_ref())
    ref[5] = ref[3]  # offset at the end of the file
    with pytest.raises(ValueError, match="outside"):
        _native.blob_from_ref(*ref)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_send_references(data, context):
    pytest.importorskip("torch")
    sds = ps.StreamingDataset(str(data), batch_size=5, seed=1)
    loader = ps.DataLoader(sds, batch_size=None, num_workers=2, multiprocessing_context=context)
    seen = {}
    for batch in loader:
        for i, img in zip(batch["id"], batch["image"], strict=True):
            assert isinstance(img, ps.Blob)  # mapped here, not unpickled from a copy
            seen[int(i)] = bytes(img)
    assert seen == {i: image(i) for i in range(24)}


def _rot(path: str, offset: int) -> None:
    """Flips a bit in place, keeping the file's size and mtime (bit rot, not a rewrite)."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_an_unread_blob_is_sent_with_its_page_checksums_and_verified_where_read(data):
    """A blob from a scan has not been read, so nothing verified it: its reference carries
    the checksums of the pages it lies on, and the receiver verifies them when it first reads
    the bytes (a worker that only passes images on never touches them)."""
    scanned = {r["id"]: r["image"] for r in ps.Dataset(data).iter()}
    # Decoding a chunk verified the pages of its table and offsets: an image on those pages
    # only is verified already; the others are not.
    unread = [i for i, b in scanned.items() if b._ipc_ref()[7] is not None]
    assert len(unread) >= 8
    k, other = unread[0], unread[1]
    ref = scanned[k]._ipc_ref()
    start, length, hashes, row_group, column = ref[7]
    assert start <= ref[5] and ref[5] + ref[6] <= start + length
    assert len(hashes) == 8 * -(-length // 65536) and column == "image"
    intact = pickle.loads(ForkingPickler.dumps(scanned[other]))
    assert intact == image(other)

    sent = ForkingPickler.dumps(scanned[k])
    _rot(ref[0], ref[5] + ref[6] // 2)  # after sending, before the receiver reads
    got = pickle.loads(sent)
    assert len(got) == len(image(k))  # the length needs no byte of the image
    with pytest.raises(ps.CorruptDataError, match=os.path.basename(ref[0])) as e:
        bytes(got)
    assert e.value.row_group == row_group and e.value.column == "image"

    # Once read, a blob's pages are verified and its reference carries none.
    assert bytes(scanned[other]) == image(other) and scanned[other]._ipc_ref()[7] is None
    assert ps.Dataset(data)[other]["image"]._ipc_ref()[7] is None  # ds[i] verifies


def test_bad_page_spans_in_a_reference_are_errors(data):
    refs = [r["image"]._ipc_ref() for r in ps.Dataset(data).iter()]
    ref = list(next(r for r in refs if r[7] is not None))
    start, length, hashes, g, c = ref[7]
    with pytest.raises(ps.CorruptDataError, match="page checksums"):
        _native.blob_from_ref(*ref[:7], (start, length, hashes[:-8], g, c))
    with pytest.raises(ps.CorruptDataError, match="outside the file"):
        _native.blob_from_ref(*ref[:7], (ref[3], length, hashes, g, c))
    with pytest.raises(ValueError, match="outside its pages"):
        _native.blob_from_ref(*ref[:5], start + length, 1, (start, length, hashes, g, c))


def test_workers_leave_images_to_the_process_that_reads_them(data):
    """With DataLoader workers, damage in an image surfaces where the image is read (here, the
    main process), and only for that image."""
    pytest.importorskip("torch")
    shard = sorted(data.glob("*.pxs"))[0]
    from pixmo_stream import purepy

    sh = purepy.Shard(str(shard))
    c = sh.column_index("image")
    meta = sh.row_groups[0][1][c]
    _rot(str(shard), meta["offset"] + meta["stored_len"] - 100)  # the group's last image
    damaged = 3  # row_group_rows=4: the last row of the first row group of the first shard
    sds = ps.StreamingDataset(str(data), batch_size=6, seed=2)
    loader = ps.DataLoader(sds, batch_size=None, num_workers=2)
    seen, failed = set(), []
    for batch in loader:
        for i, img in zip(batch["id"], batch["image"], strict=True):
            seen.add(int(i))
            try:
                assert bytes(img) == image(int(i))
            except ps.CorruptDataError as e:
                failed.append((int(i), e.column))
    assert seen == set(range(24))
    assert failed == [(damaged, "image")]
