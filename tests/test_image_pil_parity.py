"""ps.image against PIL on odd images, as Molmo's loader opens them (`Image.open`,
`convert("RGB")`, `ImageOps.exif_transpose`): orientation wherever PIL finds it, GIF palettes,
tiny and oddly made JPEGs, and resize geometry that agrees between every path. The corpus is
made here, with PIL and with byte surgery for what PIL does not write."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import PIL.PngImagePlugin
import pytest

import pixmo_stream as ps


def molmo_pil(data: bytes) -> np.ndarray:
    """Molmo's `load_image`: convert, then exif_transpose (whose failure it ignores)."""
    with PIL.Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
        try:
            rgb = PIL.ImageOps.exif_transpose(rgb)
        except Exception:  # noqa: BLE001 - as Molmo's loader does
            pass
        return np.asarray(rgb)


def encode(img: PIL.Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def asymmetric(h: int = 6, w: int = 9, seed: int = 0) -> PIL.Image.Image:
    """Random pixels: any wrong flip or rotation changes most of them."""
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def smooth(h: int, w: int, lo: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / max(w, 1), y / max(h, 1), (x + y) / max(h + w, 1)], -1)
    return (lo + (255 - lo) * img).astype(np.uint8)


def exif_block(orientation: int) -> bytes:
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def xmp_packet(orientation: int, element: bool = False) -> bytes:
    tag = (
        f"<tiff:Orientation>{orientation}</tiff:Orientation>"
        if element
        else f'tiff:Orientation="{orientation}"'
    )
    desc = f"<rdf:Description>{tag}</rdf:Description>" if element else f"<rdf:Description {tag}/>"
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        f'xmlns:tiff="http://ns.adobe.com/tiff/1.0/">{desc}</rdf:RDF></x:xmpmeta>'
    ).encode()


def jpeg_with_segment(jpeg: bytes, marker: int, body: bytes) -> bytes:
    """Inserts a marker segment right after SOI."""
    return jpeg[:2] + struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body + jpeg[2:]


def png_with_chunk(png: bytes, kind: bytes, body: bytes, after_idat: bool = False) -> bytes:
    chunk = struct.pack(">I", len(body)) + kind + body
    chunk += struct.pack(">I", zlib.crc32(kind + body))
    at = png.rfind(b"IEND") - 4 if after_idat else png.find(b"IDAT") - 4
    return png[:at] + chunk + png[at:]


def assert_same(data: bytes, max_abs: int = 0) -> None:
    want = molmo_pil(data)
    got = ps.image.decode(data)
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.int16) - want).max() if got.size else 0
    assert diff <= max_abs, diff
    info = ps.image.probe(data)
    assert (info.height, info.width) == want.shape[:2]


# ---- orientation, wherever PIL finds it ----------------------------------------------------


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_exif_payloads_that_begin_with_the_jpeg_prefix_are_read(fmt: str) -> None:
    # Writers copy a JPEG's APP1 payload, `Exif\0\0` included, into WebP's EXIF chunk and
    # PNG's eXIf chunk; PIL reads it either way.
    kw = {"lossless": True} if fmt == "WEBP" else {}
    for o in range(1, 9):
        for exif in (b"Exif\0\0" + exif_block(o), exif_block(o)):
            data = encode(asymmetric(), fmt, exif=exif, **kw)
            assert_same(data)
            assert ps.image.probe(data).orientation == o
            if fmt == "WEBP" and o > 1:
                # libwebp reads the EXIF chunk only where the VP8X header flags it.
                unflagged = bytearray(data)
                assert unflagged[12:16] == b"VP8X" and unflagged[20] & 0x08
                unflagged[20] &= ~0x08
                assert_same(bytes(unflagged))
                assert ps.image.probe(bytes(unflagged)).orientation == 1


