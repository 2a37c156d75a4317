//! Writer → reader round trips and the corruption sweep: every single-byte change and every
//! truncation of a shard must give an error, never a panic or a silently different value.

use pixmo_stream_core::schema::{DataType, Field, NumType, Schema};
use pixmo_stream_core::{Dataset, DatasetWriter, Error, Value, WriterOptions};
use std::path::Path;

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("flag", DataType::Bool, true),
        Field::new("i8", DataType::Int8, false),
        Field::new("u64", DataType::Uint64, false),
        Field::new("f32", DataType::Float32, true),
        Field::new("text", DataType::String, true),
        Field::new("blob", DataType::Binary, false),
        Field::new(
            "pts",
            DataType::Array {
                dtype: NumType::Float32,
                shape: vec![2],
            },
            true,
        ),
        Field::new(
            "qa",
            DataType::List {
                item: Box::new(DataType::Struct {
                    fields: vec![
                        Field::new("q", DataType::String, false),
                        Field::new("a", DataType::String, true),
                        Field::new(
                            "tags",
                            DataType::List {
                                item: Box::new(DataType::Int32),
                                item_nullable: true,
                            },
                            false,
                        ),
                    ],
                }),
                item_nullable: false,
            },
            true,
        ),
        Field::new("meta", DataType::Any, true),
    ])
    .unwrap()
}

fn record(i: u64) -> Vec<Value> {
    let pts: Vec<u8> = (0..(i % 5) * 2)
        .flat_map(|k| (k as f32 * 0.5).to_le_bytes())
        .collect();
    vec![
        if i.is_multiple_of(7) {
            Value::Null
        } else {
            Value::Bool(i.is_multiple_of(2))
        },
        Value::Int((i % 200) as i64 - 100),
        Value::UInt(u64::MAX - i),
        if i.is_multiple_of(5) {
            Value::Null
        } else {
            Value::Float(i as f64 * 0.25)
        },
        if i.is_multiple_of(3) {
            Value::Null
        } else {
            Value::Str(format!("row {i} — ünïcødé"))
        },
        Value::Bytes(vec![(i % 251) as u8; (i % 13) as usize]),
        if i.is_multiple_of(11) {
            Value::Null
        } else {
            Value::Array {
                rows: i % 5,
                data: pts,
            }
        },
        if i.is_multiple_of(4) {
            Value::Null
        } else {
            Value::List(
                (0..i % 3)
                    .map(|k| {
                        Value::Struct(vec![
                            Value::Str(format!("q{k}")),
                            if k == 1 {
                                Value::Null
                            } else {
                                Value::Str("answer".into())
                            },
                            Value::List(vec![Value::Int(k as i64), Value::Null]),
                        ])
                    })
                    .collect(),
            )
        },
        Value::Any(vec![0x91, 0x01]), // msgpack [1]
    ]
}

fn write(dir: &Path, n: u64, opts: WriterOptions) {
    let mut w = DatasetWriter::create(dir, schema(), opts).unwrap();
    for i in 0..n {
        w.write(&record(i)).unwrap();
    }
    w.close().unwrap();
}

fn read_all(ds: &Dataset) -> Result<Vec<Vec<Value>>, Error> {
    let ncols = ds.schema().fields.len();
    let mut out = Vec::new();
    for r in 0..ds.num_rows() {
        let (s, g, i) = ds.locate(r)?;
        let mut row = Vec::new();
        for c in 0..ncols {
            row.push(ds.chunk_uncached((s, g, c))?.value(i)?);
        }
        out.push(row);
    }
    Ok(out)
}

#[test]
fn round_trip_many_row_groups_and_shards() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        row_group_rows: 7,
        shard_bytes: 4096,
        ..Default::default()
    };
    write(dir.path(), 300, opts);
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!(ds.num_rows(), 300);
    assert!(ds.num_shards() > 2, "shards roll over: {}", ds.num_shards());
    let rows = read_all(&ds).unwrap();
    for (i, row) in rows.iter().enumerate() {
        let mut want = record(i as u64);
        // Float32 storage rounds the value; these are exactly representable.
        assert_eq!(row.len(), want.len());
        if let Value::Float(f) = &mut want[3] {
            *f = *f as f32 as f64;
        }
        assert_eq!(row, &want, "row {i}");
    }
    let (n, errors) = ds.verify();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(n, ds.row_groups().len() * 9);
}

