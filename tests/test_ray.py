"""Ray Data: a dataset written by Ray tasks is committed exactly once, even when Ray retries
a task that died or raised half-way; a dataset read into Ray has the stored records, in
order, with projection; ``convert`` on Ray writes a local run's records in its order.

One local Ray cluster (2 CPUs, no dashboard) serves the whole module. Skipped without Ray
(``pip install 'pixmo-stream[ray]'``)."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'pixmo-stream[ray]'")

import pixmo_fixtures as F  # noqa: E402
import pixmo_stream as ps  # noqa: E402
from pixmo_stream.ingest import FolderImages, ImageRef, convert  # noqa: E402
from pixmo_stream.ray import (  # noqa: E402
    PixmoDatasink,
    RayWriteError,
    read_pixmo,
    schema_of_arrow,
    write_pixmo,
)

# Ray warns of its own deprecated settings while it starts; that is Ray's business.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    # The workers unpickle this module's datasinks: they import it from the tests folder.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
        mp.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        try:
            yield
        finally:
            ray.shutdown()


SCHEMA = ps.Schema(
    [
        ps.Field("id", ps.int64()),
        ps.Field("image", ps.binary(), nullable=True),
        ps.Field("caption", ps.string()),
        ps.Field("points", ps.array("float32", (2,))),
        ps.Field("labels", ps.list_(ps.string())),
        ps.Field("size", ps.struct([ps.Field("w", ps.int32()), ps.Field("h", ps.int32())])),
        ps.Field("extra", ps.any_(), nullable=True),
    ]
)


def _record(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "image": None if i % 5 == 4 else bytes([i % 256]) * (50 + i),
        "caption": f"caption {i}",
        "points": np.arange(2 * (i % 4), dtype=np.float32).reshape(-1, 2) + i,
        "labels": [f"l{i}.{k}" for k in range(i % 3)],
        "size": {"w": 10 + i, "h": 20 + i},
        "extra": {"k": i, "tags": ["a", i]} if i % 2 else None,
    }


def _write_source(path: Path, n: int = 60) -> Path:
    with ps.Writer(path, SCHEMA, row_group_rows=8) as w:
        for i in range(n):
            w.write(_record(i))
    return path


def _plain(rec: dict[str, Any]) -> dict[str, Any]:
    out = dict(rec)
    if out.get("image") is not None:
        out["image"] = bytes(out["image"])
    if "points" in out:
        out["points"] = np.asarray(out["points"], dtype=np.float32).tolist()
    return out


def _files(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*")}


def _manifest_files(path: Path) -> set[str]:
    doc = json.loads((path / "manifest.json").read_text())
    return {"manifest.json", *(s["file"] for s in doc["shards"])}


def test_read_into_ray_and_write_back(tmp_path: Path) -> None:
    src = _write_source(tmp_path / "src")
    ds = read_pixmo(src, override_num_blocks=4)
    arrow = ds.schema().base_schema
    assert arrow.field("image").type == pa.binary()
    assert arrow.field("points").type == pa.list_(pa.list_(pa.float32(), 2))
    rows = ds.take_all()
    expected = [_plain(r) for r in ps.Dataset(src)]
    # `any` values travel as msgpack bytes; everything else as Arrow's own types.
    got = [{k: v for k, v in r.items() if k != "extra"} for r in rows]
    assert got == [{k: v for k, v in r.items() if k != "extra"} for r in expected]

    out = tmp_path / "out"
    summary = write_pixmo(ds, out, SCHEMA)
    assert summary.num_rows == 60
    back = ps.Dataset(out)
    assert [_plain(r) for r in back] == expected  # `any` unpacked again, order kept
    assert back.verify().ok
    assert _files(out) == _manifest_files(out)
    assert sorted(os.listdir(tmp_path)) == ["out", "src"]  # no staging left beside it


def test_projection_reads_only_the_columns_asked_for(tmp_path: Path) -> None:
    src = _write_source(tmp_path / "src")
    ds = read_pixmo(src, columns=["caption", "id"])
    assert ds.schema().names == ["caption", "id"]
    assert ds.take_all() == [{"caption": f"caption {i}", "id": i} for i in range(60)]
    with pytest.raises(ValueError, match="unknown column 'nope'"):
        read_pixmo(src, columns=["id", "nope"])


def test_read_from_a_bucket_into_ray(tmp_path: Path) -> None:
    """Read tasks read their row groups from object storage (a local S3 server), with the
    same records as from disk, and a projection leaves the images in the bucket."""
    from s3_server import S3Server

    src = _write_source(tmp_path / "src")
    with S3Server(tmp_path / "s3") as s3:
        (tmp_path / "s3" / "bkt").mkdir()
        opts = s3.storage_options()
        with ps.Writer("s3://bkt/src", SCHEMA, row_group_rows=8, storage_options=opts) as w:
            for i in range(60):
                w.write(_record(i))
        opts = dict(opts, offline="false")  # (a key the tasks must get too)
        s3.reset()
        rows = read_pixmo("s3://bkt/src", override_num_blocks=3, storage_options=opts)
        expected = [_plain(r) for r in ps.Dataset(src)]
        got = [{k: v for k, v in r.items() if k != "extra"} for r in rows.take_all()]
        assert got == [{k: v for k, v in r.items() if k != "extra"} for r in expected]
        whole = s3.bytes_sent
        s3.reset()
        ids = read_pixmo("s3://bkt/src", columns=["id"], storage_options=opts).take_all()
        assert [r["id"] for r in ids] == list(range(60))
        images = sum(len(r["image"] or b"") for r in expected)
        assert 0 < s3.bytes_sent < whole - images, (s3.bytes_sent, whole, images)


def test_schema_is_inferred_from_arrow_with_points_as_arrays(tmp_path: Path) -> None:
    src = _write_source(tmp_path / "src")
    out = tmp_path / "out"
    write_pixmo(read_pixmo(src, columns=["id", "points", "size"]), out)
    back = ps.Dataset(out)
    assert str(back.schema["points"].type) == "array<float32, (N, 2)>"
    assert [r["points"].tolist() for r in back] == [
        _record(i)["points"].tolist() for i in range(60)
    ]
    # A Ray tensor column (one (3, 2) tensor a row) is an (N, 2) array with N = 3.
    write_pixmo(ray.data.range_tensor(4, shape=(3, 2)), tmp_path / "tensors")
    tensors = ps.Dataset(tmp_path / "tensors")
    assert str(tensors.schema["data"].type) == "array<int64, (N, 2)>"
    assert [r["data"].tolist() for r in tensors] == [[[i, i]] * 3 for i in range(4)]
    with pytest.raises(RayWriteError, match="no pixmo-stream type for Arrow type null"):
        schema_of_arrow(pa.schema([("x", pa.null())]))


class FailOnce(PixmoDatasink):
    """Dies (or raises) in task 1 the first time, after its first block is written, with
    at least one shard of that attempt already on disk; records what the attempt left."""

    def __init__(self, *args: Any, marker: str, how: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marker, self.how = marker, how

    def write(self, blocks: Iterable[Any], ctx: Any) -> Any:
        if ctx.task_idx != 1 or os.path.exists(self.marker):
            return super().write(blocks, ctx)
        root = os.path.join(os.path.dirname(self.path), f".{os.path.basename(self.path)}")
        staging = root + ".pixmo-staging"

        def failing() -> Iterator[Any]:
            it = iter(blocks)
            yield next(it)
            yield next(it)  # the writer has finished the first block's row groups by now
            left = sorted(
                os.path.relpath(os.path.join(d, f), staging)
                for d, _, files in os.walk(staging)
                for f in files
            )
            with open(self.marker, "w") as f:
                json.dump(left, f)
            if self.how == "kill":
                os._exit(1)
            raise RuntimeError("injected failure")

        return super().write(failing(), ctx)


@pytest.mark.parametrize("how", ["kill", "raise"])
def test_a_task_retried_mid_write_commits_every_record_once(tmp_path: Path, how: str) -> None:
    records = [
        {"id": i, "caption": f"c{i}", "points": [[float(i), 1.0]] * (i % 3)} for i in range(80)
    ]
    schema = ps.Schema(
        [
            ps.Field("id", ps.int64()),
            ps.Field("caption", ps.string()),
            ps.Field("points", ps.array("float32", (2,))),
        ]
    )
    ds = ray.data.from_items(records, override_num_blocks=2).repartition(8)
    ds = ds.materialize()  # 8 blocks of 10 rows: task 1 is given several
    out = tmp_path / "out"
    marker = tmp_path / "marker.json"
    sink = FailOnce(
        out,
        schema,
        marker=str(marker),
        how=how,
        shard_bytes=64,  # a shard per row group: the failed attempt leaves shards behind
        rows_per_write=20,
        writer_options={"row_group_rows": 2},
    )
    remote_args = {"max_retries": 2, "retry_exceptions": how == "raise"}
    ctx = ds.context
    ctx.execution_options.preserve_order = True
    ds.write_datasink(sink, ray_remote_args=remote_args)

    stale = json.loads(marker.read_text())
    assert any(name.endswith(".pxs") for name in stale), stale  # the attempt had shards
    back = ps.Dataset(out)
    assert [r["id"] for r in back.iter(columns=["id"])] == list(range(80))
    assert [r["points"].tolist() for r in back] == [r["points"] for r in records]
    assert back.verify().ok
    assert _files(out) == _manifest_files(out)
    assert sorted(os.listdir(tmp_path)) == ["marker.json", "out"]
    assert sink.summary is not None and sink.summary.num_rows == 80


class AlwaysFails(PixmoDatasink):
    def write(self, blocks: Iterable[Any], ctx: Any) -> Any:
        def failing() -> Iterator[Any]:
            yield from blocks
            raise RuntimeError("the disk is full")

        return super().write(failing(), ctx)


def test_a_failed_write_keeps_the_old_dataset_and_leaves_no_staging(tmp_path: Path) -> None:
    out = _write_source(tmp_path / "out", n=5)
    before = [_plain(r) for r in ps.Dataset(out)]
    with pytest.raises(RuntimeError, match="the disk is full"):
        ray.data.range(30).write_datasink(
            AlwaysFails(out, overwrite=True), ray_remote_args={"max_retries": 0}
        )
    assert [_plain(r) for r in ps.Dataset(out)] == before
    assert sorted(os.listdir(tmp_path)) == ["out"]
    with pytest.raises(RayWriteError, match="not empty; pass overwrite=True"):
        write_pixmo(ray.data.range(3), out)


def test_an_empty_dataset_with_a_schema(tmp_path: Path) -> None:
    out = tmp_path / "out"
    from ray.data.expressions import col

    ds = ray.data.from_items([{"id": 1}]).filter(expr=col("id") > 5)
    summary = write_pixmo(ds, out, ps.Schema([ps.Field("id", ps.int64())]))
    assert summary.num_rows == 0 and len(ps.Dataset(out)) == 0
    with pytest.raises(RayWriteError, match="no rows to write and no schema"):
        write_pixmo(ds, tmp_path / "other")


def test_blocks_of_different_types_without_a_schema_are_refused(tmp_path: Path) -> None:
    ds = ray.data.from_blocks([pa.table({"x": [1, 2]}), pa.table({"x": ["a", "b"]})])
    with pytest.raises(RayWriteError, match=r"different schemas \(x: x: int64\? vs x: string\?"):
        write_pixmo(ds, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert os.listdir(tmp_path) in ([], ["out"])


def test_a_dataset_rewritten_after_the_read_was_planned_is_refused(tmp_path: Path) -> None:
    src = _write_source(tmp_path / "src", n=10)
    ds = read_pixmo(src, columns=["id"])
    with ps.Writer(src, SCHEMA, overwrite=True) as w:
        w.write(_record(0))
    with pytest.raises(ps.CorruptDataError, match="rewritten after Ray planned the read"):
        ds.take_all()


def _points_input(tmp_path: Path, n: int = 40) -> tuple[Path, Path]:
    """n images, 2-3 rows each, interleaved; every 7th image is an HTML page."""
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
    parquet = F.write(pa.Table.from_pylist(rows), tmp_path / "points.parquet")
    images: dict[str, bytes | None] = {
        F.url(i): (F.HTML_PAGE if i % 7 == 3 else F.jpeg(16 + i, 16, i)) for i in range(n)
    }
    return parquet, F.write_cache(tmp_path / "cache", images)


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    for r in ps.Dataset(path):
        d = dict(r)
        d["image"] = None if r["image"] is None else bytes(r["image"])
        d["points"] = [p.tolist() for p in r["points"]]
        out.append(d)
    return out


def test_convert_on_ray_writes_a_local_runs_records_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The modules that hold the batch size and the partition sizes.
    pipeline = importlib.import_module("pixmo_stream.ingest.pipeline")
    ray_convert = importlib.import_module("pixmo_stream.ray.convert")

    parquet, cache = _points_input(tmp_path)
    # 40 images in batches of 4 and 2 CPUs: 10 images a task (two per CPU), so 3 batches a
    # task: 4 partitions, committed in order.
    monkeypatch.setattr(pipeline, "BATCH_GROUPS", 4)
    assert ray_convert.partition_images(40, cpus=2) == 10
    kw: dict[str, Any] = dict(preset="pixmo-points", images=str(cache), keep_missing=False)
    local = convert(str(parquet), str(tmp_path / "local"), **kw)
    on_ray = convert(str(parquet), str(tmp_path / "ray"), engine="ray", **kw)
    assert _records(tmp_path / "ray") == _records(tmp_path / "local")
    assert len(_records(tmp_path / "ray")) == 34
    assert on_ray.skipped == local.skipped == {"not_an_image": 6}
    # (the details are PIL's messages, which hold object addresses)
    named = [[(f.cause, f.image_url, f.input_rows) for f in r.failures] for r in (on_ray, local)]
    assert named[0] == named[1] and len(named[0]) == 6
    assert on_ray.records_written == local.records_written == 34
    assert ps.Dataset(tmp_path / "ray").metadata == ps.Dataset(tmp_path / "local").metadata
    assert ps.Dataset(tmp_path / "ray").num_shards == 4
    assert {".ray.pixmo-staging"}.isdisjoint(os.listdir(tmp_path))


class DiesOnce:
    """Reads the image folder; the first read of image 25 kills its worker (or, with
    ``how="raise"``, raises every time), after earlier images of its partition are read."""

    def __init__(self, root: Path, marker: Path, how: str) -> None:
        self.folder = FolderImages(str(root))
        self.marker, self.how = str(marker), how

    def read(self, ref: ImageRef) -> bytes:
        if ref.url == F.url(25):
            if self.how == "raise":
                raise RuntimeError("the image store is down")
            if not os.path.exists(self.marker):
                open(self.marker, "w").close()
                os._exit(1)
        return self.folder.read(ref)


def test_convert_on_ray_survives_a_killed_task_and_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 8 images, 10 images a task: 2 batches a task, image 25 in partition 1 of 3.
    monkeypatch.setattr(importlib.import_module("pixmo_stream.ingest.pipeline"), "BATCH_GROUPS", 8)
    parquet, cache = _points_input(tmp_path)
    kw: dict[str, Any] = dict(preset="pixmo-points")
    convert(str(parquet), str(tmp_path / "local"), images=str(cache), **kw)
    source = DiesOnce(cache, tmp_path / "marker", "kill")
    convert(str(parquet), str(tmp_path / "ray"), engine="ray", source=source, **kw)
    assert (tmp_path / "marker").exists()
    assert _records(tmp_path / "ray") == _records(tmp_path / "local")
    assert ps.Dataset(tmp_path / "ray").num_shards == 3
    assert _files(tmp_path / "ray") == _manifest_files(tmp_path / "ray") | {"convert-report.json"}

    with pytest.raises(RuntimeError, match="the image store is down"):
        source = DiesOnce(cache, tmp_path / "marker", "raise")
        convert(str(parquet), str(tmp_path / "failed"), engine="ray", source=source, **kw)
    assert not (tmp_path / "failed" / "manifest.json").exists()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".pixmo-staging")]


def test_cli_convert_engine_ray(tmp_path: Path) -> None:
    from pixmo_stream.cli import main

    parquet, cache = _points_input(tmp_path, n=10)
    args = ["convert", str(parquet), "--preset", "pixmo-points", "--images", str(cache), "-q"]
    assert main([*args, "-o", str(tmp_path / "local")]) == 0
    assert main([*args, "-o", str(tmp_path / "ray"), "--engine", "ray"]) == 0
    assert _records(tmp_path / "ray") == _records(tmp_path / "local")
    report = json.loads((tmp_path / "ray" / "convert-report.json").read_text())
    assert report["records_written"] == 9 and report["engine"] == "ray"
