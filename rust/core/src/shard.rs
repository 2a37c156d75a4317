//! Reading one shard: `ShardReader` maps a local shard (or reads one from object storage, see
//! `shard_remote.rs`) and checks it as FORMAT.md "What a reader MUST do" requires.

use crate::chunk::{buffer_layout, table_len, ChunkBytes, Codec};
use crate::decode::ColumnChunk;
use crate::error::{Error, Location, Result};
use crate::footer::Footer;
use crate::format::*;
use crate::mapped::FileId;
use crate::pages::{page_count, PageCheck};
use crate::schema::{DataType, Schema};
use memmap2::Mmap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use crate::shard_writer::{EncodedChunk, FinishedShard, ShardWriter};

/// Decompresses one zstd frame that must yield exactly `raw_len` bytes. Memory is reserved up
/// front only when the frame declares that size and the ratio is plausible; otherwise the
/// output grows with what the data really holds, so a damaged `raw_len` cannot make the
/// reader reserve memory the data never fills.
pub(crate) fn decompress(src: &[u8], raw_len: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    const PLAUSIBLE_RATIO: u64 = 64;
    let declared = zstd::zstd_safe::get_frame_content_size(src).ok().flatten();
    if let Some(d) = declared {
        if d != raw_len {
            return Err(format!(
                "zstd frame declares {d} bytes, the footer says {raw_len}"
            ));
        }
    }
    let mut out = Vec::new();
    if declared.is_some() && raw_len <= (src.len() as u64 + 4096) * PLAUSIBLE_RATIO {
        // The common case: one call into a decompression context reused by this thread.
        thread_local! {
            static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                const { std::cell::RefCell::new(None) };
        }
        out.reserve_exact(raw_len as usize);
        DECOMPRESSOR.with(|cell| -> Result<(), String> {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
            }
            slot.as_mut()
                .unwrap()
                .decompress_to_buffer(src, &mut out)
                .map(|_| ())
                .map_err(|e| format!("zstd: {e}"))
        })?;
    } else {
        let mut decoder = zstd::stream::read::Decoder::with_buffer(src)
            .map_err(|e| format!("zstd: {e}"))?
            .single_frame();
        (&mut decoder)
            .take(raw_len + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("zstd: {e}"))?;
    }
    if out.len() as u64 != raw_len {
        return Err(format!(
            "decompressed to {} bytes, expected {raw_len}",
            out.len()
        ));
    }
    Ok(out)
}

/// Where a shard's bytes are.
pub(crate) enum Source {
    Local { map: Arc<Mmap>, file: Arc<FileId> },
    Remote(Box<dyn StoredChunks>),
}

/// The stored bytes of a shard that is not a local file (object storage: `shard_remote.rs`).
/// Declared here so that this module needs no store: readers of a store build on it.
pub(crate) trait StoredChunks: Send + Sync {
    /// The stored bytes of chunks `wanted` of `shard`, each verified (CRC and padding); with
    /// `recheck`, bytes this process already verified are verified again.
    fn stored(
        &self,
        shard: &ShardReader,
        wanted: &[(usize, usize)],
        recheck: bool,
    ) -> Vec<Result<ChunkBytes>>;

    /// Is chunk `(g, c)` at hand without a request (in the node cache)?
    fn at_hand(&self, shard: &ShardReader, g: usize, c: usize) -> bool;
}

/// A checked shard. Chunks are verified (CRC, padding) the first time they are read.
pub struct ShardReader {
    /// The file (or, for a shard on object storage, its URL).
    pub path: PathBuf,
    pub(crate) src: Source,
    len: u64,
    pub footer: Footer,
    /// Global-row offset of each row group within the shard, plus the total at the end.
    pub row_group_starts: Vec<u64>,
    pub(crate) verified: Vec<AtomicBool>,
    /// Page checksums of the chunks that have them (format 1.1), by chunk (local shards only:
    /// a chunk read from object storage is verified whole when it arrives).
    pages: Vec<Option<Arc<PageCheck>>>,
}

