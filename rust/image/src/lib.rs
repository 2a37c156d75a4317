//! Image decoding, resizing and Molmo's multi-crop preprocessing for pixmo-stream.
//!
//! Rust, but for libjpeg-turbo's decoder (C, vendored by `mozjpeg-sys` and compiled by the
//! `cc` crate, with its SIMD where NASM is found at build time): reduced-size JPEG decodes
//! always, full-size ones where it has the SIMD (see `libjpeg.rs`). No PyO3, no global
//! state and no thread pool: every function runs on the calling thread, except
//! [`decode_many`], which starts scoped threads per call, so processes forked by a data
//! loader inherit nothing running.

mod antialias;
mod decode;
mod error;
mod formats;
mod libjpeg;
mod many;
mod metadata;
pub mod molmo;
mod orientation;
mod resize;
mod rgb;

pub use resize::{fit_scaled, Placement};

pub use decode::{decode_rgb, probe, DecodeOptions, ImageInfo, DEFAULT_MAX_PIXELS};
pub use error::{Format, ImageError, Result};
pub use libjpeg::has_simd as jpeg_simd;
pub use many::{decode_many, decode_many_into};
pub use molmo::{
    molmo_preprocess, molmo_preprocess_into, molmo_preprocess_many, Crops, CropsOut, MolmoConfig,
    MolmoGeometry, MolmoImage,
};
pub use resize::Resize;
pub use rgb::RgbImage;
