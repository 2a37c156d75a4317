//! Properties of the packing plan: conservation, budgets, determinism, equal rows per rank,
//! exact resumption on other layouts.

use super::*;
use crate::plan::order::ShuffleOptions;
use crate::plan::testing::padded_split as split;
use std::collections::HashMap;

/// A dataset of `n` rows in groups of 37, with costs from a fixed generator: mostly 100-2000
/// tokens and 1-13 crops, a few over the budgets.
fn setup(n: u64, seed: u64, epoch: u64, window: u64) -> Arc<PackPlan> {
    setup_with(n, seed, epoch, window, 24)
}

fn setup_with(n: u64, seed: u64, epoch: u64, window: u64, max_crops: u32) -> Arc<PackPlan> {
    let groups: Vec<u64> = (0..n.div_ceil(37)).map(|g| 37.min(n - g * 37)).collect();
    let order = EpochPlan::new(
        &groups,
        ShuffleOptions {
            shuffle: true,
            seed,
            window_rows: 100,
        },
        epoch,
    )
    .unwrap();
    let mut rng = Rng::new(99);
    let (mut tokens, mut crops) = (Vec::new(), Vec::new());
    for i in 0..n {
        let t = if i % 97 == 5 {
            5000
        } else {
            100 + rng.below(1900) as u32
        };
        tokens.push(t);
        crops.push(if i % 89 == 3 {
            40
        } else {
            1 + rng.below(13) as u16
        });
    }
    let costs = PackCosts::new(tokens, crops).unwrap();
    let options = PackOptions {
        max_tokens: 4096,
        max_crops,
        window,
    };
    Arc::new(PackPlan::new(Arc::new(order), Arc::new(costs), options).unwrap())
}

fn all_rows(plan: &Arc<PackPlan>) -> Vec<(Vec<u64>, bool)> {
    let mut c = PackCursor::new(plan.clone());
    (0..plan.num_rows())
        .map(|g| {
            let (ids, over) = c.row(g).unwrap();
            (ids.to_vec(), over)
        })
        .collect()
}

/// The rows (lists of examples) rank `rank` of `ws` reads from `start` with `nw` workers,
/// merged in the order a DataLoader hands them out (round-robin over workers' blocks).
fn rank_reads(plan: &Arc<PackPlan>, start: u64, ws: u64, rank: u64, nw: u64) -> Vec<Vec<u64>> {
    let block = 3;
    let mut per_worker: Vec<std::collections::VecDeque<Vec<u64>>> = Vec::new();
    for w in 0..nw {
        let s = split(plan.num_rows(), start, ws, rank, nw, w, block);
        let mut rows = PackedRows::new(plan.clone(), s, 0).unwrap();
        let mut q = std::collections::VecDeque::new();
        loop {
            let (mut ids, mut sizes) = (Vec::new(), Vec::new());
            rows.next_rows(1, &mut ids, &mut sizes).unwrap();
            if sizes.is_empty() {
                break;
            }
            q.push_back(ids);
        }
        per_worker.push(q);
    }
    crate::plan::testing::round_robin(per_worker, block)
}

#[test]
fn every_example_once_and_no_row_over_budget() {
    for window in [1, 7, 100, 1000, 5000] {
        let plan = setup(2000, 3, 1, window);
        let costs = plan.costs().clone();
        let rows = all_rows(&plan);
        let mut seen: Vec<u64> = rows.iter().flat_map(|r| r.0.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..2000).collect::<Vec<_>>(), "window {window}");
        for (ids, over) in &rows {
            let t: u64 = ids.iter().map(|&i| costs.tokens[i as usize] as u64).sum();
            let c: u64 = ids.iter().map(|&i| costs.crops[i as usize] as u64).sum();
            if *over {
                assert_eq!(ids.len(), 1);
                assert!(t > 4096 || c > 24);
            } else {
                assert!(t <= 4096 && c <= 24, "row {ids:?}: {t} tokens, {c} crops");
            }
        }
        assert_eq!(plan.row_counts().iter().sum::<u64>(), plan.num_rows());
        // Memory bound: a window's rows never leave it.
        let mut pos_of = vec![0u64; 2000];
        for (p, &id) in plan.order().all_rows().iter().enumerate() {
            pos_of[id as usize] = p as u64;
        }
        for (w, &n) in plan.row_counts().iter().enumerate() {
            let first = plan.first_row(w);
            for g in first..first + n {
                for &id in &rows[g as usize].0 {
                    assert_eq!(pos_of[id as usize] / window, w as u64);
                }
            }
        }
    }
}

