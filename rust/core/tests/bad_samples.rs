//! The bad-sample policy of the read-ahead: damaged pages and rows a stage refuses either stop
//! the stream with an error naming file, row group, column and row, or are replaced by rows
//! chosen from (seed, source, row) only and reported.

use pixmo_stream_core::error::Location;
use pixmo_stream_core::sample::{
    binary_value, replacement_row, BadSamplePolicy, SampleStage, StageValue,
};
use pixmo_stream_core::schema::{DataType, Field, Schema};
use pixmo_stream_core::stream::{ReadAhead, ReadAheadOptions, ReadRow, RowSource};
use pixmo_stream_core::{Dataset, DatasetWriter, Error, Value, WriterOptions};
use std::path::Path;
use std::sync::Arc;

const ROWS: u64 = 60;

fn payload(i: u64) -> Vec<u8> {
    let mut v = format!("row-{i:05}-").into_bytes();
    v.resize(3000, b'a' + (i % 26) as u8);
    v
}

fn write(dir: &Path) {
    let schema = Schema::new(vec![
        Field::new("id", DataType::Uint64, false),
        Field::new("blob", DataType::Binary, false),
    ])
    .unwrap();
    let opts = WriterOptions {
        row_group_rows: 10,
        ..Default::default()
    };
    let mut w = DatasetWriter::create(dir, schema, opts).unwrap();
    for i in 0..ROWS {
        w.write(&[Value::UInt(i), Value::Bytes(payload(i))])
            .unwrap();
    }
    w.close().unwrap();
}

struct Rows(std::ops::Range<u64>);

impl RowSource for Rows {
    fn next_rows(
        &mut self,
        n: usize,
        out: &mut Vec<(usize, u64)>,
    ) -> pixmo_stream_core::Result<()> {
        out.extend(self.0.by_ref().take(n).map(|r| (0, r)));
        Ok(())
    }
}

/// Reads the blob's row id back, refusing rows whose id is a multiple of 7.
struct RefuseSevens;

impl SampleStage for RefuseSevens {
    fn process(
        &self,
        _: usize,
        ds: &Dataset,
        row: &ReadRow,
    ) -> pixmo_stream_core::Result<StageValue> {
        let bytes = binary_value(&row.chunks[1], row.index)?.expect("not null");
        let id: u64 = std::str::from_utf8(&bytes[4..9]).unwrap().parse().unwrap();
        if id.is_multiple_of(7) {
            return Err(Error::BadSample {
                location: Location::chunk(ds.path(), 0, "blob"),
                row: row.row,
                reason: "refused by the test stage".into(),
            });
        }
        Ok(StageValue(Arc::new(id)))
    }
}

/// Rows read and `(bad row, replacement)` pairs.
type Streamed = (Vec<u64>, Vec<(u64, u64)>);

fn stream(
    dir: &Path,
    policy: BadSamplePolicy,
    stage: bool,
    threads: usize,
) -> pixmo_stream_core::Result<Streamed> {
    let ds = Arc::new(Dataset::open(dir)?);
    let mut ra = ReadAhead::new(
        vec![ds],
        vec![vec![0, 1]],
        Box::new(Rows(0..ROWS)),
        ReadAheadOptions {
            batch_rows: 8,
            threads,
            on_bad_sample: policy,
            ..ReadAheadOptions::default()
        },
    )?;
    if stage {
        ra = ra.with_stage(Arc::new(RefuseSevens));
    }
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    while let Some(b) = ra.next_batch()? {
        for r in &b.rows {
            if let Some(p) = &r.processed {
                assert_eq!(*p.0.downcast_ref::<u64>().unwrap(), r.row);
            }
            rows.push(r.row);
        }
        bad.extend(b.bad.iter().map(|s| (s.row, s.replacement)));
    }
    Ok((rows, bad))
}

const REPLACE: BadSamplePolicy = BadSamplePolicy::Replace {
    seed: 11,
    max_attempts: 16,
};

