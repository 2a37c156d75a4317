//! The packing plan: which examples share a training row of a token and a crop budget, and the
//! order of the rows, as a pure function of (seed, epoch, costs, budgets, window), beside the
//! epoch order it packs.
//!
//! 1. The epoch's order ([`EpochPlan`]) is cut into *pack windows* of `window` consecutive
//!    positions (the last one shorter).
//! 2. Each window is bin-packed: best fit, largest token cost first, among the open rows whose
//!    crops also fit (the crop budget is a second constraint). An example over either budget
//!    gets a row of its own, its cost clamped to the budget, and the row is flagged.
//! 3. The window's rows are shuffled (seeded by seed, epoch and window), so long and short rows
//!    mix; inside a row, examples keep their epoch order.
//!
//! Packed rows are numbered through the epoch (window 0's rows first); consumers split them as
//! [`ConsumerSplit`] splits positions, so a state is (epoch, rows consumed) and a resumed run
//! on any number of ranks and workers reads exactly the rest. Counting a window's rows takes
//! packing it, so [`PackPlan::new`] packs the epoch once, keeping one count per window (a
//! resumed consumer may be given them instead: [`PackPlan::with_row_counts`]); a reader then
//! holds one packed window at a time (its row ids and row bounds: ~12 bytes an example).

use std::sync::Arc;

use super::order::{EpochPlan, PlanCursor};
use super::pack_fit::Fit;
use super::rng::{derive_seed, Rng, STREAM_PACK};
use super::split::{ConsumerSplit, LocalWalk};
use crate::error::{Error, Result};

/// Budgets of a row and the span of one packing decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackOptions {
    pub max_tokens: u32,
    /// `u32::MAX`: no crop budget.
    pub max_crops: u32,
    /// Consecutive positions of the epoch packed together (the memory bound).
    pub window: u64,
}

impl PackOptions {
    pub fn validate(&self) -> Result<()> {
        if self.max_tokens == 0 || self.max_crops == 0 || self.window == 0 {
            return Err(Error::InvalidArgument(
                "max_tokens, max_crops and the pack window must be at least 1".into(),
            ));
        }
        if self.window > u32::MAX as u64 {
            return Err(Error::InvalidArgument(
                "the pack window is at most 2^32 - 1 examples".into(),
            ));
        }
        Ok(())
    }
}

/// The cost of every row of the dataset (global row ids): tokens and crops.
#[derive(Debug, Clone, Default)]
pub struct PackCosts {
    pub tokens: Vec<u32>,
    pub crops: Vec<u16>,
}

impl PackCosts {
    pub fn new(tokens: Vec<u32>, crops: Vec<u16>) -> Result<Self> {
        if tokens.len() != crops.len() {
            return Err(Error::InvalidArgument(format!(
                "{} token costs but {} crop costs",
                tokens.len(),
                crops.len()
            )));
        }
        Ok(PackCosts { tokens, crops })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether row `candidate` fits wherever row `row` fits (it replaces a bad `row`).
    pub fn fits_in_place_of(&self, row: u64, candidate: u64) -> bool {
        let (r, c) = (row as usize, candidate as usize);
        c < self.len()
            && r < self.len()
            && self.tokens[c] <= self.tokens[r]
            && self.crops[c] <= self.crops[r]
    }
}

/// One window's packed rows: row `i` holds `examples[bounds[i]..bounds[i + 1]]` (row ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedWindow {
    pub bounds: Vec<u32>,
    pub examples: Vec<u64>,
    /// Rows holding one example over a budget.
    pub oversize: Vec<bool>,
}

