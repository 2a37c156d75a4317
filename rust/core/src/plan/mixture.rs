//! A mixture's schedule (which source each position draws from) and the rows its consumers read.

use std::sync::Arc;

use super::order::{EpochPlan, PlanCursor, ShuffleOptions};
use super::rng::{derive_seed, STREAM_MIXTURE};
use super::split::{ConsumerSplit, LocalWalk};
use crate::error::{Error, Result};

/// A mixture's source choices: position `q` of the mixture stream draws from source
/// `source_at(q)`, chosen with the given probabilities by a counter-based hash of (seed, q), so
/// any position is computed without the ones before it.
#[derive(Debug, Clone)]
pub struct MixtureSchedule {
    seed: u64,
    /// Cumulative thresholds over `u64`; source `i` is chosen when `hash < thresholds[i]`.
    thresholds: Vec<u64>,
    zero: Vec<bool>,
}

impl MixtureSchedule {
    pub fn new(weights: &[f64], seed: u64) -> Result<Self> {
        if weights.is_empty() || weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err(Error::InvalidArgument(
                "weights must be finite and >= 0".into(),
            ));
        }
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return Err(Error::InvalidArgument(
                "weights must not all be zero".into(),
            ));
        }
        let mut thresholds = Vec::with_capacity(weights.len());
        let mut acc = 0.0f64;
        for w in weights {
            acc += w / total;
            // 2^64 as f64; the cast saturates at u64::MAX.
            thresholds.push((acc.min(1.0) * 18_446_744_073_709_551_616.0) as u64);
        }
        // The last source with a non-zero weight takes the rounding slack.
        let last = weights.iter().rposition(|w| *w > 0.0).unwrap_or(0);
        for t in &mut thresholds[last..] {
            *t = u64::MAX;
        }
        let zero = weights.iter().map(|w| *w == 0.0).collect();
        Ok(MixtureSchedule {
            seed,
            thresholds,
            zero,
        })
    }

    pub fn num_sources(&self) -> usize {
        self.thresholds.len()
    }

    #[inline]
    pub fn source_at(&self, q: u64) -> usize {
        let h = derive_seed(self.seed, q, STREAM_MIXTURE, 0);
        let mut i = self
            .thresholds
            .partition_point(|&t| t <= h)
            .min(self.thresholds.len() - 1);
        // Only reachable by rounding; never draw a zero-weight source.
        while self.zero[i] && i > 0 {
            i -= 1;
        }
        i
    }

    /// Draws per source among positions `from..to`, added to `counts`.
    pub fn count(&self, from: u64, to: u64, counts: &mut [u64]) {
        for q in from..to {
            counts[self.source_at(q)] += 1;
        }
    }
}

/// One draw of a mixture: the `index`-th sample taken from `source` overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    pub position: u64,
    pub source: usize,
    pub index: u64,
}

/// The draws one consumer of a mixture takes, in order: walks the mixture positions from the
/// split's start, counting every source's draws so that each of its own draws knows how many
/// came before it from the same source.
#[derive(Debug, Clone)]
pub struct MixtureDraws {
    schedule: MixtureSchedule,
    split: ConsumerSplit,
    /// Draws per source among positions `< scanned`.
    counts: Vec<u64>,
    scanned: u64,
    walk: LocalWalk,
}

impl MixtureDraws {
    /// `counts_at_start` are the draws per source among positions `< split.start`.
    pub fn new(
        schedule: MixtureSchedule,
        split: ConsumerSplit,
        counts_at_start: &[u64],
    ) -> Result<Self> {
        split.validate()?;
        if counts_at_start.len() != schedule.num_sources() {
            return Err(Error::InvalidArgument(
                "one count per source is needed".into(),
            ));
        }
        Ok(MixtureDraws {
            counts: counts_at_start.to_vec(),
            scanned: split.start,
            walk: LocalWalk::new(&split),
            schedule,
            split,
        })
    }

    pub fn remaining(&self) -> u64 {
        self.walk.remaining()
    }

    pub fn schedule(&self) -> &MixtureSchedule {
        &self.schedule
    }
}

impl Iterator for MixtureDraws {
    type Item = Draw;
    fn next(&mut self) -> Option<Draw> {
        let local = self.walk.next()?;
        let pos = self.split.position(local);
        self.schedule.count(self.scanned, pos, &mut self.counts);
        let source = self.schedule.source_at(pos);
        let draw = Draw {
            position: pos,
            source,
            index: self.counts[source],
        };
        self.counts[source] += 1;
        self.scanned = pos + 1;
        Some(draw)
    }
}

/// One dataset of a mixture: its row-group layout and how it is shuffled. Its `k`-th draw reads
/// position `k % num_rows` of its own epoch `first_epoch + k / num_rows`, so it is sampled
/// without replacement within each of its epochs, with a fresh order each time it wraps.
#[derive(Debug, Clone)]
pub struct MixtureSource {
    pub row_groups: Vec<u64>,
    pub options: ShuffleOptions,
    pub first_epoch: u64,
}

/// The `(draw, row)` pairs one consumer of a mixture reads, in order.
#[derive(Debug, Clone)]
pub struct MixtureRows {
    draws: MixtureDraws,
    sources: Vec<MixtureSource>,
    num_rows: Vec<u64>,
    cursors: Vec<Option<PlanCursor>>,
}

