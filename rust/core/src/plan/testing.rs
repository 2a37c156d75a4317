//! Small layouts and splits the plan tests share.

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
