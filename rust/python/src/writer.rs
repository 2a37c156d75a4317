//! `_native.Writer`: records (dicts) in, a dataset directory out.

use crate::convert::{record_to_values, Helpers};
use crate::errors::IntoPyResult;
use pixmo_stream_core::chunk::Codec;
use pixmo_stream_core::{DatasetWriter, Error, Schema, WriterOptions};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

#[pyclass(name = "Writer", module = "pixmo_stream._native")]
pub struct PyWriter {
    inner: DatasetWriter,
    helpers: Helpers,
}

#[pymethods]
impl PyWriter {
    #[new]
    #[pyo3(signature = (path, schema_json, *, shard_bytes, row_group_bytes, row_group_rows, zstd_level, codecs, overwrite, metadata, storage_options=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        schema_json: &str,
        shard_bytes: u64,
        row_group_bytes: usize,
        row_group_rows: usize,
        zstd_level: i32,
        codecs: HashMap<String, String>,
        overwrite: bool,
        metadata: BTreeMap<String, String>,
        storage_options: Option<BTreeMap<String, String>>,
    ) -> PyResult<Self> {
        let schema = Schema::from_json(schema_json).py_err()?;
        let codecs = codecs
            .into_iter()
            .map(|(k, v)| {
                Codec::parse(&v).map(|c| (k, c)).ok_or_else(|| {
                    PyValueError::new_err(format!("unknown codec '{v}' (use 'none' or 'zstd')"))
                })
            })
            .collect::<PyResult<_>>()?;
        let opts = WriterOptions {
            shard_bytes,
            row_group_bytes,
            row_group_rows,
            zstd_level,
            codecs,
            overwrite,
            metadata,
        };
        let inner = py
            .detach(|| {
                DatasetWriter::create_with(
                    &path.to_string_lossy(),
                    &storage_options.unwrap_or_default(),
                    schema,
                    opts,
                )
            })
            .py_err()?;
        Ok(PyWriter {
            inner,
            helpers: Helpers::load(py)?,
        })
    }

    /// Writes one record. A record that does not fit raises `SchemaError` and is not written;
    /// the writer stays usable.
    fn write(slf: &Bound<'_, Self>, record: &Bound<'_, PyAny>) -> PyResult<()> {
        borrow(slf)?.write_one(slf.py(), record)
    }

    fn write_many(slf: &Bound<'_, Self>, records: &Bound<'_, PyAny>) -> PyResult<u64> {
        let mut n = 0;
        for r in records.try_iter()? {
            borrow(slf)?.write_one(slf.py(), &r?)?;
            n += 1;
        }
        Ok(n)
    }

    #[getter]
    fn rows_written(&self) -> u64 {
        self.inner.rows_written()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Flushes, writes the manifest, returns `(path, num_rows, num_shards, num_bytes)`.
    fn close(slf: &Bound<'_, Self>) -> PyResult<(String, u64, usize, u64)> {
        let mut this = borrow(slf)?;
        let w = &mut this.inner;
        let s = slf.py().detach(|| w.close()).py_err()?;
        Ok((
            s.path.to_string_lossy().into_owned(),
            s.num_rows,
            s.num_shards,
            s.num_bytes,
        ))
    }

    /// Stops without writing a manifest: the directory is left as an unfinished dataset.
    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        borrow(slf)?.inner.abort();
        Ok(())
    }
}

/// The writer, or a clear error when another thread is inside one of its calls (a call
/// releases the GIL while it encodes and writes).
fn borrow<'py>(slf: &Bound<'py, PyWriter>) -> PyResult<PyRefMut<'py, PyWriter>> {
    slf.try_borrow_mut().map_err(|_| {
        PyRuntimeError::new_err(
            "this Writer is in use by another thread: a Writer is not thread-safe (give each \
             thread its own Writer, or serialise calls with a lock)",
        )
    })
}

impl PyWriter {
    fn write_one(&mut self, py: Python<'_>, record: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.inner.is_closed() {
            return Err(crate::errors::to_py(self.inner.closed_error()));
        }
        let values = record_to_values(&self.helpers, &self.inner.schema().fields, record)
            .map_err(|e: Error| crate::errors::to_py(e.at_record(self.inner.rows_written())))?;
        let w = &mut self.inner;
        py.detach(|| w.write(&values)).py_err()
    }
}