/// Rows a plan needs at least: each budget's total over the budget, plus the oversize rows.
fn lower_bound(plan: &PackPlan, max_t: u32, max_c: u32) -> u64 {
    let costs = plan.costs();
    let (mut t, mut c, mut over) = (0u64, 0u64, 0u64);
    for i in 0..costs.len() {
        let (ti, ci) = (costs.tokens[i], costs.crops[i] as u32);
        if ti > max_t || ci > max_c {
            over += 1;
        } else {
            t += ti as u64;
            c += ci as u64;
        }
    }
    t.div_ceil(max_t as u64).max(c.div_ceil(max_c as u64)) + over
}

#[test]
fn packing_fills_rows() {
    // Tokens bind (a loose crop budget), then both bind about equally (28 crops for ~4,096
    // tokens): within 2 % of the lower bound, with one window of 4,096 examples in five.
    for max_crops in [200, 28] {
        let plan = setup_with(20_000, 1, 0, 4096, max_crops);
        let bound = lower_bound(&plan, 4096, max_crops);
        assert!(
            plan.num_rows() as f64 <= bound as f64 * 1.02,
            "{} rows, at least {bound}",
            plan.num_rows()
        );
    }
}

#[test]
fn plan_is_deterministic_and_depends_on_seed_and_epoch() {
    let a = all_rows(&setup(1500, 5, 2, 400));
    assert_eq!(a, all_rows(&setup(1500, 5, 2, 400)));
    assert_ne!(a, all_rows(&setup(1500, 5, 3, 400)));
    assert_ne!(a, all_rows(&setup(1500, 6, 2, 400)));
    // Given counts, a plan reads the same rows without packing the epoch first.
    let p = setup(1500, 5, 2, 400);
    let q = Arc::new(
        PackPlan::with_row_counts(
            p.order().clone(),
            p.costs().clone(),
            p.options(),
            &p.row_counts(),
        )
        .unwrap(),
    );
    assert_eq!(all_rows(&q), a);
    // Wrong counts are refused when the window is read, not silently misread.
    let mut wrong = p.row_counts();
    wrong[0] += 1;
    let bad = PackPlan::with_row_counts(p.order().clone(), p.costs().clone(), p.options(), &wrong);
    let bad = Arc::new(bad.unwrap());
    assert!(PackCursor::new(bad).row(0).is_err());
}

#[test]
fn ranks_get_equal_rows_and_workers_partition_them() {
    let plan = setup(1234, 2, 0, 300);
    let n = plan.num_rows();
    let all = all_rows(&plan);
    for ws in 1..=4 {
        let mut count: HashMap<Vec<u64>, u64> = HashMap::new();
        let mut lens = Vec::new();
        for rank in 0..ws {
            let reads = rank_reads(&plan, 0, ws, rank, 2);
            lens.push(reads.len());
            // The merged worker streams are the rank's rows r, r + W, ... in order.
            for (i, r) in reads.iter().enumerate() {
                let g = (i as u64 * ws + rank) % n;
                assert_eq!(r, &all[g as usize].0);
                *count.entry(r.clone()).or_default() += 1;
            }
        }
        assert!(lens.iter().all(|&l| l as u64 == n.div_ceil(ws)));
        assert_eq!(count.len() as u64, n);
    }
}

