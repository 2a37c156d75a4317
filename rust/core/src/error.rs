//! Typed errors. Variants carry data (path, row group, column), not preformatted strings, so
//! the bindings can map each one to its own Python exception.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in a dataset something went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub row_group: Option<usize>,
    pub column: Option<String>,
}

impl Location {
    pub fn file(path: impl AsRef<Path>) -> Self {
        Location {
            path: path.as_ref().to_path_buf(),
            row_group: None,
            column: None,
        }
    }
    pub fn chunk(path: impl AsRef<Path>, row_group: usize, column: &str) -> Self {
        Location {
            path: path.as_ref().to_path_buf(),
            row_group: Some(row_group),
            column: Some(column.to_string()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(rg) = self.row_group {
            write!(f, ", row group {rg}")?;
        }
        if let Some(c) = &self.column {
            write!(f, ", column '{c}'")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },

    /// A dataset directory with shard files but no manifest: a write still running, or one
    /// that stopped before its end.
    #[error("{}: {INCOMPLETE}", path.display())]
    Incomplete { path: PathBuf },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("corrupt data in {location}: {reason}")]
    Corrupt { location: Location, reason: String },

    /// A file or dataset is no longer the one that was opened (rewritten or replaced since).
    #[error("{}: {reason}", path.display())]
    Changed { path: PathBuf, reason: String },

    #[error("{}: unsupported format: {reason}", path.display())]
    UnsupportedVersion { path: PathBuf, reason: String },

    #[error("{}", schema_message(field, *record, reason))]
    Schema {
        field: String,
        record: Option<u64>,
        reason: String,
    },

    /// One sample that cannot be used (damaged, or an image that does not decode), at row
    /// `row` of the dataset whose file `location` names.
    #[error("bad sample in {location}, row {row}: {reason}")]
    BadSample {
        location: Location,
        row: u64,
        reason: String,
    },

    /// A request to object storage that failed for good (after its retries), or was refused.
    #[error("{url}: {reason}")]
    Remote {
        url: String,
        kind: RemoteErrorKind,
        reason: String,
    },

    #[error("{0}")]
    InvalidArgument(String),

    /// A bug: a background thread panicked. The message is the panic's.
    #[error("internal error (a bug in pixmo-stream, please report it): {0}")]
    Internal(String),
}

/// Why a request to object storage failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// 401/403: the credentials do not allow it.
    Forbidden,
    /// No answer within the request deadline (after retries).
    Timeout,
    /// Anything else: 5xx or throttling past the retries, dropped connections, bad answers.
    Failed,
}

/// Why a directory of shards without a manifest does not open.
pub const INCOMPLETE: &str = "no manifest.json, but shard files: the dataset is still being \
     written, or its write stopped before the end (the manifest is written last)";

fn schema_message(field: &str, record: Option<u64>, reason: &str) -> String {
    match (field.is_empty(), record) {
        (true, Some(r)) => format!("record {r}: {reason}"),
        (true, None) => reason.to_string(),
        (false, Some(r)) => format!("record {r}, field '{field}': {reason}"),
        (false, None) => format!("field '{field}': {reason}"),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A second copy of an error (errors are not `Clone`: an `io::Error` is not), for the
    /// several readers that wait on one failed read.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::NotFound { path } => Error::NotFound { path: path.clone() },
            Error::Corrupt { location, reason } => Error::Corrupt {
                location: location.clone(),
                reason: reason.clone(),
            },
            Error::BadSample {
                location,
                row,
                reason,
            } => Error::BadSample {
                location: location.clone(),
                row: *row,
                reason: reason.clone(),
            },
            Error::Remote { url, kind, reason } => Error::Remote {
                url: url.clone(),
                kind: *kind,
                reason: reason.clone(),
            },
            Error::Changed { path, reason } => Error::Changed {
                path: path.clone(),
                reason: reason.clone(),
            },
            other => Error::InvalidArgument(other.to_string()),
        }
    }

    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                path: path.as_ref().to_path_buf(),
            }
        } else {
            Error::Io {
                path: path.as_ref().to_path_buf(),
                source,
            }
        }
    }
    pub fn corrupt(location: Location, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            location,
            reason: reason.into(),
        }
    }
    pub fn schema(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Schema {
            field: field.into(),
            record: None,
            reason: reason.into(),
        }
    }
    /// Attaches the record index to a schema error.
    pub fn at_record(self, index: u64) -> Self {
        match self {
            Error::Schema { field, reason, .. } => Error::Schema {
                field,
                record: Some(index),
                reason,
            },
            other => other,
        }
    }
}
