//! `_native.Writer`: records (dicts) in, a dataset directory out.

use crate::convert::{record_to_values, Helpers};
use crate::errors::IntoPyResult;
use pixmo_stream_core::chunk::Codec;
use pixmo_stream_core::{DatasetWriter, Error, Schema, WriterOptions};
use pyo3::exceptions::PyValueError;
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
    #[pyo3(signature = (path, schema_json, *, shard_bytes, row_group_bytes, row_group_rows, zstd_level, codecs, overwrite, metadata))]
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
            .detach(|| DatasetWriter::create(&path, schema, opts))
            .py_err()?;
        Ok(PyWriter {
            inner,
            helpers: Helpers::load(py)?,
        })
    }

    /// Writes one record. A record that does not fit raises `SchemaError` and is not written;
    /// the writer stays usable.
    fn write(&mut self, py: Python<'_>, record: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.inner.is_closed() {
            return Err(PyValueError::new_err("write to a closed Writer"));
        }
        let values = record_to_values(&self.helpers, &self.inner.schema().fields, record)
            .map_err(|e: Error| crate::errors::to_py(e.at_record(self.inner.rows_written())))?;
        let w = &mut self.inner;
        py.detach(|| w.write(&values)).py_err()
    }

    fn write_many(&mut self, py: Python<'_>, records: &Bound<'_, PyAny>) -> PyResult<u64> {
        let mut n = 0;
        for r in records.try_iter()? {
            self.write(py, &r?)?;
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
    fn close(&mut self, py: Python<'_>) -> PyResult<(PathBuf, u64, usize, u64)> {
        let w = &mut self.inner;
        let s = py.detach(|| w.close()).py_err()?;
        Ok((s.path, s.num_rows, s.num_shards, s.num_bytes))
    }

    /// Stops without writing a manifest: the directory is left as an unfinished dataset.
    fn abort(&mut self) {
        self.inner.abort()
    }
}
