//! Writing one shard file: `ShardWriter` appends row groups and writes the footer last.

use crate::chunk::{Codec, RawChunk, Stored};
use crate::error::{Error, Result};
use crate::footer::{ChunkMeta, Footer, RowGroupMeta};
use crate::format::*;
use crate::pages::PageHasher;
use crate::schema::{DataType, Schema};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

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
