//! Epoch plans: which row every position of an epoch reads, and which positions each consumer
//! (rank × worker) takes. Everything here is a pure function of small integers (seed, epoch,
//! the row-group layout, world size, ...), computed over row ids, never over loaded samples,
//! so that any machine rebuilds the same order and a resumed run skips to its position
//! without reading what it skips. See `docs/STREAMING.md` for the design.
//!
//! The shuffle has two levels, as a shuffle buffer over a stream of shards has:
//! 1. the row groups of the dataset are permuted (seeded by seed and epoch);
//! 2. the permuted row groups are cut into *windows* of consecutive row groups holding at least
//!    `window_rows` rows each, and the rows of each window are permuted.
//!
//! A reader therefore only ever needs the row groups of one window at a time (the memory bound
//! of the shuffle), and a position's row is found by computing one window's permutation.

use std::sync::Arc;

use crate::error::{Error, Result};

/// SplitMix64 (Steele, Lea, Flood 2014): used to derive independent seeds from small integers.
#[inline]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for one purpose (`stream`) and one index, derived from a user seed and an epoch.
/// Distinct inputs give unrelated seeds.
pub fn derive_seed(seed: u64, epoch: u64, stream: u64, index: u64) -> u64 {
    let mut s = seed;
    let mut h = splitmix64(&mut s);
    for v in [epoch, stream, index] {
        let mut t = h ^ v.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        h = splitmix64(&mut t);
    }
    h
}

/// xoshiro256** (Blackman, Vigna 2018), seeded through SplitMix64 as its authors recommend.
/// Small, fast, and bit-for-bit the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform integer in `0..n` (`n > 0`), without modulo bias (Lemire 2019).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = (self.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = (self.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as u64
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

// Purposes of derived seeds; never renumber (that would change every order).
const STREAM_GROUP_ORDER: u64 = 1;
const STREAM_WINDOW: u64 = 2;
const STREAM_MIXTURE: u64 = 3;

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

/// What to do with the rows of an epoch that do not divide evenly among ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remainder {
    /// Every rank gets `ceil(R / world_size)` samples; the extra positions wrap around to the
    /// start of the epoch's order (repeating its first samples).
    Pad,
    /// Every rank gets `floor(R / world_size)` samples; the last `R % world_size` positions of
    /// the order are not read.
    Drop,
}

/// Which positions one consumer reads: rank `rank` of `world_size` takes the remaining
/// positions `start + i * world_size + rank` (its *local* index `i`), and its DataLoader worker
/// `worker` of `num_workers` takes local blocks `j` of `block` samples with
/// `j % num_workers == worker`. A DataLoader collects worker results round-robin, so the main
/// process sees the rank's local indices in order, 0, 1, 2, ...; having consumed `c` of them on
/// every rank means that exactly the positions `start .. start + c * world_size` are consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerSplit {
    /// Positions in the epoch (rows of the dataset, or of a mixture's epoch).
    pub num_positions: u64,
    /// First position not consumed before this run (the resume point).
    pub start: u64,
    pub world_size: u64,
    pub rank: u64,
    pub num_workers: u64,
    pub worker: u64,
    /// Samples per worker block (the DataLoader's batch size; 1 when unbatched).
    pub block: u64,
    pub remainder: Remainder,
}

