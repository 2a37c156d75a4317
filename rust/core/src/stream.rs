//! Reading ahead: background threads read, verify and decompress the rows an epoch plan names,
//! in order, into a bounded queue, so that the consumer (a training loop, possibly holding the
//! Python GIL) only turns ready chunks into objects.
//!
//! Design:
//! - Nothing is started until the first [`ReadAhead::next_batch`] call, so an object created in a
//!   process that later forks never leaves a child with threads it does not have.
//! - `threads` workers take batches of rows from the [`RowSource`] in turn (batch `i` is taken by
//!   worker `i % threads`), read them, and send them to their own queue of `depth` batches; the
//!   consumer receives batch `i` from queue `i % threads`, so batches arrive in plan order with
//!   no reordering buffer. At most `threads * (depth + 1)` batches are in memory.
//! - Per-sample work (image decoding and resizing, next) belongs in [`read_batch`], which runs
//!   on the worker threads with no lock held.
//! - Dropping the `ReadAhead` stops the workers and joins them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::dataset::ChunkKey;
use crate::decode::ColumnChunk;
use crate::error::{Error, Result};
use crate::sample::{
    at_row, describe, is_bad_sample, replacement_row, BadSample, BadSamplePolicy, SampleStage,
};
pub use crate::sample::{ReadBatch, ReadRow};
pub use sources::{DrawnRows, PackedDraws, PackedSource};

mod sources;
use crate::Dataset;

/// Where the rows to read come from, in order: `(source dataset, global row)` pairs.
pub trait RowSource: Send + 'static {
    /// Appends up to `n` pairs to `out`; an empty result ends the stream.
    fn next_rows(&mut self, n: usize, out: &mut Vec<(usize, u64)>) -> Result<()>;

    /// What the last `next_rows` call knows beyond the rows, for its batch: the sizes of the
    /// packed rows they make up (appended to `groups`) and the epoch each row was drawn in
    /// (to `epochs`). Nothing by default.
    fn take_marks(&mut self, _groups: &mut Vec<u32>, _epochs: &mut Vec<u64>) {}
}

/// Settings of the read-ahead stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAheadOptions {
    /// Rows per batch handed to the consumer.
    pub batch_rows: usize,
    /// Background threads.
    pub threads: usize,
    /// Ready batches each thread may queue.
    pub depth: usize,
    /// Rows of the source passed over before reading (a consumer resuming its own stream,
    /// as `torchdata.StatefulDataLoader` resumes each worker). Only row ids are computed.
    pub skip: u64,
    /// Verify each row's blob pages on the read threads (else the consumer's `Blob`s verify
    /// them when their bytes are first read: a DataLoader worker that only passes images on
    /// never reads them).
    pub verify_blobs: bool,
    /// What a damaged or unprocessable row does to the stream.
    pub on_bad_sample: BadSamplePolicy,
}

impl Default for ReadAheadOptions {
    fn default() -> Self {
        ReadAheadOptions {
            batch_rows: 64,
            threads: 2,
            depth: 2,
            skip: 0,
            verify_blobs: true,
            on_bad_sample: BadSamplePolicy::Raise,
        }
    }
}

/// How the read threads read rows: what to read, what to do with each row, and with bad ones.
#[derive(Clone)]
pub struct RowReader {
    pub datasets: Arc<Vec<Arc<Dataset>>>,
    /// Projected columns, one list per dataset.
    pub columns: Arc<Vec<Vec<usize>>>,
    pub verify_blobs: bool,
    pub on_bad_sample: BadSamplePolicy,
    pub stage: Option<Arc<dyn SampleStage>>,
    /// Under `Replace`: whether `(source, bad row, candidate)` may replace it (a packed row's
    /// replacement must fit where the bad example was). Candidates that do not fit are
    /// passed over unread.
    pub replacement_fits: Option<ReplacementFits>,
}

/// See [`RowReader::replacement_fits`].
pub type ReplacementFits = Arc<dyn Fn(usize, u64, u64) -> bool + Send + Sync>;

/// Candidates looked at per read replacement when they must fit (see `replacement_fits`).
const FIT_TRIES: u32 = 4096;

