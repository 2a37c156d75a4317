//! Two heuristics of two-dimensional bin packing (tokens and crops) for one pack window;
//! [`super::pack::pack_window`] keeps the one that makes fewer rows.
//!
//! Both measure an example by its tokens and crops each as a fraction of its budget, weighted
//! by how much that budget binds in the window (its total over its budget), so the scarcer
//! resource counts most.

/// Rows that fit an example compared before placing it (the leftmost ones).
const CANDIDATES: usize = 8;
/// Weight of the balance of a row's two budgets against an example's size in `row_by_row`
/// (chosen on PixMo-like costs: `benches/packing.py`).
const BALANCE: f64 = 3.0;
/// Distinct crop counts above which `row_by_row` is not tried (Molmo's images have 1-13).
const MAX_CROP_VALUES: usize = 64;

/// One window's examples `(tokens, crops)` and the budgets. Results give each example its row
/// (`u32::MAX` for an example over a budget, which the caller puts in a row of its own) and
/// the number of rows.
pub(super) struct Fit<'a> {
    items: &'a [(u32, u32)],
    max_t: u32,
    max_c: u32,
    w_t: f64,
    w_c: f64,
}

impl<'a> Fit<'a> {
    pub(super) fn new(items: &'a [(u32, u32)], max_t: u32, max_c: u32) -> Self {
        let (mut sum_t, mut sum_c) = (0u64, 0u64);
        for &(t, c) in items {
            sum_t += t.min(max_t) as u64;
            sum_c += c.min(max_c) as u64;
        }
        Fit {
            items,
            max_t,
            max_c,
            w_t: (sum_t as f64 / max_t as f64).max(1e-9) / max_t as f64,
            w_c: (sum_c as f64 / max_c as f64).max(1e-9) / max_c as f64,
        }
    }

    fn fits(&self, i: usize) -> bool {
        let (t, c) = self.items[i];
        t <= self.max_t && c <= self.max_c
    }

    /// How good example `(t, c)` is for a row with `(rt, rc)` left: its weighted size, less
    /// `BALANCE` times how unevenly the row's two budgets would be left (a row that runs out of
    /// crops with tokens to spare, or the reverse, wastes the rest).
    fn score(&self, t: u32, c: u32, rt: u32, rc: u32) -> f64 {
        let left_t = self.w_t * (rt - t) as f64;
        let left_c = self.w_c * (rc - c) as f64;
        self.size(t, c) - BALANCE * (left_t - left_c).abs()
    }

    fn size(&self, t: u32, c: u32) -> f64 {
        self.w_t * t as f64 + self.w_c * c as f64
    }

    /// Decreasing fit: examples by decreasing size, each into the best of the first rows where
    /// both its tokens and crops fit (the one left with the least room by the weighted L2 norm,
    /// so rows do not end full in one dimension and empty in the other). Rows are the leaves of
    /// a tree holding, per subtree, the most tokens and the most crops any of its rows has left,
    /// so the rows that fit are found without walking the rows (and a row full in one dimension
    /// never hides the rows after it).
    pub(super) fn decreasing(&self) -> (Vec<u32>, usize) {
        let m = self.items.len();
        let sizes: Vec<f64> = self.items.iter().map(|&(t, c)| self.size(t, c)).collect();
        // Largest first; ties by epoch order (a total order: the plan is deterministic).
        let mut by_size: Vec<u32> = (0..m as u32).filter(|&i| self.fits(i as usize)).collect();
        by_size.sort_unstable_by(|&a, &b| {
            sizes[b as usize]
                .total_cmp(&sizes[a as usize])
                .then(a.cmp(&b))
        });
        let mut bin_of = vec![u32::MAX; m];
        let mut tree = FitTree::new(m, self.max_t, self.max_c);
        let mut used = 0usize;
        let mut candidates = Vec::with_capacity(CANDIDATES);
        for &it in &by_size {
            let (t, c) = self.items[it as usize];
            tree.first_fits(t, c, CANDIDATES, &mut candidates);
            let room = |l: usize| {
                let rt = self.w_t * (tree.tokens_left(l) - t) as f64;
                let rc = self.w_c * (tree.crops_left(l) - c) as f64;
                rt * rt + rc * rc
            };
            let bin = candidates
                .iter()
                .copied()
                .min_by(|&a, &b| room(a).total_cmp(&room(b)).then(a.cmp(&b)))
                .expect("an empty row fits any example within budget");
            tree.take(bin, t, c);
            used = used.max(bin + 1);
            bin_of[it as usize] = bin as u32;
        }
        (bin_of, used)
    }

