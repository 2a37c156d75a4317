//! Encoded bytes to upright RGB8 pixels, resized in the same call.

use crate::error::{Format, ImageError, Result};
use crate::formats::{self, Header};
use crate::orientation;
use crate::resize::{self, Resize};
use crate::rgb::RgbImage;

/// PIL's default `Image.MAX_IMAGE_PIXELS` times two: the size at which PIL refuses to open.
pub const DEFAULT_MAX_PIXELS: u64 = 178_956_970;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Largest `width * height` accepted, checked from the header before any pixel buffer
    /// is allocated.
    pub max_pixels: u64,
    pub resize: Resize,
    /// Allow a JPEG to be decoded at 1/2, 1/4 or 1/8 scale (DCT scaling) when the resize
    /// target is at most that size: faster, slightly different pixels.
    pub fast: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_pixels: DEFAULT_MAX_PIXELS,
            resize: Resize::None,
            fast: false,
        }
    }
}

/// What an image's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: Format,
    /// Size as displayed, after EXIF orientation.
    pub width: u32,
    pub height: u32,
    /// EXIF orientation 1..=8 (1 when absent).
    pub orientation: u8,
}

/// Reads the header only: format, displayed size, orientation.
pub fn probe(bytes: &[u8]) -> Result<ImageInfo> {
    let h = formats::read_header(bytes)?;
    let (width, height) = upright_size(&h);
    Ok(ImageInfo {
        format: h.format,
        width,
        height,
        orientation: h.orientation,
    })
}

/// Decodes one image to upright RGB8 (EXIF orientation applied; grayscale, palette and CMYK
/// converted; alpha dropped as PIL's `convert("RGB")` does) and resizes it.
pub fn decode_rgb(bytes: &[u8], opts: &DecodeOptions) -> Result<RgbImage> {
    opts.resize.validate()?;
    let header = checked_header(bytes, opts.max_pixels)?;
    let (w, h) = upright_size(&header);
    let p = opts.resize.placement(w, h);
    let reduce = if opts.fast {
        reduction_for(&header, p.width, p.height)
    } else {
        1
    };
    let img = decode_upright_with(bytes, &header, reduce)?;
    // The layout is the original size's (what `placement` says), whatever size was decoded.
    Ok(resize::apply(img, &p))
}

/// Decodes upright pixels at least `min_width` x `min_height` in size where the format allows
/// a cheaper reduced decode (JPEG DCT scaling), else at full size. Used by fast preprocessing.
pub(crate) fn decode_at_least(
    bytes: &[u8],
    max_pixels: u64,
    min_width: u32,
    min_height: u32,
) -> Result<RgbImage> {
    let header = checked_header(bytes, max_pixels)?;
    let reduce = reduction_for(&header, min_width, min_height);
    decode_upright_with(bytes, &header, reduce)
}

pub(crate) fn checked_header(bytes: &[u8], max_pixels: u64) -> Result<Header> {
    if max_pixels == 0 {
        return Err(ImageError::InvalidArgument(
            "max_pixels must be at least 1".into(),
        ));
    }
    let header = formats::read_header(bytes)?;
    if u64::from(header.width) * u64::from(header.height) > max_pixels {
        return Err(ImageError::TooManyPixels {
            format: header.format,
            width: header.width,
            height: header.height,
            limit: max_pixels,
        });
    }
    Ok(header)
}

fn decode_upright_with(bytes: &[u8], header: &Header, reduce: u32) -> Result<RgbImage> {
    let stored = formats::decode_stored(bytes, header, reduce)?;
    Ok(orientation::apply(stored, header.orientation))
}

fn upright_size(h: &Header) -> (u32, u32) {
    if orientation::swaps_axes(h.orientation) {
        (h.height, h.width)
    } else {
        (h.width, h.height)
    }
}

/// A reduced decode keeps at least this many pixels a side. Its last row and column of pixels
/// stand for whatever is left of the image past the last whole 8x8 block (one to eight pixels
/// of it, padded), yet resampling weighs them as full ones: on a side of few pixels that
/// shifts the content (a 10 px wide image decoded at 1/8 is 2 px, one of them made of 2
/// columns; padded into 336x336 it differed from the full decode by up to 54 levels).
const MIN_REDUCED_SIDE: u32 = 32;

/// The largest JPEG DCT reduction (8, 4 or 2; 1 for none) whose output still covers an
/// upright target of `tw` x `th`, so resampling only ever shrinks, and keeps at least
/// `MIN_REDUCED_SIDE` pixels on each side. 2 only where libjpeg-turbo
/// has its SIMD: built from plain C, its 1/2-scale decode saves nothing over zune-jpeg's full
/// decode (per 1.6 MP photo, decode and resize: 8.9 ms against 8.9), with SIMD it does (6.4
/// ms against 7.4 for a 700 px view).
fn reduction_for(header: &Header, tw: u32, th: u32) -> u32 {
    reduction_with(header, tw, th, crate::libjpeg::has_simd())
}

fn reduction_with(header: &Header, tw: u32, th: u32, half: bool) -> u32 {
    if header.format != Format::Jpeg {
        return 1;
    }
    let (tw, th) = if orientation::swaps_axes(header.orientation) {
        (th, tw)
    } else {
        (tw, th)
    };
    let scales: &[u32] = if half { &[8, 4, 2] } else { &[8, 4] };
    scales
        .iter()
        .copied()
        .find(|&r| {
            let (w, h) = (header.width.div_ceil(r), header.height.div_ceil(r));
            w >= tw.max(MIN_REDUCED_SIDE) && h >= th.max(MIN_REDUCED_SIDE)
        })
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(w: u32, h: u32, orientation: u8) -> Header {
        Header {
            format: Format::Jpeg,
            width: w,
            height: h,
            orientation,
        }
    }

    #[test]
    fn reduction_covers_the_target() {
        for half in [false, true] {
            let r = |w, h, o, tw, th| reduction_with(&header(w, h, o), tw, th, half);
            assert_eq!(r(1920, 1080, 1, 336, 189), 4);
            assert_eq!(r(1920, 1080, 1, 240, 135), 8);
            assert_eq!(r(1920, 1080, 1, 1000, 500), 1);
            // 1/2 covers it (960x540): used only where it pays (libjpeg-turbo with SIMD).
            assert_eq!(r(1920, 1080, 1, 900, 500), if half { 2 } else { 1 });
            // Rotated: the target's width lies along the stored height.
            assert_eq!(r(1080, 1920, 6, 336, 189), 4);
            assert_eq!(r(1080, 1920, 1, 336, 189), if half { 2 } else { 1 });
            assert_eq!(r(4000, 3000, 1, 1008, 756), if half { 2 } else { 1 });
            assert_eq!(r(4032, 3024, 1, 1008, 756), 4);
            // A thin image keeps its short side: no reduction leaves it 32 px.
            assert_eq!(r(10, 3891, 1, 1, 336), 1);
            assert_eq!(r(14, 5000, 1, 1, 336), 1);
            assert_eq!(r(300, 5000, 1, 20, 336), 8);
        }
    }

    #[test]
    fn garbage_is_not_an_image() {
        let err = decode_rgb(b"hello world", &DecodeOptions::default()).unwrap_err();
        assert_eq!(err.reason(), "not_an_image");
        assert!(err.to_string().contains("68 65 6c 6c 6f"), "{err}");
        let empty = decode_rgb(b"", &DecodeOptions::default()).unwrap_err();
        assert_eq!(empty.reason(), "not_an_image");
        assert_eq!(empty.to_string(), "not an image: the data is empty");
    }
}
