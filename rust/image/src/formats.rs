//! Per-format decoding to RGB8: recognise the container, read its header (size, EXIF
//! orientation) without touching pixel data, then decode. Each library's errors become an
//! [`ImageError`] saying whether the data was cut short, damaged or unsupported.

use std::io::Cursor;

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_jpeg::errors::DecodeErrors;

use crate::error::{Format, ImageError, Result};
use crate::metadata;
use crate::rgb::RgbImage;

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
            let (w, h, segments) = jpeg_segments(bytes)?;
            (w, h, metadata::jpeg_orientation(&segments))
        }
        Format::Png => {
            let reader = png_reader(bytes, png::Limits::default().bytes)?;
            let info = reader.info();
            (info.width, info.height, metadata::png_orientation(bytes))
        }
        Format::Gif => {
            let d = gif_decoder(bytes, u64::MAX)?;
            (u32::from(d.width()), u32::from(d.height()), 1)
        }
        Format::WebP => {
            check_webp_size(bytes)?;
            let d = webp_decoder(bytes)?;
            let (w, h) = d.dimensions();
            (w, h, metadata::webp_orientation(bytes))
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
        // Small images go to libjpeg-turbo too, whatever the build: zune-jpeg upsamples the
        // chroma of an image under two MCUs a side from the encoder's padding, PIL (libjpeg)
        // from the image's own samples, up to 62 levels apart on a 4x4 4:2:0 image; at that
        // size plain C costs nothing.
        Format::Jpeg if reduce > 1 || crate::libjpeg::has_simd() || small_jpeg(header) => {
            match decode_jpeg_libjpeg(bytes, header, reduce)? {
                Some(img) => Ok(img),
                None => decode_jpeg(bytes, pixels),
            }
        }
        // zune-jpeg refuses some files libjpeg (PIL's decoder) reads to a correct picture (an
        // Adobe APP14 segment shorter than its 12 bytes): those get libjpeg-turbo's answer.
        Format::Jpeg => match decode_jpeg(bytes, pixels) {
            Err(e @ (ImageError::Corrupt { .. } | ImageError::Unsupported { .. })) => {
                match decode_jpeg_libjpeg(bytes, header, 1) {
                    Ok(Some(img)) => Ok(img),
                    _ => Err(e),
                }
            }
            other => other,
        },
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

/// Below this many pixels a side (two 4:2:0 MCUs), a JPEG is decoded by libjpeg-turbo.
const SMALL_JPEG_SIDE: u32 = 32;

fn small_jpeg(h: &Header) -> bool {
    h.width.min(h.height) < SMALL_JPEG_SIDE
}

/// A JPEG marker segment: its marker (the byte after 0xFF) and body.
pub(crate) type Segment<'a> = (u8, &'a [u8]);

/// The frame size and the marker segments up to the first scan, read as libjpeg reads them:
/// bytes that are not a marker between segments are skipped.
pub(crate) fn jpeg_segments(bytes: &[u8]) -> Result<(u32, u32, Vec<Segment<'_>>)> {
    let f = Format::Jpeg;
    let mut segments = Vec::new();
    let mut size = None;
    let mut pos = 2;
    loop {
        while pos < bytes.len() && bytes[pos] != 0xFF {
            pos += 1;
        }
        while pos < bytes.len() && bytes[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            return Err(truncated(f, "the data ends in the headers"));
        };
        pos += 1;
        match marker {
            0x01 | 0xD0..=0xD8 => continue, // no length
            0xD9 => return Err(corrupt(f, "the image ends before its frame header")),
            _ => {}
        }
        let Some(len) = bytes.get(pos..pos + 2) else {
            return Err(truncated(f, "the data ends in the headers"));
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len < 2 {
            return Err(corrupt(
                f,
                format!("marker segment {marker:#04x} of length {len}"),
            ));
        }
        let Some(body) = bytes.get(pos + 2..pos + len) else {
            return Err(truncated(f, "the data ends in the headers"));
        };
        pos += len;
        if marker == 0xDA {
            return match size {
                Some((w, h)) => Ok((w, h, segments)),
                None => Err(corrupt(f, "a scan before the frame header")),
            };
        }
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            if body.len() < 6 {
                return Err(corrupt(f, "frame header too short"));
            }
            let h = u32::from(u16::from_be_bytes([body[1], body[2]]));
            let w = u32::from(u16::from_be_bytes([body[3], body[4]]));
            size = Some((w, h));
        }
        segments.push((marker, body));
    }
}

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
    // Palette indices, looked up here as PIL does (a transparent index keeps its colour).
    opts.set_color_output(gif::ColorOutput::Indexed);
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

