//! The node cache: chunks read from object storage, kept as files in one directory that every
//! process of a machine (ranks, DataLoader workers) shares, under a size limit.
//!
//! - A file is written under a temporary name and renamed into place, so a reader sees a whole
//!   file or none; the bytes are checked against the format's checksums when a process first
//!   reads them, and a damaged file is removed and read again from the store.
//! - One lock file per entry (`flock`): of several processes missing the same chunk at once,
//!   one downloads it while the others wait for it and then read the file.
//! - Eviction removes the least recently read files (access times are set on every hit) once
//!   the total passes the limit, down to 90 % of it. Files read in the last 30 s are kept, so a
//!   chunk a DataLoader worker has just handed on by reference is still there; the limit can
//!   therefore be passed for a while under heavy use.
//! - Once filled, the cache also holds each dataset's manifest and shard footers, so a dataset
//!   can be opened offline.

use std::fs::{File, FileTimes, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::mapped::FileId;

/// Files read this recently are never evicted.
const EVICT_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct NodeCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes this process added since it last counted the cache's size.
    added: AtomicU64,
}

/// A cache entry, mapped.
pub type Mapped = (Arc<FileId>, Arc<Mmap>);

/// What [`NodeCache::lock`] found.
pub enum Slot {
    /// The entry is there.
    Hit(Mapped),
    /// This process holds the entry's lock and must fill it ([`NodeCache::fill`]).
    Fill(Filler),
    /// Another process is filling it; [`NodeCache::wait`] waits for that.
    Busy(PathBuf),
}

/// The right to fill one entry, held while it is downloaded; dropping it lets waiters go on.
pub struct Filler {
    path: PathBuf,
    _lock: File,
}

impl NodeCache {
    pub fn new(dir: &Path, max_bytes: u64) -> Result<Arc<Self>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Arc::new(NodeCache {
            dir: std::path::absolute(dir).map_err(|e| Error::io(dir, e))?,
            max_bytes,
            added: AtomicU64::new(u64::MAX / 2), // count at the first insert
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, key: &str) -> PathBuf {
        let h = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
        let hex = format!("{h:032x}");
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    /// The entry `key`, mapped, if it is there (and marks it used).
    pub fn get(&self, key: &str) -> Option<Mapped> {
        open_entry(&self.path_of(key))
    }

    /// Is the entry there? (One `stat`: it may be evicted a moment later.)
    pub fn contains(&self, key: &str) -> bool {
        self.path_of(key).is_file()
    }

    /// The entry's bytes, read into memory (for small entries: manifests, footers).
    pub fn get_bytes(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path_of(key)).ok()
    }

    /// Finds the entry, or takes the right to fill it, or says another process is filling it.
    pub fn lock(&self, key: &str) -> Result<Slot> {
        let path = self.path_of(key);
        if let Some(m) = open_entry(&path) {
            return Ok(Slot::Hit(m));
        }
        let lock = self.open_lock(&path)?;
        match lock.try_lock() {
            Ok(()) => match open_entry(&path) {
                Some(m) => Ok(Slot::Hit(m)),
                None => Ok(Slot::Fill(Filler { path, _lock: lock })),
            },
            Err(TryLockError::WouldBlock) => Ok(Slot::Busy(path)),
            Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// Waits until the process filling `path` is done; the entry if it filled it, else the
    /// right to fill it here.
    pub fn wait(&self, path: PathBuf) -> Result<std::result::Result<Mapped, Filler>> {
        let lock = self.open_lock(&path)?;
        lock.lock().map_err(|e| Error::io(&path, e))?;
        Ok(match open_entry(&path) {
            Some(m) => Ok(m),
            None => Err(Filler { path, _lock: lock }),
        })
    }

    fn open_lock(&self, path: &Path) -> Result<File> {
        let parent = path.parent().unwrap();
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let lock_path = path.with_extension("lock");
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))
    }

    /// Writes the entry (through a temporary file and a rename) and maps it.
    pub fn fill(&self, filler: Filler, bytes: &[u8]) -> Result<Mapped> {
        self.write(&filler.path, bytes)?;
        let mapped = open_entry(&filler.path).ok_or_else(|| Error::NotFound {
            path: filler.path.clone(),
        });
        let _ = std::fs::remove_file(filler.path.with_extension("lock"));
        drop(filler);
        mapped
    }

    /// Stores small bytes under `key` (a manifest, a footer), replacing what was there.
    pub fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path_of(key);
        let parent = path.parent().unwrap();
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        self.write(&path, bytes)
    }

