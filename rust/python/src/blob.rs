//! `Blob`: a read-only, zero-copy view of one binary value (an encoded image), exported
//! through the buffer protocol. It keeps the mapped shard (or decompressed chunk) alive.

use crate::errors::to_py;
use pixmo_stream_core::chunk::ChunkBytes;
use pixmo_stream_core::mapped::{map_again, FileId};
use pixmo_stream_core::pages::PageCheck;
use pyo3::exceptions::PyBufferError;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::{ffi, IntoPyObjectExt};
use std::os::raw::c_int;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Fills `view` for `len` bytes at `ptr` owned by `owner` (`PyBuffer_FillInfo`, which keeps a
/// reference to `owner` in the view).
///
/// # Safety
/// `view` is the valid `Py_buffer` CPython passed to `__getbuffer__`, `owner` the object
/// exporting it, and the memory at `ptr` lives as long as `owner` does.
pub unsafe fn fill_buffer(
    py: Python<'_>,
    owner: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    ptr: *const u8,
    len: usize,
    readonly: bool,
    flags: c_int,
) -> PyResult<()> {
    let ret = ffi::PyBuffer_FillInfo(
        view,
        owner,
        ptr as *mut std::ffi::c_void,
        len as ffi::Py_ssize_t,
        c_int::from(readonly),
        flags,
    );
    if ret == -1 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}

#[pyclass(name = "Blob", module = "pixmo_stream._native", frozen)]
pub struct PyBlob {
    bytes: ChunkBytes,
    start: usize,
    len: usize,
    /// The chunk's page checks, when its pages are verified as they are read; `checked` is
    /// set once this value's pages are.
    pages: Option<Arc<PageCheck>>,
    checked: AtomicBool,
}

impl PyBlob {
    pub fn new(bytes: ChunkBytes, start: usize, len: usize, pages: Option<Arc<PageCheck>>) -> Self {
        debug_assert!(start + len <= bytes.as_slice().len());
        PyBlob {
            bytes,
            start,
            len,
            pages,
            checked: AtomicBool::new(false),
        }
    }

    /// The value's bytes, verified against their page checksums the first time.
    fn data(&self) -> PyResult<&[u8]> {
        if let Some(p) = &self.pages {
            if !self.checked.load(Ordering::Acquire) {
                p.check(self.start..self.start + self.len).map_err(to_py)?;
                self.checked.store(true, Ordering::Release);
            }
        }
        Ok(&self.bytes.as_slice()[self.start..self.start + self.len])
    }
}

#[pymethods]
impl PyBlob {
    /// # Safety
    /// Called by CPython with a valid `view`. The exported memory belongs to `self.bytes`
    /// (a memory map or a heap buffer held by an `Arc`), which lives as long as `self`;
    /// `PyBuffer_FillInfo` stores a new reference to `self` in `view.obj`, so the memory
    /// outlives every consumer of the view. The buffer is read-only.
    unsafe fn __getbuffer__(
        slf: PyRef<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("pixmo_stream Blob is read-only"));
        }
        let data = slf.data()?;
        fill_buffer(
            slf.py(),
            slf.as_ptr(),
            view,
            data.as_ptr(),
            data.len(),
            true,
            flags,
        )
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.len
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, self.data()?))
    }

    /// A copy as `bytes`.
    fn tobytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, self.data()?))
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let data = self.data()?;
        if let Ok(b) = other.downcast::<PyBytes>() {
            return Ok(b.as_bytes() == data);
        }
        if let Ok(b) = other.downcast::<PyBlob>() {
            return Ok(b.get().data()? == data);
        }
        Ok(match pyo3::buffer::PyBuffer::<u8>::get(other) {
            Ok(buf) => buf.to_vec(other.py()).map(|v| v == data).unwrap_or(false),
            Err(_) => false,
        })
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        PyBytes::new(py, self.data()?).hash()
    }

    /// Indexing gives an int and slicing gives `bytes`, as with `bytes`.
    fn __getitem__<'py>(
        slf: &Bound<'py, Self>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let view = pyo3::types::PyMemoryView::from(slf.as_any())?;
        let item = view.get_item(key)?;
        if item.is_instance_of::<pyo3::types::PyMemoryView>() {
            return item.call_method0("tobytes");
        }
        Ok(item)
    }

    fn __repr__(&self) -> String {
        format!("<pixmo_stream Blob, {} bytes>", self.len)
    }

    /// Where this blob's bytes lie in its shard file, for another process on this machine:
    /// `(path, dev, ino, file_len, mtime_ns, offset, length, pages)`; `None` for a blob not
    /// backed by a mapped file. `pages` is `None` when the bytes are verified already, else
    /// what the receiver needs to verify them itself when it first reads them:
    /// `(file offset of the first page, bytes of the pages, their XXH3s, row group, column)`.
    /// Used by the multiprocessing reducer (`pixmo_stream.dataset`), not `pickle`.
    fn _ipc_ref(&self) -> PyResult<Option<IpcRef>> {
        let ChunkBytes::Mapped { start, file, .. } = &self.bytes else {
            return Ok(None);
        };
        let span = match &self.pages {
            Some(p) if !self.checked.load(Ordering::Acquire) => p
                .span(self.start..self.start + self.len)
                .map(|(off, len, hashes)| {
                    let (_, row_group, column) = p.location();
                    (off, len, hashes, row_group, column.to_string())
                }),
            _ => None,
        };
        if span.is_none() {
            self.data()?; // (verified already, or checked by its chunk's CRC: a bit test)
        }
        Ok(Some((
            file.path.clone(),
            file.dev,
            file.ino,
            file.len,
            file.mtime_ns,
            start + self.start,
            self.len,
            span.map(|(off, len, hashes, g, c)| (off, len, ByteBuf(hashes), g, c)),
        )))
    }

    /// Pickles as plain `bytes` (DataLoader workers send records to the main process).
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let bytes_type = py.get_type::<PyBytes>().into_bound_py_any(py)?;
        let args = PyTuple::new(py, [PyBytes::new(py, self.data()?)])?;
        PyTuple::new(py, [bytes_type, args.into_any()])
    }
}

