//! Per-format decoding to RGB8: recognise the container, read its header (size, EXIF
//! orientation) without touching pixel data, then decode. Each library's errors become an
//! [`ImageError`] saying whether the data was cut short, damaged or unsupported.

use std::io::Cursor;

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_jpeg::errors::DecodeErrors;

use crate::decode::RgbImage;
use crate::error::{Format, ImageError, Result};
use crate::orientation;

/// What a header says, before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub format: Format,
    /// Stored size (before EXIF orientation).
    pub width: u32,
    pub height: u32,
    /// EXIF orientation, 1..=8 (1 when absent).
    pub orientation: u8,
}

pub(crate) fn sniff(bytes: &[u8]) -> Result<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(Format::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(Format::Png)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Ok(Format::Gif)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Ok(Format::WebP)
    } else {
        Err(ImageError::NotAnImage {
            len: bytes.len(),
            head: bytes[..bytes.len().min(8)].to_vec(),
        })
    }
}

pub(crate) fn read_header(bytes: &[u8]) -> Result<Header> {
    let format = sniff(bytes)?;
    let (width, height, orientation) = match format {
        Format::Jpeg => {
            let mut d = zune_decoder(bytes, u64::MAX, false);
            d.decode_headers().map_err(jpeg_error)?;
            let info = d.info().ok_or_else(|| corrupt(format, "no frame header"))?;
            (
                info.width as u32,
                info.height as u32,
                orientation::from_exif(d.exif().cloned()),
            )
        }
        Format::Png => {
            let reader = png_reader(bytes, png::Limits::default().bytes)?;
            let info = reader.info();
            let exif = info.exif_metadata.as_ref().map(|e| e.to_vec());
            (info.width, info.height, orientation::from_exif(exif))
        }
        Format::Gif => {
            let d = gif_decoder(bytes, u64::MAX)?;
            (u32::from(d.width()), u32::from(d.height()), 1)
        }
        Format::WebP => {
            let mut d = webp_decoder(bytes)?;
            let (w, h) = d.dimensions();
            (
                w,
                h,
                orientation::from_exif(d.exif_metadata().ok().flatten()),
            )
        }
    };
    if width == 0 || height == 0 {
        return Err(ImageError::ZeroSize {
            format,
            width,
            height,
        });
    }
    Ok(Header {
        format,
        width,
        height,
        orientation,
    })
}

/// Decodes the stored pixels (EXIF orientation not applied). `reduce` (1, 2, 4 or 8) asks a
/// JPEG to be decoded at that fraction of its size by DCT scaling; other formats ignore it.
/// The caller has checked the header's size against its pixel limit.
pub(crate) fn decode_stored(bytes: &[u8], header: &Header, reduce: u32) -> Result<RgbImage> {
    let pixels = u64::from(header.width) * u64::from(header.height);
    match header.format {
        // libjpeg-turbo when scaling (zune-jpeg cannot) or when it has its SIMD (faster than
        // zune-jpeg then; slower without); zune-jpeg for the rest, and for whatever
        // libjpeg-turbo hands back as not handled.
        Format::Jpeg if reduce > 1 || crate::libjpeg::has_simd() => {
            match decode_jpeg_libjpeg(bytes, header, reduce)? {
                Some(img) => Ok(img),
                None => decode_jpeg(bytes, pixels),
            }
        }
        Format::Jpeg => decode_jpeg(bytes, pixels),
        Format::Png => decode_png(bytes, pixels),
        Format::Gif => decode_gif(bytes, pixels),
        Format::WebP => decode_webp(bytes),
    }
}

fn corrupt(format: Format, detail: impl Into<String>) -> ImageError {
    ImageError::Corrupt {
        format,
        detail: detail.into(),
    }
}

fn truncated(format: Format, detail: impl Into<String>) -> ImageError {
    ImageError::Truncated {
        format,
        detail: detail.into(),
    }
}

// ---- JPEG -------------------------------------------------------------------------------

