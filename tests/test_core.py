"""Round trips through the Rust writer and reader, as a user writes and reads records."""

from __future__ import annotations

import os

import numpy as np
import pytest

import pixmo_stream as ps


def assert_same(a, b, where=""):
    if isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, (
            where,
            a.dtype,
            a.shape,
            b.dtype,
            b.shape,
        )
        np.testing.assert_array_equal(a, b)
    elif isinstance(b, dict):
        assert isinstance(a, dict) and a.keys() == b.keys(), (where, a, b)
        for k in b:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(b, list | tuple):
        assert isinstance(a, list) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(b, bytes):
        assert isinstance(a, bytes | ps.Blob) and a == b and bytes(a) == b, (where, a, b)
    else:
        assert a == b and type(a) is type(b), (where, a, b)


ALL_TYPES = ps.Schema(
    [
        ps.Field("b", ps.bool_()),
        *(ps.Field(k, getattr(ps, k)()) for k in ("int8", "int16", "int32", "int64")),
        *(ps.Field(k, getattr(ps, k)()) for k in ("uint8", "uint16", "uint32", "uint64")),
        ps.Field("f32", ps.float32()),
        ps.Field("f64", ps.float64()),
        ps.Field("s", ps.string(), nullable=True),
        ps.Field("blob", ps.binary(), nullable=True),
        ps.Field("pts", ps.array("float32", (2,))),
        ps.Field("vec", ps.array("int64")),
        ps.Field("cube", ps.array("float64", (2, 3)), nullable=True),
        ps.Field("words", ps.list_(ps.string())),
        ps.Field("maybe", ps.list_(ps.int32(), nullable_items=True), nullable=True),
        ps.Field(
            "qa",
            ps.list_(
                ps.struct([ps.Field("q", ps.string()), ps.Field("a", ps.string(), nullable=True)])
            ),
        ),
        ps.Field("nested", ps.list_(ps.list_(ps.array("uint8", (3,))))),
        ps.Field("meta", ps.any_(), nullable=True),
    ]
)


def all_types_record(i: int) -> dict:
    n = i % 4
    return {
        "b": i % 2 == 0,
        "int8": -128 + i % 256,
        "int16": -(2**15) + i,
        "int32": 2**31 - 1 - i,
        "int64": -(2**63) + i,
        "uint8": i % 256,
        "uint16": 2**16 - 1 - i,
        "uint32": 2**32 - 1,
        "uint64": 2**64 - 1 - i,
        "f32": float(np.float32(i / 7)),
        "f64": i / 7,
        "s": None if i % 5 == 0 else ("" if i % 5 == 1 else f"r{i} 日本語 🙂 é"),
        "blob": None if i % 6 == 0 else (b"" if i % 6 == 1 else os.urandom(i % 50)),
        "pts": np.random.default_rng(i).random((n * 3, 2), dtype=np.float32),
        "vec": np.arange(n, dtype=np.int64) - 5,
        "cube": None if i % 3 == 0 else np.full((n, 2, 3), i / 2),
        "words": [f"w{j}" for j in range(n)],
        "maybe": None if i % 4 == 3 else [j if j % 2 else None for j in range(n)],
        "qa": [{"q": f"q{j}", "a": None if j == 1 else "ä" * j} for j in range(n)],
        "nested": [[np.full((k, 3), k, dtype=np.uint8) for k in range(j)] for j in range(n)],
        "meta": None if i % 7 == 0 else {"k": i, "l": [1, "x", None, 2.5], "b": b"\x00"},
    }


def test_every_type_round_trips_across_row_groups_and_shards(tmp_path):
    records = [all_types_record(i) for i in range(60)]
    with ps.Writer(tmp_path / "d", ALL_TYPES, row_group_rows=7, shard_bytes=8 << 10) as w:
        w.write_many(records)
    assert w.summary.num_rows == 60 and w.summary.num_shards > 1
    ds = ps.Dataset(tmp_path / "d")
    assert len(ds) == 60 and ds.schema == ALL_TYPES
    for i, rec in enumerate(ds):
        assert_same(rec, records[i], f"row {i}")
    for i in (0, 17, 59, -1):
        assert_same(ds[i], records[i], f"ds[{i}]")
    assert ds.verify().ok


