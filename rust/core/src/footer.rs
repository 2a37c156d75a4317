//! The shard footer (FORMAT.md "The footer"), a msgpack map written last.

use crate::chunk::Codec;
use crate::schema::Schema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkMeta {
    pub offset: u64,
    pub stored_len: u64,
    pub raw_len: u64,
    pub codec: Codec,
    pub crc32c: u32,
    /// Format 1.1: the XXH3-64 of each `PAGE_LEN` slice of the stored chunk, 8 bytes each,
    /// little-endian (FORMAT.md "Page checksums").
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub page_xxh3: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowGroupMeta {
    pub num_rows: u64,
    pub columns: Vec<ChunkMeta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Footer {
    pub schema: Schema,
    pub num_rows: u64,
    pub row_groups: Vec<RowGroupMeta>,
    #[serde(default)]
    pub required_features: Vec<String>,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Footer {
    pub fn to_msgpack(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a footer always serialises")
    }

    pub fn from_msgpack(bytes: &[u8]) -> Result<Self, String> {
        rmp_serde::from_slice(bytes).map_err(|e| format!("footer does not parse: {e}"))
    }
}