/// Strict: a cut or damaged entropy stream is an error, not an image filled with grey.
fn zune_decoder(
    bytes: &[u8],
    max_pixels: u64,
    strict: bool,
) -> zune_jpeg::JpegDecoder<ZCursor<&[u8]>> {
    let side = usize::try_from(max_pixels.min(u64::from(u16::MAX))).unwrap_or(usize::MAX);
    let opts = zune_core::options::DecoderOptions::default()
        .set_strict_mode(strict)
        .set_max_width(side)
        .set_max_height(side)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), opts)
}

fn jpeg_error(e: DecodeErrors) -> ImageError {
    let f = Format::Jpeg;
    match e {
        DecodeErrors::ExhaustedData | DecodeErrors::IoErrors(_) => truncated(f, e.to_string()),
        DecodeErrors::FormatStatic(m) if m.contains("end of buffer") || m.contains("No more") => {
            truncated(f, m)
        }
        DecodeErrors::ZeroError => ImageError::ZeroSize {
            format: f,
            width: 0,
            height: 0,
        },
        DecodeErrors::Unsupported(s) => ImageError::Unsupported {
            format: f,
            detail: format!("{s:?}"),
        },
        other => corrupt(f, other.to_string()),
    }
}

fn decode_jpeg(bytes: &[u8], pixels: u64) -> Result<RgbImage> {
    match decode_jpeg_with(bytes, pixels, true) {
        // Stray bytes between header segments are common in the wild and harmless (PIL and
        // libjpeg skip them); only the strict header check objects, so read those leniently.
        Err(ImageError::Corrupt { detail, .. })
            if detail.contains("Extra bytes between headers") =>
        {
            decode_jpeg_with(bytes, pixels, false)
        }
        other => other,
    }
}

fn decode_jpeg_with(bytes: &[u8], pixels: u64, strict: bool) -> Result<RgbImage> {
    let mut d = zune_decoder(bytes, pixels, strict);
    d.decode_headers().map_err(jpeg_error)?;
    let info = d
        .info()
        .ok_or_else(|| corrupt(Format::Jpeg, "no frame header"))?;
    let data = d.decode().map_err(jpeg_error)?;
    let img = RgbImage {
        width: info.width as u32,
        height: info.height as u32,
        data,
    };
    check_len(Format::Jpeg, &img)?;
    Ok(img)
}

/// A decode at `1/reduce` of the size (1 for full size) with libjpeg-turbo's decoder (see
/// [`crate::libjpeg`]). `None` when the image is one that decoder does not handle, so the
/// caller decodes it in full with zune-jpeg instead.
fn decode_jpeg_libjpeg(bytes: &[u8], header: &Header, reduce: u32) -> Result<Option<RgbImage>> {
    let img = crate::libjpeg::decode_scaled(bytes, header.width, header.height, reduce)?;
    if let Some(img) = &img {
        check_len(Format::Jpeg, img)?;
    }
    Ok(img)
}

// ---- PNG --------------------------------------------------------------------------------

fn png_reader(bytes: &[u8], limit_bytes: usize) -> Result<png::Reader<Cursor<&[u8]>>> {
    let mut d =
        png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: limit_bytes });
    // Palette and low-bit-depth expanded, 16 bits reduced to their high byte.
    d.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    d.read_info().map_err(png_error)
}

fn png_error(e: png::DecodingError) -> ImageError {
    let f = Format::Png;
    match e {
        png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            truncated(f, io.to_string())
        }
        png::DecodingError::LimitsExceeded => corrupt(f, "decoder memory limit exceeded"),
        other => corrupt(f, other.to_string()),
    }
}

fn decode_png(bytes: &[u8], pixels: u64) -> Result<RgbImage> {
    // Room for the largest output (RGBA8) plus the decoder's own row buffers.
    let limit =
        usize::try_from(pixels.saturating_mul(8).saturating_add(1 << 20)).unwrap_or(usize::MAX);
    let mut reader = png_reader(bytes, limit)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| corrupt(Format::Png, "size overflows"))?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(png_error)?;
    buf.truncate(frame.buffer_size());
    let (width, height) = (frame.width, frame.height);
    let data = match frame.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => drop_alpha(&buf, 4),
        png::ColorType::Grayscale => gray_to_rgb(&buf),
        png::ColorType::GrayscaleAlpha => buf.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        png::ColorType::Indexed => {
            return Err(ImageError::Unsupported {
                format: Format::Png,
                detail: "unexpanded palette".into(),
            })
        }
    };
    let img = RgbImage {
        width,
        height,
        data,
    };
    check_len(Format::Png, &img)?;
    Ok(img)
}

