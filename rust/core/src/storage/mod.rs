//! Where shard bytes come from: local files (mapped) or object storage (range reads through
//! the `object_store` crate, optionally kept in a node-wide cache). The reader, plans and
//! stream see the same chunks either way.

pub mod cache;
pub mod memo;
mod refusal;
pub mod remote;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use cache::NodeCache;
pub use memo::Memo;
pub use remote::{is_url, RemoteDir};

use crate::error::Result;

/// How a dataset on object storage is opened (ignored for local paths).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Options of the store client (`endpoint`, `region`, credentials, `allow_http`,
    /// `timeout`, ...), over those of the environment.
    pub storage: BTreeMap<String, String>,
    /// The node cache: its directory and size limit in bytes (None: chunks are kept in memory
    /// only, and a shuffled stream may read a chunk more than once).
    pub cache: Option<(PathBuf, u64)>,
}

impl OpenOptions {
    pub fn cache(&self) -> Result<Option<Arc<NodeCache>>> {
        self.cache
            .as_ref()
            .map(|(dir, max)| NodeCache::new(dir, *max))
            .transpose()
    }
}
