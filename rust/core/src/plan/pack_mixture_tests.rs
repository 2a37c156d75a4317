//! Properties of a packed mixture: every position in exactly one row, in window order, each
//! window the unpacked mixture's draws; budgets; equal rows per rank; exact resumption from an
//! anchor on other layouts.

use super::*;
use crate::plan::order::ShuffleOptions;
use crate::plan::rng::Rng;
use std::collections::{HashMap, VecDeque};

const MAX_T: u32 = 4096;
const MAX_C: u32 = 24;
const WEIGHTS: [f64; 3] = [0.5, 0.2, 0.3];

/// Costs of `n` rows: mostly 100-2000 tokens and 1-13 crops, a few over a budget.
fn costs(n: u64, seed: u64) -> PackCosts {
    let mut rng = Rng::new(seed);
    let (mut t, mut c) = (Vec::new(), Vec::new());
    for i in 0..n {
        t.push(if i % 97 == 5 {
            5000
        } else {
            100 + rng.below(1900) as u32
        });
        c.push(if i % 89 == 3 {
            40
        } else {
            1 + rng.below(13) as u16
        });
    }
    PackCosts::new(t, c).unwrap()
}

/// Three sources of 61, 500 and 230 rows (the first wraps many times), window `window`.
fn plan_with(window: u64, seed: u64) -> Arc<MixturePackPlan> {
    let sizes = [61u64, 500, 230];
    let sources = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| MixtureSource {
            row_groups: (0..n.div_ceil(20)).map(|g| 20.min(n - g * 20)).collect(),
            options: ShuffleOptions {
                shuffle: true,
                seed: 10 + i as u64,
                window_rows: 64,
            },
            first_epoch: i as u64,
        })
        .collect();
    let costs = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| costs(n, i as u64))
        .collect();
    let options = PackOptions {
        max_tokens: MAX_T,
        max_crops: MAX_C,
        window,
    };
    Arc::new(MixturePackPlan::new(&WEIGHTS, seed, sources, costs, options).unwrap())
}

fn plan() -> Arc<MixturePackPlan> {
    plan_with(200, 7)
}

/// The unpacked mixture's draws of positions `0..n`.
fn unpacked(plan: &MixturePackPlan, n: u64) -> Vec<DrawnRow> {
    let mut rows = plan.draws_from(&plan.origin()).unwrap();
    let mut out = Vec::new();
    rows.next_rows(n as usize, &mut out).unwrap();
    out.iter()
        .map(|(d, r)| DrawnRow {
            source: d.source,
            row: *r,
            epoch: rows.epoch_of(d),
        })
        .collect()
}

/// The packed rows `from..to` of the stream, read from the origin.
fn rows(plan: &Arc<MixturePackPlan>, from: u64, to: u64) -> Vec<Vec<DrawnRow>> {
    let mut c = MixturePackCursor::new(plan.clone(), plan.origin()).unwrap();
    (from..to)
        .map(|g| {
            let mut out = Vec::new();
            c.read_row(g, &mut out).unwrap();
            out
        })
        .collect()
}

fn windows(plan: &Arc<MixturePackPlan>, k: usize) -> Vec<MixtureWindow> {
    let mut c = MixturePackCursor::new(plan.clone(), plan.origin()).unwrap();
    let mut out: Vec<MixtureWindow> = Vec::new();
    let mut row = 0;
    for _ in 0..k {
        let w = c.window_of(row).unwrap().clone();
        row = w.end_row();
        out.push(w);
    }
    out
}

