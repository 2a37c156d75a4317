//! `DatasetWriter`: records in, row groups and shards out, manifest last.

use crate::chunk::{Codec, RawChunk};
use crate::encode::ColumnBuilder;
use crate::error::{Error, Result};
use crate::format::{is_shard_file, MANIFEST_NAME, SHARD_EXTENSION};
use crate::manifest::{Manifest, ShardEntry};
use crate::schema::{DataType, Schema};
use crate::shard::{EncodedChunk, FinishedShard, ShardWriter};
use crate::storage::{is_url, RemoteDir};
use crate::value::{check_value, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// A shard is closed once it reaches this many bytes.
    pub shard_bytes: u64,
    /// A row group is closed once its buffered columns reach this many bytes...
    pub row_group_bytes: usize,
    /// ...or this many rows.
    pub row_group_rows: usize,
    pub zstd_level: i32,
    /// Per-column codec overrides; others use `binary` → none, everything else → zstd.
    pub codecs: HashMap<String, Codec>,
    pub overwrite: bool,
    pub metadata: BTreeMap<String, String>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            shard_bytes: 256 << 20,
            row_group_bytes: 16 << 20,
            row_group_rows: 1024,
            zstd_level: 3,
            codecs: HashMap::new(),
            overwrite: false,
            metadata: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WriteSummary {
    pub path: PathBuf,
    pub num_rows: u64,
    pub num_shards: usize,
    pub num_bytes: u64,
}

/// Writes a dataset. Records are checked and appended to column builders on the caller's
/// thread, which also encodes, compresses and checksums each finished row group; one
/// background thread (started at the first row group, joined by `close`/`abort`/drop) writes
/// them, so filling the next row group overlaps with writing the last one. Large blobs are
/// held by reference (`Value::Shared`) and written from where they are, never copied. At most
/// two row groups wait in memory.
pub struct DatasetWriter {
    dir: PathBuf,
    /// Writing to object storage: shards are written in `dir` (a local staging directory),
    /// uploaded as each is finished, and the manifest is uploaded last.
    remote: Option<RemoteDir>,
    schema: Schema,
    opts: WriterOptions,
    builders: Vec<ColumnBuilder>,
    /// The codec of each column.
    codecs: Vec<Codec>,
    rows_in_group: usize,
    sink: Sink,
    rows: u64,
    closed: bool,
    /// The error that stopped the writer (an I/O error while writing a shard), so that a
    /// later `write` or `close` says why it cannot go on rather than just "closed".
    failure: Option<String>,
}

type Job = (u64, Vec<EncodedChunk>);

enum Sink {
    Idle(Box<ShardSink>),
    Running {
        tx: std::sync::mpsc::SyncSender<Job>,
        handle: std::thread::JoinHandle<(Box<ShardSink>, Result<()>)>,
    },
    Gone,
}

/// The shard side of a writer: row groups in, shard files out.
struct ShardSink {
    dir: PathBuf,
    remote: Option<RemoteDir>,
    schema: Schema,
    metadata: BTreeMap<String, String>,
    shard_bytes: u64,
    shard: Option<ShardWriter>,
    done: Vec<ShardEntry>,
    /// Syncs finished shards to disk and renames them into place on its own thread, so that
    /// waiting for the disk overlaps with writing the next shard.
    syncer: Option<Syncer>,
}

struct Syncer {
    tx: std::sync::mpsc::Sender<FinishedShard>,
    handle: std::thread::JoinHandle<Result<()>>,
}

impl ShardSink {
    fn write_row_group(&mut self, rows: u64, chunks: Vec<EncodedChunk>) -> Result<()> {
        let estimate: u64 = chunks.iter().map(EncodedChunk::padded_len).sum();
        if let Some(s) = &self.shard {
            if !s.is_empty() && s.len() + estimate > self.shard_bytes {
                self.finish_shard()?;
            }
        }
        if self.shard.is_none() {
            let name = format!("shard-{:05}{SHARD_EXTENSION}", self.done.len());
            self.shard = Some(ShardWriter::create(
                &self.dir.join(name),
                &self.schema,
                &self.metadata,
            )?);
        }
        let shard = self.shard.as_mut().unwrap();
        shard.write_row_group(rows, chunks)?;
        if shard.len() >= self.shard_bytes {
            self.finish_shard()?;
        }
        Ok(())
    }

    fn finish_shard(&mut self) -> Result<()> {
        if let Some(s) = self.shard.take() {
            let name = format!("shard-{:05}{SHARD_EXTENSION}", self.done.len());
            let num_rows = s.num_rows();
            let row_groups = s.row_group_rows();
            let finished = s.finish()?;
            let num_bytes = finished.len;
            if self.syncer.is_none() {
                let (tx, rx) = std::sync::mpsc::channel::<FinishedShard>();
                let remote = self.remote.clone();
                let handle = std::thread::Builder::new()
                    .name("pixmo-sync".into())
                    .spawn(move || {
                        rx.into_iter().try_for_each(|f| match &remote {
                            None => f.sync_and_rename(),
                            Some(r) => upload(r, f),
                        })
                    })
                    .map_err(|e| Error::io(&self.dir, e))?;
                self.syncer = Some(Syncer { tx, handle });
            }
            if self.syncer.as_ref().unwrap().tx.send(finished).is_err() {
                // The sync thread stopped on an error: report that error. This shard was
                // never synced or renamed, so the writer must not go on as if it were.
                return Err(self.wait_synced().err().unwrap_or_else(|| {
                    Error::InvalidArgument("the writer's sync thread stopped".into())
                }));
            }
            self.done.push(ShardEntry {
                file: name,
                num_rows,
                num_bytes,
                row_groups,
            });
        }
        Ok(())
    }

    /// Waits until every finished shard is synced and renamed into place.
    fn wait_synced(&mut self) -> Result<()> {
        match self.syncer.take() {
            None => Ok(()),
            Some(Syncer { tx, handle }) => {
                drop(tx);
                handle.join().map_err(|_| {
                    Error::InvalidArgument("the writer's sync thread panicked".into())
                })?
            }
        }
    }

    fn abort(&mut self) {
        let _ = self.wait_synced();
        if let Some(s) = self.shard.take() {
            let tmp = s.tmp_path().to_path_buf();
            drop(s);
            let _ = std::fs::remove_file(tmp);
        }
        if self.remote.is_some() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Uploads a finished shard under its final name (a multipart upload: the object appears
/// whole or not at all), then removes the local file.
fn upload(remote: &RemoteDir, f: FinishedShard) -> Result<()> {
    let name = f.path.file_name().unwrap().to_string_lossy().into_owned();
    let result = remote.put_file(&name, &f.tmp);
    let _ = std::fs::remove_file(&f.tmp);
    result
}

/// A fresh local directory for the shards of a write to object storage.
fn staging_dir() -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pixmo-stream-upload-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    // What writers killed before their end left here (their process is gone).
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("pixmo-stream-upload-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(dir)
}

/// Prepares a dataset URL for writing: refuses one that holds a dataset (unless `overwrite`),
/// else removes what is there, the manifest first.
fn prepare_remote(remote: &RemoteDir, overwrite: bool) -> Result<()> {
    let listed = remote.list()?;
    let manifest = listed.iter().any(|(n, _)| n == MANIFEST_NAME);
    let stale: Vec<&String> = listed
        .iter()
        .map(|(n, _)| n)
        .filter(|n| is_shard_file(n))
        .collect();
    if !overwrite && (manifest || !stale.is_empty()) {
        return Err(Error::InvalidArgument(format!(
            "{} already holds a dataset (or shards of an unfinished write); pass overwrite=True to replace it",
            remote.url
        )));
    }
    if manifest {
        remote.delete(MANIFEST_NAME)?;
    }
    for n in stale {
        remote.delete(n)?;
    }
    Ok(())
}

impl DatasetWriter {
    pub fn create(dir: impl AsRef<Path>, schema: Schema, opts: WriterOptions) -> Result<Self> {
        Self::create_at(dir.as_ref(), None, schema, opts)
    }

    /// Creates a writer for a local directory or, for a URL, a dataset on object storage
    /// (`storage`: the store's options, as for reading).
    pub fn create_with(
        target: &str,
        storage: &BTreeMap<String, String>,
        schema: Schema,
        opts: WriterOptions,
    ) -> Result<Self> {
        if !is_url(target) {
            return Self::create_at(Path::new(target), None, schema, opts);
        }
        let remote = RemoteDir::new(target, storage)?;
        let staging = staging_dir()?;
        let made = Self::create_at(&staging, Some(remote), schema, opts);
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        made
    }

    fn create_at(
        dir: &Path,
        remote: Option<RemoteDir>,
        schema: Schema,
        opts: WriterOptions,
    ) -> Result<Self> {
        let dir = dir.to_path_buf();
        schema.validate()?;
        if opts.row_group_rows == 0 || opts.row_group_bytes == 0 || opts.shard_bytes == 0 {
            return Err(Error::InvalidArgument(
                "row_group_rows, row_group_bytes and shard_bytes must be > 0".into(),
            ));
        }
        if !(-7..=22).contains(&opts.zstd_level) {
            return Err(Error::InvalidArgument(format!(
                "zstd_level {} is outside -7..=22",
                opts.zstd_level
            )));
        }
        for name in opts.codecs.keys() {
            if schema.index_of(name).is_none() {
                return Err(Error::InvalidArgument(format!(
                    "codec given for unknown column '{name}'"
                )));
            }
        }
        if let Some(r) = &remote {
            prepare_remote(r, opts.overwrite)?;
        }
        if dir.exists() && !dir.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{} exists and is not a directory",
                dir.display()
            )));
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let manifest = dir.join(MANIFEST_NAME);
        let stale: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| is_shard_file(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect();
        if !opts.overwrite && (manifest.exists() || !stale.is_empty()) {
            return Err(Error::InvalidArgument(format!(
                "{} already holds a dataset (or shards of an unfinished write); pass overwrite=True to replace it",
                dir.display()
            )));
        }
        if manifest.exists() {
            // The manifest goes first, so a crash while deleting never leaves a dataset that
            // looks complete.
            std::fs::remove_file(&manifest).map_err(|e| Error::io(&manifest, e))?;
        }
        for p in stale {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
        let codecs = schema
            .fields
            .iter()
            .map(|f| {
                opts.codecs.get(&f.name).copied().unwrap_or(match f.dtype {
                    DataType::Binary => Codec::None,
                    _ => Codec::Zstd,
                })
            })
            .collect();
        let builders = Self::new_builders(&schema);
        let sink = ShardSink {
            dir: dir.clone(),
            remote: remote.clone(),
            schema: schema.clone(),
            metadata: opts.metadata.clone(),
            shard_bytes: opts.shard_bytes,
            shard: None,
            done: Vec::new(),
            syncer: None,
        };
        Ok(DatasetWriter {
            dir,
            remote,
            schema,
            opts,
            builders,
            codecs,
            rows_in_group: 0,
            sink: Sink::Idle(Box::new(sink)),
            rows: 0,
            closed: false,
            failure: None,
        })
    }

    fn new_builders(schema: &Schema) -> Vec<ColumnBuilder> {
        schema
            .fields
            .iter()
            .map(|f| ColumnBuilder::new(&f.dtype, f.nullable))
            .collect()
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// Checks a record against the schema without writing it.
    pub fn check(&self, record: &[Value]) -> Result<()> {
        if record.len() != self.schema.fields.len() {
            return Err(Error::schema(
                "",
                format!(
                    "record has {} fields, the schema {}",
                    record.len(),
                    self.schema.fields.len()
                ),
            ));
        }
        for (f, v) in self.schema.fields.iter().zip(record) {
            check_value(&f.dtype, f.nullable, v, &f.name)?;
        }
        Ok(())
    }

    /// Appends one record, its values in schema order. A record that does not fit is rejected
    /// whole (a `Schema` error naming field and record index) and the writer stays usable.
    pub fn write(&mut self, record: &[Value]) -> Result<()> {
        if self.closed {
            return Err(self.closed_error());
        }
        self.check(record).map_err(|e| e.at_record(self.rows))?;
        for (b, v) in self.builders.iter_mut().zip(record) {
            b.append(v);
        }
        self.rows += 1;
        self.rows_in_group += 1;
        let buffered: usize = self
            .builders
            .iter()
            .map(ColumnBuilder::buffered_bytes)
            .sum();
        if self.rows_in_group >= self.opts.row_group_rows || buffered >= self.opts.row_group_bytes {
            self.flush_row_group().map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    /// Notes the error that stopped the writer, and passes it on.
    fn fail(&mut self, e: Error) -> Error {
        if self.failure.is_none() {
            self.failure = Some(e.to_string());
        }
        self.closed = true;
        e
    }

    /// Why the writer takes no more records: closed, or stopped by an earlier error.
    pub fn closed_error(&self) -> Error {
        match &self.failure {
            Some(f) => Error::InvalidArgument(format!(
                "the writer stopped on an earlier error, so no manifest was written (shards \
                 finished before it stay on disk): {f}"
            )),
            None => Error::InvalidArgument("the writer is closed".into()),
        }
    }

    fn flush_row_group(&mut self) -> Result<()> {
        if self.rows_in_group == 0 {
            return Ok(());
        }
        let mut fresh = Self::new_builders(&self.schema);
        for (f, old) in fresh.iter_mut().zip(&self.builders) {
            f.reserve_like(old);
        }
        let builders = std::mem::replace(&mut self.builders, fresh);
        // Encoded here, on the caller's thread, while the background thread writes the last
        // row group: on two cores the two halves of the work overlap.
        let chunks = builders
            .into_iter()
            .zip(&self.codecs)
            .zip(&self.schema.fields)
            .map(|((b, &codec), f)| {
                let mut bufs = Vec::new();
                b.finish(&mut bufs);
                EncodedChunk::encode(RawChunk::new(bufs), codec, self.opts.zstd_level, &f.dtype)
            })
            .collect();
        let job = (std::mem::take(&mut self.rows_in_group) as u64, chunks);
        if let Sink::Idle(_) = self.sink {
            let Sink::Idle(mut sink) = std::mem::replace(&mut self.sink, Sink::Gone) else {
                unreachable!()
            };
            let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(1);
            let handle = std::thread::Builder::new()
                .name("pixmo-writer".into())
                .spawn(move || {
                    for (rows, builders) in rx {
                        if let Err(e) = sink.write_row_group(rows, builders) {
                            return (sink, Err(e));
                        }
                    }
                    (sink, Ok(()))
                })
                .map_err(|e| Error::io(&self.dir, e))?;
            self.sink = Sink::Running { tx, handle };
        }
        let sent = match &self.sink {
            Sink::Running { tx, .. } => tx.send(job).is_ok(),
            _ => false,
        };
        if !sent {
            // The background thread stopped on an error: report it; the writer is done.
            self.closed = true;
            self.stop()?;
            return Err(Error::InvalidArgument(
                "the writer's background thread stopped".into(),
            ));
        }
        Ok(())
    }

    /// Waits for the background thread and returns the sink (with its error, if any).
    fn stop(&mut self) -> Result<Box<ShardSink>> {
        match std::mem::replace(&mut self.sink, Sink::Gone) {
            Sink::Idle(sink) => Ok(sink),
            Sink::Running { tx, handle } => {
                drop(tx);
                let (mut sink, result) = handle.join().map_err(|_| {
                    Error::InvalidArgument("the writer's background thread panicked".into())
                })?;
                if let Err(e) = result {
                    sink.abort();
                    return Err(e);
                }
                Ok(sink)
            }
            Sink::Gone => Err(Error::InvalidArgument("the writer is closed".into())),
        }
    }

    /// Flushes everything, writes the manifest last, and returns what was written.
    pub fn close(&mut self) -> Result<WriteSummary> {
        if self.closed {
            return Err(match self.failure {
                Some(_) => self.closed_error(),
                None => Error::InvalidArgument("the writer is already closed".into()),
            });
        }
        self.closed = true;
        self.finish().map_err(|e| self.fail(e))
    }

    fn finish(&mut self) -> Result<WriteSummary> {
        self.flush_row_group()?;
        let mut sink = self.stop()?;
        sink.finish_shard()?;
        // Every shard is durable under its final name before the manifest says it exists.
        if let Err(e) = sink.wait_synced() {
            sink.abort();
            return Err(e);
        }
        let manifest = Manifest::new(
            self.schema.clone(),
            sink.done.clone(),
            self.opts.metadata.clone(),
        );
        let path = match &self.remote {
            None => {
                manifest.write(&self.dir)?;
                self.dir.clone()
            }
            Some(r) => {
                r.put(MANIFEST_NAME, manifest.to_json())?;
                let _ = std::fs::remove_dir_all(&self.dir);
                PathBuf::from(&r.url)
            }
        };
        Ok(WriteSummary {
            path,
            num_rows: manifest.num_rows,
            num_shards: manifest.shards.len(),
            num_bytes: manifest.num_bytes,
        })
    }

    /// Stops without a manifest (finished shards stay on disk; the dataset is not complete).
    pub fn abort(&mut self) {
        self.closed = true;
        // Let go of the buffered rows now: they may hold the caller's values by reference.
        self.builders = Self::new_builders(&self.schema);
        self.rows_in_group = 0;
        if let Ok(mut sink) = self.stop() {
            sink.abort();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if !self.closed {
            self.abort();
        }
    }
}