impl ShardReader {
    /// Opens and checks a shard. `expect` is `(num_bytes, num_rows)` from a manifest.
    pub fn open(path: &Path, expect: Option<(u64, u64)>) -> Result<Self> {
        let file = crate::mapped::open_regular(path)?;
        // SAFETY: the file is opened read-only and shards are never modified in place (writers
        // create a new file and rename it); every offset read from the map is bounds-checked.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| crate::mapped::map_error(path, e))?;
        let file_id = Arc::new(FileId::of(path, &file).map_err(|e| Error::io(path, e))?);
        let len = map.len() as u64;
        let head = &map[..map.len().min(CHUNK_ALIGNMENT)];
        let (footer, starts) = parse_layout(path, len, head, &map, 0, expect)?;
        let ncols = footer.schema.fields.len();
        let nchunks = footer.row_groups.len() * ncols;
        let map = Arc::new(map);
        let mut pages = Vec::with_capacity(nchunks);
        for (g, rg) in footer.row_groups.iter().enumerate() {
            for (c, m) in rg.columns.iter().enumerate() {
                pages.push(m.page_xxh3.as_ref().map(|hashes| {
                    Arc::new(PageCheck::new(
                        map.clone(),
                        m.offset as usize,
                        m.stored_len as usize,
                        hashes,
                        (path.to_path_buf(), g, footer.schema.fields[c].name.clone()),
                    ))
                }));
            }
        }
        Ok(ShardReader {
            path: path.to_path_buf(),
            src: Source::Local { map, file: file_id },
            len,
            footer,
            row_group_starts: starts,
            verified: (0..nchunks).map(|_| AtomicBool::new(false)).collect(),
            pages,
        })
    }

    /// A shard read from object storage, its footer already checked (`shard_remote.rs`).
    pub(crate) fn from_remote(
        path: PathBuf,
        remote: Box<dyn StoredChunks>,
        len: u64,
        footer: Footer,
        starts: Vec<u64>,
    ) -> Self {
        let nchunks = footer.row_groups.len() * footer.schema.fields.len();
        ShardReader {
            path,
            src: Source::Remote(remote),
            len,
            footer,
            row_group_starts: starts,
            verified: (0..nchunks).map(|_| AtomicBool::new(false)).collect(),
            pages: (0..nchunks).map(|_| None).collect(),
        }
    }

    pub fn schema(&self) -> &Schema {
        &self.footer.schema
    }

    pub fn num_rows(&self) -> u64 {
        self.footer.num_rows
    }

    pub fn num_row_groups(&self) -> usize {
        self.footer.row_groups.len()
    }

    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// Checks the chunk's CRC and trailing padding (once per process), decompresses it and
    /// parses its buffers.
    pub fn read_chunk(&self, row_group: usize, column: usize) -> Result<ColumnChunk> {
        match &self.src {
            Source::Local { map, file } => self.read_local(map, file, row_group, column),
            Source::Remote(r) => {
                let stored = r.stored(self, &[(row_group, column)], false).pop();
                self.decode_stored(row_group, column, stored.expect("one chunk asked")?)
            }
        }
    }

    /// Several chunks at once: for a shard on object storage, in one batch of (coalesced,
    /// concurrent) requests.
    pub fn read_chunks(&self, wanted: &[(usize, usize)]) -> Vec<Result<ColumnChunk>> {
        match &self.src {
            Source::Local { .. } => wanted.iter().map(|&(g, c)| self.read_chunk(g, c)).collect(),
            Source::Remote(r) => r
                .stored(self, wanted, false)
                .into_iter()
                .zip(wanted)
                .map(|(stored, &(g, c))| self.decode_stored(g, c, stored?))
                .collect(),
        }
    }

    /// Is this shard read from object storage?
    pub fn is_remote(&self) -> bool {
        matches!(self.src, Source::Remote(_))
    }

    /// Is chunk `(g, c)` at hand without a request (a local file, or in the node cache)?
    pub(crate) fn in_node_cache(&self, g: usize, c: usize) -> bool {
        match &self.src {
            Source::Remote(r) => r.at_hand(self, g, c),
            Source::Local { .. } => true,
        }
    }

