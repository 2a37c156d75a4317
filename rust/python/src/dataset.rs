//! `_native.Dataset`: random access, projection and verification over a core `Dataset`.

use crate::convert::{node_to_py, Helpers, ReadCtx};
use crate::errors::IntoPyResult;
use pixmo_stream_core::dataset::{ChunkKey, RowGroupInfo};
use pixmo_stream_core::decode::ColumnChunk;
use pixmo_stream_core::Dataset;
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

#[pyclass(name = "Dataset", module = "pixmo_stream._native", frozen)]
pub struct PyDataset {
    inner: Arc<Dataset>,
    helpers: Helpers,
    keys: Vec<Py<PyString>>,
    layout: Vec<RowGroupInfo>,
    zero_copy: bool,
}

impl PyDataset {
    fn columns(&self, columns: Option<Vec<String>>) -> PyResult<Vec<usize>> {
        self.inner.column_indices(columns.as_deref()).py_err()
    }

    /// Record `row` of `chunks` (one per column of `cols`, owned or borrowed).
    fn row_dict<'py, C: std::borrow::Borrow<ColumnChunk>>(
        &self,
        py: Python<'py>,
        cols: &[usize],
        chunks: &[C],
        row: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let fields = &self.inner.schema().fields;
        for (&c, chunk) in cols.iter().zip(chunks) {
            let chunk = chunk.borrow();
            let ctx = ReadCtx {
                helpers: &self.helpers,
                bytes: &chunk.bytes,
                pages: chunk.pages.as_ref(),
                zero_copy: self.zero_copy,
            };
            let v = node_to_py(py, &ctx, &fields[c].dtype, &chunk.root, chunk.raw(), row)?;
            d.set_item(self.keys[c].bind(py), v)?;
        }
        Ok(d)
    }

    fn normalize(&self, i: i64) -> PyResult<u64> {
        let n = self.inner.num_rows() as i64;
        let j = if i < 0 { i + n } else { i };
        if j < 0 || j >= n {
            return Err(PyIndexError::new_err(format!(
                "index {i} out of range for a dataset of {n} rows"
            )));
        }
        Ok(j as u64)
    }
}

