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
    if check == "header":
        # Not decoded, so at least whole: a file cut short ends before its format's end.
        cut = incomplete(data, fmt)
        if cut is not None:
            raise BrokenImage("truncated", f"{fmt}: {cut} ({len(data)} bytes)")
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return ImageInfo(int(width), int(height), fmt)


def _why(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def incomplete(data: bytes | memoryview, fmt: str | None) -> str | None:
    """Why ``data`` stops before its format's end, or ``None``: what catches a file cut short
    without decoding it, at C speed (one search over the bytes)."""
    if isinstance(data, memoryview):
        data = data.tobytes()
    if fmt == "JPEG":
        return _jpeg_incomplete(data)
    if fmt == "PNG":
        # IEND is the last chunk; bytes after it are tolerated, as decoders do.
        return None if data.rfind(b"IEND", 33) > 0 else "no IEND chunk"
    if fmt == "GIF":
        return None if data.rstrip(b"\0").endswith(b";") else "no GIF trailer"
    if fmt == "WEBP" and len(data) >= 12:
        riff = int.from_bytes(data[4:8], "little")
        return None if len(data) >= 8 + riff else f"RIFF promises {8 + riff} bytes"
    return None


def _jpeg_incomplete(data: bytes | memoryview) -> str | None:
    """A JPEG is complete when an EOI marker follows its first scan. Entropy-coded data never
    holds ``FF D9`` (a coded ``FF`` is stuffed as ``FF 00``), and the segments before the scan
    are skipped by their lengths, so an EXIF thumbnail's own EOI does not count."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            pos += 1  # stray bytes between segments, which decoders skip
            continue
        marker = data[pos + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD8 or marker == 0x01:
            pos += 1 if marker == 0xFF else 2  # fill byte, or a marker without a length
            continue
        if marker == 0xD9:
            return "EOI before any scan"
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            # The last EOI, searched from the end: found at once in a whole file, however many
            # FF bytes the scan holds (a forward search slows on those).
            return None if data.rfind(b"\xff\xd9", pos + 2 + length) >= 0 else "no EOI marker"
        pos += 2 + length
    return "no scan"