#[test]
fn resume_on_1_then_3_then_2_ranks_reads_exactly_the_rest() {
    let plan = setup(3000, 4, 1, 512);
    let n = plan.num_rows();
    let mut read: Vec<Vec<u64>> = Vec::new();
    // 1 rank reads 10 rows, then 3 ranks (2 workers each) read 7 rows each, then 2 ranks with
    // 3 workers finish the epoch.
    let reads = rank_reads(&plan, 0, 1, 0, 1);
    read.extend(reads[..10].iter().cloned());
    let k1 = split(n, 0, 1, 0, 1, 0, 1).resume_point(10);
    for rank in 0..3 {
        read.extend(rank_reads(&plan, k1, 3, rank, 2)[..7].iter().cloned());
    }
    let k2 = split(n, k1, 3, 0, 1, 0, 1).resume_point(7);
    for rank in 0..2 {
        read.extend(rank_reads(&plan, k2, 2, rank, 3));
    }
    let pad = (n - k2).div_ceil(2) * 2 - (n - k2);
    assert_eq!(read.len() as u64, n + pad);
    let mut examples: Vec<u64> = read.iter().flatten().copied().collect();
    examples.sort();
    examples.dedup();
    assert_eq!(examples, (0..3000).collect::<Vec<_>>());
    let mut rows = read.clone();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len() as u64, n);
}

#[test]
fn skip_passes_over_rows() {
    let plan = setup(800, 1, 0, 200);
    let s = split(plan.num_rows(), 0, 2, 1, 2, 1, 3);
    let mut whole = PackedRows::new(plan.clone(), s, 0).unwrap();
    let mut skipped = PackedRows::new(plan.clone(), s, 5).unwrap();
    let (mut a, mut b, mut sa, mut sb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    whole.next_rows(usize::MAX >> 40, &mut a, &mut sa).unwrap();
    skipped
        .next_rows(usize::MAX >> 40, &mut b, &mut sb)
        .unwrap();
    assert_eq!(&sa[5..], &sb[..]);
    let cut: u32 = sa[..5].iter().sum();
    assert_eq!(&a[cut as usize..], &b[..]);
}

#[test]
fn bad_inputs_are_refused() {
    let order = Arc::new(EpochPlan::new(&[10], ShuffleOptions::default(), 0).unwrap());
    let costs = Arc::new(PackCosts::new(vec![1; 10], vec![1; 10]).unwrap());
    let opts = PackOptions {
        max_tokens: 0,
        max_crops: 1,
        window: 4,
    };
    assert!(PackPlan::new(order.clone(), costs.clone(), opts).is_err());
    let opts = PackOptions {
        max_tokens: 10,
        ..opts
    };
    let short = Arc::new(PackCosts::new(vec![1; 9], vec![1; 9]).unwrap());
    assert!(PackPlan::new(order.clone(), short, opts).is_err());
    assert!(PackCosts::new(vec![1; 3], vec![1; 2]).is_err());
    let plan = PackPlan::new(order, costs, opts).unwrap();
    // 10 examples of 1 token and 1 crop: crops bind (1 per row).
    assert_eq!(plan.num_rows(), 10);
}

#[test]
fn an_empty_epoch_has_no_rows() {
    let order = Arc::new(EpochPlan::new(&[], ShuffleOptions::default(), 0).unwrap());
    let costs = Arc::new(PackCosts::default());
    let opts = PackOptions {
        max_tokens: 10,
        max_crops: 3,
        window: 4,
    };
    let plan = Arc::new(PackPlan::new(order, costs, opts).unwrap());
    assert_eq!(plan.num_rows(), 0);
    let s = split(0, 0, 2, 1, 1, 0, 2);
    let mut rows = PackedRows::new(plan, s, 0).unwrap();
    let (mut ids, mut sizes) = (Vec::new(), Vec::new());
    rows.next_rows(4, &mut ids, &mut sizes).unwrap();
    assert!(sizes.is_empty());
}
