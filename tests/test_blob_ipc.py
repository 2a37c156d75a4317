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