def test_orientation_held_only_in_xmp_is_applied() -> None:
    base = encode(asymmetric(24, 40), "JPEG", quality=95)
    png = encode(asymmetric(), "PNG")
    xmp_id = b"http://ns.adobe.com/xap/1.0/\0"
    for o in (3, 6, 8):
        for element in (False, True):
            packet = xmp_packet(o, element)
            jpeg = jpeg_with_segment(base, 0xE1, xmp_id + packet)
            assert_same(jpeg, max_abs=1)
            info = PIL.PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", packet.decode(), zip=element)
            assert_same(encode(asymmetric(), "PNG", pnginfo=info))
            # Also as a tEXt chunk after the image data (PIL reads the whole file).
            assert_same(png_with_chunk(png, b"tEXt", b"XML:com.adobe.xmp\0" + packet, True))
            assert_same(encode(asymmetric(), "WEBP", lossless=True, xmp=packet))


def test_exif_takes_precedence_over_xmp_as_in_pil() -> None:
    base = encode(asymmetric(24, 40), "JPEG", quality=95)
    xmp = b"http://ns.adobe.com/xap/1.0/\0" + xmp_packet(6)
    no_tag = PIL.Image.Exif()
    no_tag[0x010F] = "camera"  # Make, no orientation: XMP decides
    for exif, want in ((exif_block(3), 3), (no_tag.tobytes(), 6), (b"not tiff", 1)):
        jpeg = jpeg_with_segment(jpeg_with_segment(base, 0xE1, xmp), 0xE1, b"Exif\0\0" + exif)
        assert_same(jpeg, max_abs=1)
        assert ps.image.probe(jpeg).orientation == want


def raw_profile(exif: bytes) -> str:
    """ImageMagick's text form of an EXIF profile: name, length, then hex lines."""
    hexed = exif.hex()
    lines = "\n".join(hexed[i : i + 72] for i in range(0, len(hexed), 72))
    return f"\nexif\n{len(exif):8d}\n{lines}\n"


@pytest.mark.parametrize("zip_", [False, True])
def test_imagemagick_raw_exif_profile_in_png_text_is_applied(zip_: bool) -> None:
    for o in (2, 5, 6, 7):
        for exif in (b"Exif\0\0" + exif_block(o), exif_block(o)):
            info = PIL.PngImagePlugin.PngInfo()
            info.add_text("Raw profile type exif", raw_profile(exif), zip=zip_)
            data = encode(asymmetric(), "PNG", pnginfo=info)
            assert_same(data)
            assert ps.image.probe(data).orientation == o


# ---- GIF palettes --------------------------------------------------------------------------


def palette_gif(transparency: int | None) -> bytes:
    rng = np.random.default_rng(3)
    p = PIL.Image.fromarray(rng.integers(0, 4, (8, 12), dtype=np.uint8), "P")
    p.putpalette([10, 20, 30, 200, 100, 50, 1, 2, 3, 90, 90, 90])
    kw = {} if transparency is None else {"transparency": transparency}
    return encode(p, "GIF", **kw)


def test_transparent_gif_pixels_keep_their_palette_colour() -> None:
    for t in (0, 1, 3):
        assert_same(palette_gif(t))
        # The colour table cut to 2 entries: indices past its end are black, as in PIL.
        data = bytearray(palette_gif(t))
        data[10] &= ~7
        del data[13 + 6 : 13 + 12]
        assert_same(bytes(data))


def test_gif_screen_larger_than_its_frame_is_filled_as_pil_fills_it() -> None:
    # The logical screen (bytes 6-9) made larger than the one frame: PIL fills the rest with
    # the transparent index's colour, or index 0's.
    for t in (None, 1):
        data = bytearray(palette_gif(t))
        data[6:10] = struct.pack("<HH", 20, 11)
        assert_same(bytes(data))


def test_gif_without_a_colour_table_is_greyscale() -> None:
    data = bytearray(palette_gif(None))
    flags = data[10]
    assert flags & 0x80
    table = 3 << ((flags & 7) + 1)
    data[10] = flags & 0x7F
    del data[13 : 13 + table]
    assert_same(bytes(data))
    assert molmo_pil(bytes(data)).max() <= 3  # the indices, as grey levels


