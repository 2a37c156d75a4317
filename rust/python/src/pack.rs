//! Python glue for packing: `_native.PackPlan` (a packed epoch, for its row counts, tests and
//! benchmarks) and `_native.packed_read_ahead` (the read-ahead over one consumer's packed rows).

use std::sync::Arc;

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pixmo_stream_core::plan::{
    EpochPlan, PackCosts, PackCursor, PackOptions, PackPlan, PackedRows, ShuffleOptions,
};
use pixmo_stream_core::stream::{PackedSource, ReadAheadOptions, ReplacementFits};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::decoded::DecodeSpec;
use crate::plan::make_split;
use crate::stream::{
    build, concatenated, open_sources, policy, ConcatRows, ManifestId, PyReadAhead, StorageArg,
};

fn value_error(e: pixmo_stream_core::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// What a packed epoch is a function of (besides the costs).
#[derive(Clone, Copy)]
struct PlanArgs {
    seed: u64,
    epoch: u64,
    shuffle: bool,
    window_rows: u64,
    options: PackOptions,
}

impl PlanArgs {
    /// From the keyword arguments every packed entry point takes.
    #[allow(clippy::too_many_arguments)]
    fn new(
        seed: u64,
        epoch: u64,
        shuffle: bool,
        window_rows: u64,
        max_tokens: u32,
        max_crops: u32,
        pack_window: u64,
    ) -> Self {
        PlanArgs {
            seed,
            epoch,
            shuffle,
            window_rows,
            options: PackOptions {
                max_tokens,
                max_crops,
                window: pack_window,
            },
        }
    }
}

fn costs(
    tokens: PyReadonlyArray1<'_, u32>,
    crops: PyReadonlyArray1<'_, u16>,
) -> PyResult<PackCosts> {
    PackCosts::new(tokens.as_array().to_vec(), crops.as_array().to_vec()).map_err(value_error)
}

/// Plans the epoch: packs it once to count rows, unless `counts` (from the same plan) are given.
fn make_plan(
    layout: &[u64],
    costs: PackCosts,
    a: PlanArgs,
    counts: Option<Vec<u64>>,
) -> pixmo_stream_core::Result<PackPlan> {
    let shuffle = ShuffleOptions {
        shuffle: a.shuffle,
        seed: a.seed,
        window_rows: a.window_rows,
    };
    let order = Arc::new(EpochPlan::new(layout, shuffle, a.epoch)?);
    let costs = Arc::new(costs);
    match counts {
        Some(c) => PackPlan::with_row_counts(order, costs, a.options, &c),
        None => PackPlan::new(order, costs, a.options),
    }
}

/// The packed rows of one epoch (a pure function of the layout, costs, seed, epoch, budgets
/// and pack window).
#[pyclass(name = "PackPlan", module = "pixmo_stream._native", frozen)]
pub struct PyPackPlan {
    inner: Arc<PackPlan>,
}

#[pymethods]
impl PyPackPlan {
    #[new]
    #[pyo3(signature = (row_groups, tokens, crops, *, seed=0, epoch=0, shuffle=true,
        window_rows=16384, max_tokens=16384, max_crops=u32::MAX, pack_window=16384,
        row_counts=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        row_groups: Vec<u64>,
        tokens: PyReadonlyArray1<'_, u32>,
        crops: PyReadonlyArray1<'_, u16>,
        seed: u64,
        epoch: u64,
        shuffle: bool,
        window_rows: u64,
        max_tokens: u32,
        max_crops: u32,
        pack_window: u64,
        row_counts: Option<Vec<u64>>,
    ) -> PyResult<Self> {
        let costs = costs(tokens, crops)?;
        let args = PlanArgs::new(
            seed,
            epoch,
            shuffle,
            window_rows,
            max_tokens,
            max_crops,
            pack_window,
        );
        let plan = py
            .detach(|| make_plan(&row_groups, costs, args, row_counts))
            .map_err(value_error)?;
        Ok(PyPackPlan {
            inner: Arc::new(plan),
        })
    }

    /// Packed rows in the epoch.
    #[getter]
    fn num_rows(&self) -> u64 {
        self.inner.num_rows()
    }

    /// Packed rows of each pack window (give them to a plan of the same epoch elsewhere to
    /// skip packing the whole epoch again).
    fn row_counts(&self) -> Vec<u64> {
        self.inner.row_counts()
    }

    /// Every packed row as `(row ids, sizes, oversize)`: the epoch's row ids row after row
    /// (uint64), the examples per row (uint32) and whether each row is one oversize example.
    #[allow(clippy::type_complexity)]
    fn rows<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(
        Bound<'py, PyArray1<u64>>,
        Bound<'py, PyArray1<u32>>,
        Vec<bool>,
    )> {
        let plan = self.inner.clone();
        let (ids, sizes, over) = py
            .detach(move || {
                let mut cursor = PackCursor::new(plan.clone());
                let (mut ids, mut sizes, mut over) = (Vec::new(), Vec::new(), Vec::new());
                for g in 0..plan.num_rows() {
                    let (r, o) = cursor.row(g)?;
                    ids.extend_from_slice(r);
                    sizes.push(r.len() as u32);
                    over.push(o);
                }
                Ok((ids, sizes, over))
            })
            .map_err(value_error)?;
        Ok((ids.into_pyarray(py), sizes.into_pyarray(py), over))
    }
}

