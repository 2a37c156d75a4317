//! Molmo's token layout for one image: the image-token sequence (global view, then the
//! crops' pooled patches in raster order, each row closed by a column token) and
//! `image_input_idx`, which says where in that sequence each crop's pooled patch goes.

use super::MolmoConfig;

/// Token ids written into [`tokens`]; the model's tokenizer defines the real ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageTokenIds {
    pub start: i32,
    pub end: i32,
    pub patch: i32,
    pub col: i32,
}

impl Default for ImageTokenIds {
    /// Placeholders (negative, so they collide with no vocabulary): set the tokenizer's ids
    /// of `<im_start>`, `<im_end>`, `<im_patch>` and `<im_col>`.
    fn default() -> Self {
        ImageTokenIds {
            start: -2,
            end: -3,
            patch: -1,
            col: -4,
        }
    }
}

/// Molmo's `patch_ordering`: per crop (global first) and pooled patch, the patch's rank in
/// the image's raster order of pooled patches, or -1 for patches in a crop's discarded
/// margin. Length `n_crops * tokens_per_crop`.
pub(crate) fn patch_ordering(cfg: &MolmoConfig, tiling: (u32, u32)) -> Vec<i32> {
    let (rows, cols) = (tiling.0 as usize, tiling.1 as usize);
    let (lm, rm) = (
        cfg.overlap_margins.0 as usize,
        cfg.overlap_margins.1 as usize,
    );
    let pool = cfg.pooling as usize;
    let side = cfg.crop_patches() as usize; // 24 patches per crop side
    let tok = cfg.tokens_per_side() as usize; // 12 pooled tokens per crop side
    let per_crop = tok * tok;

    // Crop by crop, each crop's kept pooled patches numbered consecutively.
    let mut order = vec![-1i32; rows * cols * per_crop];
    let mut next = 0i32;
    let span = |k: usize, n: usize| -> (usize, usize) {
        let start = if k == 0 { 0 } else { lm / pool };
        let mut len = side - (lm + rm);
        if k == 0 {
            len += lm;
        }
        if k == n - 1 {
            len += rm;
        }
        (start, len.div_ceil(pool))
    };
    for i in 0..rows {
        let (y0, ph) = span(i, rows);
        for j in 0..cols {
            let (x0, pw) = span(j, cols);
            let base = (i * cols + j) * per_crop;
            for y in 0..ph {
                for x in 0..pw {
                    order[base + (y0 + y) * tok + x0 + x] = next;
                    next += 1;
                }
            }
        }
    }
    // Molmo then renumbers: reading the crops' grids in the image's raster order gives the
    // sequence of kept ids, written back over the kept slots in crop order.
    let mut raster = Vec::with_capacity(next as usize);
    for i in 0..rows {
        for r in 0..tok {
            for j in 0..cols {
                let base = (i * cols + j) * per_crop + r * tok;
                raster.extend(order[base..base + tok].iter().copied().filter(|&v| v >= 0));
            }
        }
    }
    let mut it = raster.into_iter();
    for v in order.iter_mut().filter(|v| **v >= 0) {
        *v = it.next().expect("as many kept slots as kept ids");
    }
    // The global view goes first, taking the first tokens.
    let g = per_crop as i32;
    (0..g)
        .chain(order.into_iter().map(|v| if v >= 0 { v + g } else { -1 }))
        .collect()
}

/// Pooled token rows (or columns) across `n` tiles: Molmo's `get_num_patches` / pooling.
fn pooled_tokens(cfg: &MolmoConfig, n: u32) -> usize {
    let pool = cfg.pooling as usize;
    let (lm, rm) = (
        cfg.overlap_margins.0 as usize,
        cfg.overlap_margins.1 as usize,
    );
    let window = cfg.crop_patches() as usize - (lm + rm);
    let up = |p: usize| p.div_ceil(pool) * pool;
    let patches = if n > 1 {
        up(window + lm) + (n as usize - 2) * up(window) + up(window + rm)
    } else {
        up(cfg.crop_patches() as usize)
    };
    patches / pool
}