    fn read_local(
        &self,
        map: &Arc<Mmap>,
        file: &Arc<FileId>,
        row_group: usize,
        column: usize,
    ) -> Result<ColumnChunk> {
        let m = &self.footer.row_groups[row_group].columns[column];
        let (start, end) = (m.offset as usize, (m.offset + m.stored_len) as usize);
        let flag = self.verified_flag(row_group, column);
        let lazy = self.lazy_pages(row_group, column);
        if let Some(pages) = lazy {
            // Only the bytes before the data buffer are read to decode a blob chunk; the
            // values' pages are verified when a value is read (`ColumnChunk::check_value`).
            pages.check(0..self.blob_data_start(&map[start..end], pages)?)?;
        } else if !flag.load(Ordering::Acquire) {
            self.check_chunk(row_group, column)?;
            flag.store(true, Ordering::Release);
        }
        let stored = ChunkBytes::Mapped {
            map: map.clone(),
            start,
            len: end - start,
            file: file.clone(),
        };
        let mut chunk = self.decode_stored(row_group, column, stored)?;
        chunk.pages = lazy.cloned();
        Ok(chunk)
    }

    /// Decodes a chunk's stored bytes (already verified), mapped or fetched.
    fn decode_stored(
        &self,
        row_group: usize,
        column: usize,
        stored: ChunkBytes,
    ) -> Result<ColumnChunk> {
        let field = &self.footer.schema.fields[column];
        let loc = || Location::chunk(&self.path, row_group, &field.name);
        let rg = &self.footer.row_groups[row_group];
        let m = &rg.columns[column];
        let bytes = match m.codec {
            Codec::None => stored,
            Codec::Zstd => ChunkBytes::Owned(Arc::new(
                decompress(stored.as_slice(), m.raw_len).map_err(|r| Error::corrupt(loc(), r))?,
            )),
        };
        ColumnChunk::parse(bytes, &field.dtype, field.nullable, rg.num_rows as usize)
            .map_err(|r| Error::corrupt(loc(), r))
    }

    /// The page checks of a chunk that is verified page by page: an uncompressed top-level
    /// `binary` column with page checksums.
    fn lazy_pages(&self, row_group: usize, column: usize) -> Option<&Arc<PageCheck>> {
        let m = &self.footer.row_groups[row_group].columns[column];
        let binary = matches!(self.footer.schema.fields[column].dtype, DataType::Binary);
        match &self.pages[row_group * self.footer.schema.fields.len() + column] {
            Some(p) if binary && m.codec == Codec::None => Some(p),
            _ => None,
        }
    }

    /// Where the last buffer of a raw chunk starts, reading (and verifying) only the buffer
    /// table; the end of the chunk when the table is damaged, so the whole chunk is verified
    /// and decoding reports the damage.
    fn blob_data_start(&self, raw: &[u8], pages: &PageCheck) -> Result<usize> {
        pages.check(0..raw.len().min(8))?;
        let Ok(table_end) = table_len(raw) else {
            return Ok(raw.len());
        };
        pages.check(0..table_end)?;
        Ok(match buffer_layout(raw).as_deref() {
            Ok([.., (last, _)]) => last.start,
            _ => raw.len(),
        })
    }

    /// Verifies one chunk's checksum and padding without decoding it.
    pub fn check_chunk(&self, row_group: usize, column: usize) -> Result<()> {
        match &self.src {
            Source::Local { map, .. } => {
                let m = &self.footer.row_groups[row_group].columns[column];
                // `open` checked that the padded end lies at or before the footer.
                let start = m.offset as usize;
                let pad_end = align_up((m.offset + m.stored_len) as usize, CHUNK_ALIGNMENT);
                self.check_bytes(row_group, column, &map[start..pad_end])
            }
            Source::Remote(r) => r
                .stored(self, &[(row_group, column)], true)
                .pop()
                .expect("one chunk asked")
                .map(|_| ()),
        }
    }