impl PackedWindow {
    pub fn num_rows(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    pub fn row(&self, i: usize) -> &[u64] {
        &self.examples[self.bounds[i] as usize..self.bounds[i + 1] as usize]
    }
}

/// Packs `rows` (the row ids of one window, in epoch order) into rows within both budgets,
/// then shuffles the rows with `seed` (none when `shuffle` is false).
///
/// Two heuristics of two-dimensional bin packing run (see [`Fit`]); the one that makes fewer
/// rows is kept.
pub fn pack_window(
    rows: &[u64],
    costs: &PackCosts,
    options: &PackOptions,
    seed: Option<u64>,
) -> Result<PackedWindow> {
    let m = rows.len();
    let (max_t, max_c) = (options.max_tokens, options.max_crops);
    let mut items: Vec<(u32, u32)> = Vec::with_capacity(m);
    for &r in rows {
        let i = usize::try_from(r)
            .ok()
            .filter(|&i| i < costs.len())
            .ok_or_else(|| Error::InvalidArgument(format!("no cost for row {r}")))?;
        items.push((costs.tokens[i], costs.crops[i] as u32));
    }
    let fit = Fit::new(&items, max_t, max_c);
    // Two ways to pack; the one with fewer rows wins (the first on a tie).
    let (mut bin_of, mut used) = fit.decreasing();
    if let Some((rows_first, n)) = fit.row_by_row() {
        if n < used {
            (bin_of, used) = (rows_first, n);
        }
    }
    let mut oversize: Vec<bool> = Vec::with_capacity(used);
    let over_rows: Vec<usize> = (0..m).filter(|&i| bin_of[i] == u32::MAX).collect();
    oversize.resize(used, false);
    for it in over_rows {
        bin_of[it] = oversize.len() as u32;
        oversize.push(true);
    }
    let nb = oversize.len();
    // Row ids grouped by row, in epoch order inside each row (a counting sort by row).
    let mut order: Vec<u32> = (0..nb as u32).collect();
    if let Some(seed) = seed {
        Rng::new(seed).shuffle(&mut order);
    }
    let mut rank = vec![0u32; nb];
    for (k, &b) in order.iter().enumerate() {
        rank[b as usize] = k as u32;
    }
    let mut bounds = vec![0u32; nb + 1];
    for &b in &bin_of {
        bounds[rank[b as usize] as usize + 1] += 1;
    }
    for k in 0..nb {
        bounds[k + 1] += bounds[k];
    }
    let mut fill = bounds.clone();
    let mut examples = vec![0u64; m];
    for (i, &b) in bin_of.iter().enumerate() {
        let k = rank[b as usize] as usize;
        examples[fill[k] as usize] = rows[i];
        fill[k] += 1;
    }
    let oversize = order.iter().map(|&b| oversize[b as usize]).collect();
    Ok(PackedWindow {
        bounds,
        examples,
        oversize,
    })
}

/// The packed rows of one epoch.
#[derive(Debug, Clone)]
pub struct PackPlan {
    order: Arc<EpochPlan>,
    costs: Arc<PackCosts>,
    options: PackOptions,
    /// First packed row of each window, then the total.
    row_starts: Vec<u64>,
}

impl PackPlan {
    /// Packs every window once to count its rows (memory: one window at a time).
    pub fn new(order: Arc<EpochPlan>, costs: Arc<PackCosts>, options: PackOptions) -> Result<Self> {
        let mut plan = Self::unchecked(order, costs, options)?;
        let mut cursor = PlanCursor::new(plan.order.clone());
        let mut starts = vec![0u64];
        for w in 0..plan.num_windows() {
            let n = plan.pack(w, &mut cursor)?.num_rows() as u64;
            starts.push(starts[w] + n);
        }
        plan.row_starts = starts;
        Ok(plan)
    }

    /// A plan whose windows' row counts are known (from [`PackPlan::row_counts`] of the same
    /// plan elsewhere); a window whose packing disagrees is an error when it is read.
    pub fn with_row_counts(
        order: Arc<EpochPlan>,
        costs: Arc<PackCosts>,
        options: PackOptions,
        counts: &[u64],
    ) -> Result<Self> {
        let mut plan = Self::unchecked(order, costs, options)?;
        if counts.len() != plan.num_windows() {
            return Err(Error::InvalidArgument(format!(
                "{} row counts for {} pack windows",
                counts.len(),
                plan.num_windows()
            )));
        }
        let mut starts = vec![0u64];
        for (w, &n) in counts.iter().enumerate() {
            starts.push(starts[w] + n);
        }
        plan.row_starts = starts;
        Ok(plan)
    }

    fn unchecked(
        order: Arc<EpochPlan>,
        costs: Arc<PackCosts>,
        options: PackOptions,
    ) -> Result<Self> {
        options.validate()?;
        if costs.len() as u64 != order.num_rows() {
            return Err(Error::InvalidArgument(format!(
                "{} costs for an epoch of {} rows",
                costs.len(),
                order.num_rows()
            )));
        }
        Ok(PackPlan {
            order,
            costs,
            options,
            row_starts: vec![0],
        })
    }

    pub fn options(&self) -> PackOptions {
        self.options
    }
    pub fn costs(&self) -> &Arc<PackCosts> {
        &self.costs
    }
    pub fn order(&self) -> &Arc<EpochPlan> {
        &self.order
    }

