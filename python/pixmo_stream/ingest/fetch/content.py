"""Is a downloaded body the image the dataset means? Checked on the bytes, never the headers.

Runs in a worker thread: PIL releases the GIL while it decodes, so checks overlap each other
and the event loop keeps serving sockets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io

import PIL.Image

from ..images import incomplete
from .options import ShaPolicy
from .outcome import Outcome


@dataclasses.dataclass(frozen=True)
class ContentVerdict:
    outcome: Outcome
    detail: str
    sha256: str


def check_image(
    body: bytes, expected_sha256: str | None, *, sha_policy: ShaPolicy, decode: bool
) -> ContentVerdict:
    """Classify ``body``: ``ok``, ``sha_flagged``, ``sha_mismatch`` or ``bad_content``.

    Bytes whose sha256 is the dataset's are the published image, so they are accepted without
    a decode. Otherwise the bytes must open as an image (HTML, JSON and error pages do not),
    and end where their format says a complete file ends (a body cut short does not, even
    when its length matches its ``Content-Length``); with ``decode`` every coefficient of the
    stream must decode too (a JPEG corrupted inside does not).
    """
    digest = hashlib.sha256(body).hexdigest()
    expected = expected_sha256.lower() if expected_sha256 else None
    if sha_policy != "off" and expected is not None and digest == expected:
        return ContentVerdict(Outcome.OK, "", digest)
    problem = image_problem(body, decode=decode)
    if problem is not None:
        return ContentVerdict(Outcome.BAD_CONTENT, problem, digest)
    if sha_policy == "off" or expected is None:
        return ContentVerdict(Outcome.OK, "", digest)
    detail = f"sha256 {digest} != expected {expected}"
    if sha_policy == "flag":
        return ContentVerdict(Outcome.SHA_FLAGGED, detail, digest)
    return ContentVerdict(Outcome.SHA_MISMATCH, detail, digest)


def image_problem(body: bytes, *, decode: bool) -> str | None:
    """Why ``body`` is not a usable image, or ``None`` if it is one."""
    if not body:
        return "empty body"
    try:
        with PIL.Image.open(io.BytesIO(body)) as img:
            if min(img.size) <= 0:
                return f"zero-sized {img.format} image {img.size}"
            cut = incomplete(body, img.format)
            if cut is not None:
                return f"truncated {img.format}: {cut}: {len(body)} bytes"
            if decode:
                if img.format == "JPEG":
                    # A 1/8-scale decode still reads and Huffman-decodes every coefficient of
                    # the stream (so it fails on truncation just as a full decode does), but
                    # skips most of the IDCT and colour work: ~30% less CPU per photo.
                    img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
    except PIL.Image.DecompressionBombError as exc:
        return f"refused to decode: {exc}"
    except PIL.UnidentifiedImageError:
        return f"not an image: {len(body)} bytes starting {body[:24]!r}"
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return f"broken image ({type(exc).__name__}: {exc}): {len(body)} bytes"
    return None
