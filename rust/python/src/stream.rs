//! `_native.ReadAhead`: the core read-ahead stage over one dataset's epoch plan or a mixture.
//! Reading, verifying and decompressing happen on background threads; `next_batch` waits for
//! the next ready batch with the GIL released and only builds the Python objects.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pixmo_stream_core::storage::OpenOptions;

use pixmo_stream_core::plan::{ConsumerRows, EpochPlan, ShuffleOptions};
use pixmo_stream_core::sample::{BadSample, BadSamplePolicy};
use pixmo_stream_core::stream::{
    DrawnRows, ReadAhead, ReadAheadOptions, ReadBatch, ReplacementFits, RowSource,
};
use pixmo_stream_core::Dataset;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::convert::{node_to_py, Helpers, ReadCtx};
use crate::decoded::{batch_images, image_stage, row_values, DecodeSpec};
use crate::errors::IntoPyResult;
use crate::plan::{make_split, mixture_rows, mixture_sources};

pub(crate) struct SourceMeta {
    pub(crate) dataset: Arc<Dataset>,
    columns: Vec<usize>,
    keys: Vec<Py<PyString>>,
}

#[pyclass(name = "ReadAhead", module = "pixmo_stream._native")]
pub struct PyReadAhead {
    // A Mutex only to make the class Sync; calls are serialised by the borrow checker anyway.
    inner: Mutex<ReadAhead>,
    sources: Vec<SourceMeta>,
    helpers: Helpers,
    /// Binary values come back as zero-copy `Blob`s (pickled as `bytes` across processes).
    zero_copy: bool,
    /// The column whose images the read threads decode (its values become arrays).
    image_key: Option<Py<PyString>>,
}

impl Drop for PyReadAhead {
    /// Joining the read threads may wait for the store: done with the GIL released.
    fn drop(&mut self) {
        Python::attach(|py| self.close(py));
    }
}

/// How a dataset on object storage is opened, as Python gives it: the store's options, and
/// the node cache's directory and size limit (None: no cache).
pub type StorageArg = (BTreeMap<String, String>, Option<(PathBuf, u64)>);

pub fn open_options(arg: Option<StorageArg>) -> OpenOptions {
    match arg {
        None => OpenOptions::default(),
        Some((storage, cache)) => OpenOptions { storage, cache },
    }
}

/// A manifest's identity as Python holds it: `Dataset.manifest_hash`.
pub(crate) type ManifestId = u64;

/// Opens each source; with `expect`, each must still be the dataset whose manifest the caller
/// saw (a StreamingDataset's plan was made from that dataset's layout).
pub(crate) fn open_sources(
    py: Python<'_>,
    paths: Vec<String>,
    columns: Vec<Option<Vec<String>>>,
    expect: Option<Vec<Option<ManifestId>>>,
    storage: Option<Vec<Option<StorageArg>>>,
) -> PyResult<Vec<SourceMeta>> {
    let mut out = Vec::with_capacity(paths.len());
    for (i, (path, cols)) in paths.into_iter().zip(columns).enumerate() {
        let opts = open_options(storage.as_ref().and_then(|s| s.get(i)).cloned().flatten());
        let ds = py.detach(|| Dataset::open_with(&path, &opts)).py_err()?;
        if let Some(want) = expect.as_ref().and_then(|e| e.get(i)) {
            let now = ds.manifest_hash();
            if now != *want {
                return Err(pixmo_stream_core::Error::Changed {
                    path: path.into(),
                    reason: "the dataset was rewritten after this StreamingDataset was made \
                             (its manifest.json changed); make a new StreamingDataset"
                        .into(),
                })
                .py_err();
            }
        }
        let idx = ds.column_indices(cols.as_deref()).py_err()?;
        let keys = idx
            .iter()
            .map(|&c| PyString::intern(py, &ds.schema().fields[c].name).unbind())
            .collect();
        out.push(SourceMeta {
            dataset: Arc::new(ds),
            columns: idx,
            keys,
        });
    }
    Ok(out)
}

