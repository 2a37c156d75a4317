"""The CLI's ingest commands (convert, merge, verify --decode) and the traps of issue 13:
a manifest's path names its dataset, help and exit codes agree, the demo names no path it
deletes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import pixmo_fixtures as F
import pixmo_stream as ps
from pixmo_stream.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def small(tmp_path: Path) -> Path:
    with ps.Writer(str(tmp_path / "ds"), row_group_rows=2, shard_bytes=1) as w:
        for i in range(4):
            w.write({"i": i, "image": F.jpeg(8, 8, i) if i != 1 else F.HTML_PAGE})
    return tmp_path / "ds"


def test_a_manifest_or_shard_path_names_the_dataset(small: Path, capsys) -> None:
    code, out, err = run(capsys, "inspect", str(small / "manifest.json"))
    assert code == 0, err
    assert "rows        4" in out
    for command in ("verify", "head"):
        code, _, err = run(capsys, command, str(small / "manifest.json"))
        assert code == 0, err
    shard = sorted(p for p in os.listdir(small) if p.endswith(".pxs"))[0]
    code, out, _ = run(capsys, "inspect", str(small / shard))
    assert code == 0 and "rows        " in out


def test_help_for_the_new_commands(capsys) -> None:
    for command in ("convert", "merge"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert f"usage: pixmo-stream {command}" in text and "Exit codes:" in text
    assert main(["convert", "--help"]) == 0
    text = capsys.readouterr().out
    for word in ("--preset", "--images", "--naming", "--split", "--workers", "--keep-missing"):
        assert word in text


def test_help_and_exit_codes_agree_on_a_directory_without_manifest(tmp_path: Path, capsys) -> None:
    for command in ("inspect", "verify", "head"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "a directory that exists but holds no manifest.json" in text
        assert "1 bad data" in text and "2 usage error or a path that does not exist" in text
        (tmp_path / "empty").mkdir(exist_ok=True)
        assert run(capsys, command, str(tmp_path / "empty"))[0] == 1
        assert run(capsys, command, str(tmp_path / "nowhere"))[0] == 2


def test_demo_names_no_path_it_deletes(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    code, out, _ = run(capsys, "demo", "--records", "6")
    assert code == 0
    assert str(tmp_path) not in out and "--keep" in out
    assert os.listdir(tmp_path) == []
    code, out, _ = run(capsys, "demo", "--records", "6", "--keep")
    assert code == 0
    kept = out.strip().splitlines()[-1].removeprefix("kept the dataset at ")
    assert os.path.isdir(kept) and len(ps.Dataset(kept)) == 6
    assert f"dataset   {kept}" in out


def test_convert_and_its_exit_codes(tmp_path: Path, capsys) -> None:
    parquet, images = F.pixmo_points(tmp_path / "points.parquet")
    cache = F.write_cache(tmp_path / "cache", {F.url(i): images[i] for i in range(4)})
    out = tmp_path / "out"
    args = ["convert", str(parquet), "--preset", "pixmo-points", "--images", str(cache)]
    code, text, err = run(capsys, *args, "-o", str(out))
    assert code == 0, err
    assert "3 records" in text and "missing 1" in text and F.url(3) in text
    report = json.loads((out / "convert-report.json").read_text())
    assert report["skipped"] == {"missing": 1}
    assert run(capsys, *args, "-o", str(out))[0] == 2  # not empty: --overwrite
    code, text, _ = run(capsys, *args, "-o", str(out), "--overwrite", "--json")
    assert code == 0 and json.loads(text)["records_written"] == 3
    assert run(capsys, "convert", str(tmp_path / "nope.parquet"), "-o", str(tmp_path / "x"))[0] == 2
    code, _, err = run(
        capsys, "convert", str(F.pixmo_cap(tmp_path / "cap.parquet")), "--preset", "pixmo-points",
        "--images", str(cache), "-o", str(tmp_path / "y"),
    )  # fmt: skip
    assert code == 1 and "'points'" in err and "Traceback" not in err
    assert run(capsys, "convert", str(parquet), "--preset", "pixmo-nope", "-o", "z")[0] == 2
    (tmp_path / "no-images").mkdir()
    code, _, err = run(capsys, "convert", str(parquet), "--preset", "pixmo-points", "--images",
                       str(tmp_path / "no-images"), "-o", str(tmp_path / "none"))  # fmt: skip
    assert code == 1 and "no record was written" in err and "missing 4" in err


def test_merge_command(tmp_path: Path, capsys) -> None:
    for name in ("a", "b"):
        with ps.Writer(str(tmp_path / name)) as w:
            w.write_many({"i": i} for i in range(3))
    code, text, err = run(capsys, "merge", str(tmp_path / "a"), str(tmp_path / "b"),
                          "-o", str(tmp_path / "m"))  # fmt: skip
    assert code == 0, err and "6 rows" in text
    assert run(capsys, "verify", str(tmp_path / "m"))[0] == 0
    with ps.Writer(str(tmp_path / "c")) as w:
        w.write({"j": "x"})
    code, _, err = run(capsys, "merge", str(tmp_path / "a"), str(tmp_path / "c"),
                       "-o", str(tmp_path / "m2"))  # fmt: skip
    assert code == 1 and "schema differs" in err
    assert run(capsys, "merge", str(tmp_path / "nope"), "-o", str(tmp_path / "m3"))[0] == 2


def test_verify_decode_names_the_rows_that_do_not_decode(small: Path, capsys) -> None:
    assert run(capsys, "verify", str(small))[0] == 0  # the checksums are fine
    code, out, _ = run(capsys, "verify", "--decode", str(small))
    assert code == 1
    assert "1 of 4 images do not decode" in out and "row 1 column image: not_an_image" in out


def test_the_cli_lists_every_preset_and_imports_no_pyarrow_to_start() -> None:
    import subprocess
    import sys

    from pixmo_stream.cli.convert import PRESET_NAMES
    from pixmo_stream.ingest import PRESET_NAMES as INGEST_NAMES

    assert PRESET_NAMES == INGEST_NAMES
    code = (
        "import sys; from pixmo_stream.cli.app import build_parser; build_parser(); "
        "print('pyarrow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
