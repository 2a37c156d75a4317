//! Molmo's multi-crop preprocessing (placeholder while being written).
pub struct MolmoConfig;
pub struct MolmoImage;
pub enum Crops {}
pub fn molmo_preprocess() {}