/// Several datasets read as one, where global row ids count through them in order: the row
/// counts of all their row groups, and the first global row of each dataset (plus the total).
pub(crate) fn concatenated(sources: &[SourceMeta]) -> (Vec<u64>, Vec<u64>) {
    let mut layout: Vec<u64> = Vec::new();
    let mut starts = vec![0u64];
    for s in sources {
        layout.extend(s.dataset.row_groups().iter().map(|g| g.num_rows));
        starts.push(starts.last().unwrap() + s.dataset.num_rows());
    }
    (layout, starts)
}

pub(crate) fn build(
    py: Python<'_>,
    sources: Vec<SourceMeta>,
    rows: Box<dyn RowSource>,
    options: ReadAheadOptions,
    decode: Option<DecodeSpec>,
    fits: Option<ReplacementFits>,
) -> PyResult<PyReadAhead> {
    let datasets = sources.iter().map(|s| s.dataset.clone()).collect();
    let columns = sources.iter().map(|s| s.columns.clone()).collect();
    let mut inner = ReadAhead::new(datasets, columns, rows, options).py_err()?;
    if let Some(fits) = fits {
        inner = inner.with_replacement_fits(fits);
    }
    let mut image_key = None;
    if let Some(spec) = &decode {
        let projected: Vec<Vec<String>> = sources
            .iter()
            .map(|s| {
                let fields = &s.dataset.schema().fields;
                s.columns.iter().map(|&c| fields[c].name.clone()).collect()
            })
            .collect();
        inner = inner.with_stage(Arc::new(image_stage(spec, &projected)?));
        image_key = Some(PyString::intern(py, &spec.5).unbind());
    }
    Ok(PyReadAhead {
        inner: Mutex::new(inner),
        sources,
        helpers: Helpers::load(py)?,
        zero_copy: true,
        image_key,
    })
}

