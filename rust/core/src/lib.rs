//! pixmo-stream core: the shard format (see `docs/FORMAT.md`), its writer and reader, and
//! the epoch plans that order reads for training. Pure Rust, no Python.

#[cfg(target_endian = "big")]
compile_error!("pixmo-stream assumes a little-endian host (the format is little-endian)");

pub mod batch_memory;
pub mod chunk;
pub mod dataset;
pub mod decode;
pub mod encode;
pub mod error;
pub mod footer;
pub mod format;
pub mod images;
pub mod manifest;
pub mod mapped;
pub mod msgpack;
pub mod pages;
pub mod plan;
pub mod sample;
pub mod schema;
pub mod shard;
mod shard_remote;
mod shard_writer;
pub mod sparse;
pub mod storage;
pub mod stream;
pub mod value;
pub mod writer;

pub use dataset::Dataset;
pub use error::{Error, Result};
pub use schema::{DataType, Field, NumType, Schema};
pub use value::Value;
pub use writer::{DatasetWriter, WriteSummary, WriterOptions};