#[pymethods]
impl PyDataset {
    #[new]
    #[pyo3(signature = (path, zero_copy=true, storage=None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        zero_copy: bool,
        storage: Option<crate::stream::StorageArg>,
    ) -> PyResult<Self> {
        let opts = crate::stream::open_options(storage);
        let path = path.to_string_lossy().into_owned();
        let inner = py.detach(|| Dataset::open_with(&path, &opts)).py_err()?;
        let keys = inner
            .schema()
            .fields
            .iter()
            .map(|f| PyString::intern(py, &f.name).unbind())
            .collect();
        let layout = inner.row_groups();
        Ok(PyDataset {
            zero_copy,
            inner: Arc::new(inner),
            helpers: Helpers::load(py)?,
            keys,
            layout,
        })
    }

    fn __len__(&self) -> usize {
        self.inner.num_rows() as usize
    }

    #[getter]
    fn path(&self) -> String {
        self.inner.path().to_string_lossy().into_owned()
    }

    /// Is the dataset read from object storage?
    #[getter]
    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }

    fn schema_json(&self) -> String {
        self.inner.schema().to_json()
    }

    /// The writer's `metadata` (from the manifest; empty for a single shard).
    #[getter]
    fn metadata(&self) -> std::collections::BTreeMap<String, String> {
        self.inner.metadata().clone()
    }

    /// The XXH3-64 of the manifest this dataset was opened from, or None for a single shard:
    /// how a reader opened later checks it reads the same dataset.
    #[getter]
    fn manifest_hash(&self) -> Option<u64> {
        self.inner.manifest_hash()
    }

    #[getter]
    fn num_shards(&self) -> usize {
        self.inner.num_shards()
    }

    #[getter]
    fn num_row_groups(&self) -> usize {
        self.layout.len()
    }

    /// `[(shard, row_group, first_row, num_rows), ...]` in dataset order.
    fn row_group_layout(&self) -> Vec<(usize, usize, u64, u64)> {
        self.layout
            .iter()
            .map(|g| (g.shard, g.row_group, g.first_row, g.num_rows))
            .collect()
    }

    /// Records at `indices` (negative counts from the end), in that order.
    #[pyo3(signature = (indices, columns=None))]
    fn take<'py>(
        &self,
        py: Python<'py>,
        indices: Vec<i64>,
        columns: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let cols = self.columns(columns)?;
        let rows: Vec<u64> = indices
            .iter()
            .map(|&i| self.normalize(i))
            .collect::<PyResult<_>>()?;
        let ds = self.inner.clone();
        let cols2 = cols.clone();
        // Locate, verify and decompress with the GIL released; build objects after.
        let (located, chunks) = py
            .detach(move || -> pixmo_stream_core::Result<_> {
                let mut located = Vec::with_capacity(rows.len());
                let mut chunks: HashMap<ChunkKey, Arc<ColumnChunk>> = HashMap::new();
                if ds.is_remote() {
                    // Every chunk the rows need, in one batch of requests.
                    let mut keys: Vec<ChunkKey> = Vec::new();
                    for &r in &rows {
                        let (s, g, _) = ds.locate(r)?;
                        keys.extend(cols2.iter().map(|&c| (s, g, c)));
                    }
                    keys.sort_unstable();
                    keys.dedup();
                    for (k, c) in keys.iter().zip(ds.read_chunks(&keys)) {
                        chunks.insert(*k, c?);
                    }
                }
                for &r in &rows {
                    let (s, g, i) = ds.locate(r)?;
                    for &c in &cols2 {
                        use std::collections::hash_map::Entry;
                        let chunk = match chunks.entry((s, g, c)) {
                            Entry::Occupied(e) => e.get().clone(),
                            Entry::Vacant(e) => e.insert(ds.chunk((s, g, c))?).clone(),
                        };
                        // The pages of this value only (blob chunks), off the GIL.
                        chunk.check_value(i)?;
                    }
                    located.push((s, g, i));
                }
                Ok((located, chunks))
            })
            .py_err()?;
        let out = PyList::empty(py);
        let mut row_chunks: Vec<&ColumnChunk> = Vec::with_capacity(cols.len());
        for (s, g, i) in located {
            row_chunks.clear();
            row_chunks.extend(cols.iter().map(|&c| chunks[&(s, g, c)].as_ref()));
            out.append(self.row_dict(py, &cols, &row_chunks, i)?)?;
        }
        Ok(out)
    }

    /// One record.
    #[pyo3(signature = (index, columns=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        index: i64,
        columns: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.take(py, vec![index], columns)?.get_item(0)
    }

    /// An iterator of row groups in storage order (each a list of records), read ahead by
    /// background threads: while Python builds the records of one row group, the next ones
    /// are decompressed and checked. The threads start at the first `next` and stop with the
    /// iterator.
    #[pyo3(signature = (columns=None))]
    fn iter_row_groups(
        slf: &Bound<'_, Self>,
        columns: Option<Vec<String>>,
    ) -> PyResult<PyRowGroupIter> {
        Self::row_group_iter(slf, columns, false)
    }

    /// The same, one record at a time: a record is made when it is asked for, so only the
    /// records the caller holds are alive (with a list per row group, the cyclic garbage
    /// collector keeps finding a row group's records alive and promoting them, and soon runs
    /// a full collection of the whole process).
    #[pyo3(signature = (columns=None))]
    fn iter_rows(slf: &Bound<'_, Self>, columns: Option<Vec<String>>) -> PyResult<PyRowGroupIter> {
        Self::row_group_iter(slf, columns, true)
    }

    /// Checks every chunk; returns `(chunks_checked, [error messages])`.
    fn verify(&self, py: Python<'_>) -> (usize, Vec<String>) {
        let ds = self.inner.clone();
        let (n, errors) = py.detach(move || ds.verify());
        (n, errors.iter().map(|e| e.to_string()).collect())
    }

    /// A JSON description of shards, row groups and chunks (opens every shard).
    fn info_json(&self, py: Python<'_>) -> PyResult<String> {
        let ds = self.inner.clone();
        py.detach(move || -> pixmo_stream_core::Result<String> {
            let mut shards = Vec::new();
            for s in 0..ds.num_shards() {
                let r = ds.shard(s)?;
                let groups: Vec<serde_json::Value> = r
                    .footer
                    .row_groups
                    .iter()
                    .map(|g| {
                        serde_json::json!({
                            "num_rows": g.num_rows,
                            "columns": g.columns.iter().zip(&ds.schema().fields).map(|(m, f)| serde_json::json!({
                                "name": f.name, "codec": m.codec.name(),
                                "stored_len": m.stored_len, "raw_len": m.raw_len,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                shards.push(serde_json::json!({
                    "file": r.path.file_name().map(|n| n.to_string_lossy().to_string()),
                    "num_rows": r.num_rows(), "num_bytes": r.file_len(), "row_groups": groups,
                }));
            }
            Ok(serde_json::json!({
                "path": ds.path().display().to_string(),
                "num_rows": ds.num_rows(),
                "num_bytes": shards.iter().map(|s| s["num_bytes"].as_u64().unwrap_or(0)).sum::<u64>(),
                "schema": ds.schema(),
                "metadata": ds.metadata(),
                "shards": shards,
            })
            .to_string())
        })
        .py_err()
    }
}

impl PyDataset {
    fn row_group_iter(
        slf: &Bound<'_, Self>,
        columns: Option<Vec<String>>,
        by_row: bool,
    ) -> PyResult<PyRowGroupIter> {
        let cols = slf.get().columns(columns)?;
        Ok(PyRowGroupIter {
            dataset: slf.clone().unbind(),
            cols,
            rx: Vec::new(),
            workers: Vec::new(),
            pid: std::process::id(),
            next: 0,
            by_row,
            current: None,
        })
    }
}

type Prefetched = pixmo_stream_core::Result<(RowGroupInfo, Vec<ColumnChunk>)>;

/// How many decoded row groups may wait ahead of the consumer, per reading thread.
const PREFETCH_DEPTH: usize = 1;
/// Reading threads of one iterator (at most; fewer on fewer cores).
const PREFETCH_THREADS: usize = 2;
/// Reading threads of one iterator over a dataset on object storage (each mostly waits).
const REMOTE_THREADS: usize = 8;

#[pyclass(name = "RowGroupIter", module = "pixmo_stream._native")]
pub struct PyRowGroupIter {
    dataset: Py<PyDataset>,
    cols: Vec<usize>,
    /// One channel per worker; worker `k` of `n` reads row groups `k, k + n, ...`, so taking
    /// from the channels in turn keeps storage order. A Mutex only so that a receiver can be
    /// waited on with the GIL released.
    rx: Vec<std::sync::Mutex<std::sync::mpsc::Receiver<Prefetched>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// The process that started the workers.
    pid: u32,
    next: usize,
    /// One record per `next` (else one list per row group)...
    by_row: bool,
    /// ...from this row group, from this row on.
    current: Option<(RowGroupInfo, Vec<ColumnChunk>, usize)>,
}

impl PyRowGroupIter {
    fn start(&mut self) {
        let ds = self.dataset.get();
        self.pid = std::process::id();
        // On object storage the threads mostly wait for the store: more of them hide latency.
        let n = if ds.inner.is_remote() {
            REMOTE_THREADS
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, PREFETCH_THREADS)
        };
        for k in 0..n {
            let (inner, cols) = (ds.inner.clone(), self.cols.clone());
            let groups: Vec<RowGroupInfo> = ds.layout.iter().skip(k).step_by(n).copied().collect();
            let (tx, rx) = std::sync::mpsc::sync_channel::<Prefetched>(PREFETCH_DEPTH);
            self.workers.push(std::thread::spawn(move || {
                for g in groups {
                    // Blob pages are not read here: a zero-copy `Blob` verifies its pages when
                    // its bytes are first read (a copy, before it is made), so a scan that does
                    // not read the images never touches them.
                    let item = inner
                        .read_group_uncached(g.shard, g.row_group, &cols)
                        .map(|chunks| (g, chunks));
                    let failed = item.is_err();
                    if tx.send(item).is_err() || failed {
                        return;
                    }
                }
            }));
            self.rx.push(std::sync::Mutex::new(rx));
        }
    }
}

#[pymethods]
impl PyRowGroupIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if self.by_row {
            loop {
                if let Some((g, chunks, row)) = &mut self.current {
                    if *row < g.num_rows as usize {
                        let rec = self.dataset.get().row_dict(py, &self.cols, chunks, *row)?;
                        *row += 1;
                        return Ok(Some(rec.into_any()));
                    }
                }
                match self.next_group(py)? {
                    Some((g, chunks)) => self.current = Some((g, chunks, 0)),
                    None => {
                        self.current = None;
                        return Ok(None);
                    }
                }
            }
        }
        let Some((g, chunks)) = self.next_group(py)? else {
            return Ok(None);
        };
        let ds = self.dataset.get();
        let out = PyList::empty(py);
        for i in 0..g.num_rows as usize {
            out.append(ds.row_dict(py, &self.cols, &chunks, i)?)?;
        }
        Ok(Some(out.into_any()))
    }
}

impl PyRowGroupIter {
    /// The next row group's chunks, in storage order; `None` at the end.
    fn next_group(&mut self, py: Python<'_>) -> PyResult<Option<(RowGroupInfo, Vec<ColumnChunk>)>> {
        if self.workers.is_empty() {
            if self.dataset.get().layout.is_empty() {
                return Ok(None);
            }
            self.start();
        }
        let rx = &self.rx[self.next % self.rx.len()];
        let Ok(item) = py.detach(|| rx.lock().unwrap().recv()) else {
            return Ok(None); // every row group was read (or reading stopped at an error)
        };
        self.next += 1;
        item.py_err().map(Some)
    }
}

impl Drop for PyRowGroupIter {
    fn drop(&mut self) {
        // Closing the channel stops the worker after the row group it is reading.
        self.rx.clear();
        let workers = std::mem::take(&mut self.workers);
        if workers.is_empty() || self.pid != std::process::id() {
            return; // a forked child: the threads are the parent's
        }
        // A worker may be waiting for the store (up to its request timeout): the GIL is
        // released meanwhile, so the interpreter's other threads go on.
        Python::attach(|py| {
            py.detach(|| {
                for w in workers {
                    let _ = w.join();
                }
            })
        });
    }
}
