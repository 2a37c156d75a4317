//! One dataset's epoch order: the row groups permuted, cut into windows of at least
//! `window_rows` rows, and the rows of each window permuted.

use std::sync::Arc;

use super::rng::{derive_seed, Rng, STREAM_GROUP_ORDER, STREAM_WINDOW};
use crate::error::{Error, Result};

/// How an epoch is shuffled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShuffleOptions {
    pub shuffle: bool,
    pub seed: u64,
    /// Minimum rows per shuffle window (the windowed shuffle's span); at least one row group.
    pub window_rows: u64,
}

impl Default for ShuffleOptions {
    fn default() -> Self {
        ShuffleOptions {
            shuffle: true,
            seed: 0,
            window_rows: 1 << 14,
        }
    }
}

/// One window of an epoch: a run of consecutive row groups of the (shuffled) row-group order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First epoch position of the window.
    pub start: u64,
    /// Rows in the window.
    pub len: u64,
    /// Range of indices into [`EpochPlan::group_order`].
    pub first_group: usize,
    pub end_group: usize,
}

/// The order of one epoch: position `p` in `0..num_rows` reads global row `row_at(p)`.
#[derive(Debug, Clone)]
pub struct EpochPlan {
    options: ShuffleOptions,
    epoch: u64,
    num_rows: u64,
    /// `(first_row, num_rows)` of each row group, in the order the epoch visits them.
    group_order: Vec<(u64, u64)>,
    windows: Vec<Window>,
}

impl EpochPlan {
    /// `row_groups` are the row counts of the dataset's row groups in dataset order (global row
    /// ids count through them in that order).
    pub fn new(row_groups: &[u64], options: ShuffleOptions, epoch: u64) -> Result<Self> {
        let mut groups = Vec::with_capacity(row_groups.len());
        let mut first = 0u64;
        for &n in row_groups {
            if n > 0 {
                groups.push((first, n));
            }
            first = first
                .checked_add(n)
                .ok_or_else(|| Error::InvalidArgument("row count overflows u64".into()))?;
        }
        let num_rows = first;
        if options.shuffle {
            Rng::new(derive_seed(options.seed, epoch, STREAM_GROUP_ORDER, 0)).shuffle(&mut groups);
        }
        let mut windows = Vec::new();
        let target = options.window_rows.max(1);
        let (mut start, mut len, mut first_group) = (0u64, 0u64, 0usize);
        for (i, &(_, n)) in groups.iter().enumerate() {
            len += n;
            if len >= target || i + 1 == groups.len() {
                windows.push(Window {
                    start,
                    len,
                    first_group,
                    end_group: i + 1,
                });
                start += len;
                len = 0;
                first_group = i + 1;
            }
        }
        if let Some(w) = windows.iter().find(|w| w.len > MAX_WINDOW_ROWS) {
            // A reader holds a window's row ids (8 bytes each); no real row group comes close.
            return Err(Error::InvalidArgument(format!(
                "a shuffle window would hold {} rows (its row groups are that large), more than \
                 the {MAX_WINDOW_ROWS} a reader can hold; are the row counts of the manifest right?",
                w.len
            )));
        }
        Ok(EpochPlan {
            options,
            epoch,
            num_rows,
            group_order: groups,
            windows,
        })
    }

    pub fn num_rows(&self) -> u64 {
        self.num_rows
    }
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    pub fn options(&self) -> ShuffleOptions {
        self.options
    }
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }
    pub fn group_order(&self) -> &[(u64, u64)] {
        &self.group_order
    }

    /// Index of the window holding position `pos` (`pos < num_rows`).
    pub fn window_of(&self, pos: u64) -> usize {
        debug_assert!(pos < self.num_rows);
        self.windows.partition_point(|w| w.start + w.len <= pos)
    }

    /// The row groups `(first_row, num_rows)` of window `w`.
    pub fn window_groups(&self, w: usize) -> &[(u64, u64)] {
        let win = &self.windows[w];
        &self.group_order[win.first_group..win.end_group]
    }

    /// The rows of window `w`, in the order the epoch reads them.
    pub fn window_rows(&self, w: usize) -> Vec<u64> {
        let mut rows = Vec::with_capacity(self.windows[w].len as usize);
        for &(first, n) in self.window_groups(w) {
            rows.extend(first..first + n);
        }
        if self.options.shuffle {
            let seed = derive_seed(self.options.seed, self.epoch, STREAM_WINDOW, w as u64);
            Rng::new(seed).shuffle(&mut rows);
        }
        rows
    }

    /// The whole order of the epoch (`num_rows` ids; for tests and measurement).
    pub fn all_rows(&self) -> Vec<u64> {
        (0..self.windows.len())
            .flat_map(|w| self.window_rows(w))
            .collect()
    }
}

