"""Checking an image before it is stored: it must decode in full, and its size is read
after EXIF orientation (what Molmo trains on, and the frame pixel points refer to).

Images are stored as they were downloaded (never re-encoded), so ``image_sha256`` stays
checkable against the source; this module only reads them.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import Literal

from pixmo_stream._native import PixmoError

# EXIF orientations 5-8 are transposes or quarter turns: width and height swap.
_EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = {5, 6, 7, 8}

Check = Literal["decode", "draft", "header"]
CHECKS: tuple[Check, ...] = ("decode", "draft", "header")


class BrokenImage(PixmoError):
    """An image that cannot be stored: ``cause`` is one of ``not_an_image``, ``truncated``,
    ``decode_error`` or ``empty``; ``detail`` says what the decoder said."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(f"{cause}: {detail}")
        self.cause = cause
        self.detail = detail


@dataclass(frozen=True)
class ImageInfo:
    width: int  # after EXIF orientation
    height: int
    format: str  # PIL's name: JPEG, PNG, ...


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def check_image(data: bytes | memoryview, check: Check = "decode") -> ImageInfo:
    """Reads ``data`` as an image and returns its oriented size, or raises `BrokenImage`.

    ``check="decode"`` decodes every pixel (``Image.load()``): a truncated file or an HTML
    page saved as an image is caught. ``"draft"`` lets a JPEG decode at 1/8 scale (PIL's
    ``draft()``: the entropy-coded stream is still read to its end, the inverse DCT is
    cheaper); other formats decode in full. ``"header"`` only parses the header.
    """
    from PIL import Image, UnidentifiedImageError

    if len(data) == 0:
        raise BrokenImage("empty", "zero bytes")
    try:
        with warnings.catch_warnings():
            # A decompression-bomb warning is about memory, not validity; huge images are real.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            fmt = img.format or "unknown"
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
            if check == "draft" and fmt == "JPEG":
                img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
            if check != "header":
                img.load()
    except UnidentifiedImageError as e:
        raise BrokenImage("not_an_image", _why(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        text = _why(e)
        truncated = "truncated" in text.lower() or isinstance(e, EOFError)
        cause = "truncated" if truncated else "decode_error"
        raise BrokenImage(cause, text) from None
    except Exception as e:  # noqa: BLE001 - a hostile file can make a plugin raise anything
        raise BrokenImage("decode_error", f"{type(e).__name__}: {_why(e)}") from None
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return ImageInfo(int(width), int(height), fmt)


def _why(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