def test_take_keeps_order_duplicates_and_projection(tmp_path):
    records = [all_types_record(i) for i in range(30)]
    with ps.Writer(tmp_path / "d", ALL_TYPES, row_group_rows=4) as w:
        w.write_many(records)
    ds = ps.Dataset(tmp_path / "d")
    got = ds.take([29, 0, 5, 5, -2], columns=["s", "qa"])
    want = [records[i] for i in (29, 0, 5, 5, 28)]
    for g, r in zip(got, want, strict=True):
        assert list(g) == ["s", "qa"]
        assert_same(g, {"s": r["s"], "qa": r["qa"]})
    with pytest.raises(IndexError):
        ds.take([30])
    with pytest.raises(IndexError):
        ds[-31]
    with pytest.raises(ValueError, match="unknown column 'nope'"):
        ds.take([0], columns=["nope"])


def test_inferred_schema_follows_documented_rules(tmp_path):
    rec = {
        "image": b"\xff\xd8",
        "caption": "a cat",
        "count": 3,
        "score": 0.5,
        "ok": True,
        "points": np.zeros((4, 2), dtype=np.float32),
        "qa": [{"q": "?", "a": "!"}],
        "tags": ["x"],
    }
    with ps.Writer(tmp_path / "d") as w:
        w.write(rec)
        w.write({**rec, "caption": None, "qa": []})
    s = ps.Dataset(tmp_path / "d").schema
    kinds = {f.name: str(f.type) for f in s}
    assert kinds == {
        "image": "binary",
        "caption": "string",
        "count": "int64",
        "score": "float64",
        "ok": "bool",
        "points": "array<float32, (N, 2)>",
        "qa": "list<struct<q: string?, a: string?>>",
        "tags": "list<string>",
    }
    assert all(f.nullable for f in s)
    ds = ps.Dataset(tmp_path / "d")
    assert ds[1]["caption"] is None and ds[1]["qa"] == []


@pytest.mark.parametrize("bad", [{"x": None}, {"x": []}, {}])
def test_inference_refuses_what_it_cannot_know(tmp_path, bad):
    with pytest.raises(ps.SchemaError):
        with ps.Writer(tmp_path / "d") as w:
            w.write(bad)
    assert not (tmp_path / "d" / "manifest.json").exists()


def test_bad_records_are_rejected_whole_and_nothing_is_lost(tmp_path):
    schema = ps.Schema(
        [
            ps.Field("id", ps.int32()),
            ps.Field("pts", ps.array("float32", (2,))),
            ps.Field("qa", ps.list_(ps.struct([ps.Field("q", ps.string())]))),
        ]
    )
    good = lambda i: {"id": i, "pts": np.zeros((i, 2), np.float32), "qa": [{"q": "x"}]}  # noqa: E731
    bad_cases = [
        ({"id": "7", "pts": np.zeros((0, 2)), "qa": []}, "id", "expected int32, got str"),
        ({"id": 2**40, "pts": np.zeros((0, 2)), "qa": []}, "id", "out of range"),
        ({"id": 1, "pts": np.zeros((3, 3)), "qa": []}, "pts", "shape (N, 2)"),
        ({"id": 1, "pts": np.zeros((1, 2)), "qa": [{"q": 5}]}, "qa[0].q", "expected string"),
        ({"id": 1, "pts": np.zeros((1, 2)), "qa": [], "extra": 1}, "extra", "not in the schema"),
        ({"id": 1, "qa": []}, "pts", "missing"),
        ({"id": None, "pts": np.zeros((1, 2)), "qa": []}, "id", "non-nullable"),
        ("not a dict", "", "must be a dict"),
    ]
    with ps.Writer(tmp_path / "d", schema, row_group_rows=2) as w:
        for i in range(3):
            w.write(good(i))
        for rec, field, msg in bad_cases:
            with pytest.raises(ps.SchemaError, match="record 3") as e:
                w.write(rec)
            assert msg in str(e.value) and e.value.field == field, str(e.value)
            assert e.value.record == 3
        w.write(good(3))
    ds = ps.Dataset(tmp_path / "d")
    assert [r["id"] for r in ds] == [0, 1, 2, 3]
    assert ds[3]["pts"].shape == (3, 2)


