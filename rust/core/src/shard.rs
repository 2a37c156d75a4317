//! One shard file: `ShardWriter` appends row groups and writes the footer last;
//! `ShardReader` maps a shard and checks it as FORMAT.md "What a reader MUST do" requires.

use crate::chunk::{buffer_layout, table_len, ChunkBytes, Codec, RawChunk, Stored};
use crate::decode::ColumnChunk;
use crate::error::{Error, Location, Result};
use crate::footer::{ChunkMeta, Footer, RowGroupMeta};
use crate::format::*;
use crate::mapped::FileId;
use crate::pages::{page_count, PageCheck, PageHasher};
use crate::schema::{DataType, Schema};
use memmap2::Mmap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Writes one shard under a temporary name; `finish` renames it into place.
pub struct ShardWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    footer: Footer,
}

impl ShardWriter {
    pub fn create(
        path: &Path,
        schema: &Schema,
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self> {
        let tmp = path.with_extension("pxs.tmp");
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; CHUNK_ALIGNMENT];
        header[..8].copy_from_slice(MAGIC);
        header[8..10].copy_from_slice(&MAJOR_VERSION.to_le_bytes());
        header[10..12].copy_from_slice(&MINOR_VERSION.to_le_bytes());
        out.write_all(&header).map_err(|e| Error::io(&tmp, e))?;
        Ok(ShardWriter {
            path: path.to_path_buf(),
            tmp,
            out,
            pos: CHUNK_ALIGNMENT as u64,
            footer: Footer {
                schema: schema.clone(),
                num_rows: 0,
                row_groups: Vec::new(),
                required_features: Vec::new(),
                created_by: CREATED_BY.to_string(),
                metadata: metadata.clone(),
            },
        })
    }

    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.footer.num_rows == 0
    }

    pub fn num_rows(&self) -> u64 {
        self.footer.num_rows
    }

    pub fn row_group_rows(&self) -> Vec<u64> {
        self.footer.row_groups.iter().map(|g| g.num_rows).collect()
    }

    /// Appends a row group of encoded chunks (one per column, in schema order).
    pub fn write_row_group(&mut self, num_rows: u64, chunks: Vec<EncodedChunk>) -> Result<()> {
        let mut columns = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let padded = align_up(chunk.stored_len, CHUNK_ALIGNMENT);
            let pad = &[0u8; CHUNK_ALIGNMENT][..padded - chunk.stored_len];
            write_pieces(&mut self.out, chunk.stored.pieces().chain([pad]))
                .map_err(|e| Error::io(&self.tmp, e))?;
            columns.push(ChunkMeta {
                offset: self.pos,
                stored_len: chunk.stored_len as u64,
                raw_len: chunk.raw_len,
                codec: chunk.codec,
                crc32c: chunk.crc32c,
                page_xxh3: chunk.page_xxh3,
            });
            self.pos += padded as u64;
        }
        self.footer.num_rows += num_rows;
        self.footer
            .row_groups
            .push(RowGroupMeta { num_rows, columns });
        Ok(())
    }

    /// Writes footer and trailer; the shard still has its temporary name (see
    /// [`FinishedShard::sync_and_rename`]).
    pub fn finish(mut self) -> Result<FinishedShard> {
        let footer = self.footer.to_msgpack();
        let mut trailer = Vec::with_capacity(TRAILER_LEN);
        trailer.extend_from_slice(&(footer.len() as u64).to_le_bytes());
        trailer.extend_from_slice(&crc32c::crc32c(&footer).to_le_bytes());
        trailer.extend_from_slice(&MAJOR_VERSION.to_le_bytes());
        trailer.extend_from_slice(&MINOR_VERSION.to_le_bytes());
        trailer.extend_from_slice(MAGIC);
        let io = |e| Error::io(&self.tmp, e);
        self.out.write_all(&footer).map_err(io)?;
        self.out.write_all(&trailer).map_err(io)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        Ok(FinishedShard {
            file,
            tmp: self.tmp,
            path: self.path,
            len: self.pos + footer.len() as u64 + TRAILER_LEN as u64,
        })
    }
}

/// One column chunk of a row group, compressed and checksummed, ready to be appended to a
/// shard. Encoding is separate from writing so that the writer's caller can encode the next
/// row group while the last one is written.
pub struct EncodedChunk {
    stored: Stored,
    stored_len: usize,
    raw_len: u64,
    codec: Codec,
    crc32c: u32,
    page_xxh3: Option<Vec<u8>>,
}