/// The image's token sequence: `<start>`, the global view's rows of patch tokens each ended by
/// `<col>`, `<end>`, then the same for the crops' pooled patches.
pub(crate) fn tokens(cfg: &MolmoConfig, tiling: (u32, u32), ids: &ImageTokenIds) -> Vec<i32> {
    let mut out = Vec::new();
    let mut block = |h: usize, w: usize| {
        out.push(ids.start);
        for _ in 0..h {
            out.extend(std::iter::repeat_n(ids.patch, w));
            out.push(ids.col);
        }
        out.push(ids.end);
    };
    let tok = cfg.tokens_per_side() as usize;
    block(tok, tok);
    block(pooled_tokens(cfg, tiling.0), pooled_tokens(cfg, tiling.1));
    out
}

/// Molmo's `build_image_input_idx`: for each crop's pooled patch, its position in the image
/// token sequence, or -100 where the patch is dropped. Length `n_crops * tokens_per_crop`.
pub(crate) fn image_input_idx(tokens: &[i32], patch_id: i32, order: &[i32]) -> Vec<i32> {
    let positions: Vec<i32> = tokens
        .iter()
        .enumerate()
        .filter(|(_, &t)| t == patch_id)
        .map(|(i, _)| i as i32)
        .collect();
    // Molmo inverts the ordering (id -> rank among kept patches), then, as its numpy
    // assignment does, hands those ranks to the kept slots in slot order.
    let mut rank_of_id = vec![0i32; positions.len()];
    for (rank, &id) in order.iter().filter(|&&v| v >= 0).enumerate() {
        rank_of_id[id as usize] = rank as i32;
    }
    let mut ranks = rank_of_id.into_iter();
    order
        .iter()
        .map(|&v| {
            if v >= 0 {
                positions[ranks.next().expect("one rank per kept slot") as usize]
            } else {
                -100
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MolmoConfig {
        MolmoConfig::default()
    }

    #[test]
    fn token_counts() {
        let ids = ImageTokenIds::default();
        // Global: 12 rows of 12 patches + col, plus start and end = 158.
        let t = tokens(&cfg(), (1, 1), &ids);
        assert_eq!(t.len(), 158 * 2);
        let t = tokens(&cfg(), (2, 3), &ids);
        // Crops: 20 pooled rows of 28 patches + col.
        assert_eq!(t.len(), 158 + 2 + 20 * 29);
        assert_eq!(t.iter().filter(|&&v| v == ids.patch).count(), 144 + 20 * 28);
    }

    #[test]
    fn every_kept_patch_gets_a_distinct_token() {
        let ids = ImageTokenIds::default();
        for tiling in [(1, 1), (2, 3), (3, 4), (9, 1), (1, 12)] {
            let order = patch_ordering(&cfg(), tiling);
            let t = tokens(&cfg(), tiling, &ids);
            let idx = image_input_idx(&t, ids.patch, &order);
            assert_eq!(idx.len(), (tiling.0 * tiling.1 + 1) as usize * 144);
            let mut kept: Vec<i32> = idx.iter().copied().filter(|&v| v >= 0).collect();
            assert!(kept.iter().all(|&p| t[p as usize] == ids.patch));
            kept.sort_unstable();
            kept.dedup();
            assert_eq!(
                kept.len(),
                t.iter().filter(|&&v| v == ids.patch).count(),
                "{tiling:?}"
            );
            assert!(idx.iter().all(|&v| v >= 0 || v == -100));
        }
    }

    #[test]
    fn global_view_fills_its_block_in_raster_order() {
        let ids = ImageTokenIds::default();
        let order = patch_ordering(&cfg(), (2, 3));
        let t = tokens(&cfg(), (2, 3), &ids);
        let idx = image_input_idx(&t, ids.patch, &order);
        // Row r, column c of the global view sits after `<start>` and r column tokens.
        for r in 0..12 {
            for c in 0..12 {
                assert_eq!(idx[r * 12 + c], (1 + r * 13 + c) as i32);
            }
        }
    }
}
