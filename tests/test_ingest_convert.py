"""convert's other promises: the held-out split, worker-count independence, generic inputs,
merge, and Molmo's point text."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pixmo_fixtures as F
import pixmo_stream as ps
from pixmo_stream import purepy
from pixmo_stream.ingest import MergeError, convert, merge
from pixmo_stream.ingest.split import validation_positions
from pixmo_stream.ingest.text import answer_text, counting_text, points_text, record_answers

N_IMAGES = 40


def _many_points(tmp_path: Path, n: int = N_IMAGES) -> tuple[Path, Path]:
    """n images, 2-3 rows each, interleaved; every 7th image is broken."""
    rows = []
    for rep in range(3):
        for i in range(n):
            if rep == 2 and i % 2:
                continue
            rows.append(
                dict(image_url=F.url(i), image_sha256="", label=f"l{i}.{rep}",
                     points=[{"x": float(i), "y": float(rep)}], count=1,
                     collection_method="pointing")
            )  # fmt: skip
    parquet = F.write(pa.Table.from_pylist(rows), tmp_path / "many.parquet")
    images = {F.url(i): (F.HTML_PAGE if i % 7 == 3 else F.jpeg(16 + i, 16, i)) for i in range(n)}
    return parquet, F.write_cache(tmp_path / "cache", images)


def _plain(recs: list[dict]) -> list[dict]:
    out = []
    for r in recs:
        d = dict(r)
        d["image"] = None if r["image"] is None else bytes(r["image"])
        d["points"] = [p.tolist() for p in r["points"]]
        out.append(d)
    return out


def test_workers_do_not_change_records_or_order(tmp_path: Path) -> None:
    parquet, cache = _many_points(tmp_path)
    results = []
    for workers in (1, 3):
        out = tmp_path / f"w{workers}"
        report = convert(str(parquet), str(out), preset="pixmo-points", images=str(cache),
                         workers=workers)  # fmt: skip
        results.append((_plain(list(ps.Dataset(str(out)))), report.skipped))
    assert results[0] == results[1]
    assert len(results[0][0]) == N_IMAGES - 6 and results[0][1] == {"not_an_image": 6}


def test_split_is_seeded_disjoint_and_holds_out_eval_images(tmp_path: Path) -> None:
    parquet, cache = _many_points(tmp_path)
    eval_urls = [F.url(0), F.url(5)]
    eval_parquet = F.pixmo_points_eval(tmp_path / "eval.parquet", eval_urls)
    urls = {}
    for split in ("train", "validation"):
        out = tmp_path / split
        report = convert(
            str(parquet), str(out), preset="pixmo-points", images=str(cache), split=split,
            exclude=[str(eval_parquet)], keep_missing=True,
        )  # fmt: skip
        assert report.excluded_images == 2
        urls[split] = [r["image_url"] for r in ps.Dataset(str(out)).iter(columns=["image_url"])]
        assert ps.Dataset(str(out)).info()["metadata"]["split"] == split
    assert not set(urls["train"]) & set(urls["validation"])
    assert len(urls["train"]) + len(urls["validation"]) == N_IMAGES - 2
    assert not set(eval_urls) & (set(urls["train"]) | set(urls["validation"]))
    assert len(urls["validation"]) == N_IMAGES - 2  # 2,048 held out: all of this small set
    # Molmo's draw: HF's train_test_split takes permutation[:n_val] of default_rng(seed).
    expected = np.sort(np.random.default_rng(96817).permutation(100)[:10])
    np.testing.assert_array_equal(validation_positions(100, 10, 96817), expected)
    # The same call again gives the same split.
    convert(str(parquet), str(tmp_path / "again"), preset="pixmo-points", images=str(cache),
            split="validation", exclude=[str(eval_parquet)], keep_missing=True)  # fmt: skip
    again = [
        r["image_url"] for r in ps.Dataset(str(tmp_path / "again")).iter(columns=["image_url"])
    ]
    assert again == urls["validation"]


def test_split_of_a_small_held_out_set(tmp_path: Path) -> None:
    parquet, cache = _many_points(tmp_path)
    from pixmo_stream.ingest import get_preset
    from pixmo_stream.ingest.pipeline import convert_table, read_parquet

    preset = get_preset("pixmo-points")
    small = type(preset)(**{**preset.__dict__, "n_validation": 5})
    table = read_parquet([str(parquet)])
    seen = {}
    for split in ("train", "validation"):
        convert_table(small, table, str(tmp_path / split), source=F_source(cache),
                      split=split, keep_missing=True)  # fmt: skip
        seen[split] = [r["image_url"] for r in ps.Dataset(str(tmp_path / split))]
    held = validation_positions(N_IMAGES, 5, 96817)
    assert seen["validation"] == [F.url(int(i)) for i in held]  # input order within the split
    assert seen["train"] == [F.url(i) for i in range(N_IMAGES) if i not in set(held.tolist())]


def F_source(cache: Path):  # noqa: N802 - reads as the fixture it builds
    from pixmo_stream.ingest import FolderImages

    return FolderImages(str(cache))


def test_molmo_point_text() -> None:
    pts = np.array([[50.0, 20.0], [12.34, 45.66], [12.34, 5.0]], np.float32)
    assert points_text(pts[:1], "cat") == '<point x="50.0" y="20.0" alt="cat">cat</point>'
    assert points_text(pts, "cat") == (
        '<points x1="12.3" y1="5.0" x2="12.3" y2="45.7" x3="50.0" y3="20.0" alt="cat">cat</points>'
    )
    assert counting_text(pts, "cat") == (
        'Counting the <points x1="12.3" y1="5.0" x2="12.3" y2="45.7" x3="50.0" y3="20.0" '
        'alt="cat">cat</points> shows a total of 3.'
    )
    assert counting_text(pts[:1], "dog") == (
        'Counting the <point x="50.0" y="20.0" alt="dog">dog</point> shows a total of 1.'
    )
    empty = np.zeros((0, 2), np.float32)
    assert points_text(empty, "cat") == counting_text(empty, "cat") == "There are none."
    assert answer_text(pts[:1], "cat", "pointing") == points_text(pts[:1], "cat")
    assert answer_text(pts[:1], "cat", "counting").startswith("Counting the <point ")
    with pytest.raises(ValueError):
        answer_text(pts, "cat", "both")
    record = {
        "labels": ["Cat", "dog"],
        "points": [pts[:1], empty],
        "collection_methods": ["counting", "pointing"],
    }
    assert record_answers(record) == [
        'Counting the <point x="50.0" y="20.0" alt="cat">cat</point> shows a total of 1.',
        "There are none.",
    ]


# ---------------------------------------------------------------------------------------------
# Generic inputs.


def test_folder_with_jsonl(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(F.jpeg(20, 10))
    (folder / "b.png").write_bytes(F.png(8, 6))
    lines = [{"file_name": "a.jpg", "caption": "first"}, {"file_name": "b.png", "caption": "2nd"},
             {"file_name": "gone.jpg", "caption": "missing"}]  # fmt: skip
    jsonl = tmp_path / "ann.jsonl"
    jsonl.write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = convert(str(jsonl), str(tmp_path / "o"), images=str(folder))
    recs = list(ps.Dataset(str(tmp_path / "o")))
    assert [r["caption"] for r in recs] == ["first", "2nd"]
    assert [(r["width"], r["height"]) for r in recs] == [(20, 10), (8, 6)]
    assert report.skipped == {"missing": 1}


def test_folder_with_parquet_by_url(tmp_path: Path) -> None:
    images = {F.url(0): F.jpeg(10, 10), F.url(1): F.jpeg(12, 10)}
    cache = F.write_cache(tmp_path / "cache", images)
    parquet = F.write(
        pa.table({"image_url": [F.url(1), F.url(0)], "score": [0.5, 0.25]}), tmp_path / "a.parquet"
    )
    convert(str(parquet), str(tmp_path / "o"), images=str(cache))
    recs = list(ps.Dataset(str(tmp_path / "o")))
    assert [(r["image_url"], r["score"], r["width"]) for r in recs] == [
        (F.url(1), 0.5, 12),
        (F.url(0), 0.25, 10),
    ]


def test_webdataset_tar(tmp_path: Path) -> None:
    tar_path = tmp_path / "shard-000.tar"
    with tarfile.open(tar_path, "w") as tar:
        for i in range(3):
            for name, data in ((f"s{i}.jpg", F.jpeg(10 + i, 10)),
                               (f"s{i}.json", json.dumps({"label": i}).encode()),
                               (f"s{i}.txt", f"text {i}".encode())):  # fmt: skip
                info = tarfile.TarInfo(name)
                info.size = len(data)
                import io

                tar.addfile(info, io.BytesIO(data))
    convert(str(tar_path), str(tmp_path / "o"))
    recs = list(ps.Dataset(str(tmp_path / "o")))
    assert [(r["__key__"], r["label"], r["txt"], r["width"]) for r in recs] == [
        (f"s{i}", i, f"text {i}", 10 + i) for i in range(3)
    ]


def _hf_table() -> pa.Table:
    image_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return pa.table(
        {
            "image": pa.array(
                [{"bytes": F.jpeg(10, 8), "path": "x.jpg"}, {"bytes": F.png(6, 4), "path": None}],
                image_t,
            ),
            "text": ["one", "two"],
        }
    )


def test_hf_save_to_disk_and_parquet_with_inline_bytes(tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    saved.mkdir()
    table = _hf_table()
    with pa.OSFile(str(saved / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
    (saved / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]})
    )
    pq.write_table(table, tmp_path / "inline.parquet")
    for src in (saved, tmp_path / "inline.parquet"):
        out = tmp_path / f"o-{src.name}"
        convert(str(src), str(out))
        recs = list(ps.Dataset(str(out)))
        assert [(r["text"], r["width"], r["height"]) for r in recs] == [
            ("one", 10, 8),
            ("two", 6, 4),
        ]
        assert bytes(recs[0]["image"]) == table.column("image")[0]["bytes"].as_py()


# ---------------------------------------------------------------------------------------------
# merge.


def _part(tmp_path: Path, name: str, start: int) -> Path:
    out = tmp_path / name
    with ps.Writer(str(out), row_group_rows=2, shard_bytes=1, metadata={"preset": "x"}) as w:
        for i in range(start, start + 5):
            w.write({"i": i, "image": F.jpeg(8, 8, i)})
    return out


def test_merge_links_shards_and_reads_everywhere(tmp_path: Path) -> None:
    a, b = _part(tmp_path, "a", 0), _part(tmp_path, "b", 5)
    summary = merge([str(a), str(b)], str(tmp_path / "m"))
    m = tmp_path / "m"
    assert summary.num_rows == 10 and summary.copied == 0
    ds = ps.Dataset(str(m))
    assert [r["i"] for r in ds] == list(range(10))
    assert ds.verify().ok
    assert [r["i"] for r in purepy.open_dataset(str(m))] == list(range(10))
    manifest = json.loads((m / "manifest.json").read_text())
    assert len(manifest["write_id"]) == 32 and manifest["metadata"] == {"preset": "x"}
    first = json.loads((a / "manifest.json").read_text())
    assert manifest["write_id"] != first["write_id"]
    assert list(manifest) == list(first)  # the Rust writer's key order
    shard = m / manifest["shards"][0]["file"]
    assert os.stat(shard).st_ino == os.stat(a / first["shards"][0]["file"]).st_ino


def test_merge_refuses_different_schemas(tmp_path: Path) -> None:
    a = _part(tmp_path, "a", 0)
    with ps.Writer(str(tmp_path / "c")) as w:
        w.write({"i": 1, "caption": "other"})
    with pytest.raises(MergeError, match="schema differs.*only the first has image"):
        merge([str(a), str(tmp_path / "c")], str(tmp_path / "m"))
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_merge_never_replaces_its_own_inputs(tmp_path: Path) -> None:
    a = _part(tmp_path, "a", 0)
    for out in (a, tmp_path, a / "sub"):
        with pytest.raises(MergeError, match="cannot be, hold or lie inside"):
            merge([str(a)], str(out), overwrite=True)
    assert len(ps.Dataset(str(a))) == 5


def test_merge_writes_the_manifest_byte_for_byte_as_the_writer(tmp_path: Path) -> None:
    from pixmo_stream.ingest.merging import _manifest

    with ps.Writer(str(tmp_path / "a"), metadata={"b": "1", "a": "é"}, row_group_rows=1) as w:
        w.write_many({"x": i, "s": "é"} for i in range(3))
    raw = (tmp_path / "a" / "manifest.json").read_bytes()
    rust = json.loads(raw)
    ours = _manifest(rust["schema"], rust["shards"], rust["metadata"])
    assert ours["created_by"] == rust["created_by"]
    ours["write_id"] = rust["write_id"]
    assert json.dumps(ours, indent=2, ensure_ascii=False).encode() == raw


class _DictSource:
    """An image source as the fetcher would provide one: bytes by URL, MissingImage else."""

    def __init__(self, images: dict[str, bytes]) -> None:
        self.images = images

    def read(self, ref):  # noqa: ANN001, ANN201 - the ImageSource protocol
        from pixmo_stream.ingest import MissingImage

        try:
            return self.images[ref.url]
        except KeyError:
            raise MissingImage(f"not fetched: {ref.url}") from None


def test_any_image_source_plugs_in(tmp_path: Path) -> None:
    parquet, images = F.pixmo_points(tmp_path / "p.parquet")
    source = _DictSource({F.url(1): images[1]})
    report = convert(str(parquet), str(tmp_path / "o"), preset="pixmo-points", source=source)
    assert [r["image_url"] for r in ps.Dataset(str(tmp_path / "o"))] == [F.url(1)]
    assert report.skipped == {"missing": 3}


def test_many_tars_are_read_one_at_a_time_and_rows_count_on(tmp_path: Path) -> None:
    import io

    for t in range(3):
        with tarfile.open(tmp_path / f"shard-{t:03d}.tar", "w") as tar:
            for i in range(2):
                data = F.jpeg(10 + i, 10) if (t, i) != (1, 1) else F.HTML_PAGE
                meta = json.dumps({"n": t * 2 + i}).encode()
                for name, payload in ((f"s{t}{i}.jpg", data), (f"s{t}{i}.json", meta)):
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    report = convert(str(tmp_path), str(tmp_path / "o"))
    assert [r["n"] for r in ps.Dataset(str(tmp_path / "o"))] == [0, 1, 2, 4, 5]
    assert report.input_rows == 6 and report.skipped == {"not_an_image": 1}
    assert report.failures[0].input_rows == [3]  # row 1 of the second tar: row 3 overall
