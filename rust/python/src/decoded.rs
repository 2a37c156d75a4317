//! Decoded images from the read-ahead to Python: the decode options a stream is built with,
//! and numpy arrays that take over the Rust pixel buffers (no copy).

use std::any::Any;
use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods};
use pixmo_stream_core::batch_memory::Gather;
use pixmo_stream_core::images::{DecodedImage, ImageStage, ImageWork, MolmoBatch, RgbBatch};
use pixmo_stream_core::sample::StageValue;
use pixmo_stream_image as img;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// What Python passes as `decode=`: `(resize mode, width, height, fast, max_pixels, column,
/// molmo, gather)` with the resize modes of `pixmo_stream.image` ("none", "exact", "max_side",
/// "pad"); `molmo`, when given, is a `MolmoConfig`'s fields in order (the resize is unused);
/// `gather`: Molmo's crops of each read batch in one padded buffer (`ImageStage::gathering`):
/// "" (not), "heap" or "shared".
pub type DecodeSpec = (
    String,
    u32,
    u32,
    bool,
    u64,
    String,
    Option<MolmoArgs>,
    String,
);

/// `pixmo_stream.image.MolmoConfig`'s fields in order (see `molmo::ConfigArgs`).
pub type MolmoArgs = crate::molmo::ConfigArgs;

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
    let (mode, width, height, fast, max_pixels, column, molmo, gather) = spec;
    let work = match molmo {
        Some(m) => ImageWork::Molmo(crate::molmo::config(*m)?),
        None => ImageWork::Rgb(img::DecodeOptions {
            max_pixels: *max_pixels,
            resize: resize(mode, *width, *height)?,
            fast: *fast,
        }),
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
    let gather = match gather.as_str() {
        "" => Gather::Off,
        "heap" => Gather::Heap,
        "shared" => Gather::Shared,
        other => {
            return Err(PyValueError::new_err(format!(
                "gather must be '', 'heap' or 'shared', not {other:?}"
            )))
        }
    };
    Ok(ImageStage::new(columns, work)
        .map_err(crate::errors::to_py)?
        .gathering(gather))
}

fn owned<T: Any + Send + Sync>(value: StageValue) -> Option<T> {
    let arc: Arc<T> = value.0.downcast::<T>().ok()?;
    Arc::try_unwrap(arc).ok()
}

/// `v` as an array of `shape` over `v`'s own buffer.
fn array<'py, T: numpy::Element>(
    py: Python<'py>,
    v: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, v)
        .reshape(numpy::IxDyn(shape))?
        .into_any())
}

/// What a row's image became, as `(key suffix, array)` pairs over the Rust buffers: `("",
/// uint8 [H, W, 3])` for RGB; for Molmo `("", crops [n, 576, 588])`, `("_patch_mask",
/// [n, 576])`, `("_input_idx", [n, 144])`, `("_tokens", [len])` and `("_tiling", [2])`.
/// Empty when the row has none (a source without the column). `slot`: the row's slot of its
/// batch's gathered crops (`[max_crops + 1, 576, 588]`), where its crops were written.
pub fn row_values<'py>(
    py: Python<'py>,
    value: StageValue,
    slot: Option<&Bound<'py, PyAny>>,
) -> PyResult<Vec<(&'static str, Bound<'py, PyAny>)>> {
    Ok(match owned::<DecodedImage>(value) {
        Some(DecodedImage::Rgb(im)) => {
            let shape = [im.height as usize, im.width as usize, 3];
            vec![("", array(py, im.data, &shape)?)]
        }
        Some(DecodedImage::Molmo(m)) => {
            let n = m.n_crops;
            let per_crop = |len: usize| len.checked_div(n).unwrap_or(0);
            let patches = per_crop(m.patch_mask.len());
            let per_patch = |len: usize| per_crop(len).checked_div(patches).unwrap_or(0);
            let gathered = match (&m.crops, slot) {
                (img::Crops::F32(v), Some(slot)) if v.is_empty() => Some(slot),
                (img::Crops::U8(v), Some(slot)) if v.is_empty() => Some(slot),
                _ => None,
            };
            let crops = match m.crops {
                _ if gathered.is_some() => gathered
                    .expect("checked")
                    .get_item(pyo3::types::PySlice::new(py, 0, n as isize, 1))?,
                img::Crops::F32(v) => {
                    let p = per_patch(v.len());
                    array(py, v, &[n, patches, p])?
                }
                img::Crops::U8(v) => {
                    let p = per_patch(v.len());
                    array(py, v, &[n, patches, p])?
                }
            };
            let idx = per_crop(m.image_input_idx.len());
            let tokens = m.image_tokens.len();
            let tiling = vec![i64::from(m.tiling.0), i64::from(m.tiling.1)];
            vec![
                ("", crops),
                ("_patch_mask", array(py, m.patch_mask, &[n, patches])?),
                ("_input_idx", array(py, m.image_input_idx, &[n, idx])?),
                ("_tokens", array(py, m.image_tokens, &[tokens])?),
                ("_tiling", array(py, tiling, &[2])?),
            ]
        }
        None => vec![],
    })
}

/// A batch's gathered images as one array over the batch buffer: `uint8 [N, H, W, 3]`, or
/// Molmo's crops `[N, max_crops + 1, 576, 588]` (over a `GatheredCrops`, which
/// `pixmo_stream.molmo.collate` recognises as its batch tensor).
pub fn batch_images<'py>(
    py: Python<'py>,
    value: StageValue,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if value.0.is::<RgbBatch>() {
        return owned::<RgbBatch>(value)
            .map(|b| array(py, b.data, &[b.n, b.height, b.width, 3]))
            .transpose();
    }
    owned::<MolmoBatch>(value)
        .map(|b| crate::host::GatheredCrops::array(py, b))
        .transpose()
}