/// Blob values held by reference (`Value::Shared`, what the Python writer passes for large
/// `bytes`) are written exactly as copied ones are: the shard files are byte for byte the same,
/// whether every blob, none or every other one is shared, across row groups and shards.
#[test]
fn shared_blobs_write_the_same_bytes_as_copied_ones() {
    use pixmo_stream_core::value::SharedBytes;
    let files = |share: &dyn Fn(u64) -> bool| {
        let dir = tempfile::tempdir().unwrap();
        let opts = WriterOptions {
            row_group_rows: 5,
            shard_bytes: 8192,
            ..Default::default()
        };
        let mut w = DatasetWriter::create(dir.path(), schema(), opts).unwrap();
        for i in 0..60u64 {
            let mut rec = record(i);
            // Blobs of 0 to ~3 KiB, some of them larger than a page of the output buffer.
            let blob: Vec<u8> = (0..(i * 53) % 3100).map(|k| (k * 7 + i) as u8).collect();
            rec[5] = if share(i) {
                Value::Shared(SharedBytes::new(blob))
            } else {
                Value::Bytes(blob)
            };
            w.write(&rec).unwrap();
        }
        w.close().unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        // The shards byte for byte; the manifest differs only in its random `write_id`.
        let bytes: Vec<Vec<u8>> = names
            .iter()
            .filter(|p| !p.ends_with("manifest.json"))
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        (names.len(), bytes)
    };
    let copied = files(&|_| false);
    assert!(copied.0 > 3, "several shards: {}", copied.0);
    assert_eq!(files(&|_| true), copied);
    assert_eq!(files(&|i| i % 2 == 0), copied);
}

#[test]
fn schema_errors_leave_writer_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::create(dir.path(), schema(), WriterOptions::default()).unwrap();
    w.write(&record(1)).unwrap();
    let mut bad = record(2);
    bad[1] = Value::Int(1000); // out of range for int8
    let e = w.write(&bad).unwrap_err();
    assert!(
        matches!(&e, Error::Schema { field, record: Some(1), .. } if field == "i8"),
        "{e}"
    );
    let mut bad = record(2);
    bad[5] = Value::Null; // blob is not nullable
    assert!(w.write(&bad).is_err());
    w.write(&record(2)).unwrap();
    assert_eq!(w.close().unwrap().num_rows, 2);
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!(read_all(&ds).unwrap()[1][1], Value::Int(2 - 100));
}

#[test]
fn zero_rows() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 0, WriterOptions::default());
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!(ds.num_rows(), 0);
    assert_eq!(ds.verify().0, 0);
}

#[test]
fn refuses_to_overwrite_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 3, WriterOptions::default());
    assert!(DatasetWriter::create(dir.path(), schema(), WriterOptions::default()).is_err());
    write(
        dir.path(),
        5,
        WriterOptions {
            overwrite: true,
            ..Default::default()
        },
    );
    assert_eq!(Dataset::open(dir.path()).unwrap().num_rows(), 5);
}

/// Reads everything through a fresh reader; Ok(values) or the first error.
fn read_shard_file(path: &Path) -> Result<Vec<Vec<Value>>, Error> {
    let ds = Dataset::open(path)?;
    let rows = read_all(&ds)?;
    let (_, errors) = ds.verify();
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    Ok(rows)
}

#[test]
fn every_byte_flip_and_truncation_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        row_group_rows: 4,
        ..Default::default()
    };
    write(dir.path(), 10, opts);
    let shard = dir.path().join("shard-00000.pxs");
    let good = std::fs::read(&shard).unwrap();
    let expected = read_shard_file(&shard).unwrap();
    let probe = dir.path().join("probe.pxs");
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x5a;
        std::fs::write(&probe, &bad).unwrap();
        // Reading every value (blob pages verified as read) must notice without `verify`.
        let values_only = Dataset::open(&probe).and_then(|ds| read_all(&ds));
        assert!(
            values_only.is_err(),
            "byte {at}: reading every value missed the flip"
        );
        match read_shard_file(&probe) {
            Err(Error::Corrupt { .. } | Error::UnsupportedVersion { .. }) => {}
            Err(e) => panic!("byte {at}: unexpected error kind {e}"),
            Ok(rows) => panic!(
                "byte {at}: flip went unnoticed (same values: {})",
                rows == expected
            ),
        }
    }
    for len in 0..good.len() {
        std::fs::write(&probe, &good[..len]).unwrap();
        assert!(
            matches!(read_shard_file(&probe), Err(Error::Corrupt { .. })),
            "truncation to {len} bytes went unnoticed"
        );
    }
}

#[test]
fn manifest_catches_truncated_and_missing_shards() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        20,
        WriterOptions {
            row_group_rows: 4,
            ..Default::default()
        },
    );
    let shard = dir.path().join("shard-00000.pxs");
    let good = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &good[..good.len() - 1]).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let e = ds.shard(0).err().unwrap();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    std::fs::remove_file(&shard).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    assert!(matches!(ds.shard(0).err().unwrap(), Error::NotFound { .. }));
    assert!(matches!(
        Dataset::open(dir.path().join("nope")).err().unwrap(),
        Error::NotFound { .. }
    ));
}

/// Shards the fuzzer (rust/fuzz) turned up: each once panicked or asked for a huge allocation.
/// With their CRCs fixed up they reach the decoder; each must be a plain error now.
#[test]
fn fuzz_regressions_are_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pxs") {
            seen += 1;
            let result = read_shard_file(&path);
            assert!(
                matches!(result, Err(Error::Corrupt { .. } | Error::Schema { .. })),
                "{}: {:?}",
                path.display(),
                result.map(|r| r.len())
            );
        }
    }
    assert!(seen >= 4);
}
