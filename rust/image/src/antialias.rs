//! Antialiased bilinear resampling in float32, computed as PyTorch's CPU kernel behind
//! `torchvision.transforms.functional.resize(..., antialias=True)` computes it (Molmo's
//! `resize_and_pad`): the same support, tap ranges and normalised weights, the same mix of
//! float32 and float64 in their arithmetic, width pass before height pass, and an axis whose
//! size does not change left untouched. Results agree to float rounding of the sums.

/// Interleaved RGB float32, row-major `[height, width, 3]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RgbF32 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

thread_local! {
    /// Buffers given back (`recycle`) for the next resize on this thread: a photo's passes
    /// are tens of MB of float32, which new buffers would have the kernel zero every image.
    static SPARE: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers a thread keeps: Molmo resizes to two views, each in two passes.
const SPARES: usize = 4;

/// A buffer of `len` values, whatever they hold (a given-back one if one is large enough;
/// its values past its old length, or a new one's, are 0).
fn scratch(len: usize) -> Vec<f32> {
    let mut v = SPARE
        .with_borrow_mut(|spare| {
            let i = spare.iter().position(|v| v.capacity() >= len)?;
            Some(spare.swap_remove(i))
        })
        .unwrap_or_default();
    v.resize(len, 0.0);
    v
}

/// Gives a buffer back for the next resizes on this thread.
pub(crate) fn recycle(v: Vec<f32>) {
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < SPARES {
            spare.push(v);
        } else if let Some(small) = spare.iter_mut().min_by_key(|s| s.capacity()) {
            if small.capacity() < v.capacity() {
                *small = v;
            }
        }
    });
}

/// `v / 255` in float32 for every byte, as torchvision's `convert_image_dtype` computes it.
fn unit_lut() -> [f32; 256] {
    std::array::from_fn(|v| v as f32 / 255.0)
}

/// Interleaved RGB8 pixels, read as float32 in [0, 1] without materialising them as floats.
pub(crate) struct RgbU8<'a> {
    pub width: usize,
    pub height: usize,
    pub data: &'a [u8],
}

/// For each output index, the first input index, the number of taps and their weights.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    /// `max_taps` weights per output index.
    weights: Vec<f32>,
    max_taps: usize,
}

fn triangle(x: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn taps(input: usize, output: usize) -> Taps {
    let scale = input as f32 / output as f32;
    let support: f32 = if scale >= 1.0 { scale } else { 1.0 };
    let invscale: f32 = if scale >= 1.0 {
        (1.0f64 / f64::from(scale)) as f32
    } else {
        1.0
    };
    let max_taps = (support.ceil() as usize) * 2 + 1;
    let mut t = Taps {
        start: Vec::with_capacity(output),
        len: Vec::with_capacity(output),
        weights: vec![0.0; output * max_taps],
        max_taps,
    };
    for i in 0..output {
        let center = (f64::from(scale) * (i as f64 + 0.5)) as f32;
        let xmin = ((f64::from(center - support) + 0.5) as i64).max(0);
        let xmax = ((f64::from(center + support) + 0.5) as i64).min(input as i64);
        let xsize = (xmax - xmin).clamp(0, max_taps as i64) as usize;
        let w = &mut t.weights[i * max_taps..i * max_taps + max_taps];
        let mut total = 0.0f32;
        for (j, wj) in w.iter_mut().enumerate().take(xsize) {
            let arg =
                ((f64::from((j as i64 + xmin) as f32 - center) + 0.5) * f64::from(invscale)) as f32;
            *wj = triangle(arg);
            total += *wj;
        }
        if total != 0.0 {
            for wj in w.iter_mut().take(xsize) {
                *wj /= total;
            }
        }
        t.start.push(xmin as usize);
        t.len.push(xsize);
    }
    t
}

/// The width pass, reading bytes through the `v / 255` table (the same float32 values a
/// converted image would hold). Each channel is summed over the taps in order from the
/// first, as PyTorch does, so the float32 rounding is the same.
fn resize_width(src: &RgbU8<'_>, out_w: usize) -> RgbF32 {
    let lut = unit_lut();
    let t = taps(src.width, out_w);
    let mut data = scratch(src.height * out_w * 3); // (every value written below)
    for y in 0..src.height {
        let row = &src.data[y * src.width * 3..(y + 1) * src.width * 3];
        let out = &mut data[y * out_w * 3..(y + 1) * out_w * 3];
        for (x, px) in out.chunks_exact_mut(3).enumerate() {
            let (s, n) = (t.start[x], t.len[x]);
            let w = &t.weights[x * t.max_taps..x * t.max_taps + n];
            let mut acc = [0.0f32; 3];
            for (k, &wk) in w.iter().enumerate() {
                let p = &row[(s + k) * 3..(s + k) * 3 + 3];
                for c in 0..3 {
                    acc[c] += lut[p[c] as usize] * wk;
                }
            }
            px.copy_from_slice(&acc);
        }
    }
    RgbF32 {
        width: out_w,
        height: src.height,
        data,
    }
}

/// The height pass, a whole output row at a time: row `s` times its weight, plus each
/// following tap's row times its weight, in tap order (the same sums as per element; the
/// first product is the sum so far, as `0 + x` is `x` for the non-negative values here).
fn resize_height(src: &RgbF32, out_h: usize) -> RgbF32 {
    let t = taps(src.height, out_h);
    let stride = src.width * 3;
    let mut data = scratch(out_h * stride);
    for (y, out) in data.chunks_exact_mut(stride.max(1)).enumerate().take(out_h) {
        let (s, n) = (t.start[y], t.len[y]);
        let w = &t.weights[y * t.max_taps..y * t.max_taps + n];
        if n == 0 {
            out.fill(0.0);
        }
        for (k, &wk) in w.iter().enumerate() {
            let row = &src.data[(s + k) * stride..(s + k + 1) * stride];
            if k == 0 {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = v * wk;
                }
            } else {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += v * wk;
                }
            }
        }
    }
    RgbF32 {
        width: src.width,
        height: out_h,
        data,
    }
}

