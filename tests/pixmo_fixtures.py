"""Small parquet files in each PixMo dataset's published schema (column names and Arrow
types as on the hub, /work/shared/PIXMO.md), and synthetic images: good JPEGs and PNGs,
EXIF-rotated JPEGs, a truncated JPEG, an HTML error page saved as an image, random bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pixmo_stream.ingest import molmo_cache_name

HTML_PAGE = b"<!DOCTYPE html><html><head><title>404 Not Found</title></head></html>\n"
XY = pa.struct([("x", pa.float64()), ("y", pa.float64())])


def jpeg(width: int, height: int, seed: int = 0, orientation: int | None = None) -> bytes:
    img = Image.new("RGB", (width, height), (40 * seed % 256, 90, 200 - seed % 100))
    for i in range(0, width, 7):  # some detail, so that the entropy-coded part is not trivial
        img.putpixel((i, (i * 3 + seed) % height), (255, 255, 255))
    buf = io.BytesIO()
    if orientation is None:
        img.save(buf, format="JPEG", quality=85)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(buf, format="JPEG", quality=85, exif=exif.tobytes())
    return buf.getvalue()


def png(width: int, height: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (seed % 256, 30, 60)).save(buf, format="PNG")
    return buf.getvalue()


def truncated_jpeg() -> bytes:
    data = jpeg(256, 192, seed=9)
    return data[: len(data) * 3 // 4]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def url(i: int) -> str:
    return f"https://images.example.com/photos/{i:04d}.jpg"


def write_cache(folder: Path, images: dict[str, bytes | None]) -> Path:
    """Images named as Molmo's cache names them; a None value leaves the file out."""
    folder.mkdir(parents=True, exist_ok=True)
    for u, data in images.items():
        if data is not None:
            (folder / molmo_cache_name(u)).write_bytes(data)
    return folder


def write(table: pa.Table, path: Path) -> Path:
    os.makedirs(path.parent, exist_ok=True)
    pq.write_table(table, path)
    return path


def pixmo_points(path: Path) -> tuple[Path, list[dict]]:
    """Rows of 3 images interleaved (image 0's rows are not contiguous), one with zero
    points, plus a row whose image is missing from the cache."""
    rows = [
        dict(image_url=url(0), label="cat", points=[{"x": 10.0, "y": 20.0}], count=1,
             collection_method="pointing"),
        dict(image_url=url(1), label="dog", points=[{"x": 50.0, "y": 50.0}, {"x": 5.0, "y": 7.5}],
             count=2, collection_method="counting"),
        dict(image_url=url(0), label="hat", points=[], count=0, collection_method="counting"),
        dict(image_url=url(2), label="cup", points=[{"x": 99.5, "y": 0.25}], count=1,
             collection_method="pointing"),
        dict(image_url=url(0), label="mat", points=[{"x": 1.0, "y": 2.0}, {"x": 3.0, "y": 4.0},
             {"x": 1.0, "y": 1.0}], count=3, collection_method="pointing"),
        dict(image_url=url(3), label="car", points=[{"x": 1.0, "y": 1.0}], count=1,
             collection_method="pointing"),
    ]  # fmt: skip
    images = {url(i): jpeg(40 + 8 * i, 30 + 4 * i, seed=i) for i in range(3)}
    for r in rows:
        r["image_sha256"] = sha(images[r["image_url"]]) if r["image_url"] in images else "00" * 32
    # Image 2's published hash is stale (re-served bytes): stored, flagged.
    for r in rows:
        if r["image_url"] == url(2):
            r["image_sha256"] = "ab" * 32
    schema = pa.schema(
        [
            ("image_url", pa.string()),
            ("image_sha256", pa.string()),
            ("points", pa.list_(XY)),
            ("count", pa.int64()),
            ("label", pa.string()),
            ("collection_method", pa.string()),
        ]
    )
    write(pa.Table.from_pylist(rows, schema=schema), path)
    return path, [images.get(url(i)) for i in range(4)]


def pixmo_points_eval(path: Path, urls: list[str]) -> Path:
    rows = [
        dict(image_url=u, image_sha256="00" * 32, label="thing",
             points=[{"x": 1.0, "y": 2.0}], masks=[[[True, False, True], [False, False, True]]])
        for u in urls
    ]  # fmt: skip
    schema = pa.schema(
        [
            ("image_url", pa.string()),
            ("image_sha256", pa.string()),
            ("label", pa.string()),
            ("points", pa.list_(XY)),
            ("masks", pa.list_(pa.list_(pa.list_(pa.bool_())))),
        ]
    )
    return write(pa.Table.from_pylist(rows, schema=schema), path)


