//! Which positions of an epoch each consumer (rank × DataLoader worker) reads.

use std::sync::Arc;

use super::order::{EpochPlan, PlanCursor};
use crate::error::{Error, Result};

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
pub(crate) struct LocalWalk {
    block: u64,
    stride: u64,
    block_first: u64,
    next: u64,
    remaining: u64,
}

impl LocalWalk {
    pub(crate) fn new(split: &ConsumerSplit) -> Self {
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

impl LocalWalk {
    /// [`LocalWalk::new`] with its first `skip` indices (all of them, if fewer) walked.
    pub(crate) fn skipping(split: &ConsumerSplit, skip: u64) -> Self {
        let mut walk = LocalWalk::new(split);
        for _ in 0..skip.min(walk.remaining) {
            walk.next();
        }
        walk
    }

    /// Local indices left to walk.
    pub(crate) fn remaining(&self) -> u64 {
        self.remaining
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::{plan, split};
    use std::collections::HashSet;

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
}
