//! Mapped shard files and their identity: how a process maps again the bytes another process
//! on the same machine read (a DataLoader worker sending an image by reference).

use crate::error::Error;
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Which file a mapping shows, so that another process on the same machine can map the same
/// bytes again (and tell when the path now names another file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileId {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub mtime_ns: i64,
}

impl FileId {
    /// The same file, unchanged (device, inode, size, mtime), whatever path names it.
    pub fn same_file(&self, other: &FileId) -> bool {
        (self.dev, self.ino, self.len, self.mtime_ns)
            == (other.dev, other.ino, other.len, other.mtime_ns)
    }

    pub fn of(path: &Path, file: &File) -> std::io::Result<FileId> {
        Self::from_metadata(path, &file.metadata()?)
    }

    /// The identity of whatever `path` names now, without opening it.
    pub fn of_path(path: &Path) -> std::io::Result<FileId> {
        Self::from_metadata(path, &std::fs::metadata(path)?)
    }

    fn from_metadata(path: &Path, m: &std::fs::Metadata) -> std::io::Result<FileId> {
        #[cfg(unix)]
        let (dev, ino, mtime_ns) = {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino(), m.mtime() * 1_000_000_000 + m.mtime_nsec())
        };
        #[cfg(not(unix))]
        let (dev, ino, mtime_ns) = (0, 0, 0);
        Ok(FileId {
            // Absolute, so that a process with another working directory finds the same file.
            path: std::path::absolute(path)?,
            dev,
            ino,
            len: m.len(),
            mtime_ns,
        })
    }
}

/// Opens `path` for reading if it is a regular file. Anything else is refused before it is
/// opened: opening a FIFO blocks, and a directory or device cannot be mapped.
pub fn open_regular(path: &Path) -> crate::Result<File> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::corrupt(
            crate::error::Location::file(path),
            "not a regular file",
        ));
    }
    File::open(path).map_err(|e| Error::io(path, e))
}

/// A mapping that failed: a file system that cannot map files (procfs, some FUSE) is a data
/// problem the user can act on, not an I/O error of the moment.
pub fn map_error(path: &Path, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(19 /* ENODEV */) | Some(22 /* EINVAL */) => Error::corrupt(
            crate::error::Location::file(path),
            format!("cannot be memory-mapped ({e}); copy it to a regular file system"),
        ),
        _ => Error::io(path, e),
    }
}

/// Files mapped again by `map_again`, most recently used last. Values keep their own mapping
/// alive; this list only saves re-mapping a file for every batch.
static MAPPED: Mutex<Vec<(Arc<FileId>, Arc<Mmap>)>> = Mutex::new(Vec::new());
const MAPPED_MAX: usize = 64;

/// Maps the file `id` names, in this process, checking it is still that file (device, inode,
/// size, mtime): how a process finds the bytes another process on this machine read.
pub fn map_again(id: FileId) -> crate::Result<(Arc<FileId>, Arc<Mmap>)> {
    let mut mapped = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = mapped.iter().position(|(f, _)| **f == id) {
        let hit = mapped.remove(i);
        mapped.push(hit.clone());
        return Ok(hit);
    }
    let path = id.path.clone();
    let file = open_regular(&path)?;
    let now = FileId::of(&path, &file).map_err(|e| Error::io(&path, e))?;
    if now != id {
        return Err(Error::Changed {
            path,
            reason: "the file changed after a DataLoader worker read it (a shard must not be \
                     replaced while it is read)"
                .into(),
        });
    }
    // SAFETY: as for `ShardReader::open`: shards are never modified in place, and the file is
    // the one the sender mapped and verified (same device, inode, size and mtime).
    let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(|e| map_error(&path, e))?);
    if mapped.len() >= MAPPED_MAX {
        mapped.remove(0);
    }
    let hit = (Arc::new(now), map);
    mapped.push(hit.clone());
    Ok(hit)
}
