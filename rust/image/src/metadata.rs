//! Where an image keeps its orientation, found and read as PIL finds and reads it, so that
//! `ImageOps.exif_transpose` (what Molmo's loader calls) and this crate turn the same images.
//!
//! PIL's `Image.getexif` takes, in this order:
//! 1. the EXIF block (`info["exif"]`): a JPEG's first `Exif\0\0` APP1 segment (later ones
//!    appended), a PNG's `eXIf` chunk (or a `tEXt` chunk keyed `exif`), a WebP's `EXIF` chunk.
//!    One or two leading `Exif\0\0` are dropped, whichever container it came from;
//! 2. where there is none, the hexadecimal text of a PNG text chunk keyed
//!    `Raw profile type exif` (what ImageMagick writes), from its fourth line on;
//! 3. where neither holds an orientation tag, the first `tiff:Orientation="d"` or
//!    `tiff:Orientation>d` in the XMP packet (a JPEG's APP1 `http://ns.adobe.com/xap/1.0/`
//!    segment, a PNG text chunk keyed `XML:com.adobe.xmp`, a WebP's `XMP ` chunk).
//!
//! A value outside 1..=8 turns nothing, and an EXIF block that does not parse makes PIL's
//! `exif_transpose` raise, which Molmo's loader catches and then leaves the image as stored:
//! both read as 1 here. (PIL's GIF reader finds no orientation anywhere.)

/// The orientation sources of one image, as PIL's `info` holds them.
#[derive(Debug, Default)]
struct Sources {
    exif: Option<Vec<u8>>,
    raw_profile: Option<Vec<u8>>,
    xmp: Option<Vec<u8>>,
}

/// The orientation (1..=8) PIL's `exif_transpose` applies to a JPEG, given its segments up to
/// the first scan.
pub(crate) fn jpeg_orientation(segments: &[(u8, &[u8])]) -> u8 {
    let mut s = Sources::default();
    for &(marker, body) in segments {
        if marker != 0xE1 {
            continue;
        }
        if body.starts_with(b"Exif\0\0") {
            match &mut s.exif {
                Some(exif) => exif.extend_from_slice(&body[6..]),
                None => s.exif = Some(body.to_vec()),
            }
        } else if let Some(rest) = body.strip_prefix(b"http://ns.adobe.com/xap/1.0/\0") {
            s.xmp = Some(rest.to_vec());
        }
    }
    resolve(&s)
}

/// The orientation of a PNG, from all its chunks (Molmo's loader reads the whole file before
/// it looks, so text chunks after the image data count too).
pub(crate) fn png_orientation(bytes: &[u8]) -> u8 {
    let mut s = Sources::default();
    let mut pos = 8;
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]);
        let kind = &bytes[pos + 4..pos + 8];
        let start = pos + 8;
        let Some(end) = start
            .checked_add(len as usize)
            .filter(|&e| e <= bytes.len())
        else {
            break;
        };
        let body = &bytes[start..end];
        match kind {
            b"eXIf" => s.exif = Some([b"Exif\0\0", body].concat()),
            b"tEXt" | b"zTXt" | b"iTXt" => {
                if let Some((key, text)) = png_text(kind, body) {
                    match key {
                        b"exif" if kind == b"tEXt" => s.exif = Some(text),
                        b"Raw profile type exif" => s.raw_profile = Some(text),
                        b"XML:com.adobe.xmp" => s.xmp = Some(text),
                        _ => {}
                    }
                }
            }
            b"IEND" => break,
            _ => {}
        }
        pos = end + 4; // the CRC
    }
    resolve(&s)
}

