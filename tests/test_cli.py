"""Behaviour of the ``pixmo-stream`` command-line tool, run in-process through ``main``."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixmo_stream as ps
from pixmo_stream.cli import format_value, main, sniff_image

ROWS = 12
LONG_CAPTION = "A dense caption that goes on and on. " * 20


def _image_bytes(i: int, fmt: str) -> bytes:
    img = Image.new("RGB", (16 + 4 * i, 12 + 2 * i), (20 * i % 256, 80, 160))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _record(i: int) -> dict:
    return {
        "image": _image_bytes(i, "JPEG" if i % 3 else "PNG"),
        "caption": f"record {i}: " + LONG_CAPTION,
        "points": np.arange(2 * (i % 4), dtype=np.float32).reshape(-1, 2),
        "qa": [{"question": f"q{i}.{j}", "answer": f"a{i}.{j}"} for j in range(i % 3 + 1)],
        "count": i,
    }


SCHEMA = ps.Schema(
    [
        ps.Field("image", ps.binary()),
        ps.Field("caption", ps.string()),
        ps.Field("points", ps.array("float32", (2,))),
        ps.Field(
            "qa",
            ps.list_(
                ps.struct([ps.Field("question", ps.string()), ps.Field("answer", ps.string())])
            ),
        ),
        ps.Field("count", ps.int64()),
    ]
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve rows in two shards of two or more row groups each."""
    path = tmp_path_factory.mktemp("cli") / "ds"
    with ps.Writer(str(path), schema=SCHEMA, row_group_rows=3, shard_bytes=4096) as w:
        w.write_many(_record(i) for i in range(ROWS))
    return path


@pytest.fixture
def copy_of(dataset: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(dataset, target)
    return target


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["demo"], ["inspect"], ["verify"], ["head"]):
        assert main([*argv, "--help"]) == 0
        out = capsys.readouterr().out
        assert "usage: pixmo-stream" in out


def test_help_as_a_program() -> None:
    exe = shutil.which("pixmo-stream")
    cmd = [exe, "--help"] if exe else [sys.executable, "-m", "pixmo_stream.cli", "--help"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for word in ("demo", "inspect", "verify", "head"):
        assert word in done.stdout


def test_inspect_shows_rows_columns_and_bytes(dataset: Path, capsys) -> None:
    code, out, _ = run(capsys, "inspect", str(dataset))
    assert code == 0
    assert f"rows        {ROWS}" in out
    for name in ("image", "caption", "points", "qa", "count", "question", "answer"):
        assert name in out
    assert "array<float32, (N, 2)>" in out  # as str(ps.array("float32", 2)) writes it
    assert "list<struct>" in out


def test_inspect_json_matches_the_dataset(dataset: Path, capsys) -> None:
    code, out, _ = run(capsys, "inspect", str(dataset), "--json")
    assert code == 0
    doc = json.loads(out)
    ds = ps.Dataset(str(dataset))
    assert doc["num_rows"] == ROWS == len(ds)
    assert [c["name"] for c in doc["columns"]] == list(ds.schema.names)
    assert doc["num_shards"] == len(doc["shards"]) >= 2
    assert doc["num_row_groups"] >= 4
    image = next(c for c in doc["columns"] if c["name"] == "image")
    assert image["raw_bytes"] >= sum(len(_record(i)["image"]) for i in range(ROWS))
    assert all(c["stored_bytes"] > 0 for c in doc["columns"])


def test_verify_clean_dataset_exits_0(dataset: Path, capsys) -> None:
    code, out, _ = run(capsys, "verify", str(dataset))
    assert code == 0
    assert out.startswith("OK:")


def _flip_a_byte_inside_an_image(shard: Path, image: bytes) -> None:
    data = bytearray(shard.read_bytes())
    at = data.find(image)  # binary columns are stored uncompressed by default
    assert at > 0, "image bytes not found verbatim in the shard"
    data[at + len(image) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))


def test_verify_names_the_corrupt_shard_and_exits_1(copy_of: Path, capsys) -> None:
    ds = ps.Dataset(str(copy_of))
    shards = [s["file"] for s in ds.info()["shards"]]
    last_row = len(ds) - 1
    victim = shards[-1]  # the last shard holds the last row
    del ds
    _flip_a_byte_inside_an_image(copy_of / victim, _record(last_row)["image"])
    code, out, _ = run(capsys, "verify", str(copy_of))
    assert code == 1
    assert out.startswith("FAILED")
    assert victim in out
    for clean in shards[:-1]:
        assert f"bad shard {clean}" not in out


