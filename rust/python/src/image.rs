//! Glue for `pixmo_stream.image`: image decoding and Molmo preprocessing from
//! `pixmo-stream-image`, run with the GIL released; pixels reach numpy without a copy (the
//! arrays own the Rust buffers).

use numpy::ndarray::{Array3, Array4};
use numpy::{IntoPyArray, PyArray3, PyArray4};
use pixmo_stream_image as img;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::errors::PixmoError;

pyo3::create_exception!(
    pixmo_stream,
    ImageDecodeError,
    PixmoError,
    "An encoded image could not be decoded: not an image, truncated, corrupt, too many pixels, zero size or unsupported. `reason` names which."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ImageDecodeError", m.py().get_type::<ImageDecodeError>())?;
    m.add("DEFAULT_MAX_PIXELS", img::DEFAULT_MAX_PIXELS)?;
    m.add_function(wrap_pyfunction!(image_probe, m)?)?;
    m.add_function(wrap_pyfunction!(image_decode, m)?)?;
    m.add_function(wrap_pyfunction!(image_decode_many, m)?)?;
    m.add_function(wrap_pyfunction!(image_decode_batch, m)?)?;
    m.add_function(wrap_pyfunction!(image_placement, m)?)?;
    m.add_function(wrap_pyfunction!(image_jpeg_decoder, m)?)?;
    Ok(())
}

/// Encoded bytes held for a call that releases the GIL: borrowed from `bytes` or a read-only
/// buffer (a `Blob`, which maps its shard), copied from a writable one (another thread could
/// change it while we read).
pub enum Encoded {
    Bytes(Py<PyBytes>),
    Shared(PyBuffer<u8>),
    Copied(Vec<u8>),
}

impl Encoded {
    pub fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Encoded::Bytes(b.clone().unbind()));
        }
        let buf = PyBuffer::<u8>::get(obj).map_err(|_| {
            PyTypeError::new_err(format!(
                "an encoded image must be bytes or a buffer of bytes, not {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        if buf.readonly() && buf.is_c_contiguous() {
            Ok(Encoded::Shared(buf))
        } else {
            Ok(Encoded::Copied(buf.to_vec(obj.py())?))
        }
    }

    /// The bytes, taken while the GIL is held; the slice itself may be read without it.
    pub fn as_slice<'a>(&'a self, py: Python<'_>) -> &'a [u8] {
        match self {
            // `bytes` is immutable, and `Py` keeps it alive as long as `self`.
            Encoded::Bytes(b) => b.as_bytes(py),
            // SAFETY: the buffer is read-only and C-contiguous (checked in `from_py`), and the
            // `PyBuffer` keeps its exporter, and so the memory, alive until dropped.
            Encoded::Shared(b) => unsafe {
                std::slice::from_raw_parts(b.buf_ptr() as *const u8, b.len_bytes())
            },
            Encoded::Copied(v) => v,
        }
    }
}

fn options(
    mode: &str,
    width: u32,
    height: u32,
    fast: bool,
    max_pixels: u64,
) -> PyResult<img::DecodeOptions> {
    let resize = match mode {
        "none" => img::Resize::None,
        "exact" => img::Resize::Exact { width, height },
        "max_side" => img::Resize::MaxSide(width),
        "pad" => img::Resize::Pad { width, height },
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown resize mode {other:?}"
            )))
        }
    };
    Ok(img::DecodeOptions {
        max_pixels,
        resize,
        fast,
    })
}

/// The exception for an image error; `index` names the input in a many-image call.
pub fn image_error(py: Python<'_>, e: &img::ImageError, index: Option<usize>) -> PyErr {
    if let img::ImageError::InvalidArgument(m) = e {
        return PyValueError::new_err(m.clone());
    }
    let msg = match index {
        Some(i) => format!("image {i}: {e}"),
        None => e.to_string(),
    };
    let err = ImageDecodeError::new_err(msg);
    let value = err.value(py);
    let format = match e {
        img::ImageError::Truncated { format, .. }
        | img::ImageError::Corrupt { format, .. }
        | img::ImageError::TooManyPixels { format, .. }
        | img::ImageError::ZeroSize { format, .. }
        | img::ImageError::Unsupported { format, .. } => Some(format.name()),
        _ => None,
    };
    let _ = value.setattr("reason", e.reason());
    let _ = value.setattr("format", format);
    let _ = value.setattr("index", index);
    if let img::ImageError::TooManyPixels {
        width,
        height,
        limit,
        ..
    } = e
    {
        let _ = value.setattr("width", width);
        let _ = value.setattr("height", height);
        let _ = value.setattr("limit", limit);
    }
    err
}

fn to_array<'py>(py: Python<'py>, im: img::RgbImage) -> Bound<'py, PyArray3<u8>> {
    let shape = (im.height as usize, im.width as usize, 3);
    Array3::from_shape_vec(shape, im.data)
        .expect("an RgbImage's buffer is h*w*3 bytes")
        .into_pyarray(py)
}