/// The orientation of a WebP, from its `EXIF` and `XMP ` chunks. libwebp (PIL's reader) takes
/// them only from an extended file whose VP8X header flags them.
pub(crate) fn webp_orientation(bytes: &[u8]) -> u8 {
    const XMP_FLAG: u8 = 0x04;
    const EXIF_FLAG: u8 = 0x08;
    let flags = match (bytes.get(12..16), bytes.get(20)) {
        (Some(b"VP8X"), Some(&flags)) => flags,
        _ => return 1,
    };
    let mut s = Sources::default();
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let kind = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]);
        let start = pos + 8;
        let Some(end) = start
            .checked_add(len as usize)
            .filter(|&e| e <= bytes.len())
        else {
            break;
        };
        match kind {
            b"EXIF" if flags & EXIF_FLAG != 0 => s.exif = Some(bytes[start..end].to_vec()),
            b"XMP " if flags & XMP_FLAG != 0 => s.xmp = Some(bytes[start..end].to_vec()),
            _ => {}
        }
        pos = end + (len as usize & 1); // chunks are padded to an even length
    }
    resolve(&s)
}

/// Largest decompressed text chunk read, as PIL's `MAX_TEXT_CHUNK` (1 MiB): PIL refuses a
/// larger one, and an XMP packet or EXIF profile is far smaller.
const MAX_TEXT: usize = 1 << 20;

/// A PNG text chunk's key and (decompressed) text.
fn png_text<'a>(kind: &[u8], body: &'a [u8]) -> Option<(&'a [u8], Vec<u8>)> {
    let nul = body.iter().position(|&b| b == 0)?;
    let (key, rest) = (&body[..nul], &body[nul + 1..]);
    let text = match kind {
        b"tEXt" => rest.to_vec(),
        b"zTXt" => {
            let (&method, data) = rest.split_first()?;
            if method != 0 {
                return None;
            }
            inflate(data)?
        }
        _ => {
            // iTXt: compression flag and method, then language and translated key, each
            // NUL-terminated, then the text.
            let (&flag, rest) = rest.split_first()?;
            let (&method, rest) = rest.split_first()?;
            let lang = rest.iter().position(|&b| b == 0)?;
            let rest = &rest[lang + 1..];
            let tk = rest.iter().position(|&b| b == 0)?;
            let data = &rest[tk + 1..];
            match (flag, method) {
                (0, _) => data.to_vec(),
                (_, 0) => inflate(data)?,
                _ => return None,
            }
        }
    };
    Some((key, text))
}

fn inflate(data: &[u8]) -> Option<Vec<u8>> {
    miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, MAX_TEXT).ok()
}

fn resolve(s: &Sources) -> u8 {
    let exif = match (&s.exif, &s.raw_profile) {
        (Some(exif), _) => Some(exif.clone()),
        (None, Some(text)) => match raw_profile_bytes(text) {
            Some(b) => Some(b),
            None => return 1, // PIL's `bytes.fromhex` raises
        },
        (None, None) => None,
    };
    if let Some(exif) = exif {
        let tiff = strip_exif_prefix(&exif);
        if !tiff.is_empty() {
            match ifd0_orientation(tiff) {
                Err(()) => return 1, // not TIFF: PIL raises
                Ok(Some(v)) => return in_range(v),
                Ok(None) => {}
            }
        }
    }
    s.xmp
        .as_deref()
        .and_then(xmp_orientation)
        .map_or(1, in_range)
}

fn in_range(v: u32) -> u8 {
    if (1..=8).contains(&v) {
        v as u8
    } else {
        1
    }
}

/// `re.sub(b"^(Exif\x00\x00){1,2}", b"", data)`.
fn strip_exif_prefix(mut data: &[u8]) -> &[u8] {
    for _ in 0..2 {
        match data.strip_prefix(b"Exif\0\0") {
            Some(rest) => data = rest,
            None => break,
        }
    }
    data
}

/// `bytes.fromhex("".join(text.split("\n")[3:]))`: `None` where that raises.
fn raw_profile_bytes(text: &[u8]) -> Option<Vec<u8>> {
    let mut lines = text.split(|&b| b == b'\n');
    for _ in 0..3 {
        lines.next()?;
    }
    let digits: Vec<u8> = lines
        .flatten()
        .copied()
        .filter(|b| !b.is_ascii_whitespace() && *b != 0x0b)
        .collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|p| {
            let hex = |c: u8| (c as char).to_digit(16);
            Some((hex(p[0])? * 16 + hex(p[1])?) as u8)
        })
        .collect()
}