impl EncodedChunk {
    /// Compresses `raw` with `codec` (stored as it is when that does not make it smaller) and
    /// computes its CRC-32C and, for an uncompressed chunk of a top-level `binary` column, its
    /// page checksums (FORMAT.md "Page checksums").
    pub fn encode(raw: RawChunk, codec: Codec, level: i32, dtype: &DataType) -> Self {
        let raw_len = raw.byte_len() as u64;
        let (stored, codec) = Stored::encode(raw, codec, level);
        let paged = codec == Codec::None && matches!(dtype, DataType::Binary);
        let mut pages = PageHasher::default();
        let mut crc32c = 0u32;
        let mut stored_len = 0usize;
        for piece in stored.pieces() {
            if paged {
                pages.update(piece);
            } else {
                crc32c = crc32c::crc32c_append(crc32c, piece);
            }
            stored_len += piece.len();
        }
        let page_xxh3 = paged.then(|| {
            let (whole, hashes) = pages.finish();
            crc32c = whole;
            hashes
        });
        EncodedChunk {
            stored,
            stored_len,
            raw_len,
            codec,
            crc32c,
            page_xxh3,
        }
    }

    /// Bytes the chunk takes in the shard, with its padding.
    pub fn padded_len(&self) -> u64 {
        align_up(self.stored_len, CHUNK_ALIGNMENT) as u64
    }
}

/// Writes `pieces` in order: small ones through the buffer, large ones (images) straight from
/// where they are, gathered into one `writev` where several follow each other.
fn write_pieces<'a>(
    out: &mut BufWriter<File>,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> std::io::Result<()> {
    const DIRECT: usize = 16 << 10;
    const MAX_SLICES: usize = 512;
    let mut run: Vec<std::io::IoSlice<'a>> = Vec::new();
    let flush_run = |out: &mut BufWriter<File>, run: &mut Vec<std::io::IoSlice<'a>>| {
        let mut slices = &mut run[..];
        while !slices.is_empty() {
            let n = out.get_mut().write_vectored(slices)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            std::io::IoSlice::advance_slices(&mut slices, n);
        }
        run.clear();
        Ok::<(), std::io::Error>(())
    };
    for piece in pieces {
        if piece.len() >= DIRECT {
            if run.is_empty() {
                out.flush()?;
            }
            run.push(std::io::IoSlice::new(piece));
            if run.len() == MAX_SLICES {
                flush_run(out, &mut run)?;
            }
        } else {
            if !run.is_empty() {
                flush_run(out, &mut run)?;
            }
            out.write_all(piece)?;
        }
    }
    if !run.is_empty() {
        flush_run(out, &mut run)?;
    }
    Ok(())
}

/// A completely written shard under its temporary name.
pub struct FinishedShard {
    file: File,
    pub tmp: PathBuf,
    pub path: PathBuf,
    /// Size of the file.
    pub len: u64,
}

