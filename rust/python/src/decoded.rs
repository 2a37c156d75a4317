//! Decoded images from the read-ahead to Python: the decode options a stream is built with,
//! and numpy arrays that take over the Rust pixel buffers (no copy).

use std::any::Any;
use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods};
use pixmo_stream_core::images::{DecodedImage, ImageStage, ImageWork, RgbBatch};
use pixmo_stream_core::sample::StageValue;
use pixmo_stream_image as img;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// What Python passes as `decode=`: `(resize mode, width, height, fast, max_pixels, column)`
/// with the resize modes of `pixmo_stream.image` ("none", "exact", "max_side", "pad").
pub type DecodeSpec = (String, u32, u32, bool, u64, String);

fn resize(mode: &str, width: u32, height: u32) -> PyResult<img::Resize> {
    Ok(match mode {
        "none" => img::Resize::None,
        "exact" => img::Resize::Exact { width, height },
        "pad" => img::Resize::Pad { width, height },
        "max_side" => img::Resize::MaxSide(width),
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown resize mode {other:?}"
            )))
        }
    })
}

/// The stage decoding column `spec.5` of each source; `projected[s]` lists the names of the
/// columns source `s` reads, in projection order.
pub fn image_stage(spec: &DecodeSpec, projected: &[Vec<String>]) -> PyResult<ImageStage> {
    let (mode, width, height, fast, max_pixels, column) = spec;
    let options = img::DecodeOptions {
        max_pixels: *max_pixels,
        resize: resize(mode, *width, *height)?,
        fast: *fast,
    };
    let columns = projected
        .iter()
        .map(|names| {
            names
                .iter()
                .position(|n| n == column)
                .map(|p| (p, column.clone()))
        })
        .collect();
    ImageStage::new(columns, ImageWork::Rgb(options)).map_err(crate::errors::to_py)
}

fn owned<T: Any + Send + Sync>(value: StageValue) -> Option<T> {
    let arc: Arc<T> = value.0.downcast::<T>().ok()?;
    Arc::try_unwrap(arc).ok()
}

/// A row's decoded image as a `uint8 [H, W, 3]` array over its own buffer, or `None` when
/// the row has none (a source without the column).
pub fn row_image<'py>(py: Python<'py>, value: StageValue) -> PyResult<Option<Bound<'py, PyAny>>> {
    match owned::<DecodedImage>(value) {
        Some(DecodedImage::Rgb(im)) => {
            let shape = [im.height as usize, im.width as usize, 3];
            Ok(Some(
                PyArray1::from_vec(py, im.data).reshape(shape)?.into_any(),
            ))
        }
        None => Ok(None),
    }
}

/// A batch's gathered images as one `uint8 [N, H, W, 3]` array over the batch buffer.
pub fn batch_images<'py>(
    py: Python<'py>,
    value: StageValue,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match owned::<RgbBatch>(value) {
        Some(b) => {
            let shape = [b.n, b.height, b.width, 3];
            Ok(Some(
                PyArray1::from_vec(py, b.data).reshape(shape)?.into_any(),
            ))
        }
        None => Ok(None),
    }
}
