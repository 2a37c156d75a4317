//! Glue for Molmo preprocessing in `pixmo_stream.image`: config from Python arguments,
//! outputs as numpy arrays that own the Rust buffers.

use numpy::ndarray::{Array1, Array2, Array3};
use numpy::IntoPyArray;
use pixmo_stream_image as img;
use pixmo_stream_image::molmo::{ImageTokenIds, Placed};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::image::{image_error, Encoded};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(image_molmo, m)?)?;
    m.add_function(wrap_pyfunction!(image_molmo_many, m)?)?;
    m.add_function(wrap_pyfunction!(image_molmo_geometry, m)?)?;
    Ok(())
}

/// `(max_crops, crop_size, patch_size, (left, right), pooling, exact, normalize, max_pixels,
/// (start, end, patch, col))`, the order of `MolmoConfig`'s fields in Python.
pub type ConfigArgs = (
    u32,
    u32,
    u32,
    (u32, u32),
    u32,
    bool,
    bool,
    u64,
    (i32, i32, i32, i32),
);

pub fn config(args: ConfigArgs) -> PyResult<img::MolmoConfig> {
    let (
        max_crops,
        crop_size,
        patch_size,
        overlap_margins,
        pooling,
        exact,
        normalize,
        max_pixels,
        t,
    ) = args;
    let cfg = img::MolmoConfig {
        max_crops,
        crop_size,
        patch_size,
        overlap_margins,
        pooling,
        exact,
        normalize,
        max_pixels,
        token_ids: ImageTokenIds {
            start: t.0,
            end: t.1,
            patch: t.2,
            col: t.3,
        },
    };
    cfg.validate()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(cfg)
}

fn placed(p: &Placed) -> (u32, u32, u32, u32, u32, u32) {
    (
        p.height,
        p.width,
        p.top,
        p.left,
        p.canvas_height,
        p.canvas_width,
    )
}

fn geometry_dict<'py>(py: Python<'py>, g: &img::MolmoGeometry) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("height", g.height)?;
    d.set_item("width", g.width)?;
    d.set_item("tiling", g.tiling)?;
    d.set_item("canvas", placed(&g.canvas))?;
    d.set_item("global_view", placed(&g.global))?;
    d.set_item("crop_size", g.crop_size)?;
    d.set_item("crop_stride", g.crop_stride)?;
    Ok(d)
}

fn image_dict<'py>(
    py: Python<'py>,
    out: img::MolmoImage,
    cfg: &img::MolmoConfig,
) -> PyResult<Bound<'py, PyDict>> {
    let (n, pp, pl, tp) = (
        out.n_crops,
        cfg.patches_per_crop(),
        cfg.patch_len(),
        cfg.tokens_per_crop(),
    );
    let shape = (n, pp, pl);
    let bad = |e: numpy::ndarray::ShapeError| PyValueError::new_err(e.to_string());
    let d = PyDict::new(py);
    match out.crops {
        img::Crops::F32(v) => d.set_item(
            "crops",
            Array3::from_shape_vec(shape, v)
                .map_err(bad)?
                .into_pyarray(py),
        )?,
        img::Crops::U8(v) => d.set_item(
            "crops",
            Array3::from_shape_vec(shape, v)
                .map_err(bad)?
                .into_pyarray(py),
        )?,
    }
    d.set_item(
        "patch_mask",
        Array2::from_shape_vec((n, pp), out.patch_mask)
            .map_err(bad)?
            .into_pyarray(py),
    )?;
    d.set_item(
        "image_input_idx",
        Array2::from_shape_vec((n, tp), out.image_input_idx)
            .map_err(bad)?
            .into_pyarray(py),
    )?;
    d.set_item(
        "image_tokens",
        Array1::from_vec(out.image_tokens).into_pyarray(py),
    )?;
    d.set_item("geometry", geometry_dict(py, &out.geometry)?)?;
    Ok(d)
}

/// A dict of `crops`, `patch_mask`, `image_input_idx`, `image_tokens` and `geometry`.
#[pyfunction]
fn image_molmo<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    cfg: ConfigArgs,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg = config(cfg)?;
    let enc = Encoded::from_py(data)?;
    let bytes = enc.as_slice(py);
    let out = py
        .detach(|| img::molmo_preprocess(bytes, &cfg))
        .map_err(|e| image_error(py, &e, None))?;
    image_dict(py, out, &cfg)
}

/// One dict (as `image_molmo`) or one `ImageDecodeError` instance per input.
#[pyfunction]
fn image_molmo_many<'py>(
    py: Python<'py>,
    items: &Bound<'py, PyAny>,
    cfg: ConfigArgs,
    threads: usize,
) -> PyResult<Bound<'py, PyList>> {
    let cfg = config(cfg)?;
    let encoded: Vec<Encoded> = items
        .try_iter()?
        .map(|o| Encoded::from_py(&o?))
        .collect::<PyResult<_>>()?;
    let slices: Vec<&[u8]> = encoded.iter().map(|e| e.as_slice(py)).collect();
    let results = py.detach(|| img::molmo::molmo_preprocess_many(&slices, &cfg, threads));
    let out = PyList::empty(py);
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(m) => out.append(image_dict(py, m, &cfg)?)?,
            Err(e) => out.append(image_error(py, &e, Some(i)).into_value(py))?,
        }
    }
    Ok(out)
}

/// Molmo's layout of an image of `height` x `width`, without decoding anything.
#[pyfunction]
fn image_molmo_geometry<'py>(
    py: Python<'py>,
    height: u32,
    width: u32,
    cfg: ConfigArgs,
) -> PyResult<Bound<'py, PyDict>> {
    if height == 0 || width == 0 {
        return Err(PyValueError::new_err(format!(
            "image size must be at least 1x1, not {height}x{width}"
        )));
    }
    let cfg = config(cfg)?;
    geometry_dict(py, &img::MolmoGeometry::new(height, width, &cfg))
}
