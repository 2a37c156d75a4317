//! Where an image goes under Molmo's `overlap-and-resize-c2`: the tiling, the resized canvas,
//! the global view and each crop's window, all from the image's size alone.

use super::MolmoConfig;
use crate::resize::fit_scaled;

/// Content of `height` x `width` scaled into a canvas, zero-padded around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Scaled content size.
    pub height: u32,
    pub width: u32,
    /// Offset of the content on the canvas: `(canvas - content) // 2`.
    pub top: u32,
    pub left: u32,
    pub canvas_height: u32,
    pub canvas_width: u32,
}

impl Placed {
    fn fit(h: u32, w: u32, canvas_h: u32, canvas_w: u32) -> Self {
        let (sh, sw) = fit_scaled(h, w, canvas_h, canvas_w);
        Placed {
            height: sh,
            width: sw,
            top: (canvas_h - sh) / 2,
            left: (canvas_w - sw) / 2,
            canvas_height: canvas_h,
            canvas_width: canvas_w,
        }
    }
}

/// Molmo's layout of one image of a given (upright) size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MolmoGeometry {
    /// Upright size of the original image.
    pub height: u32,
    pub width: u32,
    /// Crops per column and per row: `(rows, cols)`.
    pub tiling: (u32, u32),
    /// The high-resolution canvas the crops are cut from.
    pub canvas: Placed,
    /// The global view (crop 0).
    pub global: Placed,
    /// Crop side in pixels (336) and stride between crops (224 = 336 - margins).
    pub crop_size: u32,
    pub crop_stride: u32,
}

impl MolmoGeometry {
    pub fn new(height: u32, width: u32, cfg: &MolmoConfig) -> Self {
        let margin = cfg.margin_pixels();
        let window = cfg.crop_window_pixels();
        let tiling = select_tiling(
            height as i64 - margin as i64,
            width as i64 - margin as i64,
            window,
            cfg.max_crops,
        );
        let canvas = Placed::fit(
            height,
            width,
            tiling.0 * window + margin,
            tiling.1 * window + margin,
        );
        let global = Placed::fit(height, width, cfg.crop_size, cfg.crop_size);
        MolmoGeometry {
            height,
            width,
            tiling,
            canvas,
            global,
            crop_size: cfg.crop_size,
            crop_stride: window,
        }
    }

    /// Crops including the global view.
    pub fn n_crops(&self) -> usize {
        (self.tiling.0 * self.tiling.1) as usize + 1
    }

    /// Top-left corner on the canvas of tile `k` (0-based, row-major; crop `k + 1`).
    pub fn tile_origin(&self, k: usize) -> (u32, u32) {
        let cols = self.tiling.1 as usize;
        (
            (k / cols) as u32 * self.crop_stride,
            (k % cols) as u32 * self.crop_stride,
        )
    }
}

/// Molmo's `select_tiling` over an image of `h` x `w` (here already less the margins, so
/// possibly zero or negative) in windows of `window` px: among `(i, j)` with `i * j <=
/// max_crops`, ordered by `(i * j, i)`, the least upscaling that fits, or, if every tiling
/// must downscale, the least downscaling. Scales in float32, as Molmo computes them.
pub fn select_tiling(h: i64, w: i64, window: u32, max_crops: u32) -> (u32, u32) {
    let mut tilings: Vec<(u32, u32)> = (1..=max_crops)
        .flat_map(|i| {
            (1..=max_crops)
                .filter(move |j| i * j <= max_crops)
                .map(move |j| (i, j))
        })
        .collect();
    tilings.sort_by_key(|&(i, j)| (i * j, i));
    let (hf, wf) = (h as f32, w as f32);
    let scales: Vec<f32> = tilings
        .iter()
        .map(|&(i, j)| {
            let sy = (i * window) as f32 / hf;
            let sx = (j * window) as f32 / wf;
            sy.min(sx)
        })
        .collect();
    let pick = if scales.iter().all(|&s| s < 1.0) {
        first_index_of(&scales, |a, b| a > b)
    } else {
        let up: Vec<f32> = scales
            .iter()
            .map(|&s| if s < 1.0 { 10e9 } else { s })
            .collect();
        first_index_of(&up, |a, b| a < b)
    };
    tilings[pick]
}

/// Index of the first element that no later element beats (numpy's argmax/argmin tie rule).
fn first_index_of(v: &[f32], better: impl Fn(f32, f32) -> bool) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate().skip(1) {
        if better(x, v[best]) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(h: u32, w: u32) -> MolmoGeometry {
        MolmoGeometry::new(h, w, &MolmoConfig::default())
    }

    #[test]
    fn molmo_test_vectors() {
        // (h, w) -> tiling, canvas content (h, w), global content (h, w), crops incl. global;
        // read off Molmo's own code.
        let cases = [
            ((480, 640), (2, 3), (560, 746), (251, 336), 7),
            ((1080, 1920), (3, 4), (567, 1007), (189, 336), 13),
            ((2000, 300), (9, 1), (2128, 319), (336, 50), 10),
            ((50, 50), (1, 1), (336, 336), (336, 336), 2),
        ];
        for ((h, w), tiling, canvas, global, n) in cases {
            let g = geom(h, w);
            assert_eq!(g.tiling, tiling, "{h}x{w}");
            assert_eq!((g.canvas.height, g.canvas.width), canvas, "{h}x{w}");
            assert_eq!((g.global.height, g.global.width), global, "{h}x{w}");
            assert_eq!(g.n_crops(), n, "{h}x{w}");
        }
    }

    #[test]
    fn a_sliver_is_clamped_to_one_pixel() {
        let g = geom(3, 5000);
        assert_eq!(g.global.height, 1);
        assert!(g.canvas.height >= 1);
    }

    #[test]
    fn margins_larger_than_the_image_pick_one_crop() {
        // 112 - 112 = 0: an infinite scale on that side, as in Molmo (numpy divide by zero).
        assert_eq!(geom(112, 112).tiling, (1, 1));
        assert_eq!(geom(112, 2000).tiling.0, 1);
    }
}
