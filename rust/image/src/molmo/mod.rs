//! Molmo's multi-crop image preprocessing (`crop_mode="overlap-and-resize-c2"`, the released
//! models' setting), computed as Molmo's `olmo/data/model_preprocessor.py` computes it.
//!
//! One image becomes a global 336x336 view plus up to 12 overlapping 336x336 crops of a
//! resized canvas, each cut into 24x24 patches of 14x14x3 values, with a per-patch padding
//! mask and the token positions (`image_input_idx`) Molmo's model places pooled patches at.

mod geometry;
mod layout;
mod pixels;

pub use geometry::{select_tiling, MolmoGeometry, Placed};
pub use layout::ImageTokenIds;

use crate::antialias::{resize_clipped, RgbU8};
use crate::decode::{checked_header, decode_at_least, DEFAULT_MAX_PIXELS};
use crate::error::{ImageError, Result};
use crate::orientation;
use crate::resize::resample;
use crate::rgb::RgbImage;

/// OpenAI CLIP's per-channel mean and std, which Molmo normalises with.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
// The constants as published (and as Molmo writes them); they round to these f32 values.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MolmoConfig {
    /// Most high-resolution crops (the global view comes on top): 12.
    pub max_crops: u32,
    /// Crop side, px: 336 (the ViT's input).
    pub crop_size: u32,
    /// ViT patch side, px: 14.
    pub patch_size: u32,
    /// Patches discarded at the (left/top, right/bottom) edge of a crop where crops overlap:
    /// (4, 4).
    pub overlap_margins: (u32, u32),
    /// Pooling of patches into tokens, per side: 2.
    pub pooling: u32,
    /// `true`: pixel values as Molmo's torchvision float32 resize gives them. `false`: a
    /// reduced-scale JPEG decode and a SIMD uint8 resize: several times faster, the same
    /// shapes and indices, pixel values within a small measured tolerance.
    pub exact: bool,
    /// `true`: float32 crops normalised with CLIP mean/std. `false`: uint8 crops (0 where
    /// padded), to be normalised on the GPU as `(x / 255 - mean) / std`.
    pub normalize: bool,
    /// Largest `width * height` accepted (checked from the header).
    pub max_pixels: u64,
    /// Ids written into [`MolmoImage::image_tokens`].
    pub token_ids: ImageTokenIds,
}

impl Default for MolmoConfig {
    fn default() -> Self {
        MolmoConfig {
            max_crops: 12,
            crop_size: 336,
            patch_size: 14,
            overlap_margins: (4, 4),
            pooling: 2,
            exact: true,
            normalize: true,
            max_pixels: DEFAULT_MAX_PIXELS,
            token_ids: ImageTokenIds::default(),
        }
    }
}

impl MolmoConfig {
    pub(crate) fn crop_patches(&self) -> u32 {
        self.crop_size / self.patch_size
    }
    pub(crate) fn tokens_per_side(&self) -> u32 {
        self.crop_patches().div_ceil(self.pooling)
    }
    pub(crate) fn margin_pixels(&self) -> u32 {
        self.patch_size * (self.overlap_margins.0 + self.overlap_margins.1)
    }
    pub(crate) fn crop_window_pixels(&self) -> u32 {
        (self.crop_patches() - self.overlap_margins.0 - self.overlap_margins.1) * self.patch_size
    }
    /// Values per patch: `patch_size^2 * 3` (588).
    pub fn patch_len(&self) -> usize {
        (self.patch_size * self.patch_size * 3) as usize
    }
    /// Patches per crop: `(crop_size / patch_size)^2` (576).
    pub fn patches_per_crop(&self) -> usize {
        (self.crop_patches() * self.crop_patches()) as usize
    }
    /// Pooled tokens per crop (144).
    pub fn tokens_per_crop(&self) -> usize {
        (self.tokens_per_side() * self.tokens_per_side()) as usize
    }