    /// Checks a chunk's stored bytes followed by its padding (`offset..` the next 64-byte
    /// boundary): the CRC of the stored bytes, and zeros after them.
    pub(crate) fn check_bytes(&self, row_group: usize, column: usize, padded: &[u8]) -> Result<()> {
        let field = &self.footer.schema.fields[column];
        let loc = || Location::chunk(&self.path, row_group, &field.name);
        let m = &self.footer.row_groups[row_group].columns[column];
        let want = align_up(m.stored_len as usize, CHUNK_ALIGNMENT);
        if padded.len() != want {
            return Err(Error::corrupt(
                loc(),
                format!("{} bytes read where the chunk takes {want}", padded.len()),
            ));
        }
        let (data, pad) = padded.split_at(m.stored_len as usize);
        if crc32c::crc32c(data) != m.crc32c {
            return Err(Error::corrupt(loc(), "checksum mismatch"));
        }
        if pad.iter().any(|&b| b != 0) {
            return Err(Error::corrupt(loc(), "non-zero padding after the chunk"));
        }
        Ok(())
    }

    pub(crate) fn verified_flag(&self, row_group: usize, column: usize) -> &AtomicBool {
        &self.verified[row_group * self.footer.schema.fields.len() + column]
    }

    /// Checks a chunk's checksum and padding again, then decodes it, checking every value
    /// (used by `verify`; the checksum is computed once, not again by `read_chunk`).
    pub fn verify_chunk(&self, row_group: usize, column: usize) -> Result<()> {
        if let Some(pages) = &self.pages[row_group * self.footer.schema.fields.len() + column] {
            // Both checksums are stored; a mismatch in either is damage. Pages first: their
            // errors say where in the chunk the damage is.
            pages.check_all()?;
        }
        self.check_chunk(row_group, column)?;
        self.verified_flag(row_group, column)
            .store(true, Ordering::Release);
        self.read_chunk(row_group, column).map(|_| ())
    }
}