impl FinishedShard {
    /// Syncs the file to disk, then renames it into place, so that a shard under its final
    /// name is always complete and durable.
    pub fn sync_and_rename(self) -> Result<()> {
        self.file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

/// Decompresses one zstd frame that must yield exactly `raw_len` bytes. Memory is reserved up
/// front only when the frame declares that size and the ratio is plausible; otherwise the
/// output grows with what the data really holds, so a damaged `raw_len` cannot make the
/// reader reserve memory the data never fills.
fn decompress(src: &[u8], raw_len: u64) -> Result<Vec<u8>, String> {
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

/// A mapped, checked shard. Chunks are verified (CRC, padding) the first time they are read.
pub struct ShardReader {
    pub path: PathBuf,
    map: Arc<Mmap>,
    pub footer: Footer,
    /// Global-row offset of each row group within the shard, plus the total at the end.
    pub row_group_starts: Vec<u64>,
    verified: Vec<AtomicBool>,
    /// Page checksums of the chunks that have them (format 1.1), by chunk.
    pages: Vec<Option<Arc<PageCheck>>>,
    file: Arc<FileId>,
}

impl ShardReader {
    /// Opens and checks a shard. `expect` is `(num_bytes, num_rows)` from a manifest.
    pub fn open(path: &Path, expect: Option<(u64, u64)>) -> Result<Self> {
        let file = crate::mapped::open_regular(path)?;
        // SAFETY: the file is opened read-only and shards are never modified in place (writers
        // create a new file and rename it); every offset read from the map is bounds-checked.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| crate::mapped::map_error(path, e))?;
        let file_id = Arc::new(FileId::of(path, &file).map_err(|e| Error::io(path, e))?);
        let loc = || Location::file(path);
        let len = map.len() as u64;
        if let Some((bytes, _)) = expect {
            if bytes != len {
                return Err(Error::corrupt(
                    loc(),
                    format!("file is {len} bytes, the manifest says {bytes}"),
                ));
            }
        }
        if map.len() < CHUNK_ALIGNMENT + TRAILER_LEN {
            return Err(Error::corrupt(
                loc(),
                format!("file of {len} bytes is too short to be a shard"),
            ));
        }
        if &map[..8] != MAGIC || &map[map.len() - 8..] != MAGIC {
            return Err(Error::corrupt(
                loc(),
                "missing PIXMOSTR magic at the start or end (not a shard, or truncated)",
            ));
        }
        let u16_at = |at: usize| u16::from_le_bytes(map[at..at + 2].try_into().unwrap());
        let (major, minor) = (u16_at(8), u16_at(10));
        let t = map.len() - TRAILER_LEN;
        let (tmajor, tminor) = (u16_at(t + 12), u16_at(t + 14));
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
                reason: format!("format version {major}.{minor}; this reader reads major version {MAJOR_VERSION}"),
            });
        }
        let flags = u32::from_le_bytes(map[12..16].try_into().unwrap());
        if flags != 0 {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                reason: format!("unknown header flags {flags:#x}"),
            });
        }
        if map[HEADER_LEN..CHUNK_ALIGNMENT].iter().any(|&b| b != 0) {
            return Err(Error::corrupt(loc(), "non-zero header padding"));
        }
        let footer_len = u64::from_le_bytes(map[t..t + 8].try_into().unwrap());
        let footer_crc = u32::from_le_bytes(map[t + 8..t + 12].try_into().unwrap());
        if footer_len > MAX_FOOTER_LEN || footer_len > (t - CHUNK_ALIGNMENT) as u64 {
            return Err(Error::corrupt(
                loc(),
                format!("footer length {footer_len} does not fit in the file"),
            ));
        }
        let footer_start = t - footer_len as usize;
        let footer_bytes = &map[footer_start..t];
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
            map,
            footer,
            row_group_starts: starts,
            verified: (0..nchunks).map(|_| AtomicBool::new(false)).collect(),
            pages,
            file: file_id,
        })
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
        self.map.len() as u64
    }

    /// Checks the chunk's CRC and trailing padding (once per process), decompresses it and
    /// parses its buffers.
    pub fn read_chunk(&self, row_group: usize, column: usize) -> Result<ColumnChunk> {
        let field = &self.footer.schema.fields[column];
        let loc = || Location::chunk(&self.path, row_group, &field.name);
        let rg = &self.footer.row_groups[row_group];
        let m = &rg.columns[column];
        let (start, end) = (m.offset as usize, (m.offset + m.stored_len) as usize);
        let flag = self.verified_flag(row_group, column);
        let lazy = self.lazy_pages(row_group, column);
        if let Some(pages) = lazy {
            // Only the bytes before the data buffer are read to decode a blob chunk; the
            // values' pages are verified when a value is read (`ColumnChunk::check_value`).
            pages.check(0..self.blob_data_start(&self.map[start..end], pages)?)?;
        } else if !flag.load(Ordering::Acquire) {
            self.check_chunk(row_group, column)?;
            flag.store(true, Ordering::Release);
        }
        let bytes = match m.codec {
            Codec::None => ChunkBytes::Mapped {
                map: self.map.clone(),
                start,
                len: end - start,
                file: self.file.clone(),
            },
            Codec::Zstd => {
                let out = decompress(&self.map[start..end], m.raw_len)
                    .map_err(|r| Error::corrupt(loc(), r))?;
                ChunkBytes::Owned(Arc::new(out))
            }
        };
        let mut chunk =
            ColumnChunk::parse(bytes, &field.dtype, field.nullable, rg.num_rows as usize)
                .map_err(|r| Error::corrupt(loc(), r))?;
        chunk.pages = lazy.cloned();
        Ok(chunk)
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
        let field = &self.footer.schema.fields[column];
        let loc = || Location::chunk(&self.path, row_group, &field.name);
        let m = &self.footer.row_groups[row_group].columns[column];
        let (start, end) = (m.offset as usize, (m.offset + m.stored_len) as usize);
        if crc32c::crc32c(&self.map[start..end]) != m.crc32c {
            return Err(Error::corrupt(loc(), "checksum mismatch"));
        }
        // `open` checked that the padded end lies at or before the footer.
        let pad_end = align_up(end, CHUNK_ALIGNMENT);
        if self.map[end..pad_end].iter().any(|&b| b != 0) {
            return Err(Error::corrupt(loc(), "non-zero padding after the chunk"));
        }
        Ok(())
    }

    fn verified_flag(&self, row_group: usize, column: usize) -> &AtomicBool {
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