def test_verify_names_a_shard_with_a_broken_trailer(copy_of: Path, capsys) -> None:
    victim = sorted(copy_of.glob("*.pxs"))[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # the closing magic: same size, so only reading the shard finds it
    victim.write_bytes(bytes(data))
    code, out, err = run(capsys, "verify", str(copy_of))
    assert code == 1
    assert victim.name in out + err
    assert "Traceback" not in out + err


def test_verify_single_shard_file(copy_of: Path, capsys) -> None:
    shard = sorted(copy_of.glob("*.pxs"))[0]
    code, out, _ = run(capsys, "verify", str(shard))
    assert code == 0, out


def test_head_prints_records_and_writes_images(dataset: Path, tmp_path: Path, capsys) -> None:
    images = tmp_path / "images"
    code, out, _ = run(capsys, "head", str(dataset), "-n", "2", "--images-to", str(images))
    assert code == 0
    assert out.count("── record ") == 2
    assert "<png " in out and "<jpeg " in out and " bytes>" in out
    assert f"({len(_record(0)['caption']):,} chars)" in out  # long text cut, length shown
    assert "…" in out
    files = sorted(images.iterdir())
    assert [f.suffix for f in files] == [".png", ".jpg"]
    for f in files:
        with Image.open(f) as img:
            img.verify()


def test_head_column_projection(dataset: Path, capsys) -> None:
    code, out, _ = run(capsys, "head", str(dataset), "-n", "3", "--columns", "count,points")
    assert code == 0
    assert out.count("── record ") == 3
    assert "caption" not in out and "image" not in out
    assert "array (2, 2) float32" in out  # row 1: two points


def test_head_unknown_column_is_a_usage_error(dataset: Path, capsys) -> None:
    code, _, err = run(capsys, "head", str(dataset), "--columns", "nope")
    assert code == 2
    assert "nope" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["inspect", "verify", "head"])
def test_missing_path_is_one_line_error(tmp_path: Path, capsys, command: str) -> None:
    missing = tmp_path / "does-not-exist"
    code, out, err = run(capsys, command, str(missing))
    assert code != 0
    assert str(missing) in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_corrupt_file_is_one_line_error(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "bogus.pxs"
    bogus.write_bytes(b"not a pixmo-stream file at all" * 4)
    code, _, err = run(capsys, "inspect", str(bogus))
    assert code == 1
    assert err.startswith("pixmo-stream: error:") and "Traceback" not in err


def test_demo_with_few_records(tmp_path: Path, capsys) -> None:
    pytest.importorskip("pixmo_stream.synthetic")
    out_dir = tmp_path / "demo"
    code, out, err = run(capsys, "demo", "--records", "10", "--out", str(out_dir), "--workers", "0")
    assert code == 0, out + err
    assert "10 PixMo-like records" in out
    for word in ("write", "random ds[i]", "take", "iterate", "verify", "stream", "rec/s"):
        assert word in out
    assert "all reads matched" in out
    assert len(ps.Dataset(str(out_dir))) == 10


def test_demo_removes_its_temporary_dataset(capsys, monkeypatch, tmp_path: Path) -> None:
    pytest.importorskip("pixmo_stream.synthetic")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    code, out, _ = run(capsys, "demo", "--records", "8", "--workers", "0")
    assert code == 0
    assert os.listdir(tmp_path) == []


def test_value_summaries() -> None:
    assert sniff_image(_image_bytes(1, "PNG")) == "png"
    assert sniff_image(_image_bytes(1, "JPEG")) == "jpeg"
    assert sniff_image(b"GIF89a....") == "gif"
    assert sniff_image(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert sniff_image(b"<html>") == "other"
    assert format_value(b"\xff\xd8\xff" + bytes(103409)) == "<jpeg 103,412 bytes>"
    assert (
        format_value(np.zeros((5, 2), np.float32))
        == "array (5, 2) float32 [[0, 0], [0, 0], [0, 0], …]"
    )
    assert format_value(np.arange(3, dtype=np.int64)) == "array (3,) int64 [0, 1, 2]"
    cut = format_value("x" * 500, width=40)
    assert "…" in cut and cut.endswith("(500 chars)")
    assert len(cut) <= 40
    assert format_value(None) == "null"


def test_demo_will_not_write_over_a_dataset(dataset: Path, capsys) -> None:
    code, _, err = run(capsys, "demo", "--records", "4", "--out", str(dataset))
    assert code == 2
    assert "--overwrite" in err and "Traceback" not in err
    assert len(ps.Dataset(str(dataset))) == ROWS


def test_bad_arguments_are_usage_errors(dataset: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "head", str(dataset), "-n", "-1")
    assert code == 2 and "-n must be 0 or more" in err
    (tmp_path / "a-file").write_text("x")
    code, _, err = run(capsys, "head", str(dataset), "--images-to", str(tmp_path / "a-file"))
    assert code == 2 and "not a directory" in err


def test_a_directory_mid_write_is_bad_data_for_every_command(tmp_path: Path, capsys) -> None:
    schema = ps.Schema([ps.Field("x", ps.int64())])
    w = ps.Writer(tmp_path / "d", schema, shard_bytes=1, row_group_rows=1)
    for i in range(3):
        w.write({"x": i})
    for command in ("inspect", "head", "verify"):
        code, out, err = run(capsys, command, str(tmp_path / "d"))
        assert code == 1, (command, out, err)
        assert "still being written" in out + err, (command, out, err)
    w.close()
    code, out, _ = run(capsys, "inspect", str(tmp_path / "d"))
    assert code == 0


def test_inspect_shows_the_writers_metadata(tmp_path: Path, capsys) -> None:
    with ps.Writer(tmp_path / "d", metadata={"source": "pixmo-points"}) as w:
        w.write({"x": 1})
    code, out, _ = run(capsys, "inspect", str(tmp_path / "d"))
    assert code == 0 and "metadata    source = pixmo-points" in out