/// What a batch has read: whole chunks (and failures), and chunks read for some rows only.
#[derive(Default)]
struct Seen {
    whole: BatchChunks,
    sparse: Vec<(usize, ChunkKey, crate::sparse::SparseChunk)>,
    /// The stage's buffer for the batch ([`SampleStage::begin_batch`]) and the slot of the
    /// row being read (a replacement row reads into the slot of the row it replaces).
    buffer: Option<crate::sample::BatchBuffer>,
    slot: usize,
}

/// Chunks already read for a batch: its rows come from the few row groups of one shuffle
/// window. Failures are kept too, so a damaged chunk is read once per batch, not once a row.
type BatchChunks = Vec<(
    usize,
    ChunkKey,
    std::result::Result<Arc<ColumnChunk>, Error>,
)>;

impl RowReader {
    fn dataset(&self, source: usize) -> Result<&Arc<Dataset>> {
        self.datasets
            .get(source)
            .ok_or_else(|| Error::InvalidArgument(format!("no source {source}")))
    }

    /// Reads (and processes) one row; an error is the row's.
    fn read_row(&self, source: usize, row: u64, seen: &mut Seen) -> Result<ReadRow> {
        let ds = self.dataset(source)?;
        let (s, g, i) = ds.locate(row)?;
        let mut chunks = Vec::with_capacity(self.columns[source].len());
        for &c in &self.columns[source] {
            let key = (s, g, c);
            // A chunk read for this batch's rows only (an image chunk on object storage).
            let sparse = seen
                .sparse
                .iter()
                .find(|(src, k, sc)| *src == source && *k == key && sc.rows.contains(&i));
            if let Some((_, _, sc)) = sparse {
                chunks.push(sc.chunk.clone());
                continue;
            }
            let seen = &mut seen.whole;
            let chunk = match seen.iter().find(|(src, k, _)| *src == source && *k == key) {
                Some((_, _, Ok(ch))) => ch.clone(),
                Some((_, _, Err(e))) => return Err(e.duplicate()),
                None => {
                    let res = ds.chunk(key);
                    seen.push((
                        source,
                        key,
                        res.as_ref().map(Arc::clone).map_err(Error::duplicate),
                    ));
                    res?
                }
            };
            // Blob chunks are verified page by page: this row's pages, here on the worker.
            if self.verify_blobs {
                chunk.check_value(i)?;
            }
            chunks.push(chunk);
        }
        let mut out = ReadRow {
            source,
            row,
            chunks,
            index: i,
            processed: None,
        };
        if let Some(stage) = &self.stage {
            out.processed = Some(match seen.buffer.as_mut() {
                Some(buffer) => stage.process_into(source, ds, &out, buffer, seen.slot)?,
                None => stage.process(source, ds, &out)?,
            });
        }
        Ok(out)
    }

    /// Reads `rows` in order, replacing or refusing bad ones as the policy says.
    pub fn read_batch(&self, rows: &[(usize, u64)]) -> Result<ReadBatch> {
        let mut batch = ReadBatch {
            rows: Vec::with_capacity(rows.len()),
            ..ReadBatch::default()
        };
        let mut seen = Seen {
            buffer: self.stage.as_ref().and_then(|s| s.begin_batch(rows.len())),
            ..Seen::default()
        };
        self.prefetch_remote(rows, &mut seen);
        for (slot, &(source, row)) in rows.iter().enumerate() {
            seen.slot = slot;
            let first = match self.read_row(source, row, &mut seen) {
                Ok(r) => r,
                Err(e) if !is_bad_sample(&e) => return Err(e),
                Err(e) => match self.on_bad_sample {
                    BadSamplePolicy::Raise => return Err(at_row(e, row)),
                    BadSamplePolicy::Replace { seed, max_attempts } => {
                        self.replace(source, row, e, seed, max_attempts, &mut batch, &mut seen)?
                    }
                },
            };
            batch.rows.push(first);
        }
        if let Some(stage) = &self.stage {
            stage.finish_batch(&mut batch, seen.buffer.take())?;
        }
        Ok(batch)
    }

