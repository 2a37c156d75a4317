"""Images decoded on the read-ahead threads (`decode=`): the same pixels as
`pixmo_stream.image.decode` (and PIL within tolerance), one contiguous `[B, H, W, 3]` tensor per
fixed-size batch, and every kind of broken image handled by the bad-sample policy, with 0 and 2
DataLoader workers and exact resumption."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

import pixmo_stream as ps  # noqa: E402

image = pytest.importorskip("pixmo_stream.image")

N = 96
SIZE = (24, 40)  # (height, width)


def jpeg(i: int, h: int, w: int) -> bytes:
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:h, 0:w]
    px = np.stack(
        [(xx * 3 + i) % 256, (yy * 5 + 2 * i) % 256, (xx + yy + rng.integers(0, 40, (h, w)))], -1
    )
    buf = io.BytesIO()
    Image.fromarray(px.astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def with_size(data: bytes, h: int, w: int) -> bytes:
    """The JPEG with its frame header (SOF0) declaring another size."""
    at = data.index(b"\xff\xc0")
    return data[: at + 5] + struct.pack(">HH", h, w) + data[at + 9 :]


GOOD_SHAPES = [(30 + (i * 7) % 50, 40 + (i * 13) % 60) for i in range(N)]
BROKEN = {
    10: ("truncated", lambda: jpeg(10, 64, 64)[:300]),
    23: ("not an image", lambda: b"<html>404 not found</html>" * 4),
    37: ("zero size", lambda: with_size(jpeg(37, 32, 32), 0, 32)),
    58: ("decompression bomb", lambda: with_size(jpeg(58, 32, 32), 30000, 30000)),
    71: ("empty", lambda: b""),
}


def row_bytes(i: int) -> bytes:
    if i in BROKEN:
        return BROKEN[i][1]()
    return jpeg(i, *GOOD_SHAPES[i])


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("photos") / "ds"
    with ps.Writer(path, row_group_rows=16) as w:
        for i in range(N):
            w.write({"id": i, "image": row_bytes(i), "caption": f"photo {i}"})
    return str(path)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("good") / "ds"
    with ps.Writer(path, row_group_rows=16) as w:
        for i in range(40):
            w.write({"id": i, "image": jpeg(i, *GOOD_SHAPES[i % N]), "caption": f"photo {i}"})
    return str(path)


# 1e7 pixels refuses the bomb (9e8) and nothing else.
DECODE = ps.Decode(resize=SIZE, max_pixels=10_000_000)


def stream(path: str, workers: int, **kw):
    kw.setdefault("decode", DECODE)
    ds = ps.StreamingDataset(path, seed=3, batch_size=8, **kw)
    return ds, ps.DataLoader(ds, num_workers=workers, in_process=False)


def test_fixed_size_batches_are_one_contiguous_tensor_equal_to_decode(good):
    ds, loader = stream(good, 0)
    seen = []
    for batch in loader:
        imgs = batch["image"]
        assert isinstance(imgs, torch.Tensor) and imgs.dtype == torch.uint8
        assert imgs.shape == (len(batch["id"]), *SIZE, 3) and imgs.is_contiguous()
        for i, px in zip(batch["id"].tolist(), imgs, strict=True):
            want = image.decode(jpeg(i, *GOOD_SHAPES[i % N]), resize=SIZE)
            np.testing.assert_array_equal(px.numpy(), want)
            seen.append(i)
    assert sorted(seen) == list(range(40))
    assert batch["caption"][0].startswith("photo")


def test_unresized_images_match_pil_within_tolerance(good):
    records = list(ps.StreamingDataset(good, decode="rgb", shuffle=False))
    for r in records:
        data = jpeg(r["id"], *GOOD_SHAPES[r["id"] % N])
        px = r["image"]
        assert isinstance(px, np.ndarray) and px.shape == (*GOOD_SHAPES[r["id"] % N], 3)
        np.testing.assert_array_equal(px, image.decode(data))
        with Image.open(io.BytesIO(data)) as im:
            ref = np.asarray(im.convert("RGB")).astype(np.int16)
        assert np.abs(px.astype(np.int16) - ref).mean() < 2.0
    # Batches of images of different sizes are lists of tensors.
    batch = next(iter(ps.StreamingDataset(good, decode="rgb", batch_size=4)))
    assert isinstance(batch["image"], list) and len(batch["image"]) == 4
    assert all(t.dtype == torch.uint8 and t.shape[2] == 3 for t in batch["image"])


@pytest.mark.parametrize("workers", [0, 2])
def test_every_broken_image_raises_naming_row_and_column(photos, workers):
    _, loader = stream(photos, workers)
    with pytest.raises(ps.BadSampleError) as e:
        list(loader)
    err = e.value
    if workers == 0:
        assert err.row in BROKEN and err.column == "image" and err.path.endswith(".pxs")
        assert f"row {err.row}" in str(err)
    # From a worker, torch re-raises the type with the message (attributes do not travel).
    assert ".pxs" in str(err) and "column 'image'" in str(err)
    assert any(f"row {r}:" in str(err) for r in BROKEN)
    for row, (kind, _) in BROKEN.items():
        # Each kind at the head of a stream (resumed at its position, in storage order).
        ds = ps.StreamingDataset(photos, decode=DECODE, shuffle=False)
        ds.load_state_dict({**ds.state_dict(), "position": row})
        with pytest.raises(ps.BadSampleError, match=f"row {row}") as one:
            next(iter(ds))
        assert one.value.row == row, kind


def test_a_worker_error_stops_the_workers_at_once(photos):
    # Not whenever the garbage collector next finds the failed iterator: torch then waits 5 s
    # per worker, in the middle of whatever the program does next.
    import multiprocessing as mp

    before = {p.pid for p in mp.active_children()}
    _, loader = stream(photos, 2)
    with pytest.raises(ps.BadSampleError):
        list(loader)
    assert [p for p in mp.active_children() if p.pid not in before] == []


def run(loader, limit=None):
    ids, replaced = [], []
    for k, batch in enumerate(loader):
        assert batch["image"].shape[1:] == (*SIZE, 3)
        ids.extend(batch["id"].tolist())
        replaced.extend(batch["bad_samples"])
        if limit is not None and k + 1 >= limit:
            break
    return ids, replaced


@pytest.mark.parametrize("workers", [0, 2])
def test_replace_streams_the_epoch_and_counts_each_broken_image(photos, workers):
    ds, loader = stream(photos, workers, on_bad_sample="replace")
    ids, replaced = run(loader)
    assert len(ids) == N and not set(BROKEN) & set(ids)
    assert sorted(b.row for b in replaced) == sorted(BROKEN)
    assert all(b.column == "image" and b.row_group == b.row // 16 for b in replaced)
    reasons = {b.row: b.reason for b in replaced}
    assert "truncated" in reasons[10] and "zero" in reasons[37] and "exceeds" in reasons[58]
    assert ds.bad_samples == len(BROKEN) == loader.state_dict()["bad_samples"]
    # The same replacements whatever the worker count.
    other, other_replaced = run(stream(photos, 2 - workers, on_bad_sample="replace")[1])
    assert (other, other_replaced) == (ids, replaced)


@pytest.mark.parametrize("workers", [(0, 2), (2, 0), (2, 2)])
def test_resumption_is_exact_with_the_same_replacements(photos, workers):
    full, full_bad = run(stream(photos, 0, on_bad_sample="replace")[1])
    _, loader = stream(photos, workers[0], on_bad_sample="replace")
    head, head_bad = run(loader, limit=5)
    state = json.loads(json.dumps(loader.state_dict()))
    assert state["position"] == 40 and state["bad_samples"] == len(head_bad)
    ds2, loader2 = stream(photos, workers[1], on_bad_sample="replace")
    ds2.load_state_dict(state)
    tail, tail_bad = run(loader2)
    assert head + tail == full and head_bad + tail_bad == full_bad
    assert loader2.state_dict()["bad_samples"] == len(BROKEN)


def test_mixtures_decode_and_replace(photos, good):
    sources = [ps.StreamingDataset(photos, seed=1), ps.StreamingDataset(good, seed=2)]
    mix = ps.Mixture(
        sources, [0.5, 0.5], length=160, batch_size=16, decode=DECODE, on_bad_sample="replace"
    )
    total = 0
    for batch in ps.DataLoader(mix, num_workers=2, in_process=False):
        assert batch["image"].shape == (16, *SIZE, 3)
        total += 16
    assert total == 160 and mix.bad_samples == mix.state_dict()["bad_samples"]


def test_decode_options_are_checked(photos, tmp_path):
    with pytest.raises(ValueError, match="decode"):
        ps.StreamingDataset(photos, decode="jpeg")
    with pytest.raises(ValueError, match="at most one"):
        ps.Decode(resize=(4, 4), pad=(4, 4))
    with pytest.raises(ValueError, match="'picture'"):
        ps.StreamingDataset(photos, decode=ps.Decode(column="picture"))
    with pytest.raises(ValueError, match="not binary"):
        ps.StreamingDataset(photos, decode=ps.Decode(column="caption"))
    with pytest.raises(ValueError, match="among the columns read"):
        ps.StreamingDataset(photos, decode="rgb", columns=["id"])


def test_decoding_starts_no_thread_before_iteration(good):
    import threading

    before = threading.active_count()
    ds = ps.StreamingDataset(good, decode=DECODE, batch_size=8)
    loader = ps.DataLoader(ds, num_workers=0)
    assert threading.active_count() == before
    it = iter(loader)
    next(it)
    del it


def test_cuda_decode_needs_a_gpu(good):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (decode='cuda' is untested here)")
    pytest.importorskip("torchvision")
    ds = ps.StreamingDataset(good, batch_size=8, decode=ps.Decode(resize=SIZE, device="cuda"))
    batch = next(iter(ds))
    assert batch["image"].is_cuda and batch["image"].shape == (8, *SIZE, 3)
    # nvJPEG's pixels are the CPU decoder's within a few levels (two decoders, two resizers).
    for i, px in zip(batch["id"].tolist(), batch["image"].cpu(), strict=True):
        want = image.decode(jpeg(i, *GOOD_SHAPES[i % N]), resize=SIZE, fast=False)
        assert np.abs(px.numpy().astype(np.int16) - want.astype(np.int16)).mean() < 3.0


def oriented_jpeg(i: int, h: int, w: int, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg(i, h, w))).save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


GPU_SPECS = {
    "stored size": ps.Decode(device="cuda"),
    "resize": ps.Decode(resize=SIZE, device="cuda"),
    "max_side": ps.Decode(max_side=33, device="cuda"),
    "pad": ps.Decode(pad=(48, 48), device="cuda"),
}


@pytest.mark.parametrize("name", sorted(GPU_SPECS))
def test_the_gpu_path_gives_the_cpu_decoders_images(name):
    # Every step of decode="cuda" but nvJPEG itself (torchvision's CPU decoder stands in for
    # it here): EXIF orientation, the CPU decoder's sizes and padding, stacking.
    from pixmo_stream.decoding import decode_on_gpu

    pytest.importorskip("torchvision")
    spec = GPU_SPECS[name]
    datas = [jpeg(i, *GOOD_SHAPES[i]) for i in range(4)]
    datas += [oriented_jpeg(90 + o, 37, 61, o) for o in (2, 3, 5, 6, 7, 8)]
    batch = decode_on_gpu({"image": list(datas), "id": 0}, spec, "raise", device="cpu")
    cpu = ps.Decode(resize=spec.resize, max_side=spec.max_side, pad=spec.pad)
    want = [
        image.decode(d, resize=cpu.resize, max_side=cpu.max_side, pad=cpu.pad, fast=False)
        for d in datas
    ]
    got = batch["image"]
    if spec.size is not None:
        assert isinstance(got, torch.Tensor) and got.shape == (len(datas), *spec.size, 3)
        assert got.is_contiguous()
    for g, w in zip(got, want, strict=True):
        g = np.asarray(g)
        assert g.shape == w.shape and g.dtype == np.uint8
        diff = np.abs(g.astype(np.int16) - w.astype(np.int16))
        # Two resamplers (torch's antialiased bilinear, fast_image_resize): a few levels.
        assert diff.mean() < 3.0 and np.percentile(diff, 99) <= 24, (diff.mean(), diff.max())


def test_the_gpu_path_pads_with_molmos_arithmetic():
    # 640x480 into 336x336: float32 truncation gives 251 rows (float64 would give 252).
    from pixmo_stream.decoding import decode_on_gpu

    pytest.importorskip("torchvision")
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 120, 40)).save(buf, "JPEG", quality=95)
    spec = ps.Decode(pad=(336, 336), device="cuda")
    out = decode_on_gpu({"image": [buf.getvalue()]}, spec, "raise", device="cpu")["image"][0]
    rows = out.numpy().any(axis=(1, 2))
    assert out.shape == (336, 336, 3) and rows.sum() == 251 and rows.argmax() == 42


def test_the_gpu_path_follows_the_bad_sample_policy():
    from pixmo_stream.decoding import decode_on_gpu

    pytest.importorskip("torchvision")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    good = [jpeg(i, *GOOD_SHAPES[i]) for i in range(3)]
    items = [good[0], jpeg(10, 64, 64)[:300], good[1], buf.getvalue(), b"not an image", good[2]]
    spec = ps.Decode(resize=SIZE, device="cuda")
    with pytest.raises(ps.BadSampleError, match=r"image 1 of a batch .*truncated"):
        decode_on_gpu({"image": list(items)}, spec, "raise", device="cpu")
    batch = decode_on_gpu({"image": list(items)}, spec, "replace", device="cpu")
    reasons = [b.reason for b in batch["bad_samples"]]
    assert len(reasons) == 3, reasons
    assert "truncated" in reasons[0] and "JPEG only, this is PNG" in reasons[1]
    assert "not an image" in reasons[2]
    # Each is replaced by the next good image of the batch.
    imgs = batch["image"]
    for bad, repl in ((1, 2), (3, 5), (4, 5)):
        assert torch.equal(imgs[bad], imgs[repl])
    with pytest.raises(ps.BadSampleError):
        decode_on_gpu({"image": [b"x", b"y"]}, spec, "replace", device="cpu")


@pytest.mark.parametrize("workers", [0, 2])
def test_decode_cuda_through_the_loader_with_the_cpu_standing_in(photos, workers, monkeypatch):
    # decode="cuda" end to end (the batch's bytes decoded in the iterating process, bad
    # samples replaced and counted), with torchvision's CPU decoder in nvJPEG's place.
    from pixmo_stream import decoding, loader, streaming

    pytest.importorskip("torchvision")

    def on_cpu(batch, decode, policy):
        return decoding.decode_on_gpu(batch, decode, policy, device="cpu")

    monkeypatch.setattr(streaming, "decode_on_gpu", on_cpu)
    monkeypatch.setattr(loader, "decode_on_gpu", on_cpu)
    spec = ps.Decode(resize=SIZE, max_pixels=10_000_000, device="cuda")
    ds, dl = stream(photos, workers, decode=spec, on_bad_sample="replace")
    ids, listed = [], 0
    for batch in dl:
        imgs = batch["image"]
        assert imgs.shape == (len(batch["id"]), *SIZE, 3) and imgs.dtype == torch.uint8
        listed += len(batch.get("bad_samples", []))
        for i, px in zip(batch["id"].tolist(), imgs, strict=True):
            ids.append(i)
            if i not in BROKEN:
                want = image.decode(row_bytes(i), resize=SIZE, fast=False).astype(np.int16)
                assert np.abs(px.numpy().astype(np.int16) - want).mean() < 3.0
    assert sorted(ids) == list(range(N))
    assert listed == len(BROKEN) and ds.bad_samples == len(BROKEN)


@pytest.mark.parametrize("exact", [True, False])
def test_molmo_preprocessing_through_the_stream_equals_the_function(good, exact):
    cfg = image.MolmoConfig(exact=exact, normalize=exact)
    decode = ps.Decode(molmo=cfg)
    records = list(ps.StreamingDataset(good, decode=decode, shuffle=False))
    assert len(records) == 40
    for r in records:
        want = image.molmo_preprocess(jpeg(r["id"], *GOOD_SHAPES[r["id"] % N]), cfg)
        np.testing.assert_array_equal(r["image"], want.crops)
        assert r["image"].dtype == want.crops.dtype
        np.testing.assert_array_equal(r["image_patch_mask"], want.patch_mask)
        np.testing.assert_array_equal(r["image_input_idx"], want.image_input_idx)
        np.testing.assert_array_equal(r["image_tokens"], want.image_tokens)
        assert tuple(r["image_tiling"]) == want.tiling
    # Batched, the crops are padded to the batch's most crops, with a mask of real ones.
    batch = next(iter(ps.StreamingDataset(good, decode="molmo", batch_size=8, shuffle=False)))
    crops, mask = batch["image"], batch["image_mask"]
    assert crops.shape[0] == 8 and crops.shape[2:] == (576, 588) and crops.dtype == torch.float32
    n = [image.molmo_preprocess(jpeg(i, *GOOD_SHAPES[i])).n_crops for i in range(8)]
    assert mask.sum(1).tolist() == n


def test_molmo_follows_the_bad_sample_policy(photos):
    with pytest.raises(ps.BadSampleError, match="row 10"):
        list(ps.StreamingDataset(photos, decode="molmo", shuffle=False))
    ds = ps.StreamingDataset(photos, decode="molmo", batch_size=16, on_bad_sample="replace")
    batches = list(ps.DataLoader(ds, num_workers=2, in_process=False))
    ids = [i for b in batches for i in b["id"].tolist()]
    # The decompression bomb is refused by MolmoConfig's own (default) pixel limit too.
    assert len(ids) == N and not set(BROKEN) & set(ids)
    assert ds.bad_samples == len(BROKEN)
    with pytest.raises(ValueError, match="own sizes"):
        ps.Decode(molmo=image.MolmoConfig(), resize=(4, 4))
    with pytest.raises(ValueError, match=r"own sizes and fast mode .*\['fast'\]"):
        ps.Decode(molmo=image.MolmoConfig(), fast=False)


def test_a_decoding_loader_without_user_code_reads_in_process_and_says_so(good, caplog):
    """Workers would decode on the same native threads and copy every image to the main
    process: with nothing of the user's to run per batch, the loader reads in this process on
    the threads they would have had, says so, and yields what 0 workers yield."""
    import logging

    expected = [b["image"] for b in stream(good, 0)[1]]
    with caplog.at_level(logging.WARNING, logger="pixmo_stream"):
        ds, loader = stream(good, 2)
        loader = ps.DataLoader(ds, num_workers=2, persistent_workers=True, prefetch_factor=4)
    assert (loader.num_workers, loader.requested_workers) == (0, 2)
    assert "in_process=False" in caplog.text and "num_workers=2" in caplog.text
    got = [b["image"] for b in loader]
    assert len(got) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    # Asked for: no message. Kept: workers. Code of the user's per batch: workers.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pixmo_stream"):
        assert ps.DataLoader(ds, num_workers=2, in_process=True).num_workers == 0
    assert caplog.text == ""
    assert ps.DataLoader(ds, num_workers=2, in_process=False).num_workers == 2
    assert ps.DataLoader(ds, num_workers=2, worker_init_fn=print).num_workers == 2
    users = ps.StreamingDataset(good, batch_size=8, decode=DECODE, collate_fn=list)
    assert ps.DataLoader(users, num_workers=2).num_workers == 2
    assert ps.DataLoader(ps.StreamingDataset(good, batch_size=8), num_workers=2).num_workers == 2