@pytest.mark.parametrize(
    "dtype, value, msg",
    [
        ("int8", np.array([300, -200, 2**40]), "out of range for int8"),
        ("int8", [300, 1], "value 300 is out of range"),
        ("uint16", [-1], "value -1 is out of range"),
        ("int64", np.array([2**64 - 1], np.uint64), "out of range for int64"),
        ("int32", [1.0, 2.5], "floats are not integers"),
        ("float32", np.array([1e40, 0.0]), "out of range for float32"),
        ("float32", ["a"], "expected a numeric array"),
    ],
)
def test_array_values_that_do_not_fit_are_refused_not_wrapped(tmp_path, dtype, value, msg):
    schema = ps.Schema([ps.Field("v", ps.array(dtype))])
    with ps.Writer(tmp_path / "d", schema) as w:
        w.write({"v": np.zeros(1, dtype)})
        with pytest.raises(ps.SchemaError, match=msg) as e:
            w.write({"v": value})
        assert e.value.field == "v" and e.value.record == 1
    assert len(ps.Dataset(tmp_path / "d")) == 1


def test_array_values_that_fit_are_converted(tmp_path):
    schema = ps.Schema(
        [
            ps.Field("u8", ps.array("uint8")),
            ps.Field("i16", ps.array("int16")),
            ps.Field("pts", ps.array("float32", (2,))),
        ]
    )
    rec = {
        "u8": [1, 2, 255],  # Python ints (int64) that fit
        "i16": np.array([True, False]),
        "pts": np.array([[0.1, 2.0], [np.nan, -np.inf]]),  # float64: rounds, keeps nan/inf
    }
    with ps.Writer(tmp_path / "d", schema) as w:
        w.write(rec)
    got = ps.Dataset(tmp_path / "d")[0]
    assert got["u8"].dtype == np.uint8 and got["u8"].tolist() == [1, 2, 255]
    assert got["i16"].dtype == np.int16 and got["i16"].tolist() == [1, 0]
    assert got["pts"].dtype == np.float32
    np.testing.assert_array_equal(got["pts"], rec["pts"].astype(np.float32))


def test_large_blob_round_trips(tmp_path):
    blob = np.random.default_rng(0).integers(0, 256, 17 << 20, dtype=np.uint8).tobytes()
    with ps.Writer(tmp_path / "d") as w:
        w.write({"image": blob, "i": 0})
        w.write({"image": b"small", "i": 1})
    ds = ps.Dataset(tmp_path / "d")
    assert ds[0]["image"] == blob and ds[1]["image"] == b"small"
    assert ds.info()["shards"][0]["row_groups"][0]["columns"][0]["codec"] == "none"


def test_zero_rows(tmp_path):
    schema = ps.Schema([ps.Field("x", ps.int64())])
    with ps.Writer(tmp_path / "d", schema) as w:
        pass
    assert w.summary.num_rows == 0
    ds = ps.Dataset(tmp_path / "d")
    assert len(ds) == 0 and list(ds) == [] and ds.take([]) == [] and ds.verify().ok
    with pytest.raises(IndexError):
        ds[0]


def test_a_million_small_rows(tmp_path):
    n = 1_000_000
    schema = ps.Schema([ps.Field("i", ps.int64()), ps.Field("s", ps.string())])
    with ps.Writer(tmp_path / "d", schema) as w:
        w.write_many({"i": i, "s": str(i)} for i in range(n))
    ds = ps.Dataset(tmp_path / "d")
    assert len(ds) == n
    total = 0
    count = 0
    for rec in ds.iter(columns=["i"]):
        total += rec["i"]
        count += 1
    assert count == n and total == n * (n - 1) // 2
    assert ds.take([999_999, 0, 123_456]) == [
        {"i": 999_999, "s": "999999"},
        {"i": 0, "s": "0"},
        {"i": 123_456, "s": "123456"},
    ]


