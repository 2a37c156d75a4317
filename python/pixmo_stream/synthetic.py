"""Deterministic PixMo-like synthetic records, for demos, tests and benchmarks.

One record is one image with all its annotations, the way training code groups PixMo rows:

``image``         JPEG bytes (every record's image is encoded on its own: no two are equal)
``image_sha256``  hex sha256 of ``image``
``image_url``     a URL under ``example.com`` (nothing is ever fetched)
``width``/``height``  the JPEG's size in pixels
``captions``      1-3 dense captions of 100-300 words (PixMo-Cap's transcripts)
``points``        float32 array of shape (N, 2), x and y in percent of width and height (0-100),
                  N from 0 to 40, listed group by group
``point_labels``  one label per point group (PixMo-Points' ``label``)
``point_counts``  points in each group (PixMo-Points' ``count``); they add up to N
``qa``            0-5 ``{"question", "answer"}`` pairs
``meta``          a small dict (``source``, ``preset``, ``index``, ``collection_method``)

Record ``i`` depends only on ``(seed, preset, i)``, so ``generate_records(100)`` is a prefix of
``generate_records(1000)`` and records can be made in any order or in parallel. Images are
random crops of a small pool of procedurally drawn base pictures (colour gradients, shapes,
texture noise), each crop encoded with its own size and quality; so the bytes are real,
decodable, photo-like JPEGs that no compressor can deduplicate across records.

Presets: ``"small"`` (images from tens of KB to about 1 MB, most under 200 KB) and
``"pixmo-cap"`` (about 500 KB on average, like PixMo-Cap's photos).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the schema classes come from the native-backed package
    from pixmo_stream.schema import Schema

__all__ = ["PRESETS", "Preset", "generate_records", "make_record", "pixmo_schema"]


@dataclass(frozen=True)
class Preset:
    """How images of a preset are sized and encoded."""

    long_side: tuple[int, int]  # log-uniform range of the longer side, pixels
    quality: tuple[int, int]  # JPEG quality range (inclusive)
    tiny_fraction: float  # share of thumbnails (32-160 px), as scraped data has


PRESETS: dict[str, Preset] = {
    "small": Preset(long_side=(256, 1600), quality=(70, 92), tiny_fraction=0.02),
    "pixmo-cap": Preset(long_side=(1024, 2048), quality=(84, 95), tiny_fraction=0.0),
}

_BASE_W, _BASE_H = 2048, 1536
_POOL_SIZE = 16
_ASPECTS = (4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3, 5 / 4)


# Function words carry Zipf-like weight so that text compresses like English does.
_FUNCTION = (
    "the the the the a a a of of of and and and in in to to is is on with at "
    "that this there are its from by near behind next which while".split()
)
_NOUNS = (
    "person man woman child dog cat bird car bicycle tree house window door table chair "
    "cup bottle plate book lamp sky cloud road street sign building wall floor grass "
    "flower mountain river lake boat bridge fence roof shadow light sun hat shirt jacket "
    "bag phone screen keyboard clock painting frame shelf box ball kite horse cow sheep "
    "field beach wave rock sand leaf branch bench path corner background foreground "
    "logo letter word label pole wire cable train bus truck tire wheel handle mirror "
    "curtain pillow bed blanket rug vase basket apple banana orange bread sandwich pizza "
    "knife fork spoon bowl glass candle statue fountain tower church store market crowd"
).split()
_ADJECTIVES = (
    "red blue green yellow white black gray brown orange purple pink dark bright pale "
    "large small tall short wide narrow round square wooden metal glass plastic old new "
    "shiny dull wet dry soft rough smooth striped spotted blurry sharp distant close "
    "empty crowded open closed tiny huge faded colorful plain ornate worn clean dirty"
).split()
_VERBS = (
    "stands sits lies hangs leans rests appears shows holds covers faces crosses "
    "surrounds reflects casts fills frames blocks touches extends curves points runs "
    "walks looks waits grows floats shines"
).split()
_ADVERBS = "slightly partly clearly mostly nearly barely softly directly almost also".split()
_OPENERS = (
    "The image shows",
    "In this photo",
    "This picture depicts",
    "The scene contains",
    "Here we see",
    "The photograph captures",
)
_QUESTIONS = (
    "What color is the {n}?",
    "How many {n}s are in the image?",
    "Where is the {n} located?",
    "What is the {n} made of?",
    "Is there a {n} near the {m}?",
    "What is next to the {n}?",
    "Describe the {n} in detail.",
    "Why might the {n} be here?",
)


def _zipf_weights(k: int) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1) ** 0.9
    return w / w.sum()


_WORDS = np.array(_FUNCTION + _NOUNS + _ADJECTIVES + _VERBS + _ADVERBS)
_WORD_P = _zipf_weights(len(_WORDS))


_WORD_CDF = np.cumsum(_WORD_P)
_WORD_LIST = _WORDS.tolist()


def _words(rng: np.random.Generator, n: int) -> list[str]:
    idx = np.searchsorted(_WORD_CDF, rng.random(n) * _WORD_CDF[-1], side="right")
    return [_WORD_LIST[j] for j in np.minimum(idx, len(_WORD_LIST) - 1).tolist()]


def _sentence(rng: np.random.Generator, n_words: int) -> str:
    words = _words(rng, n_words)
    words[0] = words[0].capitalize()
    return " ".join(words) + "."


def _caption(rng: np.random.Generator) -> str:
    target = int(rng.integers(100, 301))
    head = f"{_pick(rng, _OPENERS)} a {_pick(rng, _ADJECTIVES)} {_pick(rng, _NOUNS)}."
    words = _words(rng, max(1, target - len(head.split())))
    lengths = rng.integers(6, 22, size=len(words) // 6 + 1).tolist()
    out, pos = [head], 0
    for n in lengths:
        if pos >= len(words):
            break
        sent = words[pos : pos + n]
        pos += n
        out.append(sent[0].capitalize() + (" " + " ".join(sent[1:]) if len(sent) > 1 else "") + ".")
    return " ".join(out)


def _pick(rng: np.random.Generator, seq: tuple[str, ...] | list[str]) -> str:
    return seq[int(rng.integers(0, len(seq)))]


def _qa(rng: np.random.Generator) -> list[dict[str, str]]:
    out = []
    for _ in range(int(rng.choice(6, p=[0.3, 0.25, 0.15, 0.12, 0.1, 0.08]))):
        q = _pick(rng, _QUESTIONS).format(n=_pick(rng, _NOUNS), m=_pick(rng, _NOUNS))
        out.append({"question": q, "answer": _sentence(rng, int(rng.integers(3, 40)))})
    return out


def _points(rng: np.random.Generator) -> tuple[np.ndarray, list[str], list[int]]:
    if rng.random() < 0.15:  # like PixMo-Points' rows with nothing to point at
        return np.zeros((0, 2), np.float32), [], []
    groups = int(rng.integers(1, 5))
    counts = [int(rng.integers(0, 11)) for _ in range(groups)]
    labels = [
        f"{_pick(rng, _ADJECTIVES)} {_pick(rng, _NOUNS)}"
        if rng.random() < 0.4
        else _pick(rng, _NOUNS)
        for _ in range(groups)
    ]
    n = sum(counts)
    pts = (rng.random((n, 2)) * 100.0).round(1).astype(np.float32)
    return pts, labels, counts


@functools.lru_cache(maxsize=_POOL_SIZE)
def _base_image(seed: int, k: int) -> Any:
    """Base picture ``k`` of the pool (a PIL image), drawn once per process."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, 0xBA5E, k])
    gh, gw = int(rng.integers(2, 6)), int(rng.integers(3, 8))
    field = rng.integers(0, 256, (gh, gw, 3), dtype=np.uint8)
    img = Image.fromarray(field).resize((_BASE_W, _BASE_H), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(10, 40))):
        x0, y0 = int(rng.integers(0, _BASE_W)), int(rng.integers(0, _BASE_H))
        w, h = int(rng.integers(20, _BASE_W // 3)), int(rng.integers(20, _BASE_H // 3))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=color)
        elif kind == 1:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=color)
        else:
            xy = [(x0 + int(rng.integers(0, w)), y0 + int(rng.integers(0, h))) for _ in range(5)]
            draw.polygon(xy, fill=color)
    a = np.asarray(img, dtype=np.int16)
    # Coarse texture (a blotchy surface) plus fine grain (sensor noise): what makes JPEGs big.
    coarse = rng.integers(88, 169, (_BASE_H // 8, _BASE_W // 8), dtype=np.uint8)
    coarse_img = Image.fromarray(coarse).resize((_BASE_W, _BASE_H), Image.BILINEAR)
    a += np.asarray(coarse_img, dtype=np.int16)[:, :, None] - 128
    grain = int(rng.integers(2, 20))  # varies per base: smooth scenes and grainy ones
    a += rng.integers(-grain, grain + 1, (_BASE_H, _BASE_W, 1), dtype=np.int16)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _image(rng: np.random.Generator, seed: int, preset: Preset) -> tuple[bytes, int, int]:
    from PIL import Image

    if rng.random() < preset.tiny_fraction:
        long_side = int(rng.integers(32, 161))
    else:
        lo, hi = preset.long_side
        long_side = int(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    aspect = _ASPECTS[int(rng.integers(0, len(_ASPECTS)))]
    base = _base_image(seed, int(rng.integers(0, _POOL_SIZE)))
    portrait = aspect < 1.0
    # Crop in landscape orientation, then rotate: cheap in PIL, and the crop offset makes every
    # image's pixels (and so its JPEG bytes) its own.
    cw = long_side
    ch = max(1, round(long_side * aspect if portrait else long_side / aspect))
    cw, ch = min(cw, _BASE_W), min(ch, _BASE_H)
    x, y = int(rng.integers(0, _BASE_W - cw + 1)), int(rng.integers(0, _BASE_H - ch + 1))
    img = base.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if portrait:
        img = img.transpose(Image.Transpose.ROTATE_90)
    q = int(rng.integers(preset.quality[0], preset.quality[1] + 1))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=q)
    return buf.getvalue(), img.width, img.height


def make_record(i: int, seed: int = 0, preset: str = "small") -> dict[str, Any]:
    """Record ``i`` of the synthetic dataset ``(seed, preset)``."""
    try:
        p = PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}") from None
    rng = np.random.default_rng([seed, i])
    image, w, h = _image(rng, seed, p)
    captions = [_caption(rng) for _ in range(int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2])))]
    points, labels, counts = _points(rng)
    return {
        "image": image,
        "image_sha256": hashlib.sha256(image).hexdigest(),
        "image_url": f"https://images.example.com/{preset}/{seed}/{i:08d}.jpg",
        "width": w,
        "height": h,
        "captions": captions,
        "points": points,
        "point_labels": labels,
        "point_counts": counts,
        "qa": _qa(rng),
        "meta": {
            "source": "synthetic",
            "preset": preset,
            "index": i,
            "collection_method": "counting" if rng.random() < 0.3 else "pointing",
        },
    }