/// The first frame as PIL's `convert("RGB")` gives it: every index looked up in the frame's
/// colour table (local, else global), the transparent one included (PIL keeps transparency
/// aside, and `convert("RGB")` drops it); a GIF with no colour table is greyscale, the index
/// its level. The screen outside the frame holds the transparent index where the frame has
/// one, else index 0.
fn decode_gif(bytes: &[u8], pixels: u64) -> Result<RgbImage> {
    // The `gif` crate refuses a frame with no colour table at all; given an identity grey
    // table in the screen descriptor's place, it reads each index as that level, as PIL does.
    let grey;
    let bytes = match bytes.get(10) {
        Some(flags) if flags & 0x80 == 0 => {
            grey = [
                &bytes[..10],
                &[flags | 0x87],
                &bytes[11..13.min(bytes.len())],
                &(0..=255u8).flat_map(|i| [i; 3]).collect::<Vec<u8>>(),
                &bytes[13.min(bytes.len())..],
            ]
            .concat();
            &grey[..]
        }
        _ => bytes,
    };
    let mut d = gif_decoder(bytes, pixels.saturating_mul(4).saturating_add(1 << 20))?;
    let (width, height) = (usize::from(d.width()), usize::from(d.height()));
    let global = d.global_palette().map(<[u8]>::to_vec);
    let frame = d
        .read_next_frame()
        .map_err(gif_error)?
        .ok_or_else(|| truncated(Format::Gif, "no frame"))?;
    let table = frame.palette.clone().or(global);
    let colour = |i: u8| -> [u8; 3] {
        match &table {
            // An index past the table's end is black, as in PIL's palette.
            Some(t) => t
                .get(usize::from(i) * 3..usize::from(i) * 3 + 3)
                .map_or([0; 3], |c| [c[0], c[1], c[2]]),
            None => [i; 3],
        }
    };
    let lut: Vec<[u8; 3]> = (0..=255u8).map(colour).collect();
    let background = lut[usize::from(frame.transparent.unwrap_or(0))];
    let mut data: Vec<u8> = std::iter::repeat_n(background, width * height)
        .flatten()
        .collect();
    let (fl, ft, fw) = (
        usize::from(frame.left),
        usize::from(frame.top),
        usize::from(frame.width),
    );
    for (row, src) in frame.buffer.chunks_exact(fw.max(1)).enumerate() {
        let y = ft + row;
        if y >= height {
            break;
        }
        for (col, &i) in src.iter().enumerate() {
            let x = fl + col;
            if x < width {
                let o = (y * width + x) * 3;
                data[o..o + 3].copy_from_slice(&lut[usize::from(i)]);
            }
        }
    }
    Ok(RgbImage {
        width: width as u32,
        height: height as u32,
        data,
    })
}

// ---- WebP ------------------------------------------------------------------------------

/// WebP's largest side: 16,383 px (libwebp's `WEBP_MAX_DIMENSION`; lossy data cannot say
/// more). A lossless (VP8L) header can declare 16,384, which libwebp's encoder never writes and
/// the decoder used here reads as 0 px: refused here, saying so.
const WEBP_MAX_SIDE: u32 = 16_383;

fn check_webp_size(bytes: &[u8]) -> Result<()> {
    let mut pos = 12;
    while let Some(head) = bytes.get(pos..pos + 8) {
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if &head[..4] == b"VP8L" {
            let Some(b) = bytes.get(pos + 9..pos + 13) else {
                return Ok(()); // cut short: the decoder says so
            };
            let bits = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let (w, h) = (1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF));
            if w > WEBP_MAX_SIDE || h > WEBP_MAX_SIDE {
                return Err(ImageError::Unsupported {
                    format: Format::WebP,
                    detail: format!(
                        "the lossless header declares {w}x{h} px, over WebP's limit of \
                         {WEBP_MAX_SIDE} px a side (libwebp writes no larger)"
                    ),
                });
            }
            return Ok(());
        }
        pos += 8 + len + (len & 1);
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_segments_skip_stray_bytes_and_say_where_headers_end() {
        let app14 = [0xFF, 0xEE, 0, 9, b'A', b'd', b'o', b'b', b'e', 0, 100]; // 7 of 12 bytes
        let sof = [0xFF, 0xC0, 0, 11, 8, 0, 3, 0, 5, 1, 1, 0x11, 0];
        let sos = [0xFF, 0xDA, 0, 2];
        let data = [&[0xFF, 0xD8][..], &app14, &[0, 0], &sof, &sos].concat();
        let (w, h, segments) = jpeg_segments(&data).unwrap();
        assert_eq!((w, h), (5, 3));
        assert_eq!(segments[0], (0xEE, &b"Adobe\0d"[..]));
        for cut in 2..data.len() {
            let err = jpeg_segments(&data[..cut]).unwrap_err();
            assert_eq!(err.reason(), "truncated", "cut at {cut}: {err}");
        }
        let no_frame = [&[0xFF, 0xD8][..], &sos].concat();
        assert_eq!(jpeg_segments(&no_frame).unwrap_err().reason(), "corrupt");
    }
}