#[pymethods]
impl PyReadAhead {
    /// The rows one consumer reads from one dataset's epoch (see `EpochPlan.consumer_rows`).
    /// No thread starts before the first `next_batch`.
    #[staticmethod]
    #[pyo3(signature = (paths, columns=None, *, seed=0, epoch=0, shuffle=true, window_rows=16384,
        start=0, world_size=1, rank=0, num_workers=1, worker=0, block=1, pad=false,
        batch_rows=64, threads=2, depth=2, skip=0, verify_blobs=true, expect=None,
        replace=None, decode=None, storage=None))]
    #[allow(clippy::too_many_arguments)]
    fn for_plan(
        py: Python<'_>,
        paths: Vec<String>,
        columns: Option<Vec<String>>,
        seed: u64,
        epoch: u64,
        shuffle: bool,
        window_rows: u64,
        start: u64,
        world_size: u64,
        rank: u64,
        num_workers: u64,
        worker: u64,
        block: u64,
        pad: bool,
        batch_rows: usize,
        threads: usize,
        depth: usize,
        skip: u64,
        verify_blobs: bool,
        expect: Option<Vec<Option<ManifestId>>>,
        replace: Option<(u64, u32)>,
        decode: Option<DecodeSpec>,
        storage: Option<Vec<Option<StorageArg>>>,
    ) -> PyResult<Self> {
        let n = paths.len();
        let sources = open_sources(py, paths, vec![columns; n], expect, storage)?;
        let (layout, starts) = concatenated(&sources);
        let options = ShuffleOptions {
            shuffle,
            seed,
            window_rows,
        };
        let plan = EpochPlan::new(&layout, options, epoch).py_err()?;
        let split = make_split(
            plan.num_rows(),
            start,
            world_size,
            rank,
            num_workers,
            worker,
            block,
            pad,
        )?;
        let rows = ConcatRows {
            rows: Box::new(ConsumerRows::new(Arc::new(plan), split).py_err()?),
            starts,
        };
        build(
            py,
            sources,
            Box::new(rows),
            ReadAheadOptions {
                batch_rows,
                threads,
                depth,
                skip,
                verify_blobs,
                on_bad_sample: policy(replace),
            },
            decode,
            None,
        )
    }

    /// The draws one consumer of a mixture takes (see `MixtureRows`); `sources` are
    /// `(row_groups, seed, shuffle, window_rows, first_epoch)` tuples, one per path.
    #[staticmethod]
    #[pyo3(signature = (paths, columns, weights, seed, counts_at_start, sources, *, num_positions,
        start=0, world_size=1, rank=0, num_workers=1, worker=0, block=1,
        batch_rows=64, threads=2, depth=2, skip=0, verify_blobs=true, expect=None,
        replace=None, decode=None, storage=None))]
    #[allow(clippy::too_many_arguments)]
    fn for_mixture(
        py: Python<'_>,
        paths: Vec<String>,
        columns: Vec<Option<Vec<String>>>,
        weights: Vec<f64>,
        seed: u64,
        counts_at_start: Vec<u64>,
        sources: Vec<(Vec<u64>, u64, bool, u64, u64)>,
        num_positions: u64,
        start: u64,
        world_size: u64,
        rank: u64,
        num_workers: u64,
        worker: u64,
        block: u64,
        batch_rows: usize,
        threads: usize,
        depth: usize,
        skip: u64,
        verify_blobs: bool,
        expect: Option<Vec<Option<ManifestId>>>,
        replace: Option<(u64, u32)>,
        decode: Option<DecodeSpec>,
        storage: Option<Vec<Option<StorageArg>>>,
    ) -> PyResult<Self> {
        let metas = open_sources(py, paths, columns, expect, storage)?;
        let rows = mixture_rows(
            &weights,
            seed,
            &counts_at_start,
            mixture_sources(sources),
            num_positions,
            start,
            world_size,
            rank,
            num_workers,
            worker,
            block,
        )?;
        build(
            py,
            metas,
            Box::new(DrawnRows::new(rows)),
            ReadAheadOptions {
                batch_rows,
                threads,
                depth,
                skip,
                verify_blobs,
                on_bad_sample: policy(replace),
            },
            decode,
            None,
        )
    }

    /// The next batch as `(records, sources, rows, bad, images, groups, epochs)`, or `None` at
    /// the end of the stream; `rows` are the rows read (replacements included), `bad` the
    /// replaced rows, `images` the batch's decoded images as one `[N, H, W, 3]` array when they
    /// have one fixed size (each record's image is then a view of it), else `None`; `groups`
    /// the examples per packed row (empty unpacked), `epochs` the epoch each row was drawn in
    /// (a mixture's; else empty).
    #[allow(clippy::type_complexity)]
    fn next_batch<'py>(&self, py: Python<'py>) -> PyResult<Option<NextBatch<'py>>> {
        let batch = py
            .detach(|| {
                self.inner
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .next_batch()
            })
            .py_err()?;
        let Some(batch) = batch else { return Ok(None) };
        let ReadBatch {
            rows: read,
            bad,
            assembled,
            groups,
            epochs,
        } = batch;
        let images = match assembled {
            Some(v) => batch_images(py, v)?,
            None => None,
        };
        let records = PyList::empty(py);
        let mut sources = Vec::with_capacity(read.len());
        let mut rows = Vec::with_capacity(read.len());
        for (i, mut r) in read.into_iter().enumerate() {
            let meta = &self.sources[r.source];
            let fields = &meta.dataset.schema().fields;
            let d = PyDict::new(py);
            for ((&c, key), chunk) in meta.columns.iter().zip(&meta.keys).zip(&r.chunks) {
                let ctx = ReadCtx {
                    helpers: &self.helpers,
                    bytes: &chunk.bytes,
                    pages: chunk.pages.as_ref(),
                    zero_copy: self.zero_copy,
                };
                let v = node_to_py(
                    py,
                    &ctx,
                    &fields[c].dtype,
                    &chunk.root,
                    chunk.raw(),
                    r.index,
                )?;
                d.set_item(key.bind(py), v)?;
            }
            if let Some(key) = &self.image_key {
                // The row's slot of the batch's gathered images, where they were written.
                let slot = images.as_ref().map(|all| all.get_item(i)).transpose()?;
                match (slot, r.processed.take()) {
                    (Some(slot), None) => d.set_item(key.bind(py), slot)?,
                    (slot, Some(v)) => {
                        for (suffix, value) in row_values(py, v, slot.as_ref())? {
                            if suffix.is_empty() {
                                d.set_item(key.bind(py), value)?;
                            } else {
                                let name = format!("{}{suffix}", key.bind(py).to_str()?);
                                d.set_item(PyString::intern(py, &name), value)?;
                            }
                        }
                    }
                    (None, None) => {}
                }
            }
            records.append(d)?;
            sources.push(r.source);
            rows.push(r.row);
        }
        let bad = bad.iter().map(bad_to_py).collect();
        Ok(Some((records, sources, rows, bad, images, groups, epochs)))
    }

    /// Whether the background threads have started (they start on the first `next_batch`).
    #[getter]
    fn started(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .started()
    }

    /// Stops and joins the background threads now (also done when the object is freed).
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let empty =
                ReadAhead::new(vec![], vec![], Box::new(Empty), ReadAheadOptions::default())
                    .expect("valid");
            drop(std::mem::replace(&mut *inner, empty));
        });
    }
}

