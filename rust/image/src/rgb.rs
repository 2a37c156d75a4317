//! The decoded-pixels type every module of the crate passes around. It lives in a module of
//! its own, below the decoders, resizers and transforms that produce and consume it, so those
//! depend on it and not on each other (`decode` uses them, never the reverse).

/// Interleaved 8-bit RGB, row-major: `data.len() == height * width * 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}