#[test]
fn every_position_once_in_window_order_within_budgets() {
    let plan = plan();
    let ws = windows(&plan, 8);
    let all = unpacked(&plan, 8 * 200);
    let (mut first, mut counts) = (0u64, vec![0u64; 3]);
    for (k, w) in ws.iter().enumerate() {
        assert_eq!(w.anchor.window, k as u64);
        assert_eq!(w.anchor.first_row, first);
        assert_eq!(w.anchor.counts, counts);
        // The window holds exactly the unpacked mixture's draws of its positions.
        assert_eq!(&w.draws[..], &all[k * 200..(k + 1) * 200]);
        let mut seen: Vec<u64> = w.packed.examples.clone();
        seen.sort();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        for i in 0..w.packed.num_rows() {
            let (mut t, mut c) = (0u64, 0u64);
            for &p in w.packed.row(i) {
                let d = w.draws[p as usize];
                t += plan.costs[d.source].tokens[d.row as usize] as u64;
                c += plan.costs[d.source].crops[d.row as usize] as u64;
            }
            if w.packed.oversize[i] {
                assert_eq!(w.packed.row(i).len(), 1);
                assert!(t > MAX_T as u64 || c > MAX_C as u64);
            } else {
                assert!(t <= MAX_T as u64 && c <= MAX_C as u64);
            }
        }
        // Rows are well filled: within 10 % of the most either budget allows.
        let (mut t, mut c, mut over) = (0u64, 0u64, 0usize);
        for d in &w.draws {
            let (ti, ci) = (
                plan.costs[d.source].tokens[d.row as usize],
                plan.costs[d.source].crops[d.row as usize] as u32,
            );
            if ti > MAX_T || ci > MAX_C {
                over += 1;
            } else {
                (t, c) = (t + ti as u64, c + ci as u64);
            }
        }
        let bound = t.div_ceil(MAX_T as u64).max(c.div_ceil(MAX_C as u64)) as usize + over;
        assert!(
            w.packed.num_rows() * 10 <= bound * 11,
            "{} rows, at least {bound}",
            w.packed.num_rows()
        );
        first = w.end_row();
        for d in &w.draws {
            counts[d.source] += 1;
        }
        assert_eq!(w.next_anchor().counts, counts);
    }
    // The per-source draws are the schedule's, so the rates are the unpacked mixture's.
    let mut want = vec![0u64; 3];
    plan.schedule.count(0, 8 * 200, &mut want);
    assert_eq!(counts, want);
    // Reading rows one by one gives the windows' rows in order.
    let flat: Vec<Vec<DrawnRow>> = ws
        .iter()
        .flat_map(|w| {
            (0..w.packed.num_rows()).map(move |i| {
                w.packed
                    .row(i)
                    .iter()
                    .map(|&p| w.draws[p as usize])
                    .collect()
            })
        })
        .collect();
    assert_eq!(rows(&plan, 0, first), flat);
}

#[test]
fn plan_is_deterministic_and_anchors_agree() {
    let plan = plan();
    let whole = rows(&plan, 0, 150);
    assert_eq!(whole, rows(&plan_with(200, 7), 0, 150));
    assert_ne!(whole, rows(&plan_with(200, 8), 0, 150));
    // From any anchor at or before a row, the rows read on are the same.
    let a = plan.seek(&plan.origin(), 97).unwrap();
    assert!(a.window > 0 && a.first_row <= 97);
    assert_eq!(plan.seek(&a, 97).unwrap(), a);
    let mut c = MixturePackCursor::new(plan.clone(), a.clone()).unwrap();
    for (g, want) in whole.iter().enumerate().skip(97) {
        let mut out = Vec::new();
        c.read_row(g as u64, &mut out).unwrap();
        assert_eq!(&out, want);
    }
    // Rows before the anchor cannot be read from it.
    let mut c = MixturePackCursor::new(plan.clone(), a.clone()).unwrap();
    assert!(c.read_row(a.first_row - 1, &mut Vec::new()).is_err());
}

/// What rank `rank` of `ws` reads from row `start` for `len` rows with `nw` workers, merged in
/// the order a DataLoader hands out the workers' blocks.
fn rank_reads(
    plan: &Arc<MixturePackPlan>,
    anchor: &WindowAnchor,
    start: u64,
    len: u64,
    ws: u64,
    rank: u64,
    nw: u64,
) -> Vec<Vec<DrawnRow>> {
    let block = 3;
    let mut per_worker: Vec<VecDeque<Vec<DrawnRow>>> = Vec::new();
    for w in 0..nw {
        let s = crate::plan::testing::padded_split(start + len, start, ws, rank, nw, w, block);
        let mut rows = MixturePackedRows::new(plan.clone(), anchor.clone(), s, 0).unwrap();
        let mut q = VecDeque::new();
        while rows.remaining() > 0 {
            let (mut out, mut sizes) = (Vec::new(), Vec::new());
            rows.next_rows(1, &mut out, &mut sizes).unwrap();
            assert_eq!(sizes, [out.len() as u32]);
            q.push_back(out);
        }
        per_worker.push(q);
    }
    crate::plan::testing::round_robin(per_worker, block)
}