impl ConsumerSplit {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
        if self.world_size == 0 || self.rank >= self.world_size {
            return bad("need 0 <= rank < world_size");
        }
        if self.num_workers == 0 || self.worker >= self.num_workers {
            return bad("need 0 <= worker < num_workers");
        }
        if self.block == 0 {
            return bad("block must be at least 1");
        }
        Ok(())
    }

    /// Samples each rank reads from `start` to the end of the epoch (the same on every rank).
    pub fn rank_len(&self) -> u64 {
        let remaining = self.num_positions.saturating_sub(self.start);
        match self.remainder {
            Remainder::Pad => remaining.div_ceil(self.world_size),
            Remainder::Drop => remaining / self.world_size,
        }
    }

    /// Epoch position of the rank's local index `local`; may exceed `num_positions` when
    /// padding (take it modulo `num_positions`).
    pub fn position(&self, local: u64) -> u64 {
        self.start + local * self.world_size + self.rank
    }

    /// Samples this worker reads.
    pub fn worker_len(&self) -> u64 {
        let len = self.rank_len();
        let blocks = len.div_ceil(self.block);
        let mine = blocks / self.num_workers + u64::from(blocks % self.num_workers > self.worker);
        if mine == 0 {
            return 0;
        }
        let last_block = self.worker + (mine - 1) * self.num_workers;
        (mine - 1) * self.block + (len - last_block * self.block).min(self.block)
    }

    /// The rank's local indices read by this worker, in order.
    pub fn worker_locals(&self) -> impl Iterator<Item = u64> + '_ {
        let len = self.rank_len();
        let (b, nw) = (self.block, self.num_workers);
        (0..)
            .map(move |k| (self.worker + k * nw) * b)
            .take_while(move |&first| first < len)
            .flat_map(move |first| first..(first + b).min(len))
    }

    /// The first position not consumed once every rank has consumed `consumed` samples.
    pub fn resume_point(&self, consumed: u64) -> u64 {
        self.start + consumed.min(self.rank_len()) * self.world_size
    }
}

/// Walks one worker's local indices block by block.
#[derive(Debug, Clone)]
struct LocalWalk {
    block: u64,
    stride: u64,
    block_first: u64,
    next: u64,
    remaining: u64,
}

impl LocalWalk {
    fn new(split: &ConsumerSplit) -> Self {
        let first = split.worker * split.block;
        LocalWalk {
            block: split.block,
            stride: split.block * split.num_workers,
            block_first: first,
            next: first,
            remaining: split.worker_len(),
        }
    }
}

impl Iterator for LocalWalk {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        if self.remaining == 0 {
            return None;
        }
        let local = self.next;
        self.remaining -= 1;
        self.next += 1;
        if self.next == self.block_first + self.block {
            self.block_first += self.stride;
            self.next = self.block_first;
        }
        Some(local)
    }
}

/// The rows one consumer reads from one dataset, in order.
#[derive(Debug, Clone)]
pub struct ConsumerRows {
    split: ConsumerSplit,
    cursor: PlanCursor,
    walk: LocalWalk,
}

impl ConsumerRows {
    pub fn new(plan: Arc<EpochPlan>, split: ConsumerSplit) -> Result<Self> {
        split.validate()?;
        if split.num_positions != plan.num_rows() {
            return Err(Error::InvalidArgument(
                "split and plan disagree on the epoch size".into(),
            ));
        }
        Ok(ConsumerRows {
            split,
            cursor: PlanCursor::new(plan),
            walk: LocalWalk::new(&split),
        })
    }

    pub fn split(&self) -> &ConsumerSplit {
        &self.split
    }

    /// Samples left for this consumer.
    pub fn remaining(&self) -> u64 {
        self.walk.remaining
    }

    /// Appends up to `n` rows to `out`; returns how many.
    pub fn next_rows(&mut self, n: usize, out: &mut Vec<u64>) -> usize {
        let mut taken = 0;
        while taken < n {
            let Some(row) = self.next() else { break };
            out.push(row);
            taken += 1;
        }
        taken
    }
}

