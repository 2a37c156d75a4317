//! Fuzz target: open a shard file and read everything in it.
//!
//! Input layout: `[mode byte] ++ file bytes`. The mode byte says how much of the file's
//! integrity data the harness repairs before the file is written out, so that mutations get
//! past the checksums and reach the footer parser and the chunk decoder:
//!
//! * `mode % 4 == 0`: the bytes are written as they are (tests the checks themselves);
//! * `mode % 4 == 1`: the trailer's footer CRC-32C is recomputed;
//! * `mode % 4 == 2`: the footer is decoded, every chunk's CRC-32C and the footer's
//!   `num_rows` are recomputed, the footer is re-encoded, and the trailer's length and
//!   CRC are rewritten;
//! * `mode % 4 == 3`: "pokes": the input is `[3, n, n × (index u8, op u8, value u64 LE)]
//!   ++ file bytes`; each poke changes one numeric field of the decoded footer (see
//!   `poke_targets`), then the footer is repaired and re-encoded as in mode 2. Byte-level
//!   mutation of msgpack rarely turns a small integer into a huge one; this mode does.
//!
//! The file is written to a temp file (the reader memory-maps files), opened with
//! `ShardReader::open` and `Dataset::open`, and, when it opens, every chunk is read and
//! every row of it decoded. Errors are fine; a panic, a hang or a huge allocation is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pixmo_stream_core::chunk::Codec;
use pixmo_stream_core::footer::Footer;
use pixmo_stream_core::format::{CHUNK_ALIGNMENT, TRAILER_LEN};
use pixmo_stream_core::shard::ShardReader;
use pixmo_stream_core::{DataType, Dataset};
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

fn temp_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("pixmo-fuzz-open-shard-{}.pxs", std::process::id()))
    })
}

/// The trailer's footer length and the footer's start, when they are in bounds.
fn footer_span(data: &[u8]) -> Option<(usize, usize)> {
    if data.len() < CHUNK_ALIGNMENT + TRAILER_LEN {
        return None;
    }
    let t = data.len() - TRAILER_LEN;
    let footer_len = u64::from_le_bytes(data[t..t + 8].try_into().unwrap());
    if footer_len > (t - CHUNK_ALIGNMENT) as u64 {
        return None;
    }
    Some((t - footer_len as usize, t))
}