#[test]
fn refused_rows_are_replaced_the_same_way_on_every_run() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path());
    let (rows, bad) = stream(dir.path(), REPLACE, true, 2).unwrap();
    assert_eq!(rows.len() as u64, ROWS, "the stream keeps its length");
    let sevens: Vec<u64> = (0..ROWS).filter(|r| r % 7 == 0).collect();
    assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), sevens);
    for (i, &r) in rows.iter().enumerate() {
        let planned = i as u64;
        if planned.is_multiple_of(7) {
            let (_, replacement) = bad.iter().find(|b| b.0 == planned).unwrap();
            assert_eq!(r, *replacement);
            assert_ne!(r % 7, 0);
            // The first good candidate of the pure replacement sequence.
            let want = (0..16)
                .map(|k| replacement_row(11, 0, planned, k, ROWS))
                .find(|c| c % 7 != 0)
                .unwrap();
            assert_eq!(r, want);
        } else {
            assert_eq!(r, planned);
        }
    }
    // Other thread counts read the same stream.
    assert_eq!(stream(dir.path(), REPLACE, true, 1).unwrap(), (rows, bad));
}

#[test]
fn a_refused_row_under_raise_names_its_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path());
    match stream(dir.path(), BadSamplePolicy::Raise, true, 2) {
        Err(Error::BadSample {
            row,
            location,
            reason,
        }) => {
            assert_eq!(row, 0);
            assert_eq!(location.column.as_deref(), Some("blob"));
            assert!(reason.contains("refused"), "{reason}");
        }
        other => panic!("expected a bad sample, got {other:?}"),
    }
}

#[test]
fn a_damaged_page_is_replaced_or_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path());
    let shard = dir.path().join("shard-00000.pxs");
    let mut bytes = std::fs::read(&shard).unwrap();
    let needle = b"row-00023-";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at + 100] ^= 0x5a;
    std::fs::write(&shard, &bytes).unwrap();

    match stream(dir.path(), BadSamplePolicy::Raise, false, 2) {
        Err(e @ Error::BadSample { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("shard-00000.pxs") && msg.contains("'blob'"),
                "{msg}"
            );
            assert!(msg.contains("row group 2"), "{msg}");
        }
        other => panic!("expected a bad sample, got {other:?}"),
    }
    let (rows, bad) = stream(dir.path(), REPLACE, false, 2).unwrap();
    assert_eq!(rows.len() as u64, ROWS);
    let bad_rows: Vec<u64> = bad.iter().map(|b| b.0).collect();
    assert!(bad_rows.contains(&23), "{bad_rows:?}");
    // Only rows whose blob shares a damaged page are bad; every other row streams as planned.
    assert!(
        bad_rows.iter().all(|r| (20..30).contains(r)),
        "{bad_rows:?}"
    );
    for (i, &r) in rows.iter().enumerate() {
        if !bad_rows.contains(&(i as u64)) {
            assert_eq!(r, i as u64);
        } else {
            assert!(!bad_rows.contains(&r));
        }
    }
}

#[test]
fn too_many_bad_replacements_end_the_stream_with_an_error() {
    struct RefuseAll;
    impl SampleStage for RefuseAll {
        fn process(
            &self,
            _: usize,
            ds: &Dataset,
            row: &ReadRow,
        ) -> pixmo_stream_core::Result<StageValue> {
            Err(Error::BadSample {
                location: Location::file(ds.path()),
                row: row.row,
                reason: "nothing decodes".into(),
            })
        }
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path());
    let ds = Arc::new(Dataset::open(dir.path()).unwrap());
    let mut ra = ReadAhead::new(
        vec![ds],
        vec![vec![1]],
        Box::new(Rows(0..ROWS)),
        ReadAheadOptions {
            on_bad_sample: BadSamplePolicy::Replace {
                seed: 0,
                max_attempts: 3,
            },
            ..ReadAheadOptions::default()
        },
    )
    .unwrap()
    .with_stage(Arc::new(RefuseAll));
    match ra.next_batch() {
        Err(Error::BadSample { row: 0, reason, .. }) => {
            assert!(
                reason.contains("3 replacement rows were bad too"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(ra.next_batch().unwrap().is_none());
}