def _make_chunk(args: tuple[int, int, int, str]) -> list[dict[str, Any]]:
    start, stop, seed, preset = args
    return [make_record(i, seed, preset) for i in range(start, stop)]


def generate_records(
    n: int, seed: int = 0, preset: str = "small", *, start: int = 0, workers: int = 1
) -> Iterator[dict[str, Any]]:
    """Yield records ``start .. start + n`` of the synthetic dataset ``(seed, preset)``.

    ``workers > 1`` makes records in that many processes (same records, same order);
    ``workers=0`` uses every CPU.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if n < 0:
        raise ValueError("n must be >= 0")
    workers = workers or (os.cpu_count() or 1)
    if workers <= 1 or n < 64:
        for i in range(start, start + n):
            yield make_record(i, seed, preset)
        return
    import multiprocessing as mp

    step = 32
    tasks = [(s, min(s + step, start + n), seed, preset) for s in range(start, start + n, step)]
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers) as pool:
        for chunk in pool.imap(_make_chunk, tasks):
            yield from chunk


def pixmo_schema() -> Schema:
    """The explicit ``pixmo_stream`` schema of the records above."""
    import pixmo_stream as ps

    return ps.Schema(
        [
            ps.Field("image", ps.binary()),
            ps.Field("image_sha256", ps.string()),
            ps.Field("image_url", ps.string()),
            ps.Field("width", ps.int32()),
            ps.Field("height", ps.int32()),
            ps.Field("captions", ps.list_(ps.string())),
            ps.Field("points", ps.array("float32", (2,))),
            ps.Field("point_labels", ps.list_(ps.string())),
            ps.Field("point_counts", ps.list_(ps.int32())),
            ps.Field(
                "qa",
                ps.list_(
                    ps.struct([ps.Field("question", ps.string()), ps.Field("answer", ps.string())])
                ),
            ),
            ps.Field("meta", ps.any_()),
        ]
    )
