//! Raw chunks (buffer table + buffers) and codecs: FORMAT.md "Codecs" and "Raw chunk".

use crate::format::{align_up, BUFFER_ALIGNMENT, MAX_BUFFERS_PER_CHUNK};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    None,
    Zstd,
}

impl Codec {
    pub fn parse(s: &str) -> Option<Codec> {
        match s {
            "none" => Some(Codec::None),
            "zstd" => Some(Codec::Zstd),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Zstd => "zstd",
        }
    }
}

/// Lays out buffers as a raw chunk.
pub fn assemble(buffers: &[Vec<u8>]) -> Vec<u8> {
    let table = 8 + 8 * buffers.len();
    let mut total = align_up(table, BUFFER_ALIGNMENT);
    for (i, b) in buffers.iter().enumerate() {
        total += b.len();
        if i + 1 < buffers.len() {
            total = align_up(total, BUFFER_ALIGNMENT);
        }
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(buffers.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for b in buffers {
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    }
    out.resize(align_up(out.len(), BUFFER_ALIGNMENT), 0);
    for (i, b) in buffers.iter().enumerate() {
        out.extend_from_slice(b);
        if i + 1 < buffers.len() {
            out.resize(align_up(out.len(), BUFFER_ALIGNMENT), 0);
        }
    }
    debug_assert_eq!(out.len(), total);
    out
}

/// Parses the buffer table of a raw chunk into byte ranges. Errors are plain reasons; the
/// caller adds the location.
pub fn buffer_ranges(raw: &[u8]) -> Result<Vec<Range<usize>>, String> {
    if raw.len() < 8 {
        return Err(format!(
            "raw chunk of {} bytes is shorter than its table header",
            raw.len()
        ));
    }
    let count = u32::from_le_bytes(raw[0..4].try_into().unwrap()) as usize;
    let reserved = u32::from_le_bytes(raw[4..8].try_into().unwrap());
    if reserved != 0 {
        return Err("reserved field of the buffer table is not zero".into());
    }
    if count > MAX_BUFFERS_PER_CHUNK {
        return Err(format!(
            "{count} buffers exceed the limit of {MAX_BUFFERS_PER_CHUNK}"
        ));
    }
    let table_end = 8 + 8 * count;
    if table_end > raw.len() {
        return Err("buffer table runs past the end of the chunk".into());
    }
    let mut pos = align_up(table_end, BUFFER_ALIGNMENT);
    check_zero(raw, table_end, pos.min(raw.len()))?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let at = 8 + 8 * i;
        let len = u64::from_le_bytes(raw[at..at + 8].try_into().unwrap());
        let end = (pos as u64)
            .checked_add(len)
            .filter(|&e| e <= raw.len() as u64)
            .ok_or_else(|| {
                format!("buffer {i} ({len} bytes at {pos}) runs past the end of the chunk")
            })? as usize;
        out.push(pos..end);
        pos = if i + 1 < count {
            align_up(end, BUFFER_ALIGNMENT)
        } else {
            end
        };
        if pos > raw.len() {
            return Err(format!(
                "padding after buffer {i} runs past the end of the chunk"
            ));
        }
        check_zero(raw, end, pos)?;
    }
    if pos != raw.len() {
        return Err(format!(
            "chunk has {} trailing bytes after its last buffer",
            raw.len() - pos
        ));
    }
    Ok(out)
}

fn check_zero(raw: &[u8], from: usize, to: usize) -> Result<(), String> {
    if raw[from..to].iter().any(|&b| b != 0) {
        return Err(format!(
            "non-zero padding at bytes {from}..{to} of the chunk"
        ));
    }
    Ok(())
}

/// Compresses with `codec`, falling back to `none` when that is not smaller.
pub fn compress(raw: Vec<u8>, codec: Codec, level: i32) -> (Vec<u8>, Codec) {
    match codec {
        Codec::None => (raw, Codec::None),
        Codec::Zstd => match zstd::bulk::compress(&raw, level) {
            Ok(c) if c.len() < raw.len() => (c, Codec::Zstd),
            _ => (raw, Codec::None),
        },
    }
}

/// The bytes of a raw chunk: borrowed from the mapped file (codec none) or decompressed.
#[derive(Clone)]
pub enum ChunkBytes {
    Mapped {
        map: Arc<Mmap>,
        start: usize,
        len: usize,
    },
    Owned(Arc<Vec<u8>>),
}

impl ChunkBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            ChunkBytes::Mapped { map, start, len } => &map[*start..*start + *len],
            ChunkBytes::Owned(v) => v,
        }
    }
    /// Bytes owned on the heap (not counting mapped bytes).
    pub fn heap_bytes(&self) -> usize {
        match self {
            ChunkBytes::Mapped { .. } => 0,
            ChunkBytes::Owned(v) => v.len(),
        }
    }
}

impl std::fmt::Debug for ChunkBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkBytes::Mapped { start, len, .. } => write!(f, "Mapped({start}, {len})"),
            ChunkBytes::Owned(v) => write!(f, "Owned({})", v.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assemble_then_parse() {
        let bufs = vec![vec![1u8; 3], vec![], vec![2u8; 9]];
        let raw = assemble(&bufs);
        let r = buffer_ranges(&raw).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(&raw[r[0].clone()], &[1, 1, 1]);
        assert!(r[1].is_empty());
        assert_eq!(&raw[r[2].clone()], &[2u8; 9]);
        assert_eq!(r[0].start % 8, 0);
        assert_eq!(r[2].start % 8, 0);
    }

    #[test]
    fn rejects_bad_tables() {
        let mut raw = assemble(&[vec![1u8; 16]]);
        raw[8] = 200; // length past end
        assert!(buffer_ranges(&raw).is_err());
        let mut raw = assemble(&[vec![1u8; 3], vec![1u8; 3]]);
        raw[8 + 16 + 3 + 1] = 7; // padding byte
        assert!(buffer_ranges(&raw).is_err());
        assert!(buffer_ranges(&[1, 0, 0]).is_err());
    }
}