/// Resizes to `out_w` x `out_h` and clips to [0, 1] (Molmo's `torch.clip` after the resize).
pub(crate) fn resize_clipped(src: &RgbU8<'_>, out_w: usize, out_h: usize) -> RgbF32 {
    let mut img = if out_w != src.width {
        resize_width(src, out_w)
    } else {
        let lut = unit_lut();
        let data = src.data.iter().map(|&v| lut[v as usize]).collect();
        RgbF32 {
            width: src.width,
            height: src.height,
            data,
        }
    };
    if out_h != img.height {
        let tall = resize_height(&img, out_h);
        recycle(std::mem::replace(&mut img, tall).data);
    }
    for v in &mut img.data {
        *v = v.clamp(0.0, 1.0);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(width: usize, height: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        let mut data = Vec::new();
        for y in 0..height {
            for x in 0..width {
                data.extend([f(x, y); 3]);
            }
        }
        data
    }

    fn view(width: usize, height: usize, data: &[u8]) -> RgbU8<'_> {
        RgbU8 {
            width,
            height,
            data,
        }
    }

    #[test]
    fn weights_sum_to_one_and_cover_the_input() {
        for (i, o) in [(640, 251), (10, 3), (3, 10), (5000, 1), (1, 7), (336, 336)] {
            let t = taps(i, o);
            for k in 0..o {
                let s: f32 = t.weights[k * t.max_taps..k * t.max_taps + t.len[k]]
                    .iter()
                    .sum();
                assert!((s - 1.0).abs() < 1e-5, "{i}->{o} at {k}: {s}");
                assert!(t.start[k] + t.len[k] <= i);
            }
        }
    }

    #[test]
    fn constant_stays_constant_and_same_size_is_identity() {
        let c = gray(17, 9, |_, _| 51);
        let r = resize_clipped(&view(17, 9, &c), 5, 4);
        assert!(r.data.iter().all(|v| (v - 0.2).abs() < 1e-6));
        let ramp = gray(6, 4, |x, y| (x + 6 * y) as u8);
        let same = resize_clipped(&view(6, 4, &ramp), 6, 4);
        assert!(same
            .data
            .iter()
            .zip(&ramp)
            .all(|(&a, &b)| a == b as f32 / 255.0));
    }

    #[test]
    fn halving_averages_pairs() {
        // Downscaling by 2: support 2, taps at distance 0.5 and 1.5 weigh 3/4 and 1/4, so
        // an output pixel is (1*a + 3*b + 3*c + 1*d) / 8 of its four nearest inputs.
        let px = gray(8, 1, |x, _| x as u8 * 20);
        let r = resize_clipped(&view(8, 1, &px), 4, 1);
        let want = (1.0 * 20.0 + 3.0 * 40.0 + 3.0 * 60.0 + 1.0 * 80.0) / 8.0 / 255.0;
        assert!((r.data[3] - want).abs() < 1e-6, "{} vs {want}", r.data[3]);
    }

    #[test]
    fn buffers_given_back_hold_no_trace_in_later_resizes() {
        let resize = || {
            let ramp = gray(37, 23, |x, y| (x * 7 + y * 3) as u8);
            resize_clipped(&view(37, 23, &ramp), 15, 11).data
        };
        // On a fresh thread: new buffers.
        let fresh = std::thread::spawn(resize).join().unwrap();
        // Here: first larger resizes whose buffers are given back full of other values.
        let noise = gray(90, 70, |x, y| ((x * 31) ^ (y * 17)) as u8);
        for (w, h) in [(60, 50), (20, 9), (89, 3)] {
            recycle(resize_clipped(&view(90, 70, &noise), w, h).data);
        }
        assert_eq!(resize(), fresh);
    }
}