// ---- GIF (first frame) -----------------------------------------------------------------

fn gif_decoder(bytes: &[u8], max_bytes: u64) -> Result<gif::Decoder<Cursor<&[u8]>>> {
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::RGBA);
    if let Some(limit) = std::num::NonZeroU64::new(max_bytes) {
        opts.set_memory_limit(gif::MemoryLimit::Bytes(limit));
    }
    opts.read_info(Cursor::new(bytes)).map_err(gif_error)
}

fn gif_error(e: gif::DecodingError) -> ImageError {
    let f = Format::Gif;
    match e {
        gif::DecodingError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            truncated(f, io.to_string())
        }
        other => {
            let msg = other.to_string();
            if msg.contains("unexpected EOF") || msg.contains("end of file") {
                truncated(f, msg)
            } else {
                corrupt(f, msg)
            }
        }
    }
}

fn decode_gif(bytes: &[u8], pixels: u64) -> Result<RgbImage> {
    let mut d = gif_decoder(bytes, pixels.saturating_mul(4).saturating_add(1 << 20))?;
    let (width, height) = (u32::from(d.width()), u32::from(d.height()));
    let frame = d
        .read_next_frame()
        .map_err(gif_error)?
        .ok_or_else(|| truncated(Format::Gif, "no frame"))?;
    // The first frame, placed on a black screen of the image's size (pixels it leaves
    // uncovered or transparent stay black).
    let mut data = vec![0u8; width as usize * height as usize * 3];
    let (fl, ft, fw) = (
        frame.left as usize,
        frame.top as usize,
        frame.width as usize,
    );
    for (row, src) in frame.buffer.chunks_exact(fw.max(1) * 4).enumerate() {
        let y = ft + row;
        if y >= height as usize {
            break;
        }
        for (col, px) in src.chunks_exact(4).enumerate() {
            let x = fl + col;
            if x < width as usize && px[3] != 0 {
                let o = (y * width as usize + x) * 3;
                data[o..o + 3].copy_from_slice(&px[..3]);
            }
        }
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

// ---- WebP ------------------------------------------------------------------------------

fn webp_decoder(bytes: &[u8]) -> Result<image_webp::WebPDecoder<Cursor<&[u8]>>> {
    image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(webp_error)
}

fn webp_error(e: image_webp::DecodingError) -> ImageError {
    let f = Format::WebP;
    match e {
        image_webp::DecodingError::IoError(io)
            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            truncated(f, io.to_string())
        }
        other => corrupt(f, other.to_string()),
    }
}

fn decode_webp(bytes: &[u8]) -> Result<RgbImage> {
    let mut d = webp_decoder(bytes)?;
    let (width, height) = d.dimensions();
    let size = d
        .output_buffer_size()
        .ok_or_else(|| corrupt(Format::WebP, "size overflows"))?;
    let mut buf = vec![0u8; size];
    d.read_image(&mut buf).map_err(webp_error)?;
    let data = if d.has_alpha() {
        drop_alpha(&buf, 4)
    } else {
        buf
    };
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

// ---- shared ----------------------------------------------------------------------------

fn gray_to_rgb(gray: &[u8]) -> Vec<u8> {
    gray.iter().flat_map(|&v| [v, v, v]).collect()
}

/// Drops alpha without compositing, as PIL's `convert("RGB")` does.
fn drop_alpha(px: &[u8], channels: usize) -> Vec<u8> {
    px.chunks_exact(channels)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect()
}

fn check_len(format: Format, img: &RgbImage) -> Result<()> {
    let want = img.width as usize * img.height as usize * 3;
    if img.data.len() != want {
        return Err(corrupt(
            format,
            format!(
                "decoder returned {} bytes for {}x{} RGB",
                img.data.len(),
                img.width,
                img.height
            ),
        ));
    }
    Ok(())
}