#[test]
fn ranks_get_equal_rows_and_resume_on_1_then_3_then_2_ranks_reads_exactly_the_rest() {
    let plan = plan();
    let origin = plan.origin();
    let whole = rows(&plan, 0, 400);
    for ws in 1..=4u64 {
        let mut count: HashMap<u64, usize> = HashMap::new();
        for rank in 0..ws {
            let reads = rank_reads(&plan, &origin, 0, 100, ws, rank, 2);
            assert_eq!(reads.len() as u64, 100u64.div_ceil(ws));
            for (i, r) in reads.iter().enumerate() {
                let g = i as u64 * ws + rank;
                assert_eq!(r, &whole[g as usize]);
                *count.entry(g).or_default() += 1;
            }
        }
        // Padding reads the next rows of the stream, never a row twice.
        assert_eq!(count.len() as u64, 100u64.div_ceil(ws) * ws);
        assert!(count.values().all(|&c| c == 1));
    }
    // 1 rank reads 10 rows; 3 ranks x 2 workers read 7 each from a fresh anchor; 2 ranks x 3
    // workers read the rest of a pass of 300 rows.
    let mut read = rank_reads(&plan, &origin, 0, 10, 1, 0, 1);
    let a1 = plan.seek(&origin, 10).unwrap();
    for rank in 0..3 {
        read.extend(rank_reads(&plan, &a1, 10, 21, 3, rank, 2));
    }
    let a2 = plan.seek(&a1, 31).unwrap();
    for rank in 0..2 {
        read.extend(rank_reads(&plan, &a2, 31, 269, 2, rank, 3));
    }
    let mut got: Vec<(usize, u64, u64)> = read
        .iter()
        .flatten()
        .map(|d| (d.source, d.row, d.epoch))
        .collect();
    // Two ranks round 269 rows up to 270: the stream's next row, not a repeat.
    let mut want: Vec<(usize, u64, u64)> = whole[..301]
        .iter()
        .flatten()
        .map(|d| (d.source, d.row, d.epoch))
        .collect();
    got.sort();
    want.sort();
    assert!(got == want, "the rows read are not the stream's first 301");
}

#[test]
fn skip_passes_over_rows() {
    let plan = plan();
    let s = ConsumerSplit {
        num_positions: 120,
        start: 0,
        world_size: 2,
        rank: 1,
        num_workers: 2,
        worker: 1,
        block: 3,
        remainder: Remainder::Pad,
    };
    let read = |skip| {
        let mut r = MixturePackedRows::new(plan.clone(), plan.origin(), s, skip).unwrap();
        let (mut out, mut sizes) = (Vec::new(), Vec::new());
        r.next_rows(1000, &mut out, &mut sizes).unwrap();
        (out, sizes)
    };
    let (a, sa) = read(0);
    let (b, sb) = read(5);
    assert_eq!(&sa[5..], &sb[..]);
    let cut: u32 = sa[..5].iter().sum();
    assert_eq!(&a[cut as usize..], &b[..]);
}

#[test]
fn replacements_fit_in_their_own_source() {
    let plan = plan();
    let c = &plan.costs[1];
    let (small, big) = (0..500u64)
        .flat_map(|a| (0..500u64).map(move |b| (a, b)))
        .find(|&(a, b)| {
            c.tokens[a as usize] < c.tokens[b as usize] && c.crops[a as usize] < c.crops[b as usize]
        })
        .unwrap();
    assert!(plan.fits_in_place_of(1, big, small));
    assert!(!plan.fits_in_place_of(1, small, big));
    assert!(!plan.fits_in_place_of(1, 0, 500));
    assert!(!plan.fits_in_place_of(3, 0, 0));
}

#[test]
fn bad_inputs_are_refused() {
    let plan = plan();
    let mut bad = plan.origin();
    bad.window = 1;
    assert!(MixturePackCursor::new(plan.clone(), bad).is_err());
    assert!(MixturePackCursor::new(
        plan.clone(),
        WindowAnchor {
            window: 0,
            first_row: 0,
            counts: vec![0, 0],
        }
    )
    .is_err());
    let a = plan.seek(&plan.origin(), 150).unwrap();
    assert!(a.first_row > 0);
    let s = crate::plan::testing::padded_split(10, 0, 1, 0, 1, 0, 1);
    assert!(MixturePackedRows::new(plan.clone(), a, s, 0).is_err());
    let src = |n: u64| MixtureSource {
        row_groups: vec![n],
        options: ShuffleOptions::default(),
        first_epoch: 0,
    };
    let opts = plan.options();
    let two = |a: u64, b: u64, ca: u64| {
        MixturePackPlan::new(
            &[1.0, 1.0],
            0,
            vec![src(a), src(b)],
            vec![costs(ca, 0), costs(b, 1)],
            opts,
        )
    };
    assert!(two(5, 6, 5).is_ok());
    assert!(two(5, 6, 4).is_err());
    assert!(two(0, 6, 0).is_err()); // a source with a weight and no rows
    let zero_window = PackOptions { window: 0, ..opts };
    assert!(MixturePackPlan::new(&[1.0], 0, vec![src(3)], vec![costs(3, 0)], zero_window).is_err());
}