    /// Packed rows in the epoch.
    pub fn num_rows(&self) -> u64 {
        *self.row_starts.last().expect("never empty")
    }

    pub fn num_windows(&self) -> usize {
        self.order.num_rows().div_ceil(self.options.window) as usize
    }

    /// Packed rows of each window.
    pub fn row_counts(&self) -> Vec<u64> {
        self.row_starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Window holding packed row `row` (`row < num_rows`).
    pub fn window_of_row(&self, row: u64) -> usize {
        self.row_starts.partition_point(|&s| s <= row) - 1
    }

    /// First packed row of window `w`.
    pub fn first_row(&self, w: usize) -> u64 {
        self.row_starts[w]
    }

    /// Packs window `w` (`cursor` walks this plan's epoch order).
    pub fn pack(&self, w: usize, cursor: &mut PlanCursor) -> Result<PackedWindow> {
        let start = w as u64 * self.options.window;
        let end = (start + self.options.window).min(self.order.num_rows());
        let rows: Vec<u64> = (start..end).map(|p| cursor.row_at(p)).collect();
        let o = self.order.options();
        let seed = o
            .shuffle
            .then(|| derive_seed(o.seed, self.order.epoch(), STREAM_PACK, w as u64));
        pack_window(&rows, &self.costs, &self.options, seed)
    }
}

/// Finds packed rows by index, keeping the last window it packed.
#[derive(Debug, Clone)]
pub struct PackCursor {
    plan: Arc<PackPlan>,
    order: PlanCursor,
    window: usize,
    packed: PackedWindow,
}

impl PackCursor {
    pub fn new(plan: Arc<PackPlan>) -> Self {
        PackCursor {
            order: PlanCursor::new(plan.order.clone()),
            plan,
            window: usize::MAX,
            packed: PackedWindow::default(),
        }
    }

    /// The row ids of packed row `row` (`row < num_rows`) and whether it is an oversize row.
    pub fn row(&mut self, row: u64) -> Result<(&[u64], bool)> {
        let w = self.plan.window_of_row(row);
        if w != self.window {
            let packed = self.plan.pack(w, &mut self.order)?;
            let expect = self.plan.row_counts_of(w);
            if packed.num_rows() as u64 != expect {
                return Err(Error::InvalidArgument(format!(
                    "pack window {w} packs into {} rows, but the plan was given {expect}: \
                     its costs or budgets differ from those the counts were made with",
                    packed.num_rows()
                )));
            }
            self.packed = packed;
            self.window = w;
        }
        let i = (row - self.plan.first_row(w)) as usize;
        Ok((self.packed.row(i), self.packed.oversize[i]))
    }
}

impl PackPlan {
    fn row_counts_of(&self, w: usize) -> u64 {
        self.row_starts[w + 1] - self.row_starts[w]
    }
}

/// The packed rows one consumer reads, in order: the split is over packed rows (its block is
/// the rows of one batch).
#[derive(Debug, Clone)]
pub struct PackedRows {
    split: ConsumerSplit,
    cursor: PackCursor,
    walk: LocalWalk,
}

impl PackedRows {
    /// `skip`: rows of this consumer's share passed over first (a worker resuming its own
    /// stream); only integers are computed for them.
    pub fn new(plan: Arc<PackPlan>, split: ConsumerSplit, skip: u64) -> Result<Self> {
        split.validate()?;
        if split.num_positions != plan.num_rows() {
            return Err(Error::InvalidArgument(
                "split and pack plan disagree on the rows of the epoch".into(),
            ));
        }
        let walk = LocalWalk::skipping(&split, skip);
        Ok(PackedRows {
            split,
            cursor: PackCursor::new(plan),
            walk,
        })
    }

    /// Packed rows left for this consumer.
    pub fn remaining(&self) -> u64 {
        self.walk.remaining()
    }

    /// Appends the row ids of up to `n` packed rows to `out` and their sizes to `sizes`.
    pub fn next_rows(&mut self, n: usize, out: &mut Vec<u64>, sizes: &mut Vec<u32>) -> Result<()> {
        for _ in 0..n {
            let Some(local) = self.walk.next() else { break };
            let g = self.split.position(local) % self.split.num_positions;
            let (ids, _) = self.cursor.row(g)?;
            out.extend_from_slice(ids);
            sizes.push(ids.len() as u32);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "pack_tests.rs"]
mod tests;
