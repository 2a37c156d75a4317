//! Why an encoded image could not be turned into pixels.

use std::fmt;

/// The container an encoded image was recognised as (from its first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    WebP,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Gif => "GIF",
            Format::WebP => "WebP",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The bytes start with no signature of a supported format.
    #[error("not an image: {}", describe_head(*len, head))]
    NotAnImage { len: usize, head: Vec<u8> },
    /// The data ends before the image does (an interrupted download, a cut file).
    #[error("truncated {format} image: {detail}")]
    Truncated { format: Format, detail: String },
    /// The data is damaged or violates its format.
    #[error("corrupt {format} image: {detail}")]
    Corrupt { format: Format, detail: String },
    /// The header declares more pixels than allowed (a decompression bomb, or just huge);
    /// refused before any pixel buffer is allocated.
    #[error("{format} image of {width}x{height} = {} pixels exceeds the limit of {limit} pixels", *width as u64 * *height as u64)]
    TooManyPixels {
        format: Format,
        width: u32,
        height: u32,
        limit: u64,
    },
    /// The header declares a width or height of zero.
    #[error("{format} image has zero size ({width}x{height})")]
    ZeroSize {
        format: Format,
        width: u32,
        height: u32,
    },
    /// A valid image using a feature the decoder does not implement.
    #[error("unsupported {format} image: {detail}")]
    Unsupported { format: Format, detail: String },
    /// A caller's option is out of range (a target size of 0, a pixel limit of 0).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ImageError {
    /// A short, stable name of the kind of failure, for logs and bad-sample counters.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::NotAnImage { .. } => "not_an_image",
            ImageError::Truncated { .. } => "truncated",
            ImageError::Corrupt { .. } => "corrupt",
            ImageError::TooManyPixels { .. } => "too_many_pixels",
            ImageError::ZeroSize { .. } => "zero_size",
            ImageError::Unsupported { .. } => "unsupported",
            ImageError::InvalidArgument(_) => "invalid_argument",
        }
    }
}

pub type Result<T> = std::result::Result<T, ImageError>;

fn describe_head(len: usize, head: &[u8]) -> String {
    if len == 0 {
        return "the data is empty".into();
    }
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{len} bytes starting {} match no supported format (JPEG, PNG, GIF, WebP)",
        hex.join(" ")
    )
}
