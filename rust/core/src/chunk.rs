//! Raw chunks (buffer table + buffers) and codecs: FORMAT.md "Codecs" and "Raw chunk".

use crate::format::{align_up, BUFFER_ALIGNMENT, MAX_BUFFERS_PER_CHUNK};
use crate::mapped::FileId;
use crate::value::SharedBytes;
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

/// A raw chunk before it is laid out: its buffers in FORMAT.md order. Uncompressed chunks are
/// written piece by piece (`pieces`), so blob bytes are not copied into one more buffer.
pub struct RawChunk {
    table: Vec<u8>,
    buffers: Vec<Buffer>,
}

/// One buffer of a chunk being written: bytes copied in, and bytes held by reference
/// ([`SharedBytes`]: images the writer does not copy), in order.
#[derive(Debug, Default)]
pub struct Buffer {
    pieces: Vec<Piece>,
    /// The owned bytes appended since the last shared piece.
    tail: Vec<u8>,
    len: usize,
    owned: usize,
}

#[derive(Debug)]
enum Piece {
    Owned(Vec<u8>),
    Shared(SharedBytes),
}

impl Piece {
    fn as_slice(&self) -> &[u8] {
        match self {
            Piece::Owned(v) => v,
            Piece::Shared(s) => s.as_slice(),
        }
    }
}

impl Buffer {
    pub fn extend_from_slice(&mut self, b: &[u8]) {
        self.tail.extend_from_slice(b);
        self.len += b.len();
        self.owned += b.len();
    }

    pub fn push_shared(&mut self, s: SharedBytes) {
        if !self.tail.is_empty() {
            self.pieces
                .push(Piece::Owned(std::mem::take(&mut self.tail)));
        }
        self.len += s.as_slice().len();
        self.pieces.push(Piece::Shared(s));
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes copied in so far (what a buffer of the same shape needs reserved).
    pub fn owned_len(&self) -> usize {
        self.owned
    }

    pub fn reserve(&mut self, n: usize) {
        self.tail.reserve(n);
    }

    fn slices(&self) -> impl Iterator<Item = &[u8]> {
        self.pieces
            .iter()
            .map(Piece::as_slice)
            .chain(std::iter::once(self.tail.as_slice()))
    }
}

impl From<Vec<u8>> for Buffer {
    fn from(tail: Vec<u8>) -> Self {
        Buffer {
            pieces: Vec::new(),
            len: tail.len(),
            owned: tail.len(),
            tail,
        }
    }
}

const ZEROS: [u8; BUFFER_ALIGNMENT] = [0; BUFFER_ALIGNMENT];

impl RawChunk {
    pub fn new(buffers: Vec<Buffer>) -> Self {
        let mut table = Vec::with_capacity(8 + 8 * buffers.len() + BUFFER_ALIGNMENT);
        table.extend_from_slice(&(buffers.len() as u32).to_le_bytes());
        table.extend_from_slice(&0u32.to_le_bytes());
        for b in &buffers {
            table.extend_from_slice(&(b.len() as u64).to_le_bytes());
        }
        table.resize(align_up(table.len(), BUFFER_ALIGNMENT), 0);
        RawChunk { table, buffers }
    }

    /// The raw chunk as consecutive byte slices (table, buffers and their padding).
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        let last = self.buffers.len().saturating_sub(1);
        std::iter::once(self.table.as_slice()).chain(self.buffers.iter().enumerate().flat_map(
            move |(i, b)| {
                let pad = if i < last {
                    align_up(b.len(), BUFFER_ALIGNMENT) - b.len()
                } else {
                    0
                };
                b.slices().chain(std::iter::once(&ZEROS[..pad]))
            },
        ))
    }

    /// Bytes of the laid-out raw chunk.
    pub fn byte_len(&self) -> usize {
        self.pieces().map(<[u8]>::len).sum()
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len());
        self.pieces().for_each(|p| out.extend_from_slice(p));
        out
    }
}

/// Bytes of a raw chunk's buffer table (header and lengths), from its first 8 bytes.
pub fn table_len(raw: &[u8]) -> Result<usize, String> {
    if raw.len() < 8 {
        return Err(format!(
            "raw chunk of {} bytes is shorter than its table header",
            raw.len()
        ));
    }
    let count = u32::from_le_bytes(raw[0..4].try_into().unwrap()) as usize;
    if count > MAX_BUFFERS_PER_CHUNK {
        return Err(format!(
            "{count} buffers exceed the limit of {MAX_BUFFERS_PER_CHUNK}"
        ));
    }
    let end = 8 + 8 * count;
    if end > raw.len() {
        return Err("buffer table runs past the end of the chunk".into());
    }
    Ok(end)
}