/// The decoder of full-size JPEGs in this process.
#[pyfunction]
fn image_jpeg_decoder() -> &'static str {
    if img::jpeg_simd() {
        "libjpeg-turbo"
    } else {
        "zune-jpeg"
    }
}

/// `(format, width, height, orientation)` from the header alone.
#[pyfunction]
fn image_probe(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<(&'static str, u32, u32, u8)> {
    let enc = Encoded::from_py(data)?;
    let bytes = enc.as_slice(py);
    let info = py
        .detach(|| img::probe(bytes))
        .map_err(|e| image_error(py, &e, None))?;
    Ok((
        info.format.name(),
        info.width,
        info.height,
        info.orientation,
    ))
}

#[pyfunction]
#[pyo3(signature = (data, mode, width, height, fast, max_pixels))]
fn image_decode<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    mode: &str,
    width: u32,
    height: u32,
    fast: bool,
    max_pixels: u64,
) -> PyResult<Bound<'py, PyArray3<u8>>> {
    let opts = options(mode, width, height, fast, max_pixels)?;
    let enc = Encoded::from_py(data)?;
    let bytes = enc.as_slice(py);
    let im = py
        .detach(|| img::decode_rgb(bytes, &opts))
        .map_err(|e| image_error(py, &e, None))?;
    Ok(to_array(py, im))
}

fn encoded_list(items: &Bound<'_, PyAny>) -> PyResult<Vec<Encoded>> {
    items.try_iter()?.map(|o| Encoded::from_py(&o?)).collect()
}

/// One array or one `ImageDecodeError` instance per input.
#[pyfunction]
#[pyo3(signature = (items, mode, width, height, fast, max_pixels, threads))]
#[allow(clippy::too_many_arguments)]
fn image_decode_many<'py>(
    py: Python<'py>,
    items: &Bound<'py, PyAny>,
    mode: &str,
    width: u32,
    height: u32,
    fast: bool,
    max_pixels: u64,
    threads: usize,
) -> PyResult<Bound<'py, PyList>> {
    let opts = options(mode, width, height, fast, max_pixels)?;
    let encoded = encoded_list(items)?;
    let slices: Vec<&[u8]> = encoded.iter().map(|e| e.as_slice(py)).collect();
    let results = py.detach(|| img::decode_many(&slices, &opts, threads));
    let out = PyList::empty(py);
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(im) => out.append(to_array(py, im))?,
            Err(img::ImageError::InvalidArgument(m)) => return Err(PyValueError::new_err(m)),
            Err(e) => out.append(image_error(py, &e, Some(i)).into_value(py))?,
        }
    }
    Ok(out)
}

/// One `[n, height, width, 3]` array, and per input `None` or its `ImageDecodeError` (its
/// slot zero-filled).
#[pyfunction]
#[pyo3(signature = (items, mode, width, height, fast, max_pixels, threads))]
#[allow(clippy::too_many_arguments)]
fn image_decode_batch<'py>(
    py: Python<'py>,
    items: &Bound<'py, PyAny>,
    mode: &str,
    width: u32,
    height: u32,
    fast: bool,
    max_pixels: u64,
    threads: usize,
) -> PyResult<(Bound<'py, PyArray4<u8>>, Bound<'py, PyList>)> {
    let opts = options(mode, width, height, fast, max_pixels)?;
    let encoded = encoded_list(items)?;
    let n = encoded.len();
    let slices: Vec<&[u8]> = encoded.iter().map(|e| e.as_slice(py)).collect();
    let (buf, results) = py.detach(|| {
        let mut buf = vec![0u8; n * height as usize * width as usize * 3];
        let res = img::decode_many_into(&slices, &opts, threads, &mut buf);
        (buf, res)
    });
    let results = results.map_err(|e| image_error(py, &e, None))?;
    let errors = PyList::empty(py);
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(()) => errors.append(py.None())?,
            Err(e) => errors.append(image_error(py, e, Some(i)).into_value(py))?,
        }
    }
    let shape = (n, height as usize, width as usize, 3);
    let arr = Array4::from_shape_vec(shape, buf).expect("the batch buffer is n*h*w*3 bytes");
    Ok((arr.into_pyarray(py), errors))
}

/// `(height, width, top, left, canvas_height, canvas_width)`: where an image of
/// `src_height` x `src_width` lands under a resize mode.
#[pyfunction]
fn image_placement(
    src_height: u32,
    src_width: u32,
    mode: &str,
    width: u32,
    height: u32,
) -> PyResult<(u32, u32, u32, u32, u32, u32)> {
    let opts = options(mode, width, height, false, 1)?;
    opts.resize
        .validate()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let p = opts.resize.placement(src_width, src_height);
    Ok((
        p.height,
        p.width,
        p.top,
        p.left,
        p.canvas_height,
        p.canvas_width,
    ))
}
