//! PyO3 glue for `pixmo_stream._native`. All logic lives in `pixmo-stream-core`; this crate
//! converts between Python objects and core values and maps errors to exceptions.

use pyo3::prelude::*;

mod blob;
mod convert;
mod dataset;
mod decoded;
mod errors;
mod image;
mod molmo;
mod plan;
mod stream;
mod writer;

/// mimalloc for every allocation of the core and the image code (not Python's own): a decode
/// allocates megabytes of planes and pixels per image, which glibc's malloc returns to the
/// system and page-faults back in on the next image, costing 10-25 % of a decode (medians of
/// six interleaved runs: full decode of 1.69 MP photos 121 -> 139 images per CPU-second,
/// Molmo exact 31.7 -> 40.0).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    image::register(m)?;
    molmo::register(m)?;
    plan::register(m)?;
    stream::register(m)?;
    m.add_class::<writer::PyWriter>()?;
    m.add_class::<dataset::PyDataset>()?;
    m.add_class::<dataset::PyRowGroupIter>()?;
    m.add_class::<blob::PyBlob>()?;
    m.add_function(wrap_pyfunction!(blob::blob_from_ref, m)?)?;
    m.add(
        "FORMAT_VERSION",
        (
            pixmo_stream_core::format::MAJOR_VERSION,
            pixmo_stream_core::format::MINOR_VERSION,
        ),
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