impl Iterator for ConsumerRows {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        let local = self.walk.next()?;
        let pos = self.split.position(local) % self.split.num_positions;
        Some(self.cursor.row_at(pos))
    }
}

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
        self.walk.remaining
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
    use std::collections::HashSet;

    fn layout() -> Vec<u64> {
        vec![7, 3, 10, 1, 0, 9, 5, 8, 12, 2]
    }

    fn plan(seed: u64, epoch: u64, window: u64) -> Arc<EpochPlan> {
        let opts = ShuffleOptions {
            shuffle: true,
            seed,
            window_rows: window,
        };
        Arc::new(EpochPlan::new(&layout(), opts, epoch).unwrap())
    }

    #[test]
    fn rng_is_stable() {
        // Pinned values: the order of every epoch depends on them.
        let mut sm = 0u64;
        assert_eq!(splitmix64(&mut sm), 0xE220_A839_7B1D_CDAF);
        let mut r = Rng::new(42);
        for n in [1u64, 2, 3, 7, 1 << 40] {
            for _ in 0..100 {
                assert!(r.below(n) < n);
            }
        }
        let mut rows: Vec<u32> = (0..10).collect();
        Rng::new(7).shuffle(&mut rows);
        let mut again: Vec<u32> = (0..10).collect();
        Rng::new(7).shuffle(&mut again);
        assert_eq!(rows, again);
    }

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

    fn split(n: u64, start: u64, ws: u64, rank: u64, nw: u64, w: u64, block: u64) -> ConsumerSplit {
        ConsumerSplit {
            num_positions: n,
            start,
            world_size: ws,
            rank,
            num_workers: nw,
            worker: w,
            block,
            remainder: Remainder::Drop,
        }
    }

    #[test]
    fn consumers_partition_the_epoch() {
        let p = plan(1, 0, 20);
        let n = p.num_rows();
        let order = p.all_rows();
        for remainder in [Remainder::Drop, Remainder::Pad] {
            for ws in 1..=5 {
                for nw in 1..=4 {
                    for block in [1, 3, 8] {
                        let mut seen = Vec::new();
                        let mut per_rank = Vec::new();
                        for rank in 0..ws {
                            let mut rank_locals = Vec::new();
                            for w in 0..nw {
                                let s = ConsumerSplit {
                                    remainder,
                                    ..split(n, 0, ws, rank, nw, w, block)
                                };
                                let locals: Vec<u64> = s.worker_locals().collect();
                                assert_eq!(locals.len() as u64, s.worker_len());
                                let rows: Vec<u64> =
                                    ConsumerRows::new(p.clone(), s).unwrap().collect();
                                assert_eq!(rows.len(), locals.len());
                                for (l, r) in locals.iter().zip(&rows) {
                                    assert_eq!(order[(s.position(*l) % n) as usize], *r);
                                }
                                rank_locals.extend(locals);
                                seen.extend(rows);
                            }
                            rank_locals.sort();
                            let s = ConsumerSplit {
                                remainder,
                                ..split(n, 0, ws, rank, 1, 0, 1)
                            };
                            assert_eq!(rank_locals, (0..s.rank_len()).collect::<Vec<_>>());
                            per_rank.push(s.rank_len());
                        }
                        assert!(per_rank.iter().all(|&l| l == per_rank[0]));
                        let unique: HashSet<u64> = seen.iter().copied().collect();
                        match remainder {
                            Remainder::Drop => {
                                assert_eq!(unique.len(), seen.len());
                                assert_eq!(seen.len() as u64, n - n % ws);
                            }
                            Remainder::Pad => {
                                assert_eq!(unique.len() as u64, n);
                                assert_eq!(seen.len() as u64, n.div_ceil(ws) * ws);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn resume_on_another_world_size_is_exact() {
        let p = plan(5, 2, 16);
        let n = p.num_rows();
        // 3 ranks consume 7 samples each, then 2 ranks with 3 workers finish the epoch.
        let first = split(n, 0, 3, 0, 1, 0, 1);
        let k = first.resume_point(7);
        let mut rows = Vec::new();
        for rank in 0..3 {
            let s = split(n, 0, 3, rank, 1, 0, 1);
            rows.extend(ConsumerRows::new(p.clone(), s).unwrap().take(7));
        }
        for rank in 0..2 {
            for w in 0..3 {
                let s = ConsumerSplit {
                    remainder: Remainder::Pad,
                    ..split(n, k, 2, rank, 3, w, 2)
                };
                rows.extend(ConsumerRows::new(p.clone(), s).unwrap());
            }
        }
        let remaining = n - k;
        assert_eq!(rows.len() as u64, k + remaining.div_ceil(2) * 2);
        let unique: HashSet<u64> = rows.iter().copied().collect();
        assert_eq!(unique.len() as u64, n);
    }

    #[test]
    fn worker_len_matches_iteration() {
        for n in 0..40 {
            for nw in 1..5 {
                for b in 1..5 {
                    for w in 0..nw {
                        let s = split(n, 0, 1, 0, nw, w, b);
                        assert_eq!(s.worker_locals().count() as u64, s.worker_len());
                        assert_eq!(
                            LocalWalk::new(&s).collect::<Vec<_>>(),
                            s.worker_locals().collect::<Vec<_>>()
                        );
                    }
                }
            }
        }
    }

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