def test_projection_never_touches_other_columns(tmp_path):
    """Damage the image chunk: caption-only reads still work, full reads report it."""
    with ps.Writer(tmp_path / "d", row_group_rows=100) as w:
        for i in range(10):
            w.write({"image": bytes([i % 256]) * 5000, "caption": f"caption {i}"})
    ds = ps.Dataset(tmp_path / "d")
    info = ds.info()
    shard = tmp_path / "d" / info["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[64 + 100] ^= 0xFF  # the image column's chunk starts at offset 64
    shard.write_bytes(bytes(data))
    ds = ps.Dataset(tmp_path / "d")
    assert [r["caption"] for r in ds.iter(columns=["caption"])] == [
        f"caption {i}" for i in range(10)
    ]
    with pytest.raises(ps.CorruptDataError, match="column 'image'") as e:
        list(ds)
    assert e.value.column == "image" and e.value.row_group == 0
    assert str(shard) in str(e.value)


def test_missing_paths_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        ps.Dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        ps.Dataset(tmp_path / "empty")


def test_writer_refuses_to_clobber_and_failed_writes_never_look_complete(tmp_path):
    schema = ps.Schema([ps.Field("x", ps.int64())])
    with ps.Writer(tmp_path / "d", schema) as w:
        w.write({"x": 1})
    with pytest.raises(ValueError, match="overwrite=True"):
        ps.Writer(tmp_path / "d", schema)
    with pytest.raises(RuntimeError):
        with ps.Writer(tmp_path / "d", schema, overwrite=True, row_group_rows=1) as w:
            w.write({"x": 2})
            w.write({"x": 3})
            raise RuntimeError("crash mid-write")
    assert not (tmp_path / "d" / "manifest.json").exists()
    with pytest.raises(FileNotFoundError):
        ps.Dataset(tmp_path / "d")


def test_a_dataset_left_mid_write_says_so(tmp_path):
    schema = ps.Schema([ps.Field("x", ps.int64())])
    w = ps.Writer(tmp_path / "d", schema, row_group_rows=1, shard_bytes=1)
    for i in range(3):
        w.write({"x": i})  # shards roll over; no manifest yet
    with pytest.raises(FileNotFoundError, match="still being written") as e:
        ps.Dataset(tmp_path / "d")
    assert e.value.filename.endswith("manifest.json")
    w.close()
    assert len(ps.Dataset(tmp_path / "d")) == 3


def test_a_dataset_rewritten_under_an_open_reader_is_refused_not_mixed(tmp_path):
    def write(tag, n):
        with ps.Writer(tmp_path / "d", overwrite=True, row_group_rows=10, shard_bytes=1) as w:
            for i in range(n):
                w.write({"i": i, "tag": tag})

    write("old", 40)
    ds = ps.Dataset(tmp_path / "d")
    sd = ps.StreamingDataset(tmp_path / "d", shuffle=False)
    assert ds[0] == {"i": 0, "tag": "old"}  # opens the first shard only
    write("new", 40)
    assert ds[5] == {"i": 5, "tag": "old"}  # an open shard stays what it was
    with pytest.raises(ps.CorruptDataError, match="rewritten") as e:
        ds[25]  # its shard would be the new dataset's
    assert e.value.path == str(tmp_path / "d")
    with pytest.raises(ps.CorruptDataError, match="make a new StreamingDataset"):
        next(iter(sd))
    assert [r["tag"] for r in ps.StreamingDataset(tmp_path / "d", shuffle=False)] == ["new"] * 40


def test_metadata_reads_back_and_columns_are_checked(tmp_path):
    with ps.Writer(tmp_path / "d", metadata={"source": "pixmo-cap", "split": "train"}) as w:
        w.write({"caption": "a", "n": 1})
    ds = ps.Dataset(tmp_path / "d")
    assert ds.metadata == {"source": "pixmo-cap", "split": "train"}
    assert ds.info()["metadata"] == ds.metadata
    with pytest.raises(TypeError, match=r"did you mean \['caption'\]"):
        ds.take([0], columns="caption")
    with pytest.raises(TypeError, match="not a string"):
        list(ds.iter(columns="caption"))
    with pytest.raises(ValueError, match="unknown column 'captions'; columns are: caption, n"):
        ps.StreamingDataset(tmp_path / "d", columns=["captions"])


def test_schema_json_round_trip_and_errors():
    assert ps.Schema.from_json(ALL_TYPES.to_json()) == ALL_TYPES
    assert ps.array("float32", 2) == ps.array("float32", (2,))
    with pytest.raises(ps.SchemaError, match=r"call it: ps\.int32\(\)"):
        ps.Field("x", ps.int32)
    with pytest.raises(ps.SchemaError):
        ps.Schema([ps.Field("a", ps.int8()), ps.Field("a", ps.int8())])
    with pytest.raises(ps.SchemaError):
        ps.array("float32", (0,))
    with pytest.raises(ps.SchemaError):
        ps.struct([])
    assert issubclass(ps.SchemaError, ps.PixmoError)
    assert issubclass(ps.CorruptDataError, ps.PixmoError)
    assert issubclass(ps.UnsupportedVersionError, ps.PixmoError)


def test_any_fields_store_free_form_values_including_none(tmp_path):
    schema = ps.Schema([ps.Field("meta", ps.any_()), ps.Field("opt", ps.any_(), nullable=True)])
    values = [None, {"a": [1, {"b": None}]}, [1.5, "x", b"\x00"], 7, {1: "int key"}]
    with ps.Writer(tmp_path / "d", schema) as w:
        for v in values:
            w.write({"meta": v, "opt": v})
        with pytest.raises(ps.SchemaError, match="meta"):
            w.write({"meta": object(), "opt": None})
    got = [(r["meta"], r["opt"]) for r in ps.Dataset(tmp_path / "d")]
    assert got == [(v, v) for v in values]


def test_a_writer_dropped_without_close_leaves_no_dataset_and_no_temp_files(tmp_path):
    schema = ps.Schema([ps.Field("x", ps.int64()), ps.Field("b", ps.binary())])
    w = ps.Writer(tmp_path / "d", schema, row_group_rows=10, shard_bytes=4096)
    w.write_many({"x": i, "b": b"z" * 100} for i in range(95))
    with pytest.warns(RuntimeWarning, match="dropped without close.*95 records were discarded"):
        del w
        import gc

        gc.collect()
    names = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert "manifest.json" not in names
    assert not [n for n in names if n.endswith(".tmp")], names
    assert names, "finished shards stay on disk"
    with pytest.raises(FileNotFoundError):
        ps.Dataset(tmp_path / "d")


def test_large_bytes_are_written_by_reference_and_released(tmp_path):
    """A `bytes` image of 4 KiB or more is kept by reference until its row group is written,
    not copied: what is stored is what was passed, bytes-like values that can change after
    `write` returns (bytearray, memoryview) are copied, and the writer lets go of every value
    once it is closed, after a rejected record and after an aborted write alike."""
    import sys

    class Sub(bytes):
        pass

    images: list = [os.urandom(4000 + 97 * i) for i in range(40)]  # both sides of 4 KiB
    images += [Sub(os.urandom(9000)), b"", os.urandom(200_000)]

    def refs() -> list[int]:  # (b"" is immortal: its count means nothing)
        return [sys.getrefcount(x) for x in images if x]

    before = refs()
    mutable = bytearray(os.urandom(10_000))
    view_of = bytearray(os.urandom(10_000))
    kept_mutable, kept_view = bytes(mutable), bytes(view_of)
    with ps.Writer(tmp_path / "ds", row_group_rows=7) as w:
        for i, img in enumerate(images):
            w.write({"id": i, "image": img})
        with pytest.raises(ps.SchemaError):
            w.write({"id": "not an int", "image": images[0]})
        w.write({"id": 100, "image": mutable})
        w.write({"id": 101, "image": memoryview(view_of)})
        mutable[:] = bytes(len(mutable))  # changed after write(): the stored value is not
        view_of[:] = bytes(len(view_of))
        del img
    assert refs() == before
    got = [bytes(r["image"]) for r in ps.Dataset(tmp_path / "ds")]
    assert got == [*map(bytes, images), kept_mutable, kept_view]

    with pytest.raises(RuntimeError), ps.Writer(tmp_path / "aborted") as w:
        for img in images:
            w.write({"image": img})
        raise RuntimeError("the training job died")
    del img
    assert refs() == before
    assert not (tmp_path / "aborted" / "manifest.json").exists()


def test_any_values_read_back_as_msgpack_unpackb_gives_them(tmp_path, monkeypatch):
    """`any` values are decoded by the Rust reader; every msgpack type and width must come back
    exactly as `msgpack.unpackb(raw=False, strict_map_key=False)` gives it (the pure reader's
    and the spec's reference), with the same types (int vs float vs bool, str vs bytes)."""
    import msgpack

    edges = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1]
    edges += [-1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)]
    values = [
        edges,
        [0.0, -0.0, 1.5, -2.25e300, float("inf"), True, False, None],
        ["", "é", "x" * 31, "y" * 32, "z" * 255, "w" * 256, "v" * 65535, "u" * 65536],
        [b"", b"\x00\xff", b"a" * 255, b"b" * 256, b"c" * 65536],
        [list(range(15)), list(range(16)), list(range(65536)), []],
        {str(i): i for i in range(15)},
        {str(i): [i] for i in range(16)},
        {i: str(i) for i in range(65536)},
        {None: 1, 2: None, b"k": "bytes key", 1.5: "float key", True: "bool key", "": {}},
        {"deep": [[[[{"a": [{"b": "c"}]}]]]]},
    ]
    with ps.Writer(tmp_path / "d", ps.Schema([ps.Field("meta", ps.any_())])) as w:
        for v in values:
            w.write({"meta": v})
        w.write({"meta": {(1, (2, "x")): "a tuple key", "k": [(1, 2)]}})

    def same(a, b):
        assert type(a) is type(b), (a, b)
        if isinstance(a, list):
            assert len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        elif isinstance(a, dict):
            assert list(a) == list(b) and all(same(a[k], b[k]) for k in a)
        else:
            assert a == b or (a != a and b != b)
        return True

    from pixmo_stream import _convert

    python_decoded = []
    unpack = _convert.unpack_any
    monkeypatch.setattr(_convert, "unpack_any", lambda b: python_decoded.append(b) or unpack(b))
    ds = ps.Dataset(tmp_path / "d")
    for i, v in enumerate(values):
        want = msgpack.unpackb(msgpack.packb(v, use_bin_type=True), raw=False, strict_map_key=False)
        assert same(ds[i]["meta"], want), i
    # A tuple key is written as an array; it reads back as a tuple (a list could not be a
    # key), in Rust and in the pure reader alike; a tuple elsewhere reads back as a list.
    tuple_keys = {(1, (2, "x")): "a tuple key", "k": [[1, 2]]}
    assert ds[len(values)]["meta"] == tuple_keys
    assert python_decoded == []  # all of them decoded in Rust
    from pixmo_stream import purepy

    assert purepy.open_dataset(tmp_path / "d")[len(values)]["meta"] == tuple_keys


def test_iter_makes_records_one_at_a_time_and_matches_iter_batches(tmp_path):
    with ps.Writer(tmp_path / "d", row_group_rows=3) as w:
        for i in range(10):
            w.write({"i": i, "s": str(i) * i, "b": bytes([i]) * 5000})
    ds = ps.Dataset(tmp_path / "d")
    for cols in (None, ["s"], ["b", "i"]):
        flat = [r for batch in ds.iter_batches(cols) for r in batch]
        it = ds.iter(cols)
        first = next(it)  # made now, not a row group's worth at once
        assert [first, *it] == flat and len(flat) == 10
        assert next(it, "done") == "done"  # stays exhausted
    assert list(ps.Dataset(tmp_path / "d").iter(["i"]))[::4] == [{"i": 0}, {"i": 4}, {"i": 8}]
    with ps.Writer(tmp_path / "empty", ps.Schema([ps.Field("i", ps.int64())])):
        pass
    assert list(ps.Dataset(tmp_path / "empty").iter()) == []