/// Finds rows of an [`EpochPlan`] by position, keeping the permutation of the last window it
/// touched; reading positions in increasing order computes each window once.
#[derive(Debug, Clone)]
pub struct PlanCursor {
    plan: Arc<EpochPlan>,
    window: usize,
    rows: Vec<u64>,
}

impl PlanCursor {
    pub fn new(plan: Arc<EpochPlan>) -> Self {
        PlanCursor {
            plan,
            window: usize::MAX,
            rows: Vec::new(),
        }
    }

    pub fn plan(&self) -> &Arc<EpochPlan> {
        &self.plan
    }

    /// Row at position `pos` of the epoch, `pos < num_rows`.
    pub fn row_at(&mut self, pos: u64) -> u64 {
        let cached = self.window != usize::MAX && {
            let win = &self.plan.windows[self.window];
            pos >= win.start && pos < win.start + win.len
        };
        if !cached {
            let w = self.plan.window_of(pos);
            self.rows = self.plan.window_rows(w);
            self.window = w;
        }
        self.rows[(pos - self.plan.windows[self.window].start) as usize]
    }
}

/// Row ids one window may hold (32 GiB of them).
pub const MAX_WINDOW_ROWS: u64 = 1 << 32;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::{layout, plan};
    use std::collections::HashSet;

    #[test]
    fn plan_is_a_permutation_and_deterministic() {
        let n: u64 = layout().iter().sum();
        for window in [1, 10, 25, 1000] {
            let p = plan(3, 1, window);
            let rows = p.all_rows();
            let mut sorted = rows.clone();
            sorted.sort();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>());
            assert_eq!(rows, plan(3, 1, window).all_rows());
            let mut c = PlanCursor::new(p.clone());
            for (pos, &r) in rows.iter().enumerate() {
                assert_eq!(c.row_at(pos as u64), r);
            }
            // Random access in any order agrees too.
            for pos in (0..n).rev() {
                assert_eq!(c.row_at(pos), rows[pos as usize]);
            }
        }
        assert_ne!(plan(3, 1, 25).all_rows(), plan(3, 2, 25).all_rows());
        assert_ne!(plan(3, 1, 25).all_rows(), plan(4, 1, 25).all_rows());
    }

    #[test]
    fn windows_respect_the_bound() {
        let p = plan(9, 0, 15);
        let mut covered = 0;
        for (i, w) in p.windows().iter().enumerate() {
            assert_eq!(w.start, covered);
            covered += w.len;
            let rows: HashSet<u64> = p.window_rows(i).into_iter().collect();
            let mut expect = HashSet::new();
            for &(f, n) in p.window_groups(i) {
                expect.extend(f..f + n);
            }
            assert_eq!(rows, expect);
            // A window closes as soon as it reaches the target size.
            let groups = p.window_groups(i);
            let without_last: u64 = groups[..groups.len() - 1].iter().map(|g| g.1).sum();
            assert!(without_last < 15);
        }
        assert_eq!(covered, p.num_rows());
    }

    #[test]
    fn no_shuffle_is_storage_order() {
        let opts = ShuffleOptions {
            shuffle: false,
            seed: 1,
            window_rows: 4,
        };
        let p = EpochPlan::new(&layout(), opts, 5).unwrap();
        assert_eq!(p.all_rows(), (0..57).collect::<Vec<_>>());
    }
}
