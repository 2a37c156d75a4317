//! Cutting the resized canvas and the global view into crops of patches, with the per-patch
//! fraction of real (unpadded) pixels.

use super::geometry::{MolmoGeometry, Placed};

/// Copies a `crop` x `crop` window at `origin` of a padded canvas into `out` in patch order:
/// `[patch_row * side + patch_col][(dy * patch + dx) * 3 + channel]`. `content` is the
/// canvas's unpadded part (`placed.height` x `placed.width` x 3); pixels outside it are `pad`.
pub(crate) fn write_crop<T: Copy>(
    out: &mut [T],
    content: &[T],
    placed: &Placed,
    origin: (u32, u32),
    crop: usize,
    patch: usize,
    pad: [T; 3],
) {
    let side = crop / patch;
    let row_len = patch * 3;
    let (top, left) = (placed.top as usize, placed.left as usize);
    let (h, w) = (placed.height as usize, placed.width as usize);
    for y in 0..crop {
        let cy = origin.0 as usize + y;
        let inside_row = cy >= top && cy < top + h;
        let (py, dy) = (y / patch, y % patch);
        for px in 0..side {
            let dst = (py * side + px) * patch * row_len + dy * row_len;
            let dst = &mut out[dst..dst + row_len];
            for dx in 0..patch {
                let cx = origin.1 as usize + px * patch + dx;
                let v = if inside_row && cx >= left && cx < left + w {
                    let s = ((cy - top) * w + (cx - left)) * 3;
                    [content[s], content[s + 1], content[s + 2]]
                } else {
                    pad
                };
                dst[dx * 3..dx * 3 + 3].copy_from_slice(&v);
            }
        }
    }
}

/// Molmo's `image_masks`: for each tile (row-major) and patch, the fraction of the patch's
/// pixels that are image rather than padding; then one row of -1, as Molmo appends it (after
/// the tiles, although the global view is crop 0: the model was trained with this layout).
pub(crate) fn patch_mask(g: &MolmoGeometry, patch: usize) -> Vec<f32> {
    let side = g.crop_size as usize / patch;
    let per_crop = side * side;
    let tiles = g.n_crops() - 1;
    let c = &g.canvas;
    let overlap = |start: usize, lo: usize, len: usize| -> usize {
        let (a, b) = (start.max(lo), (start + patch).min(lo + len));
        b.saturating_sub(a)
    };
    let mut mask = Vec::with_capacity((tiles + 1) * per_crop);
    for k in 0..tiles {
        let (oy, ox) = g.tile_origin(k);
        for py in 0..side {
            let rows = overlap(oy as usize + py * patch, c.top as usize, c.height as usize);
            for px in 0..side {
                let cols = overlap(ox as usize + px * patch, c.left as usize, c.width as usize);
                mask.push((rows * cols) as f32 / (patch * patch) as f32);
            }
        }
    }
    mask.extend(std::iter::repeat_n(-1.0f32, per_crop));
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_laid_out_row_major_within_and_across() {
        // A 4x4 single-channel-looking canvas (value = y*4+x), crop 4, patch 2, no padding.
        let placed = Placed {
            height: 4,
            width: 4,
            top: 0,
            left: 0,
            canvas_height: 4,
            canvas_width: 4,
        };
        let content: Vec<u16> = (0..16u16).flat_map(|v| [v, v, v]).collect();
        let mut out = vec![0u16; 16 * 3];
        write_crop(&mut out, &content, &placed, (0, 0), 4, 2, [99; 3]);
        let firsts: Vec<u16> = out.chunks(3).map(|p| p[0]).collect();
        // Patch (0,0): 0 1 4 5; patch (0,1): 2 3 6 7; patch (1,0): 8 9 12 13; ...
        assert_eq!(
            firsts,
            [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]
        );
    }

    #[test]
    fn padding_outside_the_content() {
        let placed = Placed {
            height: 1,
            width: 2,
            top: 1,
            left: 1,
            canvas_height: 4,
            canvas_width: 4,
        };
        let content = vec![7u8; 6];
        let mut out = vec![0u8; 16 * 3];
        write_crop(&mut out, &content, &placed, (0, 0), 4, 4, [1; 3]);
        let firsts: Vec<u8> = out.chunks(3).map(|p| p[0]).collect();
        assert_eq!(firsts, [1, 1, 1, 1, 1, 7, 7, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    }
}