    /// Molmo's own assertions on its settings, as errors.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ImageError::InvalidArgument(m));
        let (l, r) = self.overlap_margins;
        if self.max_crops == 0 || self.patch_size == 0 || self.pooling == 0 {
            return bad(format!(
                "max_crops, patch_size and pooling must be positive: {self:?}"
            ));
        }
        if !self.crop_size.is_multiple_of(self.patch_size) {
            return bad(format!(
                "crop_size {} is not a multiple of patch_size {}",
                self.crop_size, self.patch_size
            ));
        }
        if !l.is_multiple_of(self.pooling) || !r.is_multiple_of(self.pooling) {
            return bad(format!(
                "overlap margins {:?} must be multiples of pooling {}",
                self.overlap_margins, self.pooling
            ));
        }
        if l + r >= self.crop_patches() {
            return bad(format!(
                "overlap margins {:?} leave no window in a crop of {} patches",
                self.overlap_margins,
                self.crop_patches()
            ));
        }
        if self.max_pixels == 0 {
            return bad("max_pixels must be at least 1".into());
        }
        Ok(())
    }
}

/// Crop pixels, `[n_crops, patches_per_crop, patch_len]` (`[n, 576, 588]`), global view first.
#[derive(Debug, Clone, PartialEq)]
pub enum Crops {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

/// One image preprocessed for Molmo.
#[derive(Debug, Clone, PartialEq)]
pub struct MolmoImage {
    pub crops: Crops,
    /// Crops including the global view: `tiling.0 * tiling.1 + 1`.
    pub n_crops: usize,
    /// `[n_crops, patches_per_crop]`: per tile (row-major) the fraction of each patch that is
    /// image, then a row of -1 (Molmo's `image_masks`, whose rows are offset by one from the
    /// crops: the -1 row is last although the global view is crop 0).
    pub patch_mask: Vec<f32>,
    /// `[n_crops, tokens_per_crop]`: position in `image_tokens` of each crop's pooled patch,
    /// -100 for dropped ones.
    pub image_input_idx: Vec<i32>,
    /// The image's token sequence (start, patch, column and end tokens).
    pub image_tokens: Vec<i32>,
    /// `(rows, cols)` of crops.
    pub tiling: (u32, u32),
    pub geometry: MolmoGeometry,
}

/// Where [`molmo_preprocess_into`] writes an image's crops: a slot of a batch buffer, at least
/// `n_crops` crops long (`max_crops + 1` holds any image), float32 for a normalising config,
/// uint8 otherwise. The image's crops come first; the rest of the slot becomes padding crops
/// (-1.0 for float32, 0 for uint8, as Molmo's collator pads).
#[derive(Debug)]
pub enum CropsOut<'a> {
    F32(&'a mut [f32]),
    U8(&'a mut [u8]),
}

impl CropsOut<'_> {
    /// Values the slot holds.
    fn len(&self) -> usize {
        match self {
            CropsOut::F32(s) => s.len(),
            CropsOut::U8(s) => s.len(),
        }
    }
}

/// Padding crops' value in a float32 batch (Molmo's collator pads with -1).
pub const PAD_F32: f32 = -1.0;

/// Decodes one image and preprocesses it as Molmo does.
pub fn molmo_preprocess(bytes: &[u8], cfg: &MolmoConfig) -> Result<MolmoImage> {
    molmo_preprocess_into(bytes, cfg, None)
}

/// [`molmo_preprocess`], with the crops written into `out` when given (the result's `crops`
/// are then empty): a batch's crops are written once, where the batch is.
pub fn molmo_preprocess_into(
    bytes: &[u8],
    cfg: &MolmoConfig,
    out: Option<CropsOut<'_>>,
) -> Result<MolmoImage> {
    cfg.validate()?;
    match (&out, cfg.normalize) {
        (Some(CropsOut::F32(_)), false) | (Some(CropsOut::U8(_)), true) => {
            return Err(ImageError::InvalidArgument(
                "the crops' buffer is float32 exactly when the config normalises".into(),
            ))
        }
        _ => {}
    }
    let header = checked_header(bytes, cfg.max_pixels)?;
    let (h, w) = if orientation::swaps_axes(header.orientation) {
        (header.width, header.height)
    } else {
        (header.height, header.width)
    };
    let g = MolmoGeometry::new(h, w, cfg);
    let img = if cfg.exact {
        decode_at_least(bytes, cfg.max_pixels, u32::MAX, u32::MAX)?
    } else {
        // A DCT-scaled decode only where it still leaves 2x the canvas to resample from: a
        // 1/4-scale decode straight to canvas size differs from the exact resize by up to
        // 0.9 (normalised) at hard edges; with 2x to spare the resize's own filter decides.
        let (w, h) = (
            g.canvas.width.saturating_mul(2),
            g.canvas.height.saturating_mul(2),
        );
        decode_at_least(bytes, cfg.max_pixels, w, h)?
    };
    let per_crop = cfg.patches_per_crop() * cfg.patch_len();
    if let Some(room) = out.as_ref().map(CropsOut::len) {
        if room < g.n_crops() * per_crop {
            return Err(ImageError::InvalidArgument(format!(
                "a slot of {room} values cannot hold {} crops of {per_crop}",
                g.n_crops()
            )));
        }
    }
    Ok(preprocess_pixels_into(&img, &g, cfg, out))
}

/// Preprocesses decoded upright pixels of an image whose original size `g` describes (`img`
/// may be a reduced decode of it).
#[cfg(test)]
pub(crate) fn preprocess_pixels(
    img: &RgbImage,
    g: &MolmoGeometry,
    cfg: &MolmoConfig,
) -> MolmoImage {
    preprocess_pixels_into(img, g, cfg, None)
}

/// Crops of `len` values made by `fill`: into the front of `slot` (the rest of it padding,
/// and an empty vector returned), or into a vector of their own.
fn emit<T: Copy + Default>(
    slot: Option<&mut [T]>,
    len: usize,
    pad: T,
    fill: impl FnOnce(&mut [T]),
) -> Vec<T> {
    match slot {
        Some(slot) => {
            let (mine, rest) = slot.split_at_mut(len);
            fill(mine);
            rest.fill(pad);
            Vec::new()
        }
        None => {
            let mut own = vec![T::default(); len];
            fill(&mut own);
            own
        }
    }
}

/// [`preprocess_pixels`] writing the crops into `out` when given (its room checked).
pub(crate) fn preprocess_pixels_into(
    img: &RgbImage,
    g: &MolmoGeometry,
    cfg: &MolmoConfig,
    out: Option<CropsOut<'_>>,
) -> MolmoImage {
    let (mut out_f32, mut out_u8) = match out {
        Some(CropsOut::F32(s)) => (Some(s), None),
        Some(CropsOut::U8(s)) => (None, Some(s)),
        None => (None, None),
    };
    let crop = cfg.crop_size as usize;
    let patch = cfg.patch_size as usize;
    let per_crop = cfg.patches_per_crop() * cfg.patch_len();
    let n = g.n_crops();
    let views = |k: usize| -> (&Placed, (u32, u32)) {
        if k == 0 {
            (&g.global, (0, 0))
        } else {
            (&g.canvas, g.tile_origin(k - 1))
        }
    };
    let crops = if cfg.exact {
        let src = RgbU8 {
            width: img.width as usize,
            height: img.height as usize,
            data: &img.data,
        };
        let resized = |p: &Placed| resize_clipped(&src, p.width as usize, p.height as usize).data;
        let (global, canvas) = (resized(&g.global), resized(&g.canvas));
        if cfg.normalize {
            let (global, canvas) = (normalized(global), normalized(canvas));
            let pad = normalized(vec![0.0; 3]);
            let crops = Crops::F32(emit(out_f32.take(), n * per_crop, PAD_F32, |out| {
                for (k, dst) in out.chunks_exact_mut(per_crop).enumerate() {
                    let (p, origin) = views(k);
                    let content = if k == 0 { &global } else { &canvas };
                    pixels::write_crop(
                        dst,
                        content,
                        p,
                        origin,
                        crop,
                        patch,
                        [pad[0], pad[1], pad[2]],
                    );
                }
            }));
            crate::antialias::recycle(global);
            crate::antialias::recycle(canvas);
            crops
        } else {
            let q = |v: Vec<f32>| -> Vec<u8> {
                let q = v.iter().map(|x| (x * 255.0).round() as u8).collect();
                crate::antialias::recycle(v);
                q
            };
            let (global, canvas) = (q(global), q(canvas));
            Crops::U8(emit(out_u8.take(), n * per_crop, 0, |out| {
                crops_u8(out, per_crop, &global, &canvas, &views, crop, patch)
            }))
        }
    } else {
        let canvas = resample(img, g.canvas.width, g.canvas.height);
        let global = resample(img, g.global.width, g.global.height);
        let crops = if cfg.normalize {
            let lut = normalize_lut();
            Crops::F32(emit(out_f32.take(), n * per_crop, PAD_F32, |out| {
                let mut tmp = vec![0u8; per_crop];
                for (k, dst) in out.chunks_exact_mut(per_crop).enumerate() {
                    let (p, origin) = views(k);
                    let content = if k == 0 { &global.data } else { &canvas.data };
                    // Write the raw bytes' normalised values channel by channel.
                    pixels::write_crop(&mut tmp, content, p, origin, crop, patch, [0; 3]);
                    for (i, (o, &v)) in dst.iter_mut().zip(&tmp).enumerate() {
                        *o = lut[i % 3][v as usize];
                    }
                }
            }))
        } else {
            Crops::U8(emit(out_u8.take(), n * per_crop, 0, |out| {
                crops_u8(
                    out,
                    per_crop,
                    &global.data,
                    &canvas.data,
                    &views,
                    crop,
                    patch,
                )
            }))
        };
        crate::resize::recycle(canvas);
        crops
    };
    let order = layout::patch_ordering(cfg, g.tiling);
    let image_tokens = layout::tokens(cfg, g.tiling, &cfg.token_ids);
    let image_input_idx = layout::image_input_idx(&image_tokens, cfg.token_ids.patch, &order);
    MolmoImage {
        crops,
        n_crops: n,
        patch_mask: pixels::patch_mask(g, patch),
        image_input_idx,
        image_tokens,
        tiling: g.tiling,
        geometry: *g,
    }
}

fn crops_u8<'a>(
    out: &mut [u8],
    per_crop: usize,
    global: &[u8],
    canvas: &[u8],
    views: &dyn Fn(usize) -> (&'a Placed, (u32, u32)),
    crop: usize,
    patch: usize,
) {
    for (k, dst) in out.chunks_exact_mut(per_crop).enumerate() {
        let (p, origin) = views(k);
        pixels::write_crop(
            dst,
            if k == 0 { global } else { canvas },
            p,
            origin,
            crop,
            patch,
            [0; 3],
        );
    }
}

/// CLIP normalisation of interleaved RGB in place, as Molmo's `image -= mean; image /= std`.
fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    for px in v.chunks_exact_mut(3) {
        for c in 0..3 {
            px[c] = (px[c] - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
    v
}

/// `(v / 255 - mean) / std` for every byte value, per channel.
fn normalize_lut() -> [[f32; 256]; 3] {
    let mut lut = [[0f32; 256]; 3];
    for (c, row) in lut.iter_mut().enumerate() {
        for (v, o) in row.iter_mut().enumerate() {
            *o = (v as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
    lut
}

/// Preprocesses many images on up to `threads` scoped threads; one result per input.
pub fn molmo_preprocess_many(
    inputs: &[&[u8]],
    cfg: &MolmoConfig,
    threads: usize,
) -> Vec<Result<MolmoImage>> {
    crate::many::parallel_map(inputs.len(), threads, |i| molmo_preprocess(inputs[i], cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(h: u32, w: u32, v: u8) -> RgbImage {
        RgbImage {
            width: w,
            height: h,
            data: vec![v; (h * w * 3) as usize],
        }
    }

    #[test]
    fn shapes_for_the_test_vectors() {
        let cfg = MolmoConfig::default();
        for ((h, w), n) in [((480, 640), 7), ((50, 50), 2), ((2000, 300), 10)] {
            let g = MolmoGeometry::new(h, w, &cfg);
            let out = preprocess_pixels(&flat(h, w, 128), &g, &cfg);
            assert_eq!(out.n_crops, n);
            let Crops::F32(c) = &out.crops else {
                panic!("normalised crops are f32")
            };
            assert_eq!(c.len(), n * 576 * 588);
            assert_eq!(out.patch_mask.len(), n * 576);
            assert_eq!(out.image_input_idx.len(), n * 144);
        }
    }

    #[test]
    fn fast_and_exact_agree_on_a_flat_image() {
        let cfg = MolmoConfig::default();
        let g = MolmoGeometry::new(480, 640, &cfg);
        let exact = preprocess_pixels(&flat(480, 640, 200), &g, &cfg);
        let fast = preprocess_pixels(
            &flat(480, 640, 200),
            &g,
            &MolmoConfig {
                exact: false,
                ..cfg
            },
        );
        let (Crops::F32(a), Crops::F32(b)) = (&exact.crops, &fast.crops) else {
            panic!()
        };
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
        assert_eq!(exact.image_input_idx, fast.image_input_idx);
        assert_eq!(exact.patch_mask, fast.patch_mask);
    }

    #[test]
    fn padding_normalises_to_minus_mean_over_std() {
        let cfg = MolmoConfig::default();
        let g = MolmoGeometry::new(480, 640, &cfg);
        let out = preprocess_pixels(&flat(480, 640, 255), &g, &cfg);
        let Crops::F32(c) = &out.crops else { panic!() };
        // The global view's first patch lies in the 42 padded rows above the content.
        for ch in 0..3 {
            assert_eq!(c[ch], (0.0 - CLIP_MEAN[ch]) / CLIP_STD[ch]);
        }
    }

    fn gradient(h: u32, w: u32) -> RgbImage {
        RgbImage {
            width: w,
            height: h,
            data: (0..h * w * 3).map(|i| (i % 251) as u8).collect(),
        }
    }

    #[test]
    fn crops_written_into_a_slot_are_the_crops_then_padding() {
        let (h, w) = (300, 700);
        for (exact, normalize) in [(true, true), (true, false), (false, true), (false, false)] {
            let cfg = MolmoConfig {
                exact,
                normalize,
                ..Default::default()
            };
            let g = MolmoGeometry::new(h, w, &cfg);
            let own = preprocess_pixels(&gradient(h, w), &g, &cfg);
            let per_crop = cfg.patches_per_crop() * cfg.patch_len();
            let slot_len = (cfg.max_crops as usize + 1) * per_crop;
            let n = own.n_crops * per_crop;
            assert!(own.n_crops < cfg.max_crops as usize + 1);
            match &own.crops {
                Crops::F32(want) => {
                    let mut slot = vec![7f32; slot_len];
                    let got = preprocess_pixels_into(
                        &gradient(h, w),
                        &g,
                        &cfg,
                        Some(CropsOut::F32(&mut slot)),
                    );
                    assert_eq!(got.crops, Crops::F32(vec![]));
                    assert_eq!(&slot[..n], &want[..]);
                    assert!(slot[n..].iter().all(|&v| v == PAD_F32));
                    assert_eq!(got.image_input_idx, own.image_input_idx);
                    assert_eq!(got.patch_mask, own.patch_mask);
                }
                Crops::U8(want) => {
                    let mut slot = vec![7u8; slot_len];
                    let got = preprocess_pixels_into(
                        &gradient(h, w),
                        &g,
                        &cfg,
                        Some(CropsOut::U8(&mut slot)),
                    );
                    assert_eq!(got.crops, Crops::U8(vec![]));
                    assert_eq!(&slot[..n], &want[..]);
                    assert!(slot[n..].iter().all(|&v| v == 0));
                }
            }
        }
    }

    #[test]
    fn a_slot_of_the_wrong_type_is_refused() {
        let mut f = vec![0f32; 4];
        let mut u = vec![0u8; 4];
        let uint8 = MolmoConfig {
            normalize: false,
            ..Default::default()
        };
        for (cfg, out) in [
            (MolmoConfig::default(), CropsOut::U8(&mut u)),
            (uint8, CropsOut::F32(&mut f)),
        ] {
            let err = molmo_preprocess_into(b"not read", &cfg, Some(out)).unwrap_err();
            assert!(matches!(err, ImageError::InvalidArgument(_)), "{err}");
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let cfg = MolmoConfig {
            overlap_margins: (3, 4),
            ..Default::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ImageError::InvalidArgument(_))
        ));
    }
}