/// Where each buffer of a raw chunk lies, and where the zero padding after it ends, computed
/// from the buffer table alone: no byte after the table is read (so a reader that verifies a
/// chunk page by page needs only the table's pages verified to call it).
pub fn buffer_layout(raw: &[u8]) -> Result<Vec<(Range<usize>, usize)>, String> {
    let table_end = table_len(raw)?;
    let count = (table_end - 8) / 8;
    let mut pos = align_up(table_end, BUFFER_ALIGNMENT);
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
        let pad_end = if i + 1 < count {
            align_up(end, BUFFER_ALIGNMENT)
        } else {
            end
        };
        if pad_end > raw.len() {
            return Err(format!(
                "padding after buffer {i} runs past the end of the chunk"
            ));
        }
        out.push((pos..end, pad_end));
        pos = pad_end;
    }
    Ok(out)
}

/// Parses the buffer table of a raw chunk into byte ranges, checking every padding byte and
/// that the buffers fill the chunk exactly. Errors are plain reasons; the caller adds the
/// location.
pub fn buffer_ranges(raw: &[u8]) -> Result<Vec<Range<usize>>, String> {
    let table_end = table_len(raw)?;
    let reserved = u32::from_le_bytes(raw[4..8].try_into().unwrap());
    if reserved != 0 {
        return Err("reserved field of the buffer table is not zero".into());
    }
    let layout = buffer_layout(raw)?;
    let mut pos = align_up(table_end, BUFFER_ALIGNMENT).min(raw.len());
    check_zero(raw, table_end, pos)?;
    let mut out = Vec::with_capacity(layout.len());
    for (range, pad_end) in layout {
        check_zero(raw, range.end, pad_end)?;
        pos = pad_end;
        out.push(range);
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

/// The stored form of a raw chunk: compressed with `codec`, or the raw pieces themselves when
/// the codec is `none` or compression does not make the chunk smaller.
pub enum Stored {
    Raw(RawChunk),
    Compressed(Vec<u8>),
    Assembled(Vec<u8>),
}

impl Stored {
    pub fn encode(raw: RawChunk, codec: Codec, level: i32) -> (Stored, Codec) {
        match codec {
            Codec::None => (Stored::Raw(raw), Codec::None),
            Codec::Zstd => {
                let bytes = raw.to_vec();
                match zstd::bulk::compress(&bytes, level) {
                    Ok(c) if c.len() < bytes.len() => (Stored::Compressed(c), Codec::Zstd),
                    _ => (Stored::Assembled(bytes), Codec::None),
                }
            }
        }
    }

    pub fn pieces(&self) -> Box<dyn Iterator<Item = &[u8]> + '_> {
        match self {
            Stored::Raw(r) => Box::new(r.pieces()),
            Stored::Compressed(v) | Stored::Assembled(v) => Box::new(std::iter::once(v.as_slice())),
        }
    }
}

/// The bytes of a raw chunk: borrowed from the mapped file (codec none) or decompressed.
#[derive(Clone)]
pub enum ChunkBytes {
    Mapped {
        map: Arc<Mmap>,
        start: usize,
        len: usize,
        file: Arc<FileId>,
    },
    Owned(Arc<Vec<u8>>),
    /// In anonymous memory: a chunk read sparsely, whose pages not read are never touched.
    Anon(Arc<Mmap>),
}

impl ChunkBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            ChunkBytes::Mapped {
                map, start, len, ..
            } => &map[*start..*start + *len],
            ChunkBytes::Owned(v) => v,
            ChunkBytes::Anon(m) => m,
        }
    }
    /// Bytes owned on the heap (not counting mapped bytes).
    pub fn heap_bytes(&self) -> usize {
        match self {
            ChunkBytes::Mapped { .. } => 0,
            ChunkBytes::Owned(v) => v.len(),
            ChunkBytes::Anon(m) => m.len(),
        }
    }
}

impl std::fmt::Debug for ChunkBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkBytes::Mapped { start, len, .. } => write!(f, "Mapped({start}, {len})"),
            ChunkBytes::Owned(v) => write!(f, "Owned({})", v.len()),
            ChunkBytes::Anon(m) => write!(f, "Anon({})", m.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(buffers: &[Vec<u8>]) -> Vec<u8> {
        RawChunk::new(buffers.iter().map(|b| Buffer::from(b.clone())).collect()).to_vec()
    }

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