    /// For datasets on object storage: reads every chunk the batch's rows need at once (all
    /// shards, all columns, in parallel), so the batch waits for the store's latency once.
    /// Image chunks not in the node cache yet are read sparsely (only this batch's rows; see
    /// `sparse.rs`) while a background thread reads them whole into the cache. Failures are
    /// kept for `read_row` to report against the row that needs the chunk.
    fn prefetch_remote(&self, rows: &[(usize, u64)], seen: &mut Seen) {
        for (source, ds) in self.datasets.iter().enumerate() {
            if !ds.is_remote() {
                continue;
            }
            let mut keys: std::collections::BTreeMap<ChunkKey, Vec<usize>> = Default::default();
            for &(src, row) in rows {
                if src != source {
                    continue;
                }
                let Ok((s, g, i)) = ds.locate(row) else {
                    continue;
                };
                for &c in &self.columns[source] {
                    keys.entry((s, g, c)).or_default().push(i);
                }
            }
            let (sparse, whole): (Vec<_>, Vec<_>) =
                keys.into_iter().partition(|(k, _)| ds.sparse_candidate(*k));
            let whole: Vec<ChunkKey> = whole.into_iter().map(|(k, _)| k).collect();
            for (key, res) in whole.iter().zip(ds.read_chunks(&whole)) {
                seen.whole.push((source, *key, res));
            }
            if sparse.is_empty() {
                continue;
            }
            for ((key, _), res) in sparse.iter().zip(ds.read_sparse(&sparse)) {
                // A failed sparse read is not reported here: the row reads the chunk whole.
                if let Ok(sc) = res {
                    seen.sparse.push((source, *key, sc));
                }
            }
            if ds.has_node_cache() {
                ds.fill_in_background(sparse.into_iter().map(|(k, _)| k).collect());
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn replace(
        &self,
        source: usize,
        row: u64,
        error: Error,
        seed: u64,
        max_attempts: u32,
        batch: &mut ReadBatch,
        seen: &mut Seen,
    ) -> Result<ReadRow> {
        let n = self.dataset(source)?.num_rows();
        let (location, reason) = describe(&error);
        let tries = match self.replacement_fits {
            Some(_) => max_attempts.saturating_mul(FIT_TRIES),
            None => max_attempts,
        };
        let mut read = 0;
        for attempt in 0..tries {
            let candidate = replacement_row(seed, source, row, attempt, n);
            if let Some(fits) = &self.replacement_fits {
                if !fits(source, row, candidate) {
                    continue;
                }
            }
            if read == max_attempts {
                break;
            }
            read += 1;
            match self.read_row(source, candidate, seen) {
                Ok(r) => {
                    batch.bad.push(BadSample {
                        position: batch.rows.len(),
                        source,
                        row,
                        replacement: candidate,
                        location,
                        reason,
                    });
                    return Ok(r);
                }
                Err(e) if is_bad_sample(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::BadSample {
            location,
            row,
            reason: if read < max_attempts {
                format!("{reason}; and no row that fits its packed row could replace it")
            } else {
                format!("{reason}; and {max_attempts} replacement rows were bad too")
            },
        })
    }
}

struct Turn {
    next: u64,
    source: Box<dyn RowSource>,
    done: bool,
}

struct Shared {
    turn: Mutex<Turn>,
    cv: Condvar,
    stop: AtomicBool,
}

struct Running {
    receivers: Vec<Receiver<Result<ReadBatch>>>,
    handles: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    next: u64,
    pid: u32,
}

/// An ordered, bounded, lazily started read-ahead over the rows of a [`RowSource`].
pub struct ReadAhead {
    reader: RowReader,
    options: ReadAheadOptions,
    source: Option<Box<dyn RowSource>>,
    running: Option<Running>,
    finished: bool,
}

impl ReadAhead {
    pub fn new(
        datasets: Vec<Arc<Dataset>>,
        columns: Vec<Vec<usize>>,
        source: Box<dyn RowSource>,
        options: ReadAheadOptions,
    ) -> Result<Self> {
        if columns.len() != datasets.len() {
            return Err(Error::InvalidArgument(
                "one column list per dataset is needed".into(),
            ));
        }
        let options = ReadAheadOptions {
            batch_rows: options.batch_rows.max(1),
            threads: options.threads.max(1),
            depth: options.depth.max(1),
            ..options
        };
        Ok(ReadAhead {
            reader: RowReader {
                datasets: Arc::new(datasets),
                columns: Arc::new(columns),
                verify_blobs: options.verify_blobs,
                on_bad_sample: options.on_bad_sample,
                stage: None,
                replacement_fits: None,
            },
            options,
            source: Some(source),
            running: None,
            finished: false,
        })
    }

    /// Runs `stage` on every row on the read threads (before the first batch only).
    pub fn with_stage(mut self, stage: Arc<dyn SampleStage>) -> Self {
        self.reader.stage = Some(stage);
        self
    }

    /// Under `Replace`, replace a bad row only by rows `fits` accepts (before the first batch).
    pub fn with_replacement_fits(mut self, fits: ReplacementFits) -> Self {
        self.reader.replacement_fits = Some(fits);
        self
    }

    pub fn options(&self) -> ReadAheadOptions {
        self.options
    }

    /// Whether the background threads have been started.
    pub fn started(&self) -> bool {
        self.running.is_some()
    }

    fn start(&mut self) -> Result<()> {
        let mut source = self.source.take().expect("started once");
        let (mut left, mut scratch) = (self.options.skip, Vec::new());
        while left > 0 {
            scratch.clear();
            source.next_rows(left.min(1 << 16) as usize, &mut scratch)?;
            if scratch.is_empty() {
                break;
            }
            left -= scratch.len() as u64;
        }
        let shared = Arc::new(Shared {
            turn: Mutex::new(Turn {
                next: 0,
                source,
                done: false,
            }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let (n, depth) = (self.options.threads, self.options.depth);
        let mut receivers = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for t in 0..n {
            let (tx, rx) = sync_channel::<Result<ReadBatch>>(depth);
            let shared = shared.clone();
            let reader = self.reader.clone();
            let batch_rows = self.options.batch_rows;
            let handle = std::thread::Builder::new()
                .name(format!("pixmo-read-{t}"))
                .spawn(move || {
                    // A panic here must reach the consumer as an error: a thread that just
                    // stops would look like the end of the stream.
                    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let mut rows = Vec::with_capacity(batch_rows.min(1 << 16));
                        let (mut groups, mut epochs) = (Vec::new(), Vec::new());
                        loop {
                            rows.clear();
                            {
                                let mut turn =
                                    shared.turn.lock().unwrap_or_else(|e| e.into_inner());
                                while turn.next % n as u64 != t as u64
                                    && !shared.stop.load(Ordering::Relaxed)
                                {
                                    turn = shared.cv.wait(turn).unwrap_or_else(|e| e.into_inner());
                                }
                                if shared.stop.load(Ordering::Relaxed) {
                                    return;
                                }
                                let res = if turn.done {
                                    Ok(())
                                } else {
                                    turn.source.next_rows(batch_rows, &mut rows)
                                };
                                turn.source.take_marks(&mut groups, &mut epochs);
                                if rows.is_empty() || res.is_err() {
                                    turn.done = true;
                                }
                                turn.next += 1;
                                shared.cv.notify_all();
                                if let Err(e) = res {
                                    let _ = tx.send(Err(e));
                                    return;
                                }
                            }
                            if rows.is_empty() {
                                // An empty batch tells the consumer the stream ended.
                                let _ = tx.send(Ok(ReadBatch::default()));
                                return;
                            }
                            let batch = reader.read_batch(&rows).map(|mut b| {
                                b.groups = std::mem::take(&mut groups);
                                b.epochs = std::mem::take(&mut epochs);
                                b
                            });
                            let failed = batch.is_err();
                            if tx.send(batch).is_err() || failed {
                                return;
                            }
                        }
                    }));
                    if let Err(payload) = panicked {
                        shared.stop.store(true, Ordering::Relaxed);
                        let _ = tx.send(Err(Error::Internal(format!(
                            "a read-ahead thread panicked: {}",
                            panic_message(&*payload)
                        ))));
                    }
                })
                .map_err(|e| Error::InvalidArgument(format!("cannot start a read thread: {e}")))?;
            receivers.push(rx);
            handles.push(handle);
        }
        self.running = Some(Running {
            receivers,
            handles,
            shared,
            next: 0,
            pid: std::process::id(),
        });
        Ok(())
    }

    /// The next batch in plan order, or `None` at the end. Blocks until it is ready.
    pub fn next_batch(&mut self) -> Result<Option<ReadBatch>> {
        if self.finished {
            return Ok(None);
        }
        if self.running.is_none() {
            self.start()?;
        }
        let running = self.running.as_mut().expect("started");
        if running.pid != std::process::id() {
            return Err(Error::InvalidArgument(
                "this stream was started in another process (fork); iterate it where it was created"
                    .into(),
            ));
        }
        let i = (running.next % running.receivers.len() as u64) as usize;
        running.next += 1;
        match running.receivers[i].recv() {
            Ok(Ok(batch)) if !batch.rows.is_empty() => Ok(Some(batch)),
            Ok(Err(e)) => {
                self.finished = true;
                Err(e)
            }
            Ok(Ok(_)) => {
                self.finished = true;
                Ok(None)
            }
            Err(_) => {
                self.finished = true;
                Err(Error::Internal(
                    "a read-ahead thread stopped without ending the stream".into(),
                ))
            }
        }
    }
}

/// The text of a panic's payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shared.stop.store(true, Ordering::Relaxed);
            {
                let _guard = running
                    .shared
                    .turn
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                running.shared.cv.notify_all();
            }
            // Dropping the receivers unblocks threads waiting to send.
            drop(running.receivers);
            if running.pid == std::process::id() {
                for h in running.handles {
                    let _ = h.join();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting {
        next: u64,
        end: u64,
    }

    impl RowSource for Counting {
        fn next_rows(&mut self, n: usize, out: &mut Vec<(usize, u64)>) -> Result<()> {
            while out.len() < n && self.next < self.end {
                out.push((0, self.next));
                self.next += 1;
            }
            Ok(())
        }
    }

    struct Panicking;

    impl RowSource for Panicking {
        fn next_rows(&mut self, _: usize, _: &mut Vec<(usize, u64)>) -> Result<()> {
            panic!("row source broke");
        }
    }

    #[test]
    fn a_panicking_thread_fails_the_stream_instead_of_ending_it() {
        let mut ra = ReadAhead::new(
            vec![],
            vec![],
            Box::new(Panicking),
            ReadAheadOptions {
                batch_rows: usize::MAX, // not allocated for up front
                ..ReadAheadOptions::default()
            },
        )
        .unwrap();
        match ra.next_batch() {
            Err(Error::Internal(m)) => assert!(m.contains("row source broke"), "{m}"),
            other => panic!(
                "expected an internal error, got {:?}",
                other.map(|b| b.is_some())
            ),
        }
        assert!(matches!(ra.next_batch(), Ok(None)));
    }

    #[test]
    fn drop_before_start_and_while_running() {
        let ra = ReadAhead::new(
            vec![],
            vec![],
            Box::new(Counting { next: 0, end: 0 }),
            ReadAheadOptions::default(),
        )
        .unwrap();
        assert!(!ra.started());
        drop(ra);
        // No dataset: the first non-empty batch fails, in order, and the stream ends.
        let mut ra = ReadAhead::new(
            vec![],
            vec![],
            Box::new(Counting { next: 0, end: 1000 }),
            ReadAheadOptions {
                batch_rows: 3,
                threads: 3,
                depth: 1,
                skip: 0,
                verify_blobs: true,
                on_bad_sample: BadSamplePolicy::Raise,
            },
        )
        .unwrap();
        assert!(ra.next_batch().is_err());
        assert!(ra.next_batch().unwrap().is_none());
        let mut ra = ReadAhead::new(
            vec![],
            vec![],
            Box::new(Counting { next: 0, end: 0 }),
            ReadAheadOptions::default(),
        )
        .unwrap();
        assert!(ra.next_batch().unwrap().is_none());
        assert!(ra.next_batch().unwrap().is_none());
    }
}