def pixmo_count(path: Path, with_points: bool = True) -> tuple[Path, dict[str, bytes]]:
    """Pixel points; image 1 is stored 80x40 with EXIF orientation 6 (shown 40x80)."""
    images = {url(0): jpeg(200, 100, seed=1), url(1): jpeg(80, 40, seed=2, orientation=6)}
    points = [{"x": [50.0, 100.0], "y": [25.0, 50.0]}, {"x": [20.0], "y": [40.0]}]
    rows = [
        dict(image_url=u, image_sha256=sha(images[u]), count=2 - i, label=f"label {i}",
             points=points[i] if with_points else None)
        for i, u in enumerate(images)
    ]  # fmt: skip
    schema = pa.schema(
        [
            ("image_url", pa.string()),
            ("image_sha256", pa.string()),
            ("count", pa.int32()),
            ("points", pa.struct([("x", pa.list_(pa.float32())), ("y", pa.list_(pa.float32()))])),
            ("label", pa.string()),
        ]
    )
    write(pa.Table.from_pylist(rows, schema=schema), path)
    return path, images


def pixmo_docs(path: Path) -> tuple[Path, list[bytes]]:
    images = [png(30, 20, seed=1), jpeg(32, 24, seed=3), HTML_PAGE]
    rows = [
        dict(
            image={"bytes": data, "path": None},
            image_id=f"doc-{i}",
            questions={"question": [f"q{i}.{j}" for j in range(i + 1)],
                       "answer": [f"a{i}.{j}" for j in range(i + 1)]},
        )
        for i, data in enumerate(images)
    ]  # fmt: skip
    schema = pa.schema(
        [
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("image_id", pa.string()),
            (
                "questions",
                pa.struct([("question", pa.list_(pa.string())), ("answer", pa.list_(pa.string()))]),
            ),
        ]
    )
    write(pa.Table.from_pylist(rows, schema=schema), path)
    return path, images


def pixmo_cap_qa(path: Path, new_layout: bool) -> Path:
    rows = [
        dict(image_url=url(0), question="What is it?", answer="A cat."),
        dict(image_url=url(1), question="Colour?", answer="Blue."),
        dict(image_url=url(0), question="How many?", answer="Two."),
    ]
    fields = [("image_url", pa.string()), ("question", pa.string()), ("answer", pa.string())]
    if new_layout:
        for r in rows:
            r["messages"] = [r["question"], r["answer"], "And then?", "Nothing."]
        fields.append(("messages", pa.list_(pa.string())))
    return write(pa.Table.from_pylist(rows, schema=pa.schema(fields)), path)


def pixmo_cap(path: Path) -> Path:
    rows = [
        dict(image_url=url(0), caption="A cat on a mat.", transcripts=["um a cat", "cat, mat"]),
        dict(image_url=url(1), caption="A blue sky.", transcripts=["sky"]),
    ]
    schema = pa.schema(
        [
            ("image_url", pa.string()),
            ("caption", pa.string()),
            ("transcripts", pa.list_(pa.string())),
        ]
    )
    return write(pa.Table.from_pylist(rows, schema=schema), path)


def pixmo_ask_model_anything(path: Path) -> Path:
    rows = [
        dict(image_url=url(1), image_sha256="", question="Q1", answer="A1"),
        dict(image_url=url(0), image_sha256="", question="Q2", answer="A2"),
        dict(image_url=url(1), image_sha256="", question="Q3", answer="A3"),
    ]
    schema = pa.schema(
        [(n, pa.string()) for n in ("image_url", "image_sha256", "question", "answer")]
    )
    return write(pa.Table.from_pylist(rows, schema=schema), path)


def pixmo_point_explanations(path: Path) -> Path:
    rows = [
        dict(image_url=url(0), image_sha256="", question="Where are the cats?",
             response="There are two cats.", parsed_response="There are <|POINT|> cats.",
             alt_text=["cats"], inline_text=["two"], points=[[[10.0, 20.0], [30.0, 40.0]]]),
        dict(image_url=url(0), image_sha256="", question="And dogs?", response="None.",
             parsed_response=None, alt_text=[], inline_text=[], points=[]),
    ]  # fmt: skip
    schema = pa.schema(
        [
            ("image_url", pa.string()),
            ("image_sha256", pa.string()),
            ("question", pa.string()),
            ("response", pa.string()),
            ("parsed_response", pa.string()),
            ("alt_text", pa.list_(pa.string())),
            ("inline_text", pa.list_(pa.string())),
            ("points", pa.list_(pa.list_(pa.list_(pa.float64())))),
        ]
    )
    return write(pa.Table.from_pylist(rows, schema=schema), path)


def pixmo_clocks(path: Path, with_images: bool) -> Path:
    rows = [
        dict(watch_time="10:08:30", time_format="12 hour clock (with AM/PM)", shows_seconds=True,
             hour=10, minute=8, second=30),
        dict(watch_time="23:59:00", time_format="12 hour clock (without AM/PM)",
             shows_seconds=False, hour=23, minute=59, second=0),
    ]  # fmt: skip
    if with_images:
        for i, r in enumerate(rows):
            r["image"] = f"clock_{i}.png"
    return write(pa.Table.from_pylist(rows), path)
