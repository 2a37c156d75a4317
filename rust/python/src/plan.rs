//! Python glue for `pixmo_stream_core::plan`: epoch plans, consumer splits, mixture draws.

use std::sync::Arc;

use numpy::{IntoPyArray, PyArray1};
use pixmo_stream_core::plan::{
    ConsumerRows, ConsumerSplit, EpochPlan, MixtureDraws, MixtureRows, MixtureSchedule,
    MixtureSource, Remainder, ShuffleOptions,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

fn value_error(e: pixmo_stream_core::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn remainder(pad: bool) -> Remainder {
    if pad {
        Remainder::Pad
    } else {
        Remainder::Drop
    }
}

#[allow(clippy::too_many_arguments)]
pub fn make_split(
    num_positions: u64,
    start: u64,
    world_size: u64,
    rank: u64,
    num_workers: u64,
    worker: u64,
    block: u64,
    pad: bool,
) -> PyResult<ConsumerSplit> {
    let split = ConsumerSplit {
        num_positions,
        start,
        world_size,
        rank,
        num_workers,
        worker,
        block,
        remainder: remainder(pad),
    };
    split.validate().map_err(value_error)?;
    Ok(split)
}

/// The order of one epoch over a dataset's rows (a pure function of the row-group layout,
/// seed, epoch and window size).
#[pyclass(name = "EpochPlan", module = "pixmo_stream._native", frozen)]
pub struct PyEpochPlan {
    inner: Arc<EpochPlan>,
}

#[pymethods]
impl PyEpochPlan {
    #[new]
    #[pyo3(signature = (row_groups, *, seed=0, epoch=0, shuffle=true, window_rows=16384))]
    fn new(
        py: Python<'_>,
        row_groups: Vec<u64>,
        seed: u64,
        epoch: u64,
        shuffle: bool,
        window_rows: u64,
    ) -> PyResult<Self> {
        let options = ShuffleOptions {
            shuffle,
            seed,
            window_rows,
        };
        let plan = py
            .detach(|| EpochPlan::new(&row_groups, options, epoch))
            .map_err(value_error)?;
        Ok(PyEpochPlan {
            inner: Arc::new(plan),
        })
    }

    #[getter]
    fn num_rows(&self) -> u64 {
        self.inner.num_rows()
    }

    #[getter]
    fn epoch(&self) -> u64 {
        self.inner.epoch()
    }

    /// `(start_position, num_rows)` of each shuffle window.
    fn windows(&self) -> Vec<(u64, u64)> {
        self.inner
            .windows()
            .iter()
            .map(|w| (w.start, w.len))
            .collect()
    }

    /// The whole order of the epoch as a uint64 array (for tests and measurement).
    fn all_rows<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        let plan = self.inner.clone();
        py.detach(move || plan.all_rows()).into_pyarray(py)
    }

    /// The rows one consumer reads, as an iterator of uint64 arrays (see `ConsumerRows`).
    #[pyo3(signature = (*, start=0, world_size=1, rank=0, num_workers=1, worker=0, block=1, pad=false))]
    #[allow(clippy::too_many_arguments)]
    fn consumer_rows(
        &self,
        start: u64,
        world_size: u64,
        rank: u64,
        num_workers: u64,
        worker: u64,
        block: u64,
        pad: bool,
    ) -> PyResult<PyConsumerRows> {
        let split = make_split(
            self.inner.num_rows(),
            start,
            world_size,
            rank,
            num_workers,
            worker,
            block,
            pad,
        )?;
        let rows = ConsumerRows::new(self.inner.clone(), split).map_err(value_error)?;
        Ok(PyConsumerRows { inner: rows })
    }
}

/// The rows one consumer (rank x worker) reads from one epoch plan, in order.
#[pyclass(name = "ConsumerRows", module = "pixmo_stream._native")]
pub struct PyConsumerRows {
    inner: ConsumerRows,
}

#[pymethods]
impl PyConsumerRows {
    /// Up to `n` next rows (an empty array at the end).
    fn next_rows<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyArray1<u64>> {
        let inner = &mut self.inner;
        let out = py.detach(|| {
            let mut out = Vec::with_capacity(n.min(inner.remaining() as usize));
            inner.next_rows(n, &mut out);
            out
        });
        out.into_pyarray(py)
    }

    #[getter]
    fn remaining(&self) -> u64 {
        self.inner.remaining()
    }
}

/// Samples per rank from `start` to the end of an epoch of `num_positions` positions.
#[pyfunction]
#[pyo3(signature = (num_positions, *, start=0, world_size=1, pad=false))]
fn rank_len(num_positions: u64, start: u64, world_size: u64, pad: bool) -> PyResult<u64> {
    Ok(make_split(num_positions, start, world_size, 0, 1, 0, 1, pad)?.rank_len())
}

/// Samples one worker of one rank reads (see `ConsumerSplit` in the core).
#[pyfunction]
#[pyo3(signature = (num_positions, *, start=0, world_size=1, num_workers=1, worker=0, block=1, pad=false))]
fn worker_len(
    num_positions: u64,
    start: u64,
    world_size: u64,
    num_workers: u64,
    worker: u64,
    block: u64,
    pad: bool,
) -> PyResult<u64> {
    let split = make_split(
        num_positions,
        start,
        world_size,
        0,
        num_workers,
        worker,
        block,
        pad,
    )?;
    Ok(split.worker_len())
}

/// Draws per source among mixture positions `start..end`.
#[pyfunction]
fn mixture_counts(
    py: Python<'_>,
    weights: Vec<f64>,
    seed: u64,
    start: u64,
    end: u64,
) -> PyResult<Vec<u64>> {
    let schedule = MixtureSchedule::new(&weights, seed).map_err(value_error)?;
    let mut counts = vec![0u64; weights.len()];
    py.detach(|| schedule.count(start, end.max(start), &mut counts));
    Ok(counts)
}

/// Reads the `(row_groups, seed, shuffle, window_rows, first_epoch)` tuples of mixture sources.
pub fn mixture_sources(specs: Vec<(Vec<u64>, u64, bool, u64, u64)>) -> Vec<MixtureSource> {
    specs
        .into_iter()
        .map(
            |(row_groups, seed, shuffle, window_rows, first_epoch)| MixtureSource {
                row_groups,
                options: ShuffleOptions {
                    shuffle,
                    seed,
                    window_rows,
                },
                first_epoch,
            },
        )
        .collect()
}

/// Builds the core iterator over one mixture consumer's `(draw, row)` pairs.
#[allow(clippy::too_many_arguments)]
pub fn mixture_rows(
    weights: &[f64],
    seed: u64,
    counts_at_start: &[u64],
    sources: Vec<MixtureSource>,
    num_positions: u64,
    start: u64,
    world_size: u64,
    rank: u64,
    num_workers: u64,
    worker: u64,
    block: u64,
) -> PyResult<MixtureRows> {
    let schedule = MixtureSchedule::new(weights, seed).map_err(value_error)?;
    // A mixture stream is defined past any length, so rounding up never repeats a draw.
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
    let draws = MixtureDraws::new(schedule, split, counts_at_start).map_err(value_error)?;
    MixtureRows::new(draws, sources).map_err(value_error)
}

/// The draws one consumer of a mixture takes, resolved to rows of its sources.
#[pyclass(name = "MixtureRows", module = "pixmo_stream._native")]
pub struct PyMixtureRows {
    inner: MixtureRows,
}

#[pymethods]
impl PyMixtureRows {
    /// `sources` are `(row_groups, seed, shuffle, window_rows, first_epoch)` tuples.
    #[new]
    #[pyo3(signature = (weights, seed, counts_at_start, sources, *, num_positions, start=0, world_size=1, rank=0, num_workers=1, worker=0, block=1))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        weights: Vec<f64>,
        seed: u64,
        counts_at_start: Vec<u64>,
        sources: Vec<(Vec<u64>, u64, bool, u64, u64)>,
        num_positions: u64,
        start: u64,
        world_size: u64,
        rank: u64,
        num_workers: u64,
        worker: u64,
        block: u64,
    ) -> PyResult<Self> {
        let inner = mixture_rows(
            &weights,
            seed,
            &counts_at_start,
            mixture_sources(sources),
            num_positions,
            start,
            world_size,
            rank,
            num_workers,
            worker,
            block,
        )?;
        Ok(PyMixtureRows { inner })
    }

    /// Up to `n` next draws as three uint64 arrays: mixture positions, sources, rows.
    #[allow(clippy::type_complexity)]
    fn next_rows<'py>(
        &mut self,
        py: Python<'py>,
        n: usize,
    ) -> PyResult<(
        Bound<'py, PyArray1<u64>>,
        Bound<'py, PyArray1<u64>>,
        Bound<'py, PyArray1<u64>>,
    )> {
        let inner = &mut self.inner;
        let out = py.detach(|| {
            let mut out = Vec::new();
            inner.next_rows(n, &mut out).map(|_| out)
        });
        let out = out.map_err(value_error)?;
        let p: Vec<u64> = out.iter().map(|(d, _)| d.position).collect();
        let s: Vec<u64> = out.iter().map(|(d, _)| d.source as u64).collect();
        let r: Vec<u64> = out.iter().map(|(_, r)| *r).collect();
        Ok((p.into_pyarray(py), s.into_pyarray(py), r.into_pyarray(py)))
    }

    #[getter]
    fn remaining(&self) -> u64 {
        self.inner.remaining()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEpochPlan>()?;
    m.add_class::<PyConsumerRows>()?;
    m.add_class::<PyMixtureRows>()?;
    m.add_function(wrap_pyfunction!(rank_len, m)?)?;
    m.add_function(wrap_pyfunction!(worker_len, m)?)?;
    m.add_function(wrap_pyfunction!(mixture_counts, m)?)?;
    Ok(())
}