    /// Row by row: each row is filled by repeatedly adding the example that fits and scores
    /// best (large, and leaving the row's two budgets evenly used: [`Fit::score`]), until none
    /// fits. Examples are kept in one list per crop count, sorted
    /// by tokens, so each step looks at one candidate per crop count. `None` when the window
    /// has more than `MAX_CROP_VALUES` distinct crop counts.
    pub(super) fn row_by_row(&self) -> Option<(Vec<u32>, usize)> {
        let m = self.items.len();
        let mut values: Vec<u32> = (0..m)
            .filter(|&i| self.fits(i))
            .map(|i| self.items[i].1)
            .collect();
        values.sort_unstable();
        values.dedup();
        if values.len() > MAX_CROP_VALUES {
            return None;
        }
        // Per crop count: (tokens, example) ascending, and a union-find to the nearest example
        // still free at or below an index (1-based; 0 is "none").
        let mut buckets: Vec<Vec<(u32, u32)>> = vec![Vec::new(); values.len()];
        for i in (0..m).filter(|&i| self.fits(i)) {
            let (t, c) = self.items[i];
            let k = values.binary_search(&c).expect("listed");
            buckets[k].push((t, i as u32));
        }
        for b in &mut buckets {
            b.sort_unstable();
        }
        let mut free: Vec<Vec<u32>> = buckets
            .iter()
            .map(|b| (0..=b.len() as u32).collect())
            .collect();
        let mut left: usize = buckets.iter().map(Vec::len).sum();
        let mut bin_of = vec![u32::MAX; m];
        let mut rows = 0usize;
        while left > 0 {
            let (mut rt, mut rc) = (self.max_t, self.max_c);
            loop {
                let mut best: Option<(f64, usize, usize)> = None;
                for (k, &c) in values.iter().enumerate() {
                    if c > rc {
                        break;
                    }
                    let b = &buckets[k];
                    let upto = b.partition_point(|x| x.0 <= rt);
                    let pos = find(&mut free[k], upto);
                    if pos == 0 {
                        continue;
                    }
                    let (t, _) = b[pos - 1];
                    let score = self.score(t, c, rt, rc);
                    if best.is_none_or(|(s, _, _)| score > s) {
                        best = Some((score, k, pos));
                    }
                }
                let Some((_, k, pos)) = best else { break };
                let (t, i) = buckets[k][pos - 1];
                free[k][pos] = pos as u32 - 1;
                bin_of[i as usize] = rows as u32;
                rt -= t;
                rc -= values[k];
                left -= 1;
            }
            rows += 1;
        }
        Some((bin_of, rows))
    }
}

/// The largest free position `<= x` (1-based; 0 when none), halving paths as it goes.
fn find(parent: &mut [u32], mut x: usize) -> usize {
    while parent[x] as usize != x {
        let p = parent[x] as usize;
        parent[x] = parent[p];
        x = p;
    }
    x
}

/// Rows as the leaves of a max-tree: per node, the most tokens and the most crops left in any
/// row below it. Unopened rows are empty, so the first fit is a new row when no open one fits.
struct FitTree {
    leaves: usize,
    tokens: Vec<u32>,
    crops: Vec<u32>,
}

impl FitTree {
    fn new(n: usize, max_t: u32, max_c: u32) -> Self {
        let leaves = n.max(1).next_power_of_two();
        FitTree {
            leaves,
            tokens: vec![max_t; 2 * leaves],
            crops: vec![max_c; 2 * leaves],
        }
    }

    /// The leftmost `k` rows with at least `t` tokens and `c` crops left, into `out`.
    fn first_fits(&self, t: u32, c: u32, k: usize, out: &mut Vec<usize>) {
        out.clear();
        let fits = |n: usize| self.tokens[n] >= t && self.crops[n] >= c;
        // Depth-first, left first; a subtree whose maxima both suffice may still hold no row
        // where both do, so the walk backs up (rarely far: rows fill in order).
        let mut stack = vec![1usize];
        while let Some(n) = stack.pop() {
            if !fits(n) {
                continue;
            }
            if n >= self.leaves {
                out.push(n - self.leaves);
                if out.len() == k {
                    return;
                }
                continue;
            }
            stack.push(2 * n + 1);
            stack.push(2 * n);
        }
    }

    fn tokens_left(&self, leaf: usize) -> u32 {
        self.tokens[leaf + self.leaves]
    }

    fn crops_left(&self, leaf: usize) -> u32 {
        self.crops[leaf + self.leaves]
    }

    fn take(&mut self, leaf: usize, t: u32, c: u32) {
        let mut n = leaf + self.leaves;
        self.tokens[n] -= t;
        self.crops[n] -= c;
        while n > 1 {
            n /= 2;
            self.tokens[n] = self.tokens[2 * n].max(self.tokens[2 * n + 1]);
            self.crops[n] = self.crops[2 * n].max(self.crops[2 * n + 1]);
        }
    }
}