/// Checks a shard's header, trailer, footer and chunk layout. `head` holds the file's first
/// bytes (at least `CHUNK_ALIGNMENT`), `tail` its bytes from `tail_start` to the end (which must
/// hold the footer).
pub(crate) fn parse_layout(
    path: &Path,
    len: u64,
    head: &[u8],
    tail: &[u8],
    tail_start: u64,
    expect: Option<(u64, u64)>,
) -> Result<(Footer, Vec<u64>)> {
    let loc = || Location::file(path);
    if let Some((bytes, _)) = expect {
        if bytes != len {
            return Err(Error::corrupt(
                loc(),
                format!("file is {len} bytes, the manifest says {bytes}"),
            ));
        }
    }
    if len < (CHUNK_ALIGNMENT + TRAILER_LEN) as u64 || head.len() < CHUNK_ALIGNMENT {
        return Err(Error::corrupt(
            loc(),
            format!("file of {len} bytes is too short to be a shard"),
        ));
    }
    if tail_start > len - TRAILER_LEN as u64 || tail.len() as u64 != len - tail_start {
        return Err(Error::corrupt(loc(), "the shard's end was not read whole"));
    }
    // Offsets below are into the file; `at` finds them in `tail`.
    let base = tail_start as usize;
    let t = len as usize - TRAILER_LEN;
    let at = |pos: usize, n: usize| &tail[pos - base..pos - base + n];
    if &head[..8] != MAGIC || at(len as usize - 8, 8) != MAGIC {
        return Err(Error::corrupt(
            loc(),
            "missing PIXMOSTR magic at the start or end (not a shard, or truncated)",
        ));
    }
    let u16_of = |b: &[u8]| u16::from_le_bytes(b.try_into().unwrap());
    let (major, minor) = (u16_of(&head[8..10]), u16_of(&head[10..12]));
    let (tmajor, tminor) = (u16_of(at(t + 12, 2)), u16_of(at(t + 14, 2)));
    if (major, minor) != (tmajor, tminor) {
        return Err(Error::corrupt(
            loc(),
            format!(
                "header version {major}.{minor} differs from trailer version {tmajor}.{tminor}"
            ),
        ));
    }
    if major != MAJOR_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            reason: format!(
                "format version {major}.{minor}; this reader reads major version {MAJOR_VERSION}"
            ),
        });
    }
    let flags = u32::from_le_bytes(head[12..16].try_into().unwrap());
    if flags != 0 {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            reason: format!("unknown header flags {flags:#x}"),
        });
    }
    if head[HEADER_LEN..CHUNK_ALIGNMENT].iter().any(|&b| b != 0) {
        return Err(Error::corrupt(loc(), "non-zero header padding"));
    }
    let footer_len = u64::from_le_bytes(at(t, 8).try_into().unwrap());
    let footer_crc = u32::from_le_bytes(at(t + 8, 4).try_into().unwrap());
    if footer_len > MAX_FOOTER_LEN || footer_len > (t - CHUNK_ALIGNMENT) as u64 {
        return Err(Error::corrupt(
            loc(),
            format!("footer length {footer_len} does not fit in the file"),
        ));
    }
    let footer_start = t - footer_len as usize;
    if footer_start < base {
        return Err(Error::corrupt(loc(), "the footer was not read whole"));
    }
    let footer_bytes = at(footer_start, footer_len as usize);
    if crc32c::crc32c(footer_bytes) != footer_crc {
        return Err(Error::corrupt(loc(), "footer checksum mismatch"));
    }
    let footer = Footer::from_msgpack(footer_bytes).map_err(|r| Error::corrupt(loc(), r))?;
    if let Some(f) = footer.required_features.first() {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            reason: format!("requires unknown feature '{f}'"),
        });
    }
    footer
        .schema
        .validate()
        .map_err(|e| Error::corrupt(loc(), format!("invalid schema: {e}")))?;
    let ncols = footer.schema.fields.len();
    let mut pos = CHUNK_ALIGNMENT as u64;
    let mut starts = Vec::with_capacity(footer.row_groups.len() + 1);
    let mut total = 0u64;
    for (g, rg) in footer.row_groups.iter().enumerate() {
        if rg.columns.len() != ncols {
            return Err(Error::corrupt(
                Location {
                    path: path.to_path_buf(),
                    row_group: Some(g),
                    column: None,
                },
                format!("{} column chunks for {ncols} columns", rg.columns.len()),
            ));
        }
        if rg.num_rows == 0 {
            return Err(Error::corrupt(loc(), format!("row group {g} has no rows")));
        }
        starts.push(total);
        total = total
            .checked_add(rg.num_rows)
            .ok_or_else(|| Error::corrupt(loc(), "row count overflows"))?;
        for (c, m) in rg.columns.iter().enumerate() {
            let cloc = || Location::chunk(path, g, &footer.schema.fields[c].name);
            if m.offset != pos {
                return Err(Error::corrupt(
                    cloc(),
                    format!("chunk at offset {} where {pos} was expected", m.offset),
                ));
            }
            let end = m
                .offset
                .checked_add(m.stored_len)
                .ok_or_else(|| Error::corrupt(cloc(), "chunk length overflows"))?;
            pos = align_up(end as usize, CHUNK_ALIGNMENT) as u64;
            if pos > footer_start as u64 {
                return Err(Error::corrupt(cloc(), "chunk runs into the footer"));
            }
            if m.codec == Codec::None && m.raw_len != m.stored_len {
                return Err(Error::corrupt(
                    cloc(),
                    "uncompressed chunk with raw_len != stored_len",
                ));
            }
            if let Some(p) = &m.page_xxh3 {
                if p.len() as u64 != 8 * page_count(m.stored_len) {
                    return Err(Error::corrupt(
                        cloc(),
                        format!(
                            "page_xxh3 holds {} bytes for {} pages",
                            p.len(),
                            page_count(m.stored_len)
                        ),
                    ));
                }
            }
            if m.raw_len > (1u64 << 40) {
                return Err(Error::corrupt(
                    cloc(),
                    format!("raw length {} is beyond the limit", m.raw_len),
                ));
            }
        }
    }
    if pos != footer_start as u64 {
        return Err(Error::corrupt(
            loc(),
            format!("footer starts at {footer_start}, chunks end at {pos}"),
        ));
    }
    starts.push(total);
    if total != footer.num_rows {
        return Err(Error::corrupt(
            loc(),
            format!(
                "row groups hold {total} rows, footer says {}",
                footer.num_rows
            ),
        ));
    }
    if let Some((_, rows)) = expect {
        if rows != total {
            return Err(Error::corrupt(
                loc(),
                format!("shard holds {total} rows, the manifest says {rows}"),
            ));
        }
    }
    Ok((footer, starts))
}