/// Rewrites the trailer's footer CRC to match the bytes the trailer's length points at.
fn fix_footer_crc(data: &mut [u8]) {
    if let Some((start, t)) = footer_span(data) {
        let crc = crc32c::crc32c(&data[start..t]);
        data[t + 8..t + 12].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A footer field that a poke can change.
enum Target<'a> {
    Num(&'a mut u64),
    Codec(&'a mut Codec),
}

fn shape_targets<'a>(dtype: &'a mut DataType, out: &mut Vec<Target<'a>>) {
    match dtype {
        DataType::Array { shape, .. } => out.extend(shape.iter_mut().map(Target::Num)),
        DataType::List { item, .. } => shape_targets(item, out),
        DataType::Struct { fields } => {
            for f in fields {
                shape_targets(&mut f.dtype, out);
            }
        }
        _ => {}
    }
}

/// Every pokeable field, in a fixed order: the array shapes of the schema (depth first), then
/// per row group `num_rows` and per chunk `offset`, `stored_len`, `raw_len` and `codec`.
/// (The footer's `num_rows` is always recomputed afterwards.)
fn poke_targets(footer: &mut Footer) -> Vec<Target<'_>> {
    let mut out = Vec::new();
    for f in &mut footer.schema.fields {
        shape_targets(&mut f.dtype, &mut out);
    }
    for rg in &mut footer.row_groups {
        out.push(Target::Num(&mut rg.num_rows));
        for m in &mut rg.columns {
            out.push(Target::Num(&mut m.offset));
            out.push(Target::Num(&mut m.stored_len));
            out.push(Target::Num(&mut m.raw_len));
            out.push(Target::Codec(&mut m.codec));
        }
    }
    out
}

fn apply_pokes(footer: &mut Footer, pokes: &[u8]) {
    let mut targets = poke_targets(footer);
    if targets.is_empty() {
        return;
    }
    for p in pokes.chunks_exact(10) {
        let n = targets.len();
        let v = u64::from_le_bytes(p[2..10].try_into().unwrap());
        match &mut targets[p[0] as usize % n] {
            Target::Num(x) => {
                **x = match p[1] % 4 {
                    0 => v,
                    1 => x.wrapping_add(v),
                    2 => x.wrapping_sub(v),
                    _ => u64::MAX - v,
                }
            }
            Target::Codec(c) => **c = if v % 2 == 0 { Codec::None } else { Codec::Zstd },
        }
    }
}

/// Decodes the footer, applies `pokes`, recomputes the chunk CRCs and the row total, and
/// re-encodes it.
fn fix_footer(data: Vec<u8>, pokes: &[u8]) -> Vec<u8> {
    let Some((start, t)) = footer_span(&data) else {
        return data;
    };
    let Ok(mut footer) = Footer::from_msgpack(&data[start..t]) else {
        return data;
    };
    apply_pokes(&mut footer, pokes);
    let mut total = Some(0u64);
    for rg in &mut footer.row_groups {
        total = total.and_then(|x| x.checked_add(rg.num_rows));
        for m in &mut rg.columns {
            let end = m.offset.checked_add(m.stored_len);
            if let Some(end) = end.filter(|&e| e <= start as u64) {
                let stored = &data[m.offset as usize..end as usize];
                m.crc32c = crc32c::crc32c(stored);
                if m.page_xxh3.is_some() {
                    m.page_xxh3 = Some(pixmo_stream_core::pages::page_hashes(stored));
                }
            }
        }
    }
    if let Some(total) = total {
        footer.num_rows = total;
    }
    let fb = footer.to_msgpack();
    let mut out = Vec::with_capacity(start + fb.len() + TRAILER_LEN);
    out.extend_from_slice(&data[..start]);
    out.extend_from_slice(&fb);
    out.extend_from_slice(&(fb.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&fb).to_le_bytes());
    out.extend_from_slice(&data[t + 12..]); // versions and magic, as they were
    out
}

fn read_all(reader: &ShardReader) {
    let ncols = reader.schema().fields.len();
    for g in 0..reader.num_row_groups() {
        for c in 0..ncols {
            if let Ok(chunk) = reader.read_chunk(g, c) {
                for i in 0..chunk.len {
                    let _ = std::hint::black_box(chunk.value(i));
                }
            }
            let _ = reader.verify_chunk(g, c);
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut data;
    match mode % 4 {
        1 => {
            data = rest.to_vec();
            fix_footer_crc(&mut data);
        }
        2 => data = fix_footer(rest.to_vec(), &[]),
        3 => {
            let Some((&n, rest)) = rest.split_first() else {
                return;
            };
            let n = (n as usize % 8) * 10;
            if rest.len() < n {
                return;
            }
            data = fix_footer(rest[n..].to_vec(), &rest[..n]);
        }
        _ => data = rest.to_vec(),
    }
    // To turn a fuzz input into a plain shard file that reproduces without this harness:
    // `PIXMO_FUZZ_DUMP=out.pxs <fuzz binary> <input>`.
    if let Some(dump) = std::env::var_os("PIXMO_FUZZ_DUMP") {
        std::fs::write(dump, &data).expect("write PIXMO_FUZZ_DUMP");
    }
    let path = temp_path();
    {
        let mut f = std::fs::File::create(path).expect("create the temp file");
        f.write_all(&data).expect("write the temp file");
    }

    if let Ok(reader) = ShardReader::open(path, None) {
        let _ = (reader.num_rows(), reader.file_len());
        read_all(&reader);
        drop(reader);

        // The same file through the dataset API (which opens it again).
        if let Ok(ds) = Dataset::open(path) {
            let _ = ds.row_groups();
            let n = ds.num_rows();
            for row in [0, n / 2, n.saturating_sub(1), n] {
                let _ = ds.locate(row);
            }
            if let Ok(r) = ds.shard(0) {
                let ncols = r.schema().fields.len();
                for g in 0..r.num_row_groups() {
                    for c in 0..ncols {
                        if let Ok(chunk) = ds.chunk((0, g, c)) {
                            if chunk.len > 0 {
                                let _ = std::hint::black_box(chunk.value(chunk.len - 1));
                            }
                        }
                    }
                }
            }
            std::hint::black_box(ds.verify());
        }
    } else {
        // Both entry points must agree that the file does not open.
        let _ = Dataset::open(path);
    }
});
