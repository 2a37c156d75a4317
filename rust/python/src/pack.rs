//! Python glue for packing: `_native.PackPlan` (a packed epoch, for its row counts, tests and
//! benchmarks) and `_native.packed_read_ahead` (the read-ahead over one consumer's packed rows);
//! for a mixture, `_native.MixturePackPlan` and `_native.mixture_packed_read_ahead`.

use std::sync::Arc;

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pixmo_stream_core::plan::{
    EpochPlan, MixturePackCursor, MixturePackPlan, MixturePackedRows, PackCosts, PackCursor,
    PackOptions, PackPlan, PackedRows, ShuffleOptions, WindowAnchor,
};
use pixmo_stream_core::stream::{PackedDraws, PackedSource, ReadAheadOptions, ReplacementFits};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::decoded::DecodeSpec;
use crate::plan::{make_split, mixture_sources};
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
        packed_options(block, threads, depth, verify_blobs, replace),
        decode,
        Some(fits),
    )
}

/// A pack window anchor as Python holds it: `(window, first packed row, draws per source)`.
type AnchorArg = (u64, u64, Vec<u64>);

fn anchor((window, first_row, counts): AnchorArg) -> WindowAnchor {
    WindowAnchor {
        window,
        first_row,
        counts,
    }
}

fn anchor_arg(a: WindowAnchor) -> AnchorArg {
    (a.window, a.first_row, a.counts)
}

/// A mixture's packed rows (a pure function of the rates, seed, sources, their costs, the
/// budgets and the pack window); see `pixmo_stream_core::plan::pack_mixture`.
#[pyclass(name = "MixturePackPlan", module = "pixmo_stream._native", frozen)]
pub struct PyMixturePackPlan {
    inner: Arc<MixturePackPlan>,
}

#[pymethods]
impl PyMixturePackPlan {
    /// `sources` are `(row_groups, seed, shuffle, window_rows, first_epoch)` tuples; `tokens`
    /// and `crops` one array per source.
    #[new]
    #[pyo3(signature = (weights, seed, sources, tokens, crops, *, max_tokens=16384,
        max_crops=u32::MAX, pack_window=16384))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        weights: Vec<f64>,
        seed: u64,
        sources: Vec<(Vec<u64>, u64, bool, u64, u64)>,
        tokens: Vec<PyReadonlyArray1<'_, u32>>,
        crops: Vec<PyReadonlyArray1<'_, u16>>,
        max_tokens: u32,
        max_crops: u32,
        pack_window: u64,
    ) -> PyResult<Self> {
        if tokens.len() != crops.len() {
            return Err(PyValueError::new_err(format!(
                "{} token arrays but {} crop arrays",
                tokens.len(),
                crops.len()
            )));
        }
        let costs = tokens
            .into_iter()
            .zip(crops)
            .map(|(t, c)| costs(t, c))
            .collect::<PyResult<Vec<_>>>()?;
        let options = PackOptions {
            max_tokens,
            max_crops,
            window: pack_window,
        };
        let plan = MixturePackPlan::new(&weights, seed, mixture_sources(sources), costs, options)
            .map_err(value_error)?;
        Ok(PyMixturePackPlan {
            inner: Arc::new(plan),
        })
    }

    /// The anchor of the pack window holding packed row `row`, packing the windows from
    /// `anchor` (whose first row must be at most `row`).
    fn seek(&self, py: Python<'_>, anchor: AnchorArg, row: u64) -> PyResult<AnchorArg> {
        let (plan, from) = (self.inner.clone(), self::anchor(anchor));
        let a = py.detach(|| plan.seek(&from, row)).map_err(value_error)?;
        Ok(anchor_arg(a))
    }

    /// Packed rows `start .. start + n` of the stream as `(sources, rows, epochs, sizes,
    /// oversize)`: per example its source, row and source epoch (rows after rows), per packed
    /// row its examples and whether it is one example over a budget. `anchor` must start at
    /// or before `start`.
    #[allow(clippy::type_complexity)]
    fn rows<'py>(
        &self,
        py: Python<'py>,
        anchor: AnchorArg,
        start: u64,
        n: u64,
    ) -> PyResult<(
        Bound<'py, PyArray1<u64>>,
        Bound<'py, PyArray1<u64>>,
        Bound<'py, PyArray1<u64>>,
        Bound<'py, PyArray1<u32>>,
        Vec<bool>,
    )> {
        let (plan, from) = (self.inner.clone(), self::anchor(anchor));
        let (drawn, sizes, over) = py
            .detach(move || {
                let mut cursor = MixturePackCursor::new(plan, from)?;
                let (mut drawn, mut sizes, mut over) = (Vec::new(), Vec::new(), Vec::new());
                for g in start..start.saturating_add(n) {
                    let (k, o) = cursor.read_row(g, &mut drawn)?;
                    sizes.push(k as u32);
                    over.push(o);
                }
                Ok((drawn, sizes, over))
            })
            .map_err(value_error)?;
        let col = |f: fn(&pixmo_stream_core::plan::DrawnRow) -> u64| -> Vec<u64> {
            drawn.iter().map(f).collect()
        };
        Ok((
            col(|d| d.source as u64).into_pyarray(py),
            col(|d| d.row).into_pyarray(py),
            col(|d| d.epoch).into_pyarray(py),
            sizes.into_pyarray(py),
            over,
        ))
    }
}

