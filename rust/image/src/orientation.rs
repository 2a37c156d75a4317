//! EXIF orientation: turn decoded pixels upright as `ImageOps.exif_transpose` does (where the
//! orientation comes from: `metadata`).

use crate::rgb::RgbImage;

/// Whether an orientation swaps width and height (the transposing ones, 5..=8).
pub(crate) fn swaps_axes(orientation: u8) -> bool {
    matches!(orientation, 5..=8)
}

/// The image as it should be displayed. Each output pixel `(x, y)` reads the stored pixel
/// given by the inverse of the orientation's transform.
pub(crate) fn apply(img: RgbImage, orientation: u8) -> RgbImage {
    if !(2..=8).contains(&orientation) {
        return img;
    }
    let (w, h) = (img.width as usize, img.height as usize);
    let (ow, oh) = if swaps_axes(orientation) {
        (h, w)
    } else {
        (w, h)
    };
    let mut out = vec![0u8; img.data.len()];
    for y in 0..oh {
        for x in 0..ow {
            // (sx, sy): the source pixel shown at (x, y).
            let (sx, sy) = match orientation {
                2 => (w - 1 - x, y),         // mirrored horizontally
                3 => (w - 1 - x, h - 1 - y), // rotated 180
                4 => (x, h - 1 - y),         // mirrored vertically
                5 => (y, x),                 // transposed
                6 => (y, h - 1 - x),         // stored rotated 90 counter-clockwise
                7 => (w - 1 - y, h - 1 - x), // transversed
                _ => (w - 1 - y, x),         // 8: stored rotated 90 clockwise
            };
            let s = (sy * w + sx) * 3;
            let d = (y * ow + x) * 3;
            out[d..d + 3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    RgbImage {
        width: ow as u32,
        height: oh as u32,
        data: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x2 image whose pixel value is its index, so every transform is identifiable.
    fn indexed() -> RgbImage {
        let data = (0u8..6).flat_map(|i| [i, i, i]).collect();
        RgbImage {
            width: 3,
            height: 2,
            data,
        }
    }

    fn values(img: &RgbImage) -> Vec<u8> {
        img.data.chunks(3).map(|p| p[0]).collect()
    }

    #[test]
    fn each_orientation_moves_pixels_like_pil() {
        // Stored rows: [0 1 2] / [3 4 5]. Expected upright rows, as PIL's exif_transpose gives.
        let cases: [(u8, u32, u32, [u8; 6]); 8] = [
            (1, 3, 2, [0, 1, 2, 3, 4, 5]),
            (2, 3, 2, [2, 1, 0, 5, 4, 3]),
            (3, 3, 2, [5, 4, 3, 2, 1, 0]),
            (4, 3, 2, [3, 4, 5, 0, 1, 2]),
            (5, 2, 3, [0, 3, 1, 4, 2, 5]),
            (6, 2, 3, [3, 0, 4, 1, 5, 2]),
            (7, 2, 3, [5, 2, 4, 1, 3, 0]),
            (8, 2, 3, [2, 5, 1, 4, 0, 3]),
        ];
        for (o, w, h, want) in cases {
            let out = apply(indexed(), o);
            assert_eq!((out.width, out.height), (w, h), "orientation {o}");
            assert_eq!(values(&out), want, "orientation {o}");
        }
    }
}
