//! Packing a mixture: the mixture's position stream (each position a draw of one source's row
//! in one of that source's epochs) cut into pack windows of `window` consecutive positions,
//! each window packed by [`pack_window`] (the dataset packer) from each source's own costs.
//!
//! The stream is open-ended, so packed rows are numbered from the stream's start (window 0's
//! rows first) and a place in it is a [`WindowAnchor`]: a window, its first packed row and the
//! draws per source before it. Going from an anchor to a later row packs the windows between
//! (the rows of a window are known only by packing it), one window in memory at a time; a
//! consumer reads rows `start + i * world_size + rank` as [`ConsumerSplit`] splits positions,
//! so a state is (anchor, first row not consumed) and resumes exactly on any number of ranks
//! and workers. Everything is a pure function of (mixture seed, rates, each source's layout,
//! shuffle and costs, budgets, window).

use std::sync::Arc;

use super::mixture::{MixtureDraws, MixtureRows, MixtureSchedule, MixtureSource};
use super::pack::{pack_window, PackCosts, PackOptions, PackedWindow};
use super::rng::{derive_seed, STREAM_MIXTURE_PACK};
use super::split::{ConsumerSplit, LocalWalk, Remainder};
use crate::error::{Error, Result};

/// Where a pack window of a mixture starts: the window's index, its first packed row (rows
/// counted from the stream's start), and the draws per source among the positions before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowAnchor {
    pub window: u64,
    pub first_row: u64,
    pub counts: Vec<u64>,
}

/// One position of the mixture stream, resolved: a row of a source, drawn in that source's
/// epoch `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrawnRow {
    pub source: usize,
    pub row: u64,
    pub epoch: u64,
}

/// A mixture's packed rows: its schedule, sources and their costs, and the budgets.
#[derive(Debug, Clone)]
pub struct MixturePackPlan {
    seed: u64,
    schedule: MixtureSchedule,
    sources: Vec<MixtureSource>,
    /// Per source, the costs of its rows.
    costs: Vec<PackCosts>,
    options: PackOptions,
}

/// One packed window: the draws of its positions (in stream order) and its rows, whose
/// examples are indices into `draws`.
#[derive(Debug, Clone)]
pub struct MixtureWindow {
    pub anchor: WindowAnchor,
    pub draws: Vec<DrawnRow>,
    pub packed: PackedWindow,
}

impl MixtureWindow {
    /// The anchor of the window after this one.
    pub fn next_anchor(&self) -> WindowAnchor {
        let mut counts = self.anchor.counts.clone();
        for d in &self.draws {
            counts[d.source] += 1;
        }
        WindowAnchor {
            window: self.anchor.window + 1,
            first_row: self.end_row(),
            counts,
        }
    }

    /// One past the window's last packed row.
    pub fn end_row(&self) -> u64 {
        self.anchor.first_row + self.packed.num_rows() as u64
    }
}

/// Positions past any length a mixture is read for (the stream has no end).
const ENDLESS: u64 = 1 << 62;

impl MixturePackPlan {
    /// `weights` and `seed` make the schedule (as for [`MixtureSchedule`]); one source and one
    /// cost table per weight.
    pub fn new(
        weights: &[f64],
        seed: u64,
        sources: Vec<MixtureSource>,
        costs: Vec<PackCosts>,
        options: PackOptions,
    ) -> Result<Self> {
        options.validate()?;
        let schedule = MixtureSchedule::new(weights, seed)?;
        if sources.len() != weights.len() || costs.len() != weights.len() {
            return Err(Error::InvalidArgument(format!(
                "{} weights, {} sources and {} cost tables: give one of each per source",
                weights.len(),
                sources.len(),
                costs.len()
            )));
        }
        for (i, (s, c)) in sources.iter().zip(&costs).enumerate() {
            let rows: u64 = s.row_groups.iter().sum();
            if c.len() as u64 != rows {
                return Err(Error::InvalidArgument(format!(
                    "mixture source {i}: {} costs for a dataset of {rows} rows",
                    c.len()
                )));
            }
        }
        let plan = MixturePackPlan {
            seed,
            schedule,
            sources,
            costs,
            options,
        };
        // Refuses a source with a weight and no rows.
        plan.draws_from(&plan.origin())?;
        Ok(plan)
    }

    pub fn options(&self) -> PackOptions {
        self.options
    }

    pub fn num_sources(&self) -> usize {
        self.sources.len()
    }

    /// The start of the stream.
    pub fn origin(&self) -> WindowAnchor {
        WindowAnchor {
            window: 0,
            first_row: 0,
            counts: vec![0; self.sources.len()],
        }
    }

    /// Whether `candidate` fits wherever `row` of `source` fits (it replaces a bad `row`).
    pub fn fits_in_place_of(&self, source: usize, row: u64, candidate: u64) -> bool {
        self.costs
            .get(source)
            .is_some_and(|c| c.fits_in_place_of(row, candidate))
    }

    /// The draws of every position from `anchor`'s window on, in order.
    fn draws_from(&self, anchor: &WindowAnchor) -> Result<MixtureRows> {
        let start = anchor
            .window
            .checked_mul(self.options.window)
            .filter(|&s| s < ENDLESS)
            .ok_or_else(|| Error::InvalidArgument("pack window index out of range".into()))?;
        if anchor.counts.len() != self.sources.len() || anchor.counts.iter().sum::<u64>() != start {
            return Err(Error::InvalidArgument(format!(
                "a pack window anchor's draws per source {:?} do not add up to the {start} \
                 positions before window {}",
                anchor.counts, anchor.window
            )));
        }
        let split = ConsumerSplit {
            num_positions: ENDLESS,
            start,
            world_size: 1,
            rank: 0,
            num_workers: 1,
            worker: 0,
            block: 1,
            remainder: Remainder::Pad,
        };
        let draws = MixtureDraws::new(self.schedule.clone(), split, &anchor.counts)?;
        MixtureRows::new(draws, self.sources.clone())
    }

