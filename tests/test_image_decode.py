"""Decoding with ps.image matches PIL (Molmo's loader: open, exif_transpose, convert("RGB"))
on a varied set of images generated here, and broken inputs raise ImageDecodeError."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest

import pixmo_stream as ps


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth image with some texture: what JPEG is made for, so codec differences stay
    small and a wrong conversion shows up as a large error."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 128 + 100 * np.sin(x / max(w, 1) * 6.0 + seed)
    g = 128 + 100 * np.cos(y / max(h, 1) * 5.0)
    b = 128 + 60 * np.sin((x + y) / 17.0)
    img = np.stack([r, g, b], -1) + rng.normal(0, 4, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(img: PIL.Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def pil_decode(data: bytes) -> np.ndarray:
    with PIL.Image.open(io.BytesIO(data)) as im:
        return np.asarray(PIL.ImageOps.exif_transpose(im.convert("RGB")))


def assert_close(got: np.ndarray, want: np.ndarray, max_abs: int, mean_abs: float) -> None:
    assert got.dtype == np.uint8 and got.shape == want.shape
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= max_abs, f"max abs diff {diff.max()}"
    assert diff.mean() <= mean_abs, f"mean abs diff {diff.mean():.3f}"


JPEG_CASES = {
    "1px": (1, 1, {}),
    "tiny_odd": (3, 5, {}),
    "very_wide": (7, 2000, {}),
    "very_tall": (1500, 9, {}),
    "444": (64, 80, {"subsampling": 0}),
    "422": (64, 80, {"subsampling": 1}),
    "420": (67, 83, {"subsampling": 2}),
    "progressive": (120, 90, {"progressive": True}),
    "restart_markers": (96, 128, {"restart_marker_blocks": 1}),
    "low_quality": (50, 60, {"quality": 20}),
}


@pytest.mark.parametrize("name", sorted(JPEG_CASES))
def test_jpeg_matches_pil(name: str) -> None:
    h, w, kw = JPEG_CASES[name]
    data = encode(PIL.Image.fromarray(photo(h, w)), "JPEG", **{"quality": 90, **kw})
    # libjpeg and zune-jpeg differ in IDCT and chroma upsampling rounding: a few levels at
    # edges, well under one level on average.
    assert_close(ps.image.decode(data), pil_decode(data), max_abs=12, mean_abs=1.0)


LIBJPEG = ps.image.jpeg_decoder() == "libjpeg-turbo"


@pytest.mark.skipif(not LIBJPEG, reason="built without NASM: zune-jpeg decodes full-size JPEGs")
def test_libjpeg_turbo_full_decodes_are_pils_pixels_exactly() -> None:
    # With its SIMD built in, libjpeg-turbo (PIL's own decoder) decodes full-size JPEGs: the
    # same IDCT and upsampling, so the same pixels, orientation and colour conversion included.
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    img = PIL.Image.fromarray(photo(67, 83))
    cases = [encode(img, "JPEG", **{"quality": 90, **kw}) for _, _, kw in JPEG_CASES.values()]
    cases += [
        encode(img, "JPEG", quality=90, exif=exif),
        encode(img.convert("L"), "JPEG", quality=90),
        encode(img.convert("CMYK"), "JPEG", quality=90),
    ]
    for data in cases:
        np.testing.assert_array_equal(ps.image.decode(data), pil_decode(data))


@pytest.mark.skipif(not LIBJPEG, reason="zune-jpeg is already the full-size decoder here")
def test_zune_jpeg_path_passes_these_tests_too() -> None:
    # A build with NASM decodes with libjpeg-turbo; the same tests, run with the decoder a build
    # without NASM uses (chosen by the environment variable), keep that path honest.
    env = {**os.environ, "PIXMO_STREAM_JPEG_DECODER": "zune-jpeg"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_the_decoder_choice_follows_the_environment() -> None:
    code = "import pixmo_stream as ps; print(ps.image.jpeg_decoder())"
    env = {**os.environ, "PIXMO_STREAM_JPEG_DECODER": "zune-jpeg"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "zune-jpeg", out.stderr
    assert ps.image.jpeg_decoder() in ("libjpeg-turbo", "zune-jpeg")


def test_stray_bytes_between_jpeg_segments_are_skipped_like_pil() -> None:
    data = encode(PIL.Image.fromarray(photo(48, 64)), "JPEG", quality=90)
    at = data.find(b"\xff\xdb")  # the first quantisation table
    damaged = data[:at] + b"\x00\x00" + data[at:]
    np.testing.assert_array_equal(ps.image.decode(damaged), ps.image.decode(data))
    assert_close(ps.image.decode(damaged), pil_decode(damaged), max_abs=12, mean_abs=1.0)


def test_grayscale_jpeg_is_replicated_to_rgb() -> None:
    data = encode(PIL.Image.fromarray(photo(40, 50)[..., 0]), "JPEG", quality=95)
    got = ps.image.decode(data)
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()
    assert_close(got, pil_decode(data), max_abs=4, mean_abs=0.5)


def test_cmyk_jpeg_matches_pil() -> None:
    cmyk = PIL.Image.fromarray(photo(48, 64)).convert("CMYK")
    data = encode(cmyk, "JPEG", quality=95)
    assert_close(ps.image.decode(data), pil_decode(data), max_abs=12, mean_abs=1.5)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pil(orientation: int) -> None:
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    data = encode(PIL.Image.fromarray(photo(30, 50)), "JPEG", quality=95, exif=exif)
    want = pil_decode(data)
    got = ps.image.decode(data)
    assert got.shape == want.shape
    assert_close(got, want, max_abs=12, mean_abs=1.0)
    info = ps.image.probe(data)
    assert (info.orientation, info.height, info.width) == (orientation, *want.shape[:2])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1"])
def test_png_modes_match_pil_exactly(mode: str) -> None:
    base = PIL.Image.fromarray(photo(33, 47))
    if mode == "RGBA":
        base = base.copy()
        base.putalpha(PIL.Image.fromarray(photo(33, 47, seed=3)[..., 0]))
    im = base.convert(mode) if mode != "RGBA" else base
    data = encode(im, "PNG")
    np.testing.assert_array_equal(ps.image.decode(data), pil_decode(data))


def test_png_palette_with_transparency_drops_alpha_like_pil() -> None:
    im = PIL.Image.fromarray(photo(20, 30)).convert("P", palette=PIL.Image.Palette.ADAPTIVE)
    data = encode(im, "PNG", transparency=0)
    np.testing.assert_array_equal(ps.image.decode(data), pil_decode(data))


def test_16_bit_rgb_png_keeps_the_high_byte_like_pil() -> None:
    rgb16 = (photo(20, 30).astype(">u2") * 257 + 100).astype(">u2")
    # PIL cannot write 16-bit RGB; build it with the raw PNG encoder of the png spec via PIL's
    # "I;16" per channel is not possible either, so compare against the expected high byte.
    import struct
    import zlib

    raw = b"".join(b"\x00" + row.tobytes() for row in rgb16)

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    ihdr = struct.pack(">IIBBBBB", 30, 20, 16, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    np.testing.assert_array_equal(ps.image.decode(data), (rgb16 >> 8).astype(np.uint8))
    np.testing.assert_array_equal(ps.image.decode(data), pil_decode(data))


def test_16_bit_gray_png_scales_to_8_bits() -> None:
    gray16 = (photo(20, 30)[..., 1].astype(np.uint16) * 257).astype(np.uint16)
    data = encode(PIL.Image.fromarray(gray16), "PNG")
    got = ps.image.decode(data)
    # PIL's convert("RGB") clips I;16 values to 255 (a white image); we keep the high byte.
    np.testing.assert_array_equal(got, np.repeat((gray16 >> 8).astype(np.uint8)[..., None], 3, -1))


def test_png_exif_orientation_is_applied() -> None:
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    data = encode(PIL.Image.fromarray(photo(10, 20)), "PNG", exif=exif)
    np.testing.assert_array_equal(ps.image.decode(data), pil_decode(data))


def test_gif_first_frame_and_webp() -> None:
    frames = [PIL.Image.fromarray(photo(16, 24, seed=s)).convert("P") for s in range(2)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    np.testing.assert_array_equal(ps.image.decode(gif.getvalue()), pil_decode(gif.getvalue()))
    webp = encode(PIL.Image.fromarray(photo(16, 24)), "WEBP", lossless=True)
    np.testing.assert_array_equal(ps.image.decode(webp), pil_decode(webp))


def test_blob_like_buffers_decode_without_bytes() -> None:
    data = encode(PIL.Image.fromarray(photo(12, 12)), "PNG")
    want = ps.image.decode(data)
    np.testing.assert_array_equal(ps.image.decode(memoryview(data)), want)
    np.testing.assert_array_equal(ps.image.decode(bytearray(data)), want)
    np.testing.assert_array_equal(ps.image.decode(np.frombuffer(data, np.uint8)), want)


def test_array_owns_its_pixels() -> None:
    data = encode(PIL.Image.fromarray(photo(12, 12)), "PNG")
    a = ps.image.decode(data)
    assert a.flags.c_contiguous and a.flags.writeable
    # The array wraps the buffer Rust decoded into (no copy into a numpy-allocated array).
    assert a.base is not None and not isinstance(a.base, np.ndarray)
    a[:] = 0  # the caller may write to it; it is not shared with anything else
    assert ps.image.decode(data).any()


# ---- resizing ---------------------------------------------------------------------------


def test_resize_matches_pil_bilinear() -> None:
    src = PIL.Image.fromarray(photo(300, 400))
    data = encode(src, "PNG")
    got = ps.image.decode(data, resize=(75, 120))
    want = np.asarray(src.resize((120, 75), PIL.Image.Resampling.BILINEAR))
    assert_close(got, want, max_abs=2, mean_abs=0.6)


def test_max_side_and_pad_sizes() -> None:
    data = encode(PIL.Image.fromarray(photo(480, 640)), "JPEG")
    assert ps.image.decode(data, max_side=336).shape == (252, 336, 3)
    assert ps.image.decode(data, max_side=1000).shape == (480, 640, 3)  # never enlarged
    padded = ps.image.decode(data, pad=(336, 336))
    assert padded.shape == (336, 336, 3)
    # Molmo's float32 truncation: the content is 251 rows, (336-251)//2 = 42 black rows above.
    rows = padded.any(axis=(1, 2))
    assert rows.sum() == 251 and rows.argmax() == 42


# Reduced-scale decoding against a full decode and resize, on photos (docs/IMAGES.md: measured
# at most 18 levels, under 2.6 on average; hard edges in tests/test_image_pil_parity.py).
FAST_MAX, FAST_MEAN = 20, 3.0


def test_fast_decode_is_close_to_full_decode() -> None:
    data = encode(PIL.Image.fromarray(photo(1080, 1920)), "JPEG", quality=90)
    full = ps.image.decode(data, resize=(189, 336), fast=False)
    fast = ps.image.decode(data, resize=(189, 336), fast=True)
    assert_close(fast, full, max_abs=FAST_MAX, mean_abs=FAST_MEAN)


def test_a_much_smaller_target_is_decoded_at_reduced_scale_by_default() -> None:
    data = encode(PIL.Image.fromarray(photo(1080, 1920)), "JPEG", quality=90)
    default = ps.image.decode(data, max_side=336)
    np.testing.assert_array_equal(default, ps.image.decode(data, max_side=336, fast=True))
    full = ps.image.decode(data, max_side=336, fast=False)
    assert default.shape == full.shape == (189, 336, 3)
    assert not np.array_equal(default, full)  # 1/4 scale, then resized: other pixels
    assert_close(default, full, max_abs=FAST_MAX, mean_abs=FAST_MEAN)
    # Half the size is decoded at 1/2 only where libjpeg-turbo has its SIMD (it pays there).
    half = ps.image.decode(data, max_side=900)
    half_full = ps.image.decode(data, max_side=900, fast=False)
    assert half.shape == half_full.shape == (506, 900, 3)
    assert np.array_equal(half, half_full) != LIBJPEG
    assert_close(half, half_full, max_abs=FAST_MAX, mean_abs=FAST_MEAN)
    # No reduction below the target: an image under twice its size is decoded in full.
    near = ps.image.decode(data, max_side=1000)
    np.testing.assert_array_equal(near, ps.image.decode(data, max_side=1000, fast=False))


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK", "progressive"])
def test_fast_decode_of_each_jpeg_kind(mode: str) -> None:
    # The reduced-size (libjpeg) path: grayscale, CMYK and progressive JPEGs too, and with
    # EXIF orientation applied after the decode.
    img = PIL.Image.fromarray(photo(480, 640))
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    if mode == "progressive":
        data = encode(img, "JPEG", quality=90, progressive=True, exif=exif)
    else:
        data = encode(img.convert(mode), "JPEG", quality=90, exif=exif)
    full = ps.image.decode(data, max_side=120, fast=False)
    fast = ps.image.decode(data, max_side=120, fast=True)
    assert fast.shape == full.shape == (120, 90, 3)
    assert_close(fast, full, max_abs=FAST_MAX, mean_abs=FAST_MEAN)
    for cut in (len(data) // 2, len(data) - 20):
        with pytest.raises(ps.ImageDecodeError) as e:
            ps.image.decode(data[:cut], max_side=120, fast=True)
        assert e.value.reason == "truncated", (cut, str(e.value))


def test_decode_many_and_stack() -> None:
    datas = [encode(PIL.Image.fromarray(photo(40 + i, 50, seed=i)), "JPEG") for i in range(5)]
    one = [ps.image.decode(d, resize=(32, 32)) for d in datas]
    for threads in (1, 2, 3):
        many = ps.image.decode_many(datas, resize=(32, 32), threads=threads)
        assert all((a == b).all() for a, b in zip(many, one, strict=True))
        stacked = ps.image.decode_many(datas, resize=(32, 32), threads=threads, stack=True)
        assert isinstance(stacked, np.ndarray) and stacked.flags.c_contiguous
        np.testing.assert_array_equal(stacked, np.stack(one))
    varied = ps.image.decode_many(datas, threads=2)
    assert [a.shape[0] for a in varied] == [40, 41, 42, 43, 44]


def test_decode_many_reports_which_input_failed() -> None:
    good = encode(PIL.Image.fromarray(photo(8, 8)), "PNG")
    with pytest.raises(ps.ImageDecodeError) as e:
        ps.image.decode_many([good, good, b"nope"], threads=2)
    assert e.value.index == 2 and "image 2" in str(e.value)
    out = ps.image.decode_many([good, b"nope"], errors="return")
    assert isinstance(out[0], np.ndarray) and isinstance(out[1], ps.ImageDecodeError)
    batch, errs = ps.image.decode_batch([b"nope", good], pad=(8, 8))
    assert errs[0] is not None and errs[0].reason == "not_an_image" and errs[1] is None
    assert not batch[0].any() and batch[1].any()


def test_gil_is_released_during_decode() -> None:
    data = encode(PIL.Image.fromarray(photo(1200, 1600)), "JPEG")
    barrier = threading.Barrier(2)
    windows: list[tuple[float, float]] = []
    import time

    def work() -> None:
        barrier.wait()
        t0 = time.perf_counter()
        for _ in range(3):
            ps.image.decode(data)
        windows.append((t0, time.perf_counter()))

    ts = [threading.Thread(target=work) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    (a0, a1), (b0, b1) = windows
    # Both threads were inside decode at the same time: neither waited for the other's end.
    assert a0 < b1 and b0 < a1


# ---- broken input -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_truncated_images_raise(fmt: str) -> None:
    data = encode(PIL.Image.fromarray(photo(64, 64)), fmt)
    for cut in (len(data) // 2, 40, len(data) - 20):
        with pytest.raises(ps.ImageDecodeError) as e:
            ps.image.decode(data[:cut])
        assert e.value.reason in ("truncated", "corrupt"), (cut, e.value.reason, str(e.value))
        assert isinstance(e.value, ps.PixmoError)


def test_half_a_jpeg_is_reported_as_truncated() -> None:
    data = encode(PIL.Image.fromarray(photo(64, 64)), "JPEG")
    with pytest.raises(ps.ImageDecodeError, match="truncated") as e:
        ps.image.decode(data[: len(data) // 2])
    assert e.value.reason == "truncated" and e.value.format == "JPEG"


@pytest.mark.parametrize("data", [b"", b"hello", b"<html>404 Not Found</html>", b"\x00" * 100])
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(ps.ImageDecodeError) as e:
        ps.image.decode(data)
    assert e.value.reason == "not_an_image"


def test_corrupt_bytes_never_panic() -> None:
    rng = np.random.default_rng(7)
    sources = [
        encode(PIL.Image.fromarray(photo(40, 40)), "JPEG"),
        encode(PIL.Image.fromarray(photo(40, 40)), "JPEG", progressive=True),
        encode(PIL.Image.fromarray(photo(40, 40)), "PNG"),
        encode(PIL.Image.fromarray(photo(40, 40)).convert("P"), "GIF"),
        encode(PIL.Image.fromarray(photo(40, 40)), "WEBP"),
    ]
    for src in sources:
        for _ in range(40):
            b = bytearray(src)
            for i in rng.integers(0, len(b), 6):
                b[i] = int(rng.integers(0, 256))
            for fast in (False, True):
                try:
                    out = ps.image.decode(bytes(b), max_side=8, fast=fast)
                except ps.ImageDecodeError:
                    continue
                assert out.ndim == 3 and out.shape[2] == 3  # a damaged header may change the size


def test_pixel_limit_is_checked_from_the_header() -> None:
    # A 20000x20000 PNG of zeros compresses to ~400 KB; the limit refuses it before decoding.
    import struct
    import zlib

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    w = h = 20000
    comp = zlib.compressobj(9)
    row = b"\x00" * (w * 3 + 1)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    with pytest.raises(ps.ImageDecodeError) as e:
        ps.image.decode(bomb)
    assert e.value.reason == "too_many_pixels"
    assert (e.value.width, e.value.height, e.value.limit) == (w, h, ps.image.DEFAULT_MAX_PIXELS)
    with pytest.raises(ps.ImageDecodeError, match="too_many_pixels|exceeds"):
        ps.image.decode(encode(PIL.Image.fromarray(photo(20, 20)), "PNG"), max_pixels=399)
    assert ps.image.decode(encode(PIL.Image.fromarray(photo(20, 20)), "PNG"), max_pixels=400).shape


def test_zero_size_png() -> None:
    import struct
    import zlib

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    ihdr = struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    with pytest.raises(ps.ImageDecodeError) as e:
        ps.image.decode(data)
    assert e.value.reason in ("zero_size", "corrupt")


def test_bad_arguments_are_value_errors() -> None:
    data = encode(PIL.Image.fromarray(photo(8, 8)), "PNG")
    with pytest.raises(ValueError):
        ps.image.decode(data, resize=(0, 5))
    with pytest.raises(ValueError):
        ps.image.decode(data, resize=(5, 5), pad=(5, 5))
    with pytest.raises(ValueError):
        ps.image.decode_many([data], stack=True)
    with pytest.raises(TypeError):
        ps.image.decode(12345)  # type: ignore[arg-type]


def test_a_forked_child_decodes_after_the_parent_used_threads() -> None:
    """No pool outlives a call, so a DataLoader worker forked afterwards inherits no threads
    or locks it could deadlock on."""
    import os
    import time

    datas = [encode(PIL.Image.fromarray(photo(64, 64, seed=i)), "JPEG") for i in range(8)]
    want = ps.image.decode_many(datas, threads=4, stack=True, resize=(16, 16))
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if it decodes the same pixels, on threads too
        try:
            got = ps.image.decode_many(datas, threads=4, stack=True, resize=(16, 16))
            os._exit(0 if np.array_equal(got, want) else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 60  # a guard against a hang, not a speed claim
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung decoding")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