/// What `next_batch` returns: `(records, sources, rows, bad, images, groups, epochs)`.
type NextBatch<'py> = (
    Bound<'py, PyList>,
    Vec<usize>,
    Vec<u64>,
    Vec<PyBadSample>,
    Option<Bound<'py, PyAny>>,
    Vec<u32>,
    Vec<u64>,
);

/// `replace`: `(seed, max_attempts)` to replace bad samples, `None` to raise.
pub(crate) fn policy(replace: Option<(u64, u32)>) -> BadSamplePolicy {
    match replace {
        Some((seed, max_attempts)) => BadSamplePolicy::Replace { seed, max_attempts },
        None => BadSamplePolicy::Raise,
    }
}

/// A replaced row as Python sees it: `(position in the batch, source, row, replacement, path,
/// row_group, column, reason)`.
type PyBadSample = (
    usize,
    usize,
    u64,
    u64,
    String,
    Option<usize>,
    Option<String>,
    String,
);

fn bad_to_py(b: &BadSample) -> PyBadSample {
    (
        b.position,
        b.source,
        b.row,
        b.replacement,
        b.location.path.display().to_string(),
        b.location.row_group,
        b.location.column.clone(),
        b.reason.clone(),
    )
}

/// Rows of several datasets read as one: global row ids (of source 0) to `(path, row)`.
pub(crate) struct ConcatRows {
    pub rows: Box<dyn RowSource>,
    /// First global row of each path, then the total.
    pub starts: Vec<u64>,
}

impl RowSource for ConcatRows {
    fn next_rows(
        &mut self,
        n: usize,
        out: &mut Vec<(usize, u64)>,
    ) -> pixmo_stream_core::Result<()> {
        let first = out.len();
        self.rows.next_rows(n, out)?;
        for pair in &mut out[first..] {
            let r = pair.1;
            let s = self.starts.partition_point(|&x| x <= r) - 1;
            *pair = (s, r - self.starts[s]);
        }
        Ok(())
    }

    fn take_marks(&mut self, groups: &mut Vec<u32>, epochs: &mut Vec<u64>) {
        self.rows.take_marks(groups, epochs);
    }
}

struct Empty;

impl RowSource for Empty {
    fn next_rows(
        &mut self,
        _n: usize,
        _out: &mut Vec<(usize, u64)>,
    ) -> pixmo_stream_core::Result<()> {
        Ok(())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyReadAhead>()
}