/// The first `tiff:Orientation="d` or `tiff:Orientation>d` (PIL's regular expression).
fn xmp_orientation(xmp: &[u8]) -> Option<u32> {
    const TAG: &[u8] = b"tiff:Orientation";
    let mut from = 0;
    while let Some(at) = find(&xmp[from..], TAG) {
        let rest = &xmp[from + at + TAG.len()..];
        let digit = match rest {
            [b'=', b'"', d, ..] | [b'>', d, ..] if d.is_ascii_digit() => Some(u32::from(d - b'0')),
            _ => None,
        };
        if digit.is_some() {
            return digit;
        }
        from += at + 1;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The Orientation tag (0x0112) of a TIFF block's first IFD, as PIL reads it: `Err` where the
/// block has no TIFF header; `Ok(None)` where the tag is absent, not a single integer, or cut
/// off (PIL warns and keeps what it read).
fn ifd0_orientation(tiff: &[u8]) -> Result<Option<u32>, ()> {
    let le = match tiff.get(..4) {
        Some(b"II*\0") => true,
        Some(b"MM\0*") => false,
        _ => return Err(()),
    };
    let u16_at = |o: usize| -> Option<u32> {
        let b = tiff.get(o..o + 2)?;
        Some(u32::from(if le {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        }))
    };
    let u32_at = |o: usize| -> Option<u32> {
        let b = tiff.get(o..o + 4)?;
        let b = [b[0], b[1], b[2], b[3]];
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let Some(ifd) = u32_at(4) else {
        return Err(());
    };
    let ifd = ifd as usize;
    let Some(count) = u16_at(ifd) else {
        return Ok(None);
    };
    for i in 0..count as usize {
        let e = ifd + 2 + 12 * i;
        let (Some(tag), Some(kind), Some(n)) = (u16_at(e), u16_at(e + 2), u32_at(e + 4)) else {
            return Ok(None);
        };
        if tag != 0x0112 {
            continue;
        }
        if n != 1 {
            return Ok(None);
        }
        // BYTE, SHORT, LONG: the value sits in the entry's last four bytes.
        return Ok(match kind {
            1 => tiff.get(e + 8).map(|&b| u32::from(b)),
            3 => u16_at(e + 8),
            4 => u32_at(e + 8),
            _ => None,
        });
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiff(orientation: u16) -> Vec<u8> {
        let mut t = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
        t.extend_from_slice(&orientation.to_le_bytes());
        t.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        t
    }

    #[test]
    fn exif_with_or_without_its_prefix() {
        for prefix in [&b""[..], b"Exif\0\0", b"Exif\0\0Exif\0\0"] {
            let s = Sources {
                exif: Some([prefix, &tiff(6)].concat()),
                ..Default::default()
            };
            assert_eq!(resolve(&s), 6);
        }
    }

    #[test]
    fn exif_wins_over_xmp_and_xmp_fills_in() {
        let xmp = Some(br#"<x tiff:Orientation="8"/>"#.to_vec());
        let both = Sources {
            exif: Some(tiff(3)),
            xmp: xmp.clone(),
            ..Default::default()
        };
        assert_eq!(resolve(&both), 3);
        let only_xmp = Sources {
            xmp,
            ..Default::default()
        };
        assert_eq!(resolve(&only_xmp), 8);
        let garbage = Sources {
            exif: Some(b"garbage".to_vec()),
            xmp: Some(b"<tiff:Orientation>5</tiff:Orientation>".to_vec()),
            ..Default::default()
        };
        assert_eq!(resolve(&garbage), 1);
    }

    #[test]
    fn raw_profile_is_hex_from_the_fourth_line() {
        let hex: String = tiff(7).iter().map(|b| format!("{b:02x}")).collect();
        let text = format!(
            "\nexif\n      {}\n{}\n{}\n",
            hex.len() / 2,
            &hex[..10],
            &hex[10..]
        );
        let s = Sources {
            raw_profile: Some(text.into_bytes()),
            ..Default::default()
        };
        assert_eq!(resolve(&s), 7);
    }
}
