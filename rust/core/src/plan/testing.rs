//! Small layouts and splits the plan tests share.

use std::collections::VecDeque;
use std::sync::Arc;

use super::order::{EpochPlan, ShuffleOptions};
use super::split::{ConsumerSplit, Remainder};

pub(super) fn layout() -> Vec<u64> {
    vec![7, 3, 10, 1, 0, 9, 5, 8, 12, 2]
}

pub(super) fn plan(seed: u64, epoch: u64, window: u64) -> Arc<EpochPlan> {
    let opts = ShuffleOptions {
        shuffle: true,
        seed,
        window_rows: window,
    };
    Arc::new(EpochPlan::new(&layout(), opts, epoch).unwrap())
}

pub(super) fn split(
    n: u64,
    start: u64,
    ws: u64,
    rank: u64,
    nw: u64,
    w: u64,
    block: u64,
) -> ConsumerSplit {
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

/// [`split`] for packed rows, whose last block is padded (`Remainder::Pad`).
pub(super) fn padded_split(
    n: u64,
    start: u64,
    ws: u64,
    rank: u64,
    nw: u64,
    w: u64,
    block: u64,
) -> ConsumerSplit {
    ConsumerSplit {
        remainder: Remainder::Pad,
        ..split(n, start, ws, rank, nw, w, block)
    }
}

/// Workers' outputs merged as torch's DataLoader hands them out: `block` items of each worker
/// in turn, until a worker has none left.
pub(super) fn round_robin<T>(mut per_worker: Vec<VecDeque<T>>, block: u64) -> Vec<T> {
    let mut out = Vec::new();
    loop {
        for q in per_worker.iter_mut() {
            for _ in 0..block {
                match q.pop_front() {
                    Some(r) => out.push(r),
                    None => return out,
                }
            }
        }
    }
}
