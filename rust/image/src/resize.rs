//! Resizing decoded RGB8 images: the target-size arithmetic and a SIMD antialiased bilinear
//! resample (`fast_image_resize`, PIL's `Image.resize(..., BILINEAR)` filter).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::error::{ImageError, Result};
use crate::rgb::RgbImage;

/// How [`crate::decode_rgb`] sizes its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resize {
    /// The image as decoded.
    #[default]
    None,
    /// Stretched to exactly this size.
    Exact { width: u32, height: u32 },
    /// Shrunk (never enlarged), keeping its aspect ratio, so that its longer side is at most
    /// this many pixels.
    MaxSide(u32),
    /// Scaled up or down to fit inside this size keeping its aspect ratio, then zero-padded
    /// (black) to exactly this size with the content centred, as Molmo's `resize_and_pad`.
    Pad { width: u32, height: u32 },
}

/// Where scaled content lands on an output canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Size of the scaled content.
    pub width: u32,
    pub height: u32,
    /// Offset of the content on the canvas (non-zero only for `Pad`).
    pub left: u32,
    pub top: u32,
    /// Size of the canvas.
    pub canvas_width: u32,
    pub canvas_height: u32,
}

impl Resize {
    /// Refuses a target of 0 px.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            Resize::None => true,
            Resize::Exact { width, height } | Resize::Pad { width, height } => {
                width > 0 && height > 0
            }
            Resize::MaxSide(m) => m > 0,
        };
        if ok {
            Ok(())
        } else {
            Err(ImageError::InvalidArgument(format!(
                "resize target must be at least 1 px: {self:?}"
            )))
        }
    }

    /// Where an image of `width` x `height` goes under this resize.
    pub fn placement(&self, width: u32, height: u32) -> Placement {
        let whole = |w, h| Placement {
            width: w,
            height: h,
            left: 0,
            top: 0,
            canvas_width: w,
            canvas_height: h,
        };
        match *self {
            Resize::None => whole(width, height),
            Resize::Exact {
                width: w,
                height: h,
            } => whole(w, h),
            Resize::MaxSide(m) => {
                let long = width.max(height);
                if long <= m {
                    return whole(width, height);
                }
                let short = |s: u32| {
                    ((f64::from(s) * f64::from(m) / f64::from(long)).round() as u32).max(1)
                };
                if width >= height {
                    whole(m, short(height))
                } else {
                    whole(short(width), m)
                }
            }
            Resize::Pad {
                width: cw,
                height: ch,
            } => {
                let (sh, sw) = fit_scaled(height, width, ch, cw);
                Placement {
                    width: sw,
                    height: sh,
                    left: (cw - sw) / 2,
                    top: (ch - sh) / 2,
                    canvas_width: cw,
                    canvas_height: ch,
                }
            }
        }
    }
}

/// Molmo's `resize_and_pad` size arithmetic: the scale is `min(H'/h, W'/w)` in float32 and
/// each side is `int(side * scale)`, truncated; clamped to at least 1 px, where Molmo's code
/// would produce 0 and crash (a 3x5000 image).
pub fn fit_scaled(h: u32, w: u32, target_h: u32, target_w: u32) -> (u32, u32) {
    let sy = target_h as f32 / h as f32;
    let sx = target_w as f32 / w as f32;
    let s = sx.min(sy);
    let sh = ((h as f32 * s) as u32).clamp(1, target_h);
    let sw = ((w as f32 * s) as u32).clamp(1, target_w);
    (sh, sw)
}

