"""Molmo preprocessing against Molmo's algorithm: test vectors read off Molmo's code, and
`benches/molmo_reference.py`, built from torchvision's antialiased resize and numpy step by
step as Molmo's `olmo/data/model_preprocessor.py` does it (tiling, resize-and-pad, crops,
patch ordering, `image_input_idx`, masks)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import pixmo_stream as ps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the reference lives in benches/, which times it as a baseline

from benches import molmo_reference as ref  # noqa: E402

MEAN, STD = ps.image.CLIP_MEAN, ps.image.CLIP_STD


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            128 + 100 * np.sin(x / 37.0 + seed),
            128 + 90 * np.cos(y / 23.0),
            128 + 60 * np.sin((x + y) / 11.0),
        ],
        -1,
    )
    return np.clip(img + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PIL.Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def jpeg(a: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    PIL.Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# (h, w) -> tiling, canvas content (h, w), global view content (h, w), crops incl. global.
VECTORS = [
    ((480, 640), (2, 3), (560, 746), (251, 336), 7),
    ((1080, 1920), (3, 4), (567, 1007), (189, 336), 13),
    ((2000, 300), (9, 1), (2128, 319), (336, 50), 10),
    ((50, 50), (1, 1), (336, 336), (336, 336), 2),
]


@pytest.mark.parametrize("size,tiling,canvas,glob,n", VECTORS)
def test_molmo_test_vectors(size, tiling, canvas, glob, n) -> None:  # type: ignore[no-untyped-def]
    g = ps.image.molmo_geometry(*size)
    assert g.tiling == tiling and g.n_crops == n
    assert (g.canvas.height, g.canvas.width) == canvas
    assert (g.global_view.height, g.global_view.width) == glob


@pytest.mark.parametrize("size,tiling,canvas,glob,n", VECTORS[:1] + VECTORS[3:])
def test_output_shapes(size, tiling, canvas, glob, n) -> None:  # type: ignore[no-untyped-def]
    m = ps.image.molmo_preprocess(png(photo(*size)))
    assert m.tiling == tiling and m.n_crops == n
    assert m.crops.shape == (n, 576, 588) and m.crops.dtype == np.float32
    assert m.patch_mask.shape == (n, 576) and m.patch_mask.dtype == np.float32
    assert m.image_input_idx.shape == (n, 144) and m.image_input_idx.dtype == np.int32
    assert m.crops.flags.c_contiguous


@pytest.mark.parametrize("size", [(480, 640), (50, 50), (333, 1000), (700, 260), (3, 500)])
def test_exact_mode_matches_molmo_with_torchvision(size: tuple[int, int]) -> None:
    pytest.importorskip("torchvision")
    img = photo(*size, seed=size[0])
    ids = ps.image.MolmoTokenIds(
        start=ref.START_ID, end=ref.END_ID, patch=ref.PATCH_ID, col=ref.COL_ID
    )
    got = ps.image.molmo_preprocess(png(img), ps.image.MolmoConfig(token_ids=ids))
    want = ref.preprocess_rgb(img)
    assert got.tiling == want["tiling"]
    np.testing.assert_array_equal(got.image_input_idx, want["idx"])
    np.testing.assert_array_equal(got.image_tokens, want["tokens"])
    np.testing.assert_array_equal(got.patch_mask, want["mask"])
    crops = want["crops"]
    assert isinstance(crops, np.ndarray) and got.crops.shape == crops.shape
    # Same float32 arithmetic; only the order of rounding inside the resize sums differs.
    np.testing.assert_allclose(got.crops, crops, rtol=0, atol=2e-6)


def test_index_layout_for_large_tilings_matches_molmo() -> None:
    for tiling_size in [(1080, 1920), (2000, 300), (300, 2000), (1500, 1500)]:
        g = ps.image.molmo_geometry(*tiling_size)
        got = ps.image.molmo_preprocess(png(photo(g.height, g.width)))
        cfg_ids = ps.image.MolmoTokenIds()
        want_idx, want_tokens = ref.layout(g.tiling)
        np.testing.assert_array_equal(got.image_input_idx, want_idx)
        assert len(got.image_tokens) == len(want_tokens)
        assert (got.image_tokens == cfg_ids.patch).sum() == (want_tokens == ref.PATCH_ID).sum()


def test_a_sliver_is_clamped_instead_of_crashing() -> None:
    m = ps.image.molmo_preprocess(png(photo(3, 5000)))
    assert m.geometry.global_view.height == 1  # Molmo's int(3 * 0.0672) == 0 would crash
    assert m.crops.shape[1:] == (576, 588)
    assert np.isfinite(m.crops).all()


# ---- fast mode and uint8 crops -----------------------------------------------------------

# Fast mode resizes in uint8 (rounded to the nearest level) with a fixed-point kernel: at most
# two levels from exact mode on photos, under 0.4 of a level on average (one level is ~0.015
# normalised); at hard black-and-white edges a 1/2-scale decode puts a few pixels up to 40
# levels off (docs/IMAGES.md: measured 15.1 and 36.6 on two 12 MP images).
LEVEL = 1 / 255 / float(STD.min())
FAST_MAX_ABS = 2 * LEVEL
FAST_EDGES_MAX_ABS = 40 * LEVEL
FAST_MEAN_ABS = 0.4 * LEVEL


def hard_edges(h: int, w: int) -> np.ndarray:
    """Black and white rectangles: the worst case for resampling differences."""
    img = np.zeros((h, w, 3), dtype=np.uint8)
    for k in range(6):
        y, x = (k * 97) % (h // 2), (k * 211) % (w // 2)
        img[y : y + h // 3, x : x + w // 4] = 255 * (k % 2)
    return img


@pytest.mark.parametrize(
    "size",
    [(480, 640), (1080, 1920), (2000, 300), (50, 50), (3024, 4032), (1999, 2999), (3023, 4031)],
)
def test_fast_mode_is_within_the_stated_tolerance(size: tuple[int, int]) -> None:
    edges = size[0] % 2 == 1
    data = jpeg(hard_edges(*size) if edges else photo(*size, seed=size[1]))
    exact = ps.image.molmo_preprocess(data)
    fast = ps.image.molmo_preprocess(data, ps.image.MolmoConfig(exact=False))
    assert fast.tiling == exact.tiling
    np.testing.assert_array_equal(fast.image_input_idx, exact.image_input_idx)
    np.testing.assert_array_equal(fast.patch_mask, exact.patch_mask)
    np.testing.assert_array_equal(fast.image_tokens, exact.image_tokens)
    diff = np.abs(fast.crops - exact.crops)
    bound = FAST_EDGES_MAX_ABS if edges else FAST_MAX_ABS
    assert diff.max() <= bound and diff.mean() <= FAST_MEAN_ABS, (diff.max(), diff.mean())


@pytest.mark.parametrize("exact", [True, False])
def test_uint8_crops_normalise_to_the_float_crops(exact: bool) -> None:
    data = jpeg(photo(480, 640))
    f = ps.image.molmo_preprocess(data, ps.image.MolmoConfig(exact=exact))
    u = ps.image.molmo_preprocess(data, ps.image.MolmoConfig(exact=exact, normalize=False))
    assert u.crops.dtype == np.uint8 and u.crops.shape == f.crops.shape
    rgb = u.crops.reshape(u.n_crops, 576, 196, 3).astype(np.float32) / 255.0
    norm = ((rgb - MEAN) / STD).reshape(f.crops.shape)
    # uint8 rounds each value to 1/255 of the range: at most half a step, ~0.0075 normalised.
    np.testing.assert_allclose(norm, f.crops, rtol=0, atol=0.5 / 255 / STD.min() + 1e-5)


def test_many_matches_one_by_one_and_reports_failures() -> None:
    datas = [png(photo(100 + 40 * i, 120, seed=i)) for i in range(4)]
    singles = [ps.image.molmo_preprocess(d) for d in datas]
    for threads in (1, 2):
        many = ps.image.molmo_preprocess_many(datas, threads=threads)
        for a, b in zip(many, singles, strict=True):
            assert isinstance(a, ps.image.MolmoImage)
            np.testing.assert_array_equal(a.crops, b.crops)
            np.testing.assert_array_equal(a.image_input_idx, b.image_input_idx)
    out = ps.image.molmo_preprocess_many([datas[0], b"junk"], errors="return")
    assert isinstance(out[1], ps.ImageDecodeError) and out[1].index == 1
    with pytest.raises(ps.ImageDecodeError):
        ps.image.molmo_preprocess_many([b"junk"])


def test_broken_images_and_bad_settings() -> None:
    data = jpeg(photo(64, 64))
    with pytest.raises(ps.ImageDecodeError) as e:
        ps.image.molmo_preprocess(data[: len(data) // 2])
    assert e.value.reason == "truncated"
    with pytest.raises(ps.ImageDecodeError) as e:
        ps.image.molmo_preprocess(data, ps.image.MolmoConfig(max_pixels=100))
    assert e.value.reason == "too_many_pixels"
    with pytest.raises(ValueError):
        ps.image.molmo_preprocess(data, ps.image.MolmoConfig(overlap_margins=(3, 4)))


# ---- points ------------------------------------------------------------------------------


def test_points_map_exactly_onto_canvas_crops_and_global_view() -> None:
    g = ps.image.molmo_geometry(480, 640)  # canvas content 560x746 at left 19; global 251x336
    loc = g.locate([[0, 0], [100, 100], [50, 50]])
    np.testing.assert_array_equal(loc["canvas"], [[19, 0], [19 + 746, 560], [19 + 373, 280]])
    np.testing.assert_array_equal(loc["global"], [[0, 42], [336, 42 + 251], [168, 42 + 125.5]])
    # The centre (392, 280) lies on tiles (1, 0) and (1, 1) -- crops 2 and 3 -- not on
    # the top row; and on the global view.
    assert loc["on_crop"][2].tolist() == [True, False, True, False, False, True, False]
    np.testing.assert_array_equal(loc["crops"][2, 2], [392 - 224, 280])


def test_a_marked_point_is_where_the_helper_says() -> None:
    img = np.zeros((480, 640, 3), dtype=np.uint8)
    img[300:310, 100:110] = 255  # a white square centred at (105, 305) px
    m = ps.image.molmo_preprocess(png(img), ps.image.MolmoConfig(normalize=False))
    pct = [[105 / 640 * 100, 305 / 480 * 100]]
    loc = m.geometry.locate(pct)
    for k in np.nonzero(loc["on_crop"][0])[0]:
        crop = m.crops[k].reshape(24, 24, 14, 14, 3).transpose(0, 2, 1, 3, 4).reshape(336, 336, 3)
        ys, xs = np.nonzero(crop[..., 0] > 128)
        centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
        np.testing.assert_allclose(centre, loc["crops"][0, k], atol=0.75)


def test_placement_for_plain_decode() -> None:
    p = ps.image.placement(480, 640, pad=(336, 336))
    assert p == (251, 336, 42, 0, 336, 336)
    np.testing.assert_array_equal(p.map_percent([[100, 100]]), [[336, 42 + 251]])
    assert ps.image.placement(480, 640, max_side=320)[:2] == (240, 320)