/// The read-ahead over the packed rows one consumer of a packed mixture reads: rank `rank` of
/// `world_size` takes rows `start + i * world_size + rank` for rows `start..num_positions`
/// (rounded up to a multiple of `world_size`: the stream goes on), workers take blocks of
/// `block` rows, `block` rows a batch; `anchor` (a pack window at or before `start`) is where
/// the packing starts. `skip` passes over that many of this consumer's rows first. Under
/// `replace`, a bad example is replaced by a row of its source whose costs fit where it was.
#[pyfunction]
#[pyo3(signature = (plan, paths, columns, anchor, *, num_positions, start=0, world_size=1,
    rank=0, num_workers=1, worker=0, block=1, threads=2, depth=2, skip=0, verify_blobs=true,
    expect=None, replace=None, decode=None, storage=None))]
#[allow(clippy::too_many_arguments)]
fn mixture_packed_read_ahead(
    py: Python<'_>,
    plan: &PyMixturePackPlan,
    paths: Vec<String>,
    columns: Vec<Option<Vec<String>>>,
    anchor: AnchorArg,
    num_positions: u64,
    start: u64,
    world_size: u64,
    rank: u64,
    num_workers: u64,
    worker: u64,
    block: u64,
    threads: usize,
    depth: usize,
    skip: u64,
    verify_blobs: bool,
    expect: Option<Vec<Option<ManifestId>>>,
    replace: Option<(u64, u32)>,
    decode: Option<DecodeSpec>,
    storage: Option<Vec<Option<StorageArg>>>,
) -> PyResult<PyReadAhead> {
    let plan = plan.inner.clone();
    if paths.len() != plan.num_sources() {
        return Err(PyValueError::new_err(format!(
            "{} paths for a mixture of {} sources",
            paths.len(),
            plan.num_sources()
        )));
    }
    let sources = open_sources(py, paths, columns, expect, storage)?;
    let split = make_split(
        num_positions,
        start,
        world_size,
        rank,
        num_workers,
        worker,
        block,
        true,
    )?;
    let fits: ReplacementFits = {
        let plan = plan.clone();
        Arc::new(move |source, row, candidate| plan.fits_in_place_of(source, row, candidate))
    };
    let rows = py
        .detach(|| MixturePackedRows::new(plan, self::anchor(anchor), split, skip))
        .map_err(value_error)?;
    build(
        py,
        sources,
        Box::new(PackedDraws::new(rows)),
        packed_options(block, threads, depth, verify_blobs, replace),
        decode,
        Some(fits),
    )
}

/// The read-ahead options of a packed stream: batches of `block` rows (a step's packed rows'
/// examples are counted by the row source, not here), no rows skipped by the read-ahead.
fn packed_options(
    block: u64,
    threads: usize,
    depth: usize,
    verify_blobs: bool,
    replace: Option<(u64, u32)>,
) -> ReadAheadOptions {
    ReadAheadOptions {
        batch_rows: block as usize,
        threads,
        depth,
        skip: 0,
        verify_blobs,
        on_bad_sample: policy(replace),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPackPlan>()?;
    m.add_class::<PyMixturePackPlan>()?;
    m.add_function(wrap_pyfunction!(packed_read_ahead, m)?)?;
    m.add_function(wrap_pyfunction!(mixture_packed_read_ahead, m)?)?;
    Ok(())
}
