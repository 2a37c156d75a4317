"""Every PixMo preset, on parquet files in the published schemas: one record per image,
lists in input order, points in percent, image facts, skipped images counted and named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pixmo_fixtures as F
import pixmo_stream as ps
from pixmo_stream.ingest import REPORT_NAME, InputError, check_image, convert


def _records(path: Path) -> list[dict]:
    return list(ps.Dataset(str(path)))


@pytest.fixture
def points_input(tmp_path: Path) -> tuple[Path, Path, list]:
    parquet, images = F.pixmo_points(tmp_path / "points.parquet")
    cache = F.write_cache(tmp_path / "cache", {F.url(i): images[i] for i in range(4)})
    return parquet, cache, images


def test_points_grouped_per_image_in_input_order(points_input, tmp_path: Path) -> None:
    parquet, cache, images = points_input
    report = convert(str(parquet), str(tmp_path / "out"), preset="pixmo-points", images=str(cache))
    recs = _records(tmp_path / "out")
    # Image 3 has no file: skipped, so three records, in the order images first appear.
    assert [r["image_url"] for r in recs] == [F.url(0), F.url(1), F.url(2)]
    first = recs[0]
    assert first["labels"] == ["cat", "hat", "mat"]  # rows 0, 2, 4 of the input
    assert first["collection_methods"] == ["pointing", "counting", "pointing"]
    assert first["counts"] == [1, 0, 3]
    assert [p.shape for p in first["points"]] == [(1, 2), (0, 2), (3, 2)]
    assert all(p.dtype == np.float64 for p in first["points"])
    np.testing.assert_array_equal(first["points"][2], [[1, 2], [3, 4], [1, 1]])
    assert bytes(first["image"]) == images[0]
    assert first["image_sha256"] == F.sha(images[0]) == first["source_sha256"]
    assert (first["width"], first["height"]) == (40, 30)
    assert not first["sha256_mismatch"]
    assert recs[2]["sha256_mismatch"] and recs[2]["source_sha256"] == "ab" * 32
    assert report.skipped == {"missing": 1}
    assert report.failures[0].image_url == F.url(3) and report.failures[0].input_rows == [5]
    assert ps.Dataset(str(tmp_path / "out")).info()["metadata"]["point_unit"] == "percent"
    written = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert written["records_written"] == 3 and written["skipped"] == {"missing": 1}


def test_keep_missing_keeps_the_record_without_image(points_input, tmp_path: Path) -> None:
    parquet, cache, _ = points_input
    report = convert(
        str(parquet), str(tmp_path / "o"), preset="pixmo-points", images=str(cache),
        keep_missing=True,
    )  # fmt: skip
    recs = _records(tmp_path / "o")
    assert len(recs) == 4 and report.kept_without_image == 1 and not report.skipped
    assert recs[3]["image"] is None and recs[3]["width"] is None
    assert recs[3]["labels"] == ["car"]


def test_broken_images_are_skipped_and_counted_by_cause(tmp_path: Path) -> None:
    parquet, images = F.pixmo_points(tmp_path / "p.parquet")
    cache = F.write_cache(
        tmp_path / "c",
        {F.url(0): images[0], F.url(1): F.HTML_PAGE, F.url(2): F.truncated_jpeg(), F.url(3): b""},
    )
    report = convert(str(parquet), str(tmp_path / "o"), preset="pixmo-points", images=str(cache))
    assert report.records_written == 1
    assert report.skipped == {"not_an_image": 1, "truncated": 1, "empty": 1}
    named = {f.image_url: f.cause for f in report.failures}
    assert named == {F.url(1): "not_an_image", F.url(2): "truncated", F.url(3): "empty"}
    assert [f.input_rows for f in report.failures if f.image_url == F.url(1)] == [[1]]


def test_count_pixels_become_percent_of_the_oriented_image(tmp_path: Path) -> None:
    parquet, images = F.pixmo_count(tmp_path / "count.parquet")
    cache = F.write_cache(tmp_path / "c", images)
    convert(str(parquet), str(tmp_path / "o"), preset="pixmo-count", images=str(cache))
    a, b = _records(tmp_path / "o")
    assert (a["width"], a["height"]) == (200, 100)
    np.testing.assert_allclose(a["points"][0], [[25, 25], [50, 50]])
    # Stored 80x40 with EXIF orientation 6: shown (and pointed at) as 40 wide, 80 high.
    assert (b["width"], b["height"]) == (40, 80)
    np.testing.assert_allclose(b["points"][0], [[50, 50]])
    assert a["counts"] == [2] and b["labels"] == ["label 1"]


def test_count_eval_split_without_points_stays_empty(tmp_path: Path) -> None:
    parquet, images = F.pixmo_count(tmp_path / "count.parquet", with_points=False)
    cache = F.write_cache(tmp_path / "c", images)
    convert(str(parquet), str(tmp_path / "o"), preset="pixmo-count", images=str(cache))
    for rec in _records(tmp_path / "o"):
        assert [p.shape for p in rec["points"]] == [(0, 2)]


def test_docs_inline_images_and_dict_of_lists_questions(tmp_path: Path) -> None:
    parquet, images = F.pixmo_docs(tmp_path / "docs.parquet")
    report = convert(str(parquet), str(tmp_path / "o"), preset="pixmo-docs")
    recs = _records(tmp_path / "o")
    assert [r["image_id"] for r in recs] == ["doc-0", "doc-1"]  # doc-2 is an HTML page
    assert recs[1]["questions"] == ["q1.0", "q1.1"] and recs[1]["answers"] == ["a1.0", "a1.1"]
    assert bytes(recs[0]["image"]) == images[0] and recs[0]["image_url"] is None
    assert (recs[0]["width"], recs[0]["height"]) == (30, 20)
    assert report.skipped == {"not_an_image": 1}


@pytest.mark.parametrize("new_layout", [False, True])
def test_cap_qa_both_layouts(tmp_path: Path, new_layout: bool) -> None:
    parquet = F.pixmo_cap_qa(tmp_path / "capqa.parquet", new_layout)
    cache = F.write_cache(tmp_path / "c", {F.url(i): F.jpeg(20, 20, i) for i in range(2)})
    convert(str(parquet), str(tmp_path / "o"), preset="pixmo-cap-qa", images=str(cache))
    recs = _records(tmp_path / "o")
    if new_layout:
        assert recs[0]["conversations"][1] == ["How many?", "Two.", "And then?", "Nothing."]
    else:
        assert recs[0]["conversations"] == [["What is it?", "A cat."], ["How many?", "Two."]]
    assert recs[1]["conversations"][0][:2] == ["Colour?", "Blue."]


def test_cap_and_ask_model_anything(tmp_path: Path) -> None:
    cache = F.write_cache(tmp_path / "c", {F.url(i): F.jpeg(20, 20, i) for i in range(2)})
    convert(str(F.pixmo_cap(tmp_path / "cap.parquet")), str(tmp_path / "cap"),
            preset="pixmo-cap", images=str(cache))  # fmt: skip
    cap = _records(tmp_path / "cap")
    assert cap[0]["captions"] == ["A cat on a mat."]
    assert cap[0]["transcripts"] == [["um a cat", "cat, mat"]]
    convert(str(F.pixmo_ask_model_anything(tmp_path / "ama.parquet")), str(tmp_path / "ama"),
            preset="pixmo-ask-model-anything", images=str(cache))  # fmt: skip
    ama = _records(tmp_path / "ama")
    assert [r["image_url"] for r in ama] == [F.url(1), F.url(0)]
    assert ama[0]["questions"] == ["Q1", "Q3"] and ama[0]["answers"] == ["A1", "A3"]
    assert ama[0]["source_sha256"] == "" and not ama[0]["sha256_mismatch"]


def test_point_explanations_point_groups(tmp_path: Path) -> None:
    parquet = F.pixmo_point_explanations(tmp_path / "pe.parquet")
    cache = F.write_cache(tmp_path / "c", {F.url(0): F.jpeg(20, 20)})
    convert(str(parquet), str(tmp_path / "o"), preset="pixmo-point-explanations", images=str(cache))
    (rec,) = _records(tmp_path / "o")
    assert rec["parsed_responses"] == ["There are <|POINT|> cats.", None]
    assert [len(g) for g in rec["point_groups"]] == [1, 0]
    np.testing.assert_array_equal(rec["point_groups"][0][0], [[10, 20], [30, 40]])
    assert rec["alt_texts"] == [["cats"], []]


def test_points_eval_masks_pack_bits(tmp_path: Path) -> None:
    parquet = F.pixmo_points_eval(tmp_path / "eval.parquet", [F.url(0)])
    cache = F.write_cache(tmp_path / "c", {F.url(0): F.jpeg(20, 20)})
    convert(str(parquet), str(tmp_path / "o"), preset="pixmo-points-eval", images=str(cache))
    (rec,) = _records(tmp_path / "o")
    (mask,) = rec["masks"][0]
    assert (mask["height"], mask["width"]) == (2, 3)
    bits = np.unpackbits(np.frombuffer(bytes(mask["bits"]), np.uint8), count=6).reshape(2, 3)
    np.testing.assert_array_equal(bits, [[1, 0, 1], [0, 0, 1]])


def test_clocks_without_and_with_images(tmp_path: Path) -> None:
    convert(str(F.pixmo_clocks(tmp_path / "clocks.parquet", False)), str(tmp_path / "a"),
            preset="pixmo-clocks")  # fmt: skip
    recs = _records(tmp_path / "a")
    assert [r["watch_time"] for r in recs] == ["10:08:30", "23:59:00"]
    assert recs[1]["shows_seconds"] is False and recs[0]["image"] is None
    folder = tmp_path / "renders"
    folder.mkdir()
    (folder / "clock_0.png").write_bytes(F.png(12, 10))
    (folder / "clock_1.png").write_bytes(F.png(14, 10))
    convert(str(F.pixmo_clocks(tmp_path / "c2.parquet", True)), str(tmp_path / "b"),
            preset="pixmo-clocks", images=str(folder))  # fmt: skip
    assert [r["width"] for r in _records(tmp_path / "b")] == [12, 14]


def test_a_file_that_is_not_the_preset_names_the_missing_column(tmp_path: Path) -> None:
    parquet = F.pixmo_cap(tmp_path / "cap.parquet")
    with pytest.raises(InputError, match=r"cap\.parquet.*not pixmo-points.*'points'"):
        convert(str(parquet), str(tmp_path / "o"), preset="pixmo-points", images=str(tmp_path))
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_image_checks() -> None:
    assert check_image(F.jpeg(30, 20)).width == 30
    assert (check_image(F.jpeg(30, 20, orientation=8)).width, 20) == (20, 20)
    # Every check catches a file cut short; "header" by the missing end marker, not a decode.
    for check in ("decode", "draft", "header"):
        with pytest.raises(ps.PixmoError) as e:
            check_image(F.truncated_jpeg(), check)  # type: ignore[arg-type]
        assert e.value.cause == "truncated"  # type: ignore[attr-defined]
    assert check_image(F.jpeg(256, 192, seed=9), "header").width == 256
    for junk in (bytes(range(256)) * 3, F.HTML_PAGE, F.jpeg(30, 20)[:40]):
        with pytest.raises(ps.PixmoError) as e:
            check_image(junk)
        assert e.value.cause in ("not_an_image", "truncated", "decode_error")  # type: ignore[attr-defined]


def test_docs_images_are_read_a_row_group_at_a_time(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    parquet, images = F.pixmo_docs(tmp_path / "docs.parquet")
    table = pq.read_table(parquet)
    for i in range(2):  # two files of one-row row groups, read in the order given
        pq.write_table(table, tmp_path / f"split-{i}.parquet", row_group_size=1)
    report = convert(
        [str(tmp_path / "split-0.parquet"), str(tmp_path / "split-1.parquet")],
        str(tmp_path / "o"),
        preset="pixmo-docs",
    )
    recs = _records(tmp_path / "o")
    # image_id repeats across the two files: one record per id, the first file's image.
    assert [r["image_id"] for r in recs] == ["doc-0", "doc-1"]
    assert [bytes(r["image"]) for r in recs] == images[:2]
    assert report.input_rows == 6 and report.skipped == {"not_an_image": 1}


def test_bad_inputs_are_input_errors_naming_the_file(tmp_path: Path) -> None:
    import pyarrow as pa

    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="junk.parquet"):
        convert(str(junk), str(tmp_path / "o1"), preset="pixmo-points", images=str(tmp_path))
    only_urls = F.write(pa.table({"image_url": [F.url(0)]}), tmp_path / "urls.parquet")
    with pytest.raises(InputError, match=r"urls\.parquet.*'messages' or 'question'\+'answer'"):
        convert(str(only_urls), str(tmp_path / "o2"), preset="pixmo-cap-qa", images=str(tmp_path))
    tar = tmp_path / "broken.tar"
    tar.write_bytes(b"\x00" * 100 + b"not a tar")
    with pytest.raises(InputError, match="broken.tar"):
        convert(str(tar), str(tmp_path / "o3"))
    for out in ("o1", "o2", "o3"):
        assert not (tmp_path / out / "manifest.json").exists()


def test_schema_md_documents_every_preset_and_column() -> None:
    from pixmo_stream.ingest import PRESET_NAMES, PRESETS

    text = (Path(__file__).resolve().parent.parent / "docs" / "SCHEMA.md").read_text()
    for name in PRESET_NAMES:
        assert f"`{name}`" in text, name
    for preset in PRESETS.values():
        for f in preset.schema().fields:
            assert f"`{f.name}" in text, (preset.name, f.name)