# ---- JPEGs PIL reads ------------------------------------------------------------------------


def short_adobe(quality: int = 90) -> bytes:
    jpeg = encode(PIL.Image.fromarray(smooth(48, 64)), "JPEG", quality=quality)
    return jpeg_with_segment(jpeg, 0xEE, b"Adobe\x00\x64")  # 7 bytes of APP14's 12


def test_a_short_adobe_segment_does_not_refuse_the_image() -> None:
    assert_same(short_adobe(), max_abs=1)


def small_jpegs() -> list[bytes]:
    rng = np.random.default_rng(7)
    out = []
    for h, w in [(4, 4), (8, 8), (3, 5), (5, 7), (16, 16), (4, 300), (31, 40)]:
        for sub in (1, 2):
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            out.append(encode(PIL.Image.fromarray(a), "JPEG", quality=90, subsampling=sub))
    return out


ZUNE_SCRIPT = """
import sys, numpy as np, pixmo_stream as ps
datas = [open(p, "rb").read() for p in sys.argv[2:]]
np.savez(sys.argv[1], *[ps.image.decode(d) for d in datas])
"""


def decode_with_zune_jpeg(datas: list[bytes], tmp: Path) -> list[np.ndarray]:
    """Decodes in a process whose full-size JPEG decoder is zune-jpeg (the default of a build
    without NASM)."""
    paths = []
    for i, d in enumerate(datas):
        p = tmp / f"{i}.bin"
        p.write_bytes(d)
        paths.append(str(p))
    out = tmp / "out.npz"
    env = {**os.environ, "PIXMO_STREAM_JPEG_DECODER": "zune-jpeg"}
    run = subprocess.run(
        [sys.executable, "-c", ZUNE_SCRIPT, str(out), *paths],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    with np.load(out) as z:
        return [z[f"arr_{i}"] for i in range(len(datas))]


def test_small_subsampled_jpegs_match_pil_with_either_decoder(tmp_path: Path) -> None:
    # zune-jpeg upsampled a 4x4 4:2:0 image's chroma up to 62 levels away from PIL's.
    datas = small_jpegs() + [short_adobe()]
    for data, got in zip(datas, decode_with_zune_jpeg(datas, tmp_path), strict=True):
        want = molmo_pil(data)
        assert got.shape == want.shape
        assert np.abs(got.astype(np.int16) - want).max() <= 1
    for data in datas:
        assert_same(data, max_abs=1)


# ---- WebP's size limit ---------------------------------------------------------------------


def test_a_webp_over_the_size_limit_says_so() -> None:
    data = bytearray(encode(PIL.Image.new("RGB", (16383, 1)), "WEBP", lossless=True))
    assert data[12:16] == b"VP8L"
    bits = struct.unpack("<I", data[21:25])[0]
    data[21:25] = struct.pack("<I", bits | 0x3FFF)  # width - 1 = 16383
    for call in (ps.image.probe, ps.image.decode):
        with pytest.raises(ps.ImageDecodeError) as e:
            call(bytes(data))
        assert e.value.reason == "unsupported"
        assert "16384x1" in str(e.value) and "16383" in str(e.value)


# ---- geometry: one layout, from the original size -----------------------------------------


GEOMETRY = [
    ((531, 800), {"max_side": 100}),
    ((531, 800), {"pad": (100, 100)}),
    ((1079, 1919), {"pad": (336, 336)}),
    ((999, 1333), {"pad": (224, 224)}),
    ((1307, 977), {"max_side": 150}),
]


def edges(h: int, w: int) -> np.ndarray:
    """Dark and white rectangles (never black, so the padding shows): the worst case."""
    img = np.full((h, w, 3), 60, dtype=np.uint8)
    for k in range(6):
        y, x = (k * 97) % (h // 2), (k * 211) % (w // 2)
        img[y : y + h // 3, x : x + w // 4] = 255 if k % 2 else 60
    return img


# Reduced-scale decoding against a full decode and resize (docs/IMAGES.md): at most 20 levels
# on photos, 80 at hard edges, 3 on average.
FAST = {"smooth": (20, 3.0), "edges": (80, 3.0)}


@pytest.mark.parametrize("content", sorted(FAST))
@pytest.mark.parametrize("size,opt", GEOMETRY)
def test_reduced_scale_decoding_lands_where_placement_says(size, opt, content) -> None:  # type: ignore[no-untyped-def]
    h, w = size
    pixels = smooth(h, w, lo=60) if content == "smooth" else edges(h, w)
    data = encode(PIL.Image.fromarray(pixels), "JPEG", quality=90)
    p = ps.image.placement(h, w, **opt)
    if size == (531, 800):
        # The reported case: 100x66 (its 1/8-scale decode, 100x67, gave 100x67), and padded
        # into 100x100, 66 rows at row 17 (not 67 at row 16).
        assert p[:4] == ((66, 100, 17, 0) if "pad" in opt else (66, 100, 0, 0))
    fast = ps.image.decode(data, **opt)
    full = ps.image.decode(data, fast=False, **opt)
    assert fast.shape == full.shape == (p.canvas_height, p.canvas_width, 3)
    rows = np.nonzero(fast.any(axis=(1, 2)))[0]
    cols = np.nonzero(fast.any(axis=(0, 2)))[0]
    assert (rows[0], len(rows), cols[0], len(cols)) == (p.top, p.height, p.left, p.width)
    diff = np.abs(fast.astype(np.int16) - full)
    max_abs, mean_abs = FAST[content]
    assert diff.max() <= max_abs and diff.mean() <= mean_abs, (diff.max(), diff.mean())


@pytest.mark.parametrize("size", [(3891, 10), (5000, 14)])
def test_thin_images_keep_their_short_side(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(size[1])
    img = np.repeat(rng.integers(0, 256, (size[0] // 50 + 1, size[1], 3)), 50, axis=0)
    data = encode(PIL.Image.fromarray(img[: size[0]].astype(np.uint8)), "JPEG", quality=90)
    fast = ps.image.decode(data, pad=(336, 336))
    full = ps.image.decode(data, pad=(336, 336), fast=False)
    diff = np.abs(fast.astype(np.int16) - full)
    max_abs, mean_abs = FAST["edges"]
    assert diff.max() <= max_abs and diff.mean() <= mean_abs, (diff.max(), diff.mean())
    exact = ps.image.molmo_preprocess(data)
    quick = ps.image.molmo_preprocess(data, ps.image.MolmoConfig(exact=False))
    level = 1 / 255 / float(ps.image.CLIP_STD.min())
    d = np.abs(quick.crops - exact.crops)
    assert d.max() <= 2 * level and d.mean() <= 0.4 * level, (d.max() / level, d.mean() / level)


def test_the_gpu_path_and_the_default_cpu_decode_share_one_layout() -> None:
    # decode="cuda" decodes in full (nvJPEG; torchvision's CPU decoder stands in for it here)
    # and places the content by `placement`; the CPU decoder's default reduced-scale decode
    # must put it at the same rows and columns.
    pytest.importorskip("torchvision")
    from pixmo_stream.decoding import decode_on_gpu

    datas = [
        encode(PIL.Image.fromarray(smooth(h, w, lo=60)), "JPEG", quality=90)
        for h, w in ((531, 800), (1079, 1919))
    ]
    for opt in ({"pad": (100, 100)}, {"max_side": 100}):
        spec = ps.Decode(device="cuda", **opt)  # type: ignore[arg-type]
        gpu = decode_on_gpu({"image": list(datas)}, spec, "raise", device="cpu")["image"]
        for data, g in zip(datas, gpu, strict=True):
            cpu = ps.image.decode(data, **opt)  # type: ignore[arg-type]
            g = np.asarray(g)
            assert g.shape == cpu.shape
            np.testing.assert_array_equal(g.any(axis=2), cpu.any(axis=2))