/// Bytes that convert to Python `bytes` (PyO3 makes a `list` of a `Vec<u8>`).
pub struct ByteBuf(Vec<u8>);

impl<'py> IntoPyObject<'py> for ByteBuf {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(PyBytes::new(py, &self.0))
    }
}

type PageSpan<H> = (usize, usize, H, usize, String);
type IpcRef = (
    PathBuf,
    u64,
    u64,
    u64,
    i64,
    usize,
    usize,
    Option<PageSpan<ByteBuf>>,
);

/// The blob a DataLoader worker sent by reference (`Blob._ipc_ref`), mapped from the same file.
/// With `pages`, its bytes are verified here, when they are first read.
#[pyfunction]
#[pyo3(signature = (path, dev, ino, file_len, mtime_ns, offset, length, pages=None))]
#[allow(clippy::too_many_arguments)]
pub fn blob_from_ref(
    py: Python<'_>,
    path: PathBuf,
    dev: u64,
    ino: u64,
    file_len: u64,
    mtime_ns: i64,
    offset: usize,
    length: usize,
    pages: Option<PageSpan<Vec<u8>>>,
) -> PyResult<PyBlob> {
    let id = FileId {
        path,
        dev,
        ino,
        len: file_len,
        mtime_ns,
    };
    let (file, map) = py.detach(|| map_again(id)).map_err(to_py)?;
    if offset.checked_add(length).is_none_or(|end| end > map.len()) {
        return Err(PyValueError::new_err(format!(
            "blob reference {offset}+{length} lies outside {}",
            file.path.display()
        )));
    }
    let Some((span_start, span_len, hashes, row_group, column)) = pages else {
        return Ok(PyBlob {
            bytes: ChunkBytes::Mapped {
                map,
                start: offset,
                len: length,
                file,
            },
            start: 0,
            len: length,
            pages: None,
            checked: AtomicBool::new(true),
        });
    };
    let location = (file.path.clone(), row_group, column);
    let check =
        PageCheck::for_span(map.clone(), span_start, span_len, &hashes, location).map_err(to_py)?;
    if offset < span_start || offset + length > span_start + span_len {
        return Err(PyValueError::new_err(format!(
            "blob reference {offset}+{length} lies outside its pages {span_start}+{span_len} in {}",
            file.path.display()
        )));
    }
    Ok(PyBlob {
        bytes: ChunkBytes::Mapped {
            map,
            start: span_start,
            len: span_len,
            file,
        },
        start: offset - span_start,
        len: length,
        pages: Some(Arc::new(check)),
        checked: AtomicBool::new(false),
    })
}
