"""Image decoding, resizing and Molmo's multi-crop preprocessing, in Rust.

    import pixmo_stream as ps
    rgb = ps.image.decode(jpeg_bytes)                       # uint8 [H, W, 3], EXIF-upright
    view = ps.image.decode(jpeg_bytes, pad=(336, 336))      # at reduced scale where it pays
    batch = ps.image.decode_many(list_of_bytes, resize=(224, 224), threads=4, stack=True)
    m = ps.image.molmo_preprocess(jpeg_bytes)              # Molmo's crops, masks, indices

Sizes are given as ``(height, width)``, the order of the arrays' shapes. Every call releases
the GIL; ``threads`` > 1 starts threads for that call only (none survive it, so forked
DataLoader workers inherit nothing). Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from . import _native
from ._molmo import (
    CLIP_MEAN,
    CLIP_STD,
    MolmoConfig,
    MolmoGeometry,
    MolmoImage,
    MolmoTokenIds,
    Placement,
    molmo_geometry,
    molmo_preprocess,
    molmo_preprocess_many,
)
from ._native import DEFAULT_MAX_PIXELS, ImageDecodeError

Encoded = bytes | bytearray | memoryview
"""An encoded image: ``bytes``, or any object exporting a byte buffer (a ``ps.Blob``)."""

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_MAX_PIXELS",
    "ImageDecodeError",
    "ImageInfo",
    "MolmoConfig",
    "MolmoGeometry",
    "MolmoImage",
    "MolmoTokenIds",
    "Placement",
    "decode",
    "decode_batch",
    "decode_many",
    "jpeg_decoder",
    "molmo_geometry",
    "molmo_preprocess",
    "molmo_preprocess_many",
    "placement",
    "probe",
]


class ImageInfo(tuple[str, int, int, int]):
    """What an image's header says: ``format`` ("JPEG", "PNG", "GIF", "WebP"), the displayed
    ``width`` and ``height`` (after EXIF orientation) and the EXIF ``orientation`` (1-8)."""

    __slots__ = ()

    @property
    def format(self) -> str:
        return self[0]

    @property
    def width(self) -> int:
        return self[1]

    @property
    def height(self) -> int:
        return self[2]

    @property
    def orientation(self) -> int:
        return self[3]


def probe(data: Encoded) -> ImageInfo:
    """Reads only the header; raises ``ImageDecodeError`` if it is not a readable image."""
    return ImageInfo(_native.image_probe(data))


def jpeg_decoder() -> str:
    """Which decoder decodes full-size JPEGs here: ``"libjpeg-turbo"`` where the package was
    built with libjpeg-turbo's SIMD (NASM was on ``PATH`` at build time) and the CPU runs it,
    else ``"zune-jpeg"``. Reduced-size decodes are libjpeg-turbo's either way.
    Set the environment variable ``PIXMO_STREAM_JPEG_DECODER=zune-jpeg`` before the first
    decode to keep full-size decodes on zune-jpeg."""
    return _native.image_jpeg_decoder()


def _size(name: str, value: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (height, width) pair, not {value!r}") from None
    h, w = int(h), int(w)
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be at least 1x1 pixels, not {value!r}")
    return h, w


def _mode(
    resize: tuple[int, int] | None, max_side: int | None, pad: tuple[int, int] | None
) -> tuple[str, int, int]:
    """The native (mode, width, height) triple for the one resize option given."""
    given = [n for n, v in (("resize", resize), ("max_side", max_side), ("pad", pad)) if v]
    if len(given) > 1:
        raise ValueError(f"give at most one of resize, max_side and pad, not {', '.join(given)}")
    if resize is not None:
        h, w = _size("resize", resize)
        return "exact", w, h
    if pad is not None:
        h, w = _size("pad", pad)
        return "pad", w, h
    if max_side is not None:
        if int(max_side) < 1:
            raise ValueError(f"max_side must be at least 1, not {max_side!r}")
        return "max_side", int(max_side), 0
    return "none", 0, 0


def _max_pixels(max_pixels: int | None) -> int:
    if max_pixels is None:
        return 2**64 - 1
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1 (or None for no limit), not {max_pixels}")
    return int(max_pixels)


def decode(
    data: Encoded,
    *,
    resize: tuple[int, int] | None = None,
    max_side: int | None = None,
    pad: tuple[int, int] | None = None,
    fast: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> npt.NDArray[np.uint8]:
    """Decodes one JPEG, PNG, GIF (first frame) or WebP image to RGB ``uint8 [H, W, 3]``.

    EXIF orientation is applied; grayscale, palette and CMYK become RGB; alpha is dropped
    (as PIL's ``convert("RGB")``). At most one of:

    - ``resize=(h, w)``: stretched to exactly that size;
    - ``max_side=n``: shrunk (never enlarged) so that the longer side is at most ``n``;
    - ``pad=(h, w)``: scaled to fit keeping the aspect ratio, then zero-padded, centred.

    Resampling is antialiased bilinear. A JPEG at least twice the target's size on both sides
    (four times where libjpeg-turbo lacks its SIMD, see ``jpeg_decoder``) is decoded at 1/2,
    1/4 or 1/8 scale (libjpeg-turbo's DCT scaling, as PIL's ``draft``), never below the
    target nor below 32 px a side: faster, with pixels close to a full decode and resize
    (docs/IMAGES.md gives the measured bounds). The output's size and offsets are always
    ``placement(...)`` of the original size, whatever scale was decoded.
    ``fast=False`` decodes every image in full first.
    ``max_pixels`` (None: no limit) is checked from the header before decoding.

    Raises ``ImageDecodeError`` (``.reason``: "not_an_image", "truncated", "corrupt",
    "too_many_pixels", "zero_size" or "unsupported").
    """
    mode, w, h = _mode(resize, max_side, pad)
    return _native.image_decode(data, mode, w, h, bool(fast), _max_pixels(max_pixels))


def decode_many(
    items: Sequence[Encoded],
    *,
    resize: tuple[int, int] | None = None,
    max_side: int | None = None,
    pad: tuple[int, int] | None = None,
    fast: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    threads: int = 1,
    stack: bool = False,
    errors: Literal["raise", "return"] = "raise",
) -> (
    list[npt.NDArray[np.uint8]]
    | list[npt.NDArray[np.uint8] | ImageDecodeError]
    | npt.NDArray[np.uint8]
):
    """Decodes many images, as ``decode`` does, on up to ``threads`` threads.

    Returns a list of arrays, or with ``stack=True`` (which needs ``resize`` or ``pad``) one
    contiguous ``uint8 [n, h, w, 3]`` array. On a broken image, ``errors="raise"`` raises its
    ``ImageDecodeError`` (``.index`` says which input); ``errors="return"`` puts the error in
    its place in the list (a stacked slot is zero-filled; use ``decode_batch`` to get the
    errors with a stacked array).
    """
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")
    if stack:
        batch, errs = decode_batch(
            items, resize=resize, pad=pad, fast=fast, max_pixels=max_pixels, threads=threads
        )
        if errors == "raise":
            _raise_first(errs)
        return batch
    mode, w, h = _mode(resize, max_side, pad)
    out = _native.image_decode_many(
        items, mode, w, h, bool(fast), _max_pixels(max_pixels), _threads(threads)
    )
    if errors == "raise":
        _raise_first(out)
    return out


def decode_batch(
    items: Sequence[Encoded],
    *,
    resize: tuple[int, int] | None = None,
    pad: tuple[int, int] | None = None,
    fast: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    threads: int = 1,
) -> tuple[npt.NDArray[np.uint8], list[ImageDecodeError | None]]:
    """Decodes images of one fixed size (``resize`` or ``pad``) into one contiguous
    ``uint8 [n, h, w, 3]`` array. Returns it with one entry per input: ``None``, or the
    ``ImageDecodeError`` of a broken image, whose slot is left zero."""
    if (resize is None) == (pad is None):
        raise ValueError("a batch needs exactly one fixed size: resize=(h, w) or pad=(h, w)")
    mode, w, h = _mode(resize, None, pad)
    return _native.image_decode_batch(
        items, mode, w, h, bool(fast), _max_pixels(max_pixels), _threads(threads)
    )


def _threads(threads: int) -> int:
    if int(threads) < 1:
        raise ValueError(f"threads must be at least 1, not {threads!r}")
    return int(threads)


def _raise_first(results: Sequence[object]) -> None:
    for r in results:
        if isinstance(r, ImageDecodeError):
            raise r


def placement(
    height: int,
    width: int,
    *,
    resize: tuple[int, int] | None = None,
    max_side: int | None = None,
    pad: tuple[int, int] | None = None,
) -> Placement:
    """Where an upright image of ``height`` x ``width`` lands in ``decode``'s output under
    the same resize option; ``placement(...).map_percent(points)`` maps ``(x, y)`` percent
    points of the original to pixel positions on the output."""
    mode, w, h = _mode(resize, max_side, pad)
    return Placement(*_native.image_placement(int(height), int(width), mode, w, h))
