//! The constants of `docs/FORMAT.md`, in one place. `spec_constants_match` keeps them honest.

/// Magic bytes at both ends of every shard.
pub const MAGIC: &[u8; 8] = b"PIXMOSTR";
pub const MAJOR_VERSION: u16 = 1;
pub const MINOR_VERSION: u16 = 2;
pub const HEADER_LEN: usize = 16;
pub const TRAILER_LEN: usize = 24;
pub const CHUNK_ALIGNMENT: usize = 64;
pub const BUFFER_ALIGNMENT: usize = 8;
pub const MAX_FOOTER_LEN: u64 = 256 << 20;
pub const MAX_NESTING_DEPTH: usize = 32;
pub const MAX_BUFFERS_PER_CHUNK: usize = 1 << 20;
/// The largest inner shape of an array, in bytes per outer row (FORMAT.md "Limits").
pub const MAX_ARRAY_ROW_BYTES: u64 = 1 << 32;
/// Levels of arrays and maps below one `any` value.
pub const MAX_MSGPACK_DEPTH: usize = 512;
/// Bytes covered by each entry of a chunk's `page_crc32c` (format 1.1).
pub const PAGE_LEN: usize = 64 << 10;
pub const MANIFEST_NAME: &str = "manifest.json";
pub const SHARD_EXTENSION: &str = ".pxs";

/// A shard of a dataset directory, written (`shard-*.pxs`) or being written (`.pxs.tmp`).
pub(crate) fn is_shard_file(name: &str) -> bool {
    name.starts_with("shard-") && (name.ends_with(SHARD_EXTENSION) || name.ends_with(".pxs.tmp"))
}
/// Name written into footers and manifests.
pub const CREATED_BY: &str = concat!("pixmo-stream ", env!("CARGO_PKG_VERSION"));
/// The `format` value of a manifest.
pub const MANIFEST_FORMAT: &str = "pixmo-stream";

/// Rounds `n` up to a multiple of `align` (a power of two).
pub const fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_table() -> std::collections::HashMap<String, String> {
        let spec = include_str!("../../../docs/FORMAT.md");
        let section = spec
            .split("## Constants")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("FORMAT.md has a Constants section");
        section
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                if cells.len() < 3 || !cells[1].starts_with('`') {
                    return None;
                }
                Some((cells[1].trim_matches('`').to_string(), cells[2].to_string()))
            })
            .collect()
    }

    #[test]
    fn spec_constants_match() {
        let t = spec_table();
        let num = |k: &str| -> u64 {
            t[k].split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("{k}"))
        };
        assert!(t["MAGIC"].contains(&format!("`{}`", std::str::from_utf8(MAGIC).unwrap())));
        let hex: Vec<String> = MAGIC.iter().map(|b| format!("{b:02x}")).collect();
        assert!(t["MAGIC"].contains(&hex.join(" ")));
        assert_eq!(num("MAJOR_VERSION"), MAJOR_VERSION as u64);
        assert_eq!(num("MINOR_VERSION"), MINOR_VERSION as u64);
        assert_eq!(num("HEADER_LEN"), HEADER_LEN as u64);
        assert_eq!(num("TRAILER_LEN"), TRAILER_LEN as u64);
        assert_eq!(num("CHUNK_ALIGNMENT"), CHUNK_ALIGNMENT as u64);
        assert_eq!(num("BUFFER_ALIGNMENT"), BUFFER_ALIGNMENT as u64);
        assert_eq!(num("MAX_FOOTER_LEN"), MAX_FOOTER_LEN);
        assert_eq!(num("MAX_NESTING_DEPTH"), MAX_NESTING_DEPTH as u64);
        assert_eq!(num("MAX_BUFFERS_PER_CHUNK"), MAX_BUFFERS_PER_CHUNK as u64);
        assert_eq!(num("MAX_MSGPACK_DEPTH"), MAX_MSGPACK_DEPTH as u64);
        assert_eq!(num("PAGE_LEN"), PAGE_LEN as u64);
        assert_eq!(num("MAX_ARRAY_ROW_BYTES"), MAX_ARRAY_ROW_BYTES);
        assert_eq!(t["MANIFEST_NAME"], format!("`{MANIFEST_NAME}`"));
        assert_eq!(t["SHARD_EXTENSION"], format!("`{SHARD_EXTENSION}`"));
        assert_eq!(HEADER_LEN, MAGIC.len() + 2 + 2 + 4);
        assert_eq!(TRAILER_LEN, 8 + 4 + 2 + 2 + MAGIC.len());
    }
}