    /// Packs the window at `anchor`, whose draws `draws` yields next.
    fn pack(&self, anchor: WindowAnchor, draws: &mut MixtureRows) -> Result<MixtureWindow> {
        let m = self.options.window as usize;
        let mut taken = Vec::with_capacity(m);
        draws.next_rows(m, &mut taken)?;
        let mut drawn = Vec::with_capacity(m);
        let (mut tokens, mut crops) = (Vec::with_capacity(m), Vec::with_capacity(m));
        for (d, row) in taken {
            let c = &self.costs[d.source];
            tokens.push(c.tokens[row as usize]);
            crops.push(c.crops[row as usize]);
            drawn.push(DrawnRow {
                source: d.source,
                row,
                epoch: draws.epoch_of(&d),
            });
        }
        // The window's examples are its positions 0..m, costed from their sources.
        let costs = PackCosts::new(tokens, crops)?;
        let ids: Vec<u64> = (0..drawn.len() as u64).collect();
        let seed = derive_seed(self.seed, anchor.window, STREAM_MIXTURE_PACK, 0);
        let packed = pack_window(&ids, &costs, &self.options, Some(seed))?;
        Ok(MixtureWindow {
            anchor,
            draws: drawn,
            packed,
        })
    }

    /// The anchor of the window holding packed row `row`, found by packing the windows from
    /// `from` (whose first row must be at most `row`).
    pub fn seek(self: &Arc<Self>, from: &WindowAnchor, row: u64) -> Result<WindowAnchor> {
        let mut cursor = MixturePackCursor::new(self.clone(), from.clone())?;
        Ok(cursor.window_of(row)?.anchor.clone())
    }
}

/// Walks a mixture's packed windows forward from an anchor, holding the last one packed.
#[derive(Debug, Clone)]
pub struct MixturePackCursor {
    plan: Arc<MixturePackPlan>,
    draws: MixtureRows,
    next: WindowAnchor,
    current: Option<MixtureWindow>,
}

impl MixturePackCursor {
    pub fn new(plan: Arc<MixturePackPlan>, anchor: WindowAnchor) -> Result<Self> {
        let draws = plan.draws_from(&anchor)?;
        Ok(MixturePackCursor {
            plan,
            draws,
            next: anchor,
            current: None,
        })
    }

    /// The packed window holding row `row`, packing the windows up to it. Rows before the
    /// current window (or, before the first call, before the anchor) cannot be reached.
    pub fn window_of(&mut self, row: u64) -> Result<&MixtureWindow> {
        let first = match &self.current {
            Some(w) => w.anchor.first_row,
            None => self.next.first_row,
        };
        if row < first {
            return Err(Error::InvalidArgument(format!(
                "packed row {row} comes before this reader's first pack window (row {first})"
            )));
        }
        while self.current.as_ref().is_none_or(|w| row >= w.end_row()) {
            let window = self.plan.pack(self.next.clone(), &mut self.draws)?;
            self.next = window.next_anchor();
            self.current = Some(window);
        }
        Ok(self.current.as_ref().expect("packed above"))
    }

    /// Appends the draws of packed row `row` to `out`; returns how many and whether it is one
    /// example over a budget.
    pub fn read_row(&mut self, row: u64, out: &mut Vec<DrawnRow>) -> Result<(usize, bool)> {
        let w = self.window_of(row)?;
        let i = (row - w.anchor.first_row) as usize;
        let ids = w.packed.row(i);
        out.extend(ids.iter().map(|&p| w.draws[p as usize]));
        Ok((ids.len(), w.packed.oversize[i]))
    }
}

/// The packed rows one consumer of a packed mixture reads, in order: rows
/// `split.start + i * world_size + rank` of the stream, its workers taking blocks of them.
#[derive(Debug, Clone)]
pub struct MixturePackedRows {
    split: ConsumerSplit,
    cursor: MixturePackCursor,
    walk: LocalWalk,
}

impl MixturePackedRows {
    /// `anchor` must start at or before row `split.start` (a window anchor of a state, or the
    /// origin); `skip` rows of this consumer's share are passed over first.
    pub fn new(
        plan: Arc<MixturePackPlan>,
        anchor: WindowAnchor,
        split: ConsumerSplit,
        skip: u64,
    ) -> Result<Self> {
        split.validate()?;
        if anchor.first_row > split.start {
            return Err(Error::InvalidArgument(format!(
                "the pack window anchor (row {}) is after the first row to read ({})",
                anchor.first_row, split.start
            )));
        }
        let walk = LocalWalk::skipping(&split, skip);
        Ok(MixturePackedRows {
            split,
            cursor: MixturePackCursor::new(plan, anchor)?,
            walk,
        })
    }

    /// Packed rows left for this consumer.
    pub fn remaining(&self) -> u64 {
        self.walk.remaining()
    }

    /// Appends the draws of up to `n` packed rows to `out` and their sizes to `sizes`.
    pub fn next_rows(
        &mut self,
        n: usize,
        out: &mut Vec<DrawnRow>,
        sizes: &mut Vec<u32>,
    ) -> Result<()> {
        for _ in 0..n {
            let Some(local) = self.walk.next() else { break };
            // The stream has no end: rows past a pass's length are the next rows, not a wrap.
            let (k, _) = self.cursor.read_row(self.split.position(local), out)?;
            sizes.push(k as u32);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "pack_mixture_tests.rs"]
mod tests;