    /// Removes a damaged entry.
    pub fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.path_of(key));
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp.{}.{seq}", std::process::id()));
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(&tmp, e)
        })?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(path, e)
        })?;
        let before = self.added.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if before + bytes.len() as u64 > self.max_bytes / 16 {
            self.added.store(0, Ordering::Relaxed);
            self.evict();
        }
        Ok(())
    }

    /// Counts the cache and, past the limit, removes the least recently read entries down to
    /// 90 % of it. One process evicts at a time; the others skip it.
    pub fn evict(&self) {
        let Ok(lock) = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".evict.lock"))
        else {
            return;
        };
        if lock.try_lock().is_err() {
            return;
        }
        let mut entries = Vec::new();
        let mut total = 0u64;
        let Ok(subdirs) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for sub in subdirs.flatten() {
            let Ok(files) = std::fs::read_dir(sub.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                let name = name.to_string_lossy();
                if name.contains('.') {
                    continue; // lock and temporary files
                }
                if let Ok(m) = f.metadata() {
                    total += m.len();
                    let used = m
                        .accessed()
                        .or_else(|_| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    entries.push((used, m.len(), f.path()));
                }
            }
        }
        if total <= self.max_bytes {
            return;
        }
        entries.sort_by_key(|e| e.0);
        let target = self.max_bytes / 10 * 9;
        let now = SystemTime::now();
        for (used, len, path) in entries {
            if total <= target {
                break;
            }
            if now.duration_since(used).unwrap_or_default() < EVICT_GRACE {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// Opens and maps an entry, and marks it as just read (its access time; the modification
/// time, part of the file's identity, is left alone).
fn open_entry(path: &Path) -> Option<Mapped> {
    let file = File::open(path).ok()?;
    let _ = file.set_times(FileTimes::new().set_accessed(SystemTime::now()));
    let id = FileId::of(path, &file).ok()?;
    if id.len == 0 {
        return None;
    }
    // SAFETY: cache entries are never written in place: a new entry is written under another
    // name and renamed over, and an evicted one is unlinked, which leaves this mapping intact.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    Some((Arc::new(id), Arc::new(map)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_then_hit_and_busy() {
        let dir = tempfile::tempdir().unwrap();
        let cache = NodeCache::new(dir.path(), 1 << 30).unwrap();
        let Slot::Fill(f) = cache.lock("a").unwrap() else {
            panic!("empty cache")
        };
        // While this filler holds the lock, another caller is told to wait.
        assert!(matches!(cache.lock("a").unwrap(), Slot::Busy(_)));
        let (_, m) = cache.fill(f, b"hello").unwrap();
        assert_eq!(&m[..], b"hello");
        let Slot::Hit((_, m)) = cache.lock("a").unwrap() else {
            panic!("filled")
        };
        assert_eq!(&m[..], b"hello");
        assert!(cache.get("b").is_none());
    }

    #[test]
    fn evicts_least_recently_read_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = NodeCache::new(dir.path(), 1000).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for k in 0..10 {
            cache.put_bytes(&format!("k{k}"), &[k as u8; 300]).unwrap();
            let f = File::open(cache.path_of(&format!("k{k}"))).unwrap();
            f.set_times(FileTimes::new().set_accessed(old + Duration::from_secs(k)))
                .unwrap();
        }
        cache.evict();
        let left: Vec<u64> = (0..10)
            .filter(|k| cache.get_bytes(&format!("k{k}")).is_some())
            .collect();
        assert_eq!(
            left,
            vec![7, 8, 9],
            "the newest three fit in 90 % of 1000 bytes"
        );
    }
}