/// The read-ahead over the packed rows one consumer reads (rank `rank` of `world_size` takes
/// rows `start + i * world_size + rank`; workers take blocks of `block` rows), `block` rows a
/// batch. `skip` passes over that many of this consumer's rows first. Under `replace`, a bad
/// example is replaced by one whose costs fit where it was.
#[pyfunction]
#[pyo3(signature = (paths, columns, tokens, crops, *, seed=0, epoch=0, shuffle=true,
    window_rows=16384, max_tokens=16384, max_crops=u32::MAX, pack_window=16384, row_counts=None,
    start=0, world_size=1, rank=0, num_workers=1, worker=0, block=1, pad=true, threads=2,
    depth=2, skip=0, verify_blobs=true, expect=None, replace=None, decode=None, storage=None))]
#[allow(clippy::too_many_arguments)]
fn packed_read_ahead(
    py: Python<'_>,
    paths: Vec<String>,
    columns: Option<Vec<String>>,
    tokens: PyReadonlyArray1<'_, u32>,
    crops: PyReadonlyArray1<'_, u16>,
    seed: u64,
    epoch: u64,
    shuffle: bool,
    window_rows: u64,
    max_tokens: u32,
    max_crops: u32,
    pack_window: u64,
    row_counts: Option<Vec<u64>>,
    start: u64,
    world_size: u64,
    rank: u64,
    num_workers: u64,
    worker: u64,
    block: u64,
    pad: bool,
    threads: usize,
    depth: usize,
    skip: u64,
    verify_blobs: bool,
    expect: Option<Vec<Option<ManifestId>>>,
    replace: Option<(u64, u32)>,
    decode: Option<DecodeSpec>,
    storage: Option<Vec<Option<StorageArg>>>,
) -> PyResult<PyReadAhead> {
    let n = paths.len();
    let sources = open_sources(py, paths, vec![columns; n], expect, storage)?;
    let (layout, starts) = concatenated(&sources);
    let costs = costs(tokens, crops)?;
    let args = PlanArgs::new(
        seed,
        epoch,
        shuffle,
        window_rows,
        max_tokens,
        max_crops,
        pack_window,
    );
    let plan = Arc::new(
        py.detach(|| make_plan(&layout, costs, args, row_counts))
            .map_err(value_error)?,
    );
    let split = make_split(
        plan.num_rows(),
        start,
        world_size,
        rank,
        num_workers,
        worker,
        block,
        pad,
    )?;
    let fits: ReplacementFits = {
        let (costs, starts) = (plan.costs().clone(), starts.clone());
        Arc::new(move |source, row, candidate| {
            let base = starts[source];
            costs.fits_in_place_of(base + row, base + candidate)
        })
    };
    let rows = PackedRows::new(plan, split, skip).map_err(value_error)?;
    let rows = ConcatRows {
        rows: Box::new(PackedSource::new(rows)),
        starts,
    };
    build(
        py,
        sources,
        Box::new(rows),
        ReadAheadOptions {
            batch_rows: block as usize,
            threads,
            depth,
            skip: 0,
            verify_blobs,
            on_bad_sample: policy(replace),
        },
        decode,
        Some(fits),
    )
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPackPlan>()?;
    m.add_function(wrap_pyfunction!(packed_read_ahead, m)?)?;
    Ok(())
}
