//! PyO3 glue for `pixmo_stream._native`. All logic lives in `pixmo-stream-core`; this crate
//! converts between Python objects and core values and maps errors to exceptions.

use pyo3::prelude::*;

mod alloc;
mod blob;
mod convert;
mod dataset;
mod decoded;
mod errors;
mod host;
mod image;
mod molmo;
mod pack;
mod plan;
mod stream;
mod writer;

#[global_allocator]
static ALLOCATOR: alloc::Split = alloc::Split;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    alloc::configure();
    errors::register(m)?;
    image::register(m)?;
    molmo::register(m)?;
    pack::register(m)?;
    plan::register(m)?;
    stream::register(m)?;
    m.add_class::<writer::PyWriter>()?;
    m.add_class::<dataset::PyDataset>()?;
    m.add_class::<dataset::PyRowGroupIter>()?;
    m.add_class::<blob::PyBlob>()?;
    m.add_class::<host::HostBuffer>()?;
    m.add_class::<host::GatheredCrops>()?;
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
