//! `HostBuffer`: writable, uninitialised memory from the native module's allocator, exported
//! through the buffer protocol, for the large arrays a collate function fills every batch.
//!
//! numpy's own `np.empty` of a batch of crops (141 MB for Molmo's float32 batch of 8) comes
//! from glibc's `malloc`, which maps such blocks fresh and unmaps them when freed, so the kernel
//! zeroes every page of every batch again. Blocks from this module's allocator (mimalloc for
//! blocks of 1 MiB and more, see `alloc.rs`) are reused while the stream runs.

use std::alloc::{alloc, dealloc, Layout};
use std::os::raw::c_int;

use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

use pixmo_stream_core::images::MolmoBatch;

/// Alignment of every buffer: a cache line (and AVX-512's vectors).
const ALIGN: usize = 64;

#[pyclass(name = "HostBuffer", module = "pixmo_stream._native", frozen)]
pub struct HostBuffer {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is plain memory owned by this object; Python's buffer protocol (not this
// type) arbitrates who writes it, as for a bytearray.
unsafe impl Send for HostBuffer {}
unsafe impl Sync for HostBuffer {}

impl HostBuffer {
    fn layout(len: usize) -> PyResult<Layout> {
        Layout::from_size_align(len.max(1), ALIGN)
            .map_err(|_| PyValueError::new_err(format!("a buffer of {len} bytes is too large")))
    }
}

#[pymethods]
impl HostBuffer {
    /// `nbytes` of uninitialised memory (write before reading, as with `np.empty`).
    #[new]
    fn new(nbytes: usize) -> PyResult<Self> {
        let layout = Self::layout(nbytes)?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { alloc(layout) };
        if ptr.is_null() {
            return Err(PyMemoryError::new_err(format!(
                "could not allocate {nbytes} bytes"
            )));
        }
        Ok(HostBuffer { ptr, len: nbytes })
    }

    /// # Safety
    /// Called by CPython with a valid `view`. The memory belongs to `self` and is freed only
    /// when `self` is; `PyBuffer_FillInfo` stores a new reference to `self` in `view.obj`, so
    /// it outlives every consumer of the view.
    unsafe fn __getbuffer__(
        slf: PyRef<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        crate::blob::fill_buffer(slf.py(), slf.as_ptr(), view, slf.ptr, slf.len, false, flags)
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.len
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc` with this very layout (checked when it was made).
        unsafe { dealloc(self.ptr, Self::layout(self.len).expect("checked in new")) }
    }
}

/// The memory of a batch's Molmo crops, written by the read thread (`MolmoBatch`), exported
/// through the buffer protocol; `array(...)` is the `[N, max_crops + 1, 576, 588]` array over
/// it. `pixmo_stream.molmo.collate` takes an array whose base is one of these as its batch
/// tensor: every slot holds its row's crops, then padding crops. In a DataLoader worker the
/// memory is an anonymous shared-memory file (`shared`), which `pixmo_stream._transport` sends
/// to the main process instead of the bytes. Its memory goes back to the stream's pool when
/// this object is dropped.
#[pyclass(
    name = "GatheredCrops",
    module = "pixmo_stream._native",
    frozen,
    weakref
)]
pub struct GatheredCrops {
    batch: MolmoBatch,
    /// `(rows, crops a row, patches, values a patch)`.
    #[pyo3(get)]
    shape: (usize, usize, usize, usize),
}

impl GatheredCrops {
    /// The batch's crops as a numpy array over a new `GatheredCrops`.
    pub fn array<'py>(py: Python<'py>, b: MolmoBatch) -> PyResult<Bound<'py, PyAny>> {
        let shape = (b.n, b.slot_crops, b.patches, b.patch_len);
        let dtype = if b.memory().is_float() {
            "float32"
        } else {
            "uint8"
        };
        let owner = Bound::new(py, GatheredCrops { batch: b, shape })?;
        py.import("numpy")?
            .call_method1("frombuffer", (owner, dtype))?
            .call_method1("reshape", (shape,))
    }
}

#[pymethods]
impl GatheredCrops {
    /// # Safety
    /// Called by CPython with a valid `view`. The memory belongs to `self.batch`, which is
    /// never resized and lives as long as `self`; the view keeps a reference to `self`.
    /// Writable: the arrays over it are the batch's own.
    unsafe fn __getbuffer__(
        slf: PyRef<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let bytes = slf.batch.memory().bytes();
        let (ptr, len) = (bytes.as_ptr(), bytes.len());
        crate::blob::fill_buffer(slf.py(), slf.as_ptr(), view, ptr, len, false, flags)
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    /// `(file descriptor, address of its mapping here, bytes to map)` of the shared-memory
    /// file the crops lie in (at 64 bytes past the mapping's start), or None for memory of
    /// this process.
    #[getter]
    fn shared(&self) -> Option<(i32, usize, usize)> {
        let b = self.batch.memory().shared()?;
        Some((b.fd(), b.address(), b.mapped_len()))
    }

    /// Counts one sending of the shared file (its receiver counts the return); the memory is
    /// reused only when the counts agree.
    fn mark_sent(&self) -> PyResult<()> {
        let b = self
            .batch
            .memory()
            .shared()
            .ok_or_else(|| PyValueError::new_err("these crops are not in shared memory"))?;
        b.mark_sent();
        Ok(())
    }
}
