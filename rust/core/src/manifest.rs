//! `manifest.json` (FORMAT.md "The dataset manifest"): written last and atomically.

use crate::error::{Error, Location, Result};
use crate::format::{MAJOR_VERSION, MANIFEST_FORMAT, MANIFEST_NAME, MINOR_VERSION};
use crate::mapped::FileId;
use crate::schema::Schema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub file: String,
    pub num_rows: u64,
    pub num_bytes: u64,
    pub row_groups: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: [u16; 2],
    pub schema: Schema,
    pub num_rows: u64,
    pub num_bytes: u64,
    pub shards: Vec<ShardEntry>,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Random, new for every write (format 1.2): tells a rewrite from a touch or a copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_id: Option<String>,
}

/// 32 lowercase hex digits that no other write will have: two words from the standard
/// library's randomly keyed hasher (seeded from the OS), mixed with the time and process.
fn new_write_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let word = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    };
    format!("{:016x}{:016x}", word(1), word(2))
}

/// The sum, or None when it overflows u64 (a sum that wraps could match a forged total).
fn checked_sum(mut values: impl Iterator<Item = u64>) -> Option<u64> {
    values.try_fold(0u64, |a, b| a.checked_add(b))
}

impl Manifest {
    pub fn new(
        schema: Schema,
        shards: Vec<ShardEntry>,
        metadata: BTreeMap<String, String>,
    ) -> Self {
        Manifest {
            format: MANIFEST_FORMAT.to_string(),
            version: [MAJOR_VERSION, MINOR_VERSION],
            num_rows: shards.iter().map(|s| s.num_rows).sum(),
            num_bytes: shards.iter().map(|s| s.num_bytes).sum(),
            schema,
            shards,
            created_by: crate::format::CREATED_BY.to_string(),
            metadata,
            write_id: Some(new_write_id()),
        }
    }

    /// Reads and checks `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        Self::read_with_id(dir).map(|(m, _, _)| m)
    }

    /// Reads and checks `dir/manifest.json`, and says which file it was (device, inode, size,
    /// mtime) and the XXH3-64 of its bytes, so that a reader can tell later whether the dataset
    /// has been rewritten.
    pub fn read_with_id(dir: &Path) -> Result<(Self, FileId, u64)> {
        let path = dir.join(MANIFEST_NAME);
        let mut file = crate::mapped::open_regular(&path)?;
        let id = FileId::of(&path, &file).map_err(|e| Error::io(&path, e))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|e| Error::io(&path, e))?;
        let hash = xxhash_rust::xxh3::xxh3_64(&text);
        Ok((Self::parse(&text, &path)?, id, hash))
    }

    /// Parses and checks a manifest's bytes; `path` (a file or a URL) names it in errors.
    pub fn parse(text: &[u8], path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        let corrupt = |r: String| Error::corrupt(Location::file(&path), r);
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| corrupt(format!("not valid JSON: {e}")))?;
        if value.get("format").and_then(|v| v.as_str()) != Some(MANIFEST_FORMAT) {
            return Err(corrupt(format!(
                "not a {MANIFEST_FORMAT} manifest (missing \"format\")"
            )));
        }
        if let Some(major) = value.pointer("/version/0").and_then(|v| v.as_u64()) {
            if major != MAJOR_VERSION as u64 {
                return Err(Error::UnsupportedVersion {
                    path,
                    reason: format!(
                        "manifest version {major}; this reader reads major version {MAJOR_VERSION}"
                    ),
                });
            }
        }
        let m: Manifest =
            serde_json::from_value(value).map_err(|e| corrupt(format!("invalid manifest: {e}")))?;
        m.schema
            .validate()
            .map_err(|e| corrupt(format!("invalid schema: {e}")))?;
        for s in &m.shards {
            let p = Path::new(&s.file);
            if s.file.is_empty()
                || s.file.contains('\\')
                || p.components().any(|c| !matches!(c, Component::Normal(_)))
            {
                return Err(corrupt(format!(
                    "shard path '{}' is not a plain relative path",
                    s.file
                )));
            }
            if checked_sum(s.row_groups.iter().copied()) != Some(s.num_rows)
                || s.row_groups.contains(&0)
            {
                return Err(corrupt(format!(
                    "row groups of '{}' do not add up to its {} rows",
                    s.file, s.num_rows
                )));
            }
        }
        let mut files = std::collections::HashSet::new();
        if !m.shards.iter().all(|s| files.insert(s.file.as_str())) {
            return Err(corrupt("a shard file is listed twice".into()));
        }
        if checked_sum(m.shards.iter().map(|s| s.num_bytes)) != Some(m.num_bytes) {
            return Err(corrupt("shard sizes do not add up to num_bytes".into()));
        }
        if checked_sum(m.shards.iter().map(|s| s.num_rows)) != Some(m.num_rows) {
            return Err(corrupt("shard rows do not add up to num_rows".into()));
        }
        Ok(m)
    }

    /// The manifest as written: pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serialises")
    }

    /// Writes `dir/manifest.json` through a temporary file and a rename.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_NAME);
        let tmp = dir.join(format!("{MANIFEST_NAME}.tmp"));
        let text = serde_json::to_vec_pretty(self).expect("a manifest always serialises");
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&text).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