impl MixtureRows {
    pub fn new(draws: MixtureDraws, sources: Vec<MixtureSource>) -> Result<Self> {
        if sources.len() != draws.schedule.num_sources() {
            return Err(Error::InvalidArgument(
                "one source per weight is needed".into(),
            ));
        }
        let num_rows: Vec<u64> = sources.iter().map(|s| s.row_groups.iter().sum()).collect();
        for (i, n) in num_rows.iter().enumerate() {
            if *n == 0 && !draws.schedule.zero[i] {
                return Err(Error::InvalidArgument(format!(
                    "mixture source {i} has no rows"
                )));
            }
        }
        let cursors = vec![None; sources.len()];
        Ok(MixtureRows {
            draws,
            sources,
            num_rows,
            cursors,
        })
    }

    pub fn remaining(&self) -> u64 {
        self.draws.remaining()
    }

    /// The epoch of its source that draw `d` reads.
    pub fn epoch_of(&self, d: &Draw) -> u64 {
        self.sources[d.source].first_epoch + d.index / self.num_rows[d.source].max(1)
    }

    /// Appends up to `n` `(draw, row)` pairs to `out`; returns how many.
    pub fn next_rows(&mut self, n: usize, out: &mut Vec<(Draw, u64)>) -> Result<usize> {
        let mut taken = 0;
        while taken < n {
            let Some(d) = self.draws.next() else { break };
            let rows = self.num_rows[d.source];
            let epoch = self.sources[d.source].first_epoch + d.index / rows;
            let cursor = &mut self.cursors[d.source];
            if cursor.as_ref().map(|c| c.plan().epoch()) != Some(epoch) {
                let src = &self.sources[d.source];
                let plan = EpochPlan::new(&src.row_groups, src.options, epoch)?;
                *cursor = Some(PlanCursor::new(Arc::new(plan)));
            }
            let row = cursor.as_mut().expect("set above").row_at(d.index % rows);
            out.push((d, row));
            taken += 1;
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::split::Remainder;
    use crate::plan::testing::split;
    use std::collections::HashSet;

    #[test]
    fn mixture_rates_and_resume() {
        let sched = MixtureSchedule::new(&[0.5, 0.0, 0.3, 0.2], 11).unwrap();
        let mut counts = vec![0u64; 4];
        sched.count(0, 100_000, &mut counts);
        assert_eq!(counts[1], 0);
        for (c, r) in counts.iter().zip([0.5, 0.0, 0.3, 0.2]) {
            let f = *c as f64 / 100_000.0;
            assert!((f - r).abs() < 0.01, "{f} vs {r}");
        }
        // Split among 3 ranks x 2 workers, then resume from position 600 on 1 rank.
        let mut draws = Vec::new();
        for rank in 0..3 {
            for w in 0..2 {
                let s = split(1_000, 0, 3, rank, 2, w, 4);
                draws.extend(MixtureDraws::new(sched.clone(), s, &[0; 4]).unwrap());
            }
        }
        draws.sort_by_key(|d| d.position);
        assert_eq!(draws.len(), 999);
        let mut c = [0u64; 4];
        for (q, d) in draws.iter().enumerate() {
            assert_eq!(d.position, q as u64);
            assert_eq!(d.index, c[d.source]);
            c[d.source] += 1;
        }
        let mut at = vec![0u64; 4];
        sched.count(0, 600, &mut at);
        let s = ConsumerSplit {
            remainder: Remainder::Pad,
            ..split(1_000, 600, 1, 0, 1, 0, 1)
        };
        let rest: Vec<Draw> = MixtureDraws::new(sched, s, &at).unwrap().collect();
        assert_eq!(&draws[600..], &rest[..399]);
    }

    #[test]
    fn mixture_sources_wrap_without_replacement() {
        let sched = MixtureSchedule::new(&[1.0, 3.0], 2).unwrap();
        let opts = ShuffleOptions {
            shuffle: true,
            seed: 8,
            window_rows: 4,
        };
        let sources = vec![
            MixtureSource {
                row_groups: vec![3, 4],
                options: opts,
                first_epoch: 0,
            },
            MixtureSource {
                row_groups: vec![5, 5, 2],
                options: opts,
                first_epoch: 7,
            },
        ];
        let s = split(400, 0, 1, 0, 1, 0, 1);
        let draws = MixtureDraws::new(sched, s, &[0, 0]).unwrap();
        let mut m = MixtureRows::new(draws, sources).unwrap();
        let mut out = Vec::new();
        m.next_rows(1000, &mut out).unwrap();
        assert_eq!(out.len(), 400);
        for (src, n) in [(0usize, 7usize), (1, 12)] {
            let rows: Vec<u64> = out
                .iter()
                .filter(|(d, _)| d.source == src)
                .map(|x| x.1)
                .collect();
            for chunk in rows.chunks(n) {
                let u: HashSet<u64> = chunk.iter().copied().collect();
                assert_eq!(u.len(), chunk.len());
            }
            assert_ne!(rows[..n], rows[n..2 * n]);
        }
    }
}
