//! One Python exception per core error variant, all under `PixmoError`.

use pixmo_stream_core::Error;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::prelude::*;

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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("PixmoError", py.get_type::<PixmoError>())?;
    m.add("CorruptDataError", py.get_type::<CorruptDataError>())?;
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
            Error::NotFound { path } => (
                PyFileNotFoundError::new_err((
                    2,
                    "No such file or directory",
                    path.display().to_string(),
                )),
                vec![],
            ),
            Error::Incomplete { path } => (
                PyFileNotFoundError::new_err((
                    2,
                    pixmo_stream_core::error::INCOMPLETE,
                    path.display().to_string(),
                )),
                vec![],
            ),
            Error::Io { .. } => (PyOSError::new_err(msg), vec![]),
            Error::Corrupt { location, .. } => (
                CorruptDataError::new_err(msg),
                vec![
                    (
                        "path",
                        location
                            .path
                            .display()
                            .to_string()
                            .into_pyobject(py)
                            .unwrap()
                            .into_any()
                            .unbind(),
                    ),
                    (
                        "row_group",
                        location
                            .row_group
                            .into_pyobject(py)
                            .unwrap()
                            .into_any()
                            .unbind(),
                    ),
                    (
                        "column",
                        location
                            .column
                            .into_pyobject(py)
                            .unwrap()
                            .into_any()
                            .unbind(),
                    ),
                ],
            ),
            Error::Changed { path, .. } => (
                CorruptDataError::new_err(msg),
                vec![
                    (
                        "path",
                        path.display()
                            .to_string()
                            .into_pyobject(py)
                            .unwrap()
                            .into_any()
                            .unbind(),
                    ),
                    ("row_group", py.None()),
                    ("column", py.None()),
                ],
            ),
            Error::UnsupportedVersion { path, .. } => (
                UnsupportedVersionError::new_err(msg),
                vec![(
                    "path",
                    path.display()
                        .to_string()
                        .into_pyobject(py)
                        .unwrap()
                        .into_any()
                        .unbind(),
                )],
            ),
            Error::Schema { field, record, .. } => (
                SchemaError::new_err(msg),
                vec![
                    (
                        "field",
                        field.into_pyobject(py).unwrap().into_any().unbind(),
                    ),
                    (
                        "record",
                        record.into_pyobject(py).unwrap().into_any().unbind(),
                    ),
                ],
            ),
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

pub trait IntoPyResult<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