thread_local! {
    /// Each thread's resizer: it keeps its intermediate image (the first pass's output,
    /// several MB for a photo) from one image to the next, where a new resizer would allocate
    /// and zero it again for every image.
    static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
    /// A buffer given back (`recycle`) for the next `resample` on this thread.
    static SPARE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Gives a resampled image's buffer back, for the next `resample` on this thread (where a
/// new buffer would be zeroed first, then overwritten).
pub(crate) fn recycle(img: RgbImage) {
    SPARE.with_borrow_mut(|spare| {
        if img.data.capacity() > spare.capacity() {
            *spare = img.data;
        }
    });
}

/// Antialiased bilinear resample of RGB8 pixels to `width` x `height`.
pub(crate) fn resample(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    if (img.width, img.height) == (width, height) {
        return img.clone();
    }
    let src = ImageRef::new(img.width, img.height, &img.data, PixelType::U8x3)
        .expect("an RgbImage's buffer is width*height*3 bytes");
    // (`resize` writes only bytes past the spare's length; the resizer overwrites them all)
    let mut buf = SPARE.with_borrow_mut(std::mem::take);
    buf.resize(width as usize * height as usize * 3, 0);
    let mut dst = Image::from_vec_u8(width, height, buf, PixelType::U8x3)
        .expect("the buffer is width*height*3 bytes");
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    RESIZER
        .with_borrow_mut(|r| r.resize(&src, &mut dst, &opts))
        .expect("source and destination are both U8x3");
    RgbImage {
        width,
        height,
        data: dst.into_vec(),
    }
}

/// Places `content` on a black canvas.
pub(crate) fn pad(content: &RgbImage, p: &Placement) -> RgbImage {
    let (cw, ch) = (p.canvas_width as usize, p.canvas_height as usize);
    let mut data = vec![0u8; cw * ch * 3];
    let row = content.width as usize * 3;
    for (y, src) in content.data.chunks_exact(row).enumerate() {
        let o = ((p.top as usize + y) * cw + p.left as usize) * 3;
        data[o..o + row].copy_from_slice(src);
    }
    RgbImage {
        width: p.canvas_width,
        height: p.canvas_height,
        data,
    }
}

/// Resizes (and pads) a decoded image to the placement `p`, computed from the image's original
/// size: a reduced-scale decode of it lands exactly where a full one does.
pub(crate) fn apply(img: RgbImage, p: &Placement) -> RgbImage {
    let scaled = if (p.width, p.height) == (img.width, img.height) {
        img
    } else {
        resample(&img, p.width, p.height)
    };
    if (p.canvas_width, p.canvas_height) == (p.width, p.height) {
        scaled
    } else {
        pad(&scaled, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn molmo_truncates_in_float32() {
        // A 640x480 (w x h) image into 336x336: 0.525f32 * 480 = 251.99998 -> 251.
        assert_eq!(fit_scaled(480, 640, 336, 336), (251, 336));
        assert_eq!(fit_scaled(480, 640, 560, 784), (560, 746));
        assert_eq!(fit_scaled(1080, 1920, 784, 1008), (567, 1007));
        assert_eq!(fit_scaled(2000, 300, 2128, 336), (2128, 319));
    }

    #[test]
    fn a_side_that_would_round_to_zero_is_one_pixel() {
        assert_eq!(fit_scaled(3, 5000, 336, 336), (1, 336));
    }

    #[test]
    fn max_side_keeps_aspect_and_never_enlarges() {
        assert_eq!(Resize::MaxSide(336).placement(1920, 1080).width, 336);
        assert_eq!(Resize::MaxSide(336).placement(1920, 1080).height, 189);
        assert_eq!(Resize::MaxSide(336).placement(100, 50).width, 100);
        assert_eq!(Resize::MaxSide(10).placement(5000, 3).height, 1);
    }

    #[test]
    fn pad_centres_content() {
        let p = Resize::Pad {
            width: 336,
            height: 336,
        }
        .placement(640, 480);
        assert_eq!((p.width, p.height, p.left, p.top), (336, 251, 0, 42));
        let img = RgbImage {
            width: 2,
            height: 1,
            data: vec![255; 6],
        };
        let p = Resize::Pad {
            width: 2,
            height: 3,
        }
        .placement(2, 1);
        let out = apply(img, &p);
        assert_eq!(
            out.data,
            [0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn a_buffer_given_back_holds_no_trace_in_a_later_resample() {
        let img = |w: u32, h: u32, k: u32| RgbImage {
            width: w,
            height: h,
            data: (0..w * h * 3).map(|i| (i * k % 251) as u8).collect(),
        };
        let small = img(50, 40, 7);
        let fresh = std::thread::spawn({
            let small = small.clone();
            move || resample(&small, 21, 13)
        })
        .join()
        .unwrap();
        recycle(resample(&img(300, 200, 13), 250, 190));
        assert_eq!(resample(&small, 21, 13), fresh);
    }
}
