//! One Python exception per core error variant, all under `PixmoError`.

use pixmo_stream_core::error::Location;
use pixmo_stream_core::error::RemoteErrorKind;
use pixmo_stream_core::Error;
use pyo3::exceptions::{
    PyException, PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::IntoPyObjectExt;
use std::path::Path;

pyo3::create_exception!(
    pixmo_stream,
    PixmoError,
    PyException,
    "Base class of pixmo-stream errors."
);
pyo3::create_exception!(
    pixmo_stream,
    CorruptDataError,
    PixmoError,
    "A shard or manifest is damaged: checksum mismatch, truncation, bad offsets."
);
pyo3::create_exception!(
    pixmo_stream,
    BadSampleError,
    CorruptDataError,
    "A sample that cannot be used (damaged, or an image that does not decode), at a known row."
);
pyo3::create_exception!(
    pixmo_stream,
    SchemaError,
    PixmoError,
    "A record or schema does not fit."
);
pyo3::create_exception!(
    pixmo_stream,
    UnsupportedVersionError,
    PixmoError,
    "Written by a format version (or with a feature) this reader does not know."
);

/// `StorageError(PixmoError, OSError)`: a request to object storage that failed for good.
/// Made at import (two bases, which `create_exception!` cannot give).
static STORAGE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn storage_error(py: Python<'_>, msg: String) -> PyErr {
    match STORAGE_ERROR.get(py) {
        Some(t) => PyErr::from_type(t.bind(py).clone(), (msg,)),
        None => PyOSError::new_err(msg),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let ns = PyDict::new(py);
    ns.set_item("__module__", "pixmo_stream")?;
    ns.set_item(
        "__doc__",
        "A request to object storage failed for good (after its retries): throttled, \
         5xx, timed out or dropped. `url` names the object.",
    )?;
    let bases = PyTuple::new(
        py,
        [
            py.get_type::<PixmoError>().into_any(),
            py.get_type::<PyOSError>().into_any(),
        ],
    )?;
    let cls = py
        .get_type::<PyType>()
        .call1(("StorageError", bases, ns))?
        .cast_into::<PyType>()?;
    m.add("StorageError", &cls)?;
    let _ = STORAGE_ERROR.set(py, cls.unbind());
    m.add("PixmoError", py.get_type::<PixmoError>())?;
    m.add("CorruptDataError", py.get_type::<CorruptDataError>())?;
    m.add("BadSampleError", py.get_type::<BadSampleError>())?;
    m.add("SchemaError", py.get_type::<SchemaError>())?;
    m.add(
        "UnsupportedVersionError",
        py.get_type::<UnsupportedVersionError>(),
    )?;
    Ok(())
}

/// Converts a core error, attaching its data (path, row group, column, field, record) as
/// attributes of the exception.
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    Python::attach(|py| {
        let (err, attrs): (PyErr, Vec<(&str, Py<PyAny>)>) = match e {
            Error::NotFound { path } => {
                (file_not_found("No such file or directory", &path), vec![])
            }
            Error::Incomplete { path } => (
                file_not_found(pixmo_stream_core::error::INCOMPLETE, &path),
                vec![],
            ),
            Error::Io { .. } => (PyOSError::new_err(msg), vec![]),
            Error::Corrupt { location, .. } => (
                CorruptDataError::new_err(msg),
                location_attrs(py, &location),
            ),
            Error::BadSample { location, row, .. } => {
                let mut attrs = location_attrs(py, &location);
                attrs.push(("row", obj(py, row)));
                (BadSampleError::new_err(msg), attrs)
            }
            Error::Changed { path, .. } => (
                CorruptDataError::new_err(msg),
                location_attrs(py, &Location::file(&path)),
            ),
            Error::UnsupportedVersion { path, .. } => (
                UnsupportedVersionError::new_err(msg),
                vec![("path", obj(py, path.display().to_string()))],
            ),
            Error::Schema { field, record, .. } => (
                SchemaError::new_err(msg),
                vec![("field", obj(py, field)), ("record", obj(py, record))],
            ),
            Error::Remote { url, kind, .. } => {
                let err = match kind {
                    RemoteErrorKind::Forbidden => {
                        PyPermissionError::new_err((13, msg, url.clone()))
                    }
                    _ => storage_error(py, msg),
                };
                (err, vec![("url", obj(py, url))])
            }
            Error::InvalidArgument(_) => (PyValueError::new_err(msg), vec![]),
            Error::Internal(_) => (PixmoError::new_err(msg), vec![]),
        };
        let value = err.value(py);
        for (k, v) in attrs {
            let _ = value.setattr(k, v);
        }
        err
    })
}

/// A value as a Python object (the conversions used here cannot fail).
fn obj<'py>(py: Python<'py>, v: impl IntoPyObjectExt<'py>) -> Py<PyAny> {
    v.into_py_any(py).expect("a str, int or None converts")
}

/// `path`, `row_group` and `column` attributes of a `CorruptDataError`.
fn location_attrs(py: Python<'_>, location: &Location) -> Vec<(&'static str, Py<PyAny>)> {
    vec![
        ("path", obj(py, location.path.display().to_string())),
        ("row_group", obj(py, location.row_group)),
        ("column", obj(py, location.column.clone())),
    ]
}

fn file_not_found(strerror: &str, path: &Path) -> PyErr {
    PyFileNotFoundError::new_err((2, strerror.to_string(), path.display().to_string()))
}

pub trait IntoPyResult<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
