//! `Dataset`: a manifest (or a single shard) opened for random access by global row id.
//! Shards are opened lazily, so opening a dataset of many shards reads only the manifest.

use crate::decode::ColumnChunk;
use crate::error::{Error, Location, Result};
use crate::format::{is_shard_file, MANIFEST_NAME};
use crate::manifest::Manifest;
use crate::mapped::FileId;
use crate::schema::Schema;
use crate::shard::ShardReader;
use crate::storage::{is_url, Memo, NodeCache, OpenOptions, RemoteDir};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

struct ShardSlot {
    path: PathBuf,
    /// The file's name in the dataset directory (as the manifest lists it).
    name: String,
    num_rows: u64,
    num_bytes: Option<u64>,
    /// Cumulative row offsets of the row groups within the shard (len = groups + 1).
    rg_starts: Vec<u64>,
    reader: OnceLock<ShardReader>,
    /// Held by the thread opening the shard: the others wait for it rather than read the
    /// same header and footer again (a scan's reading threads all start on one shard).
    opening: Mutex<()>,
}

/// Key of a decoded chunk: (shard, row group, column).
pub type ChunkKey = (usize, usize, usize);

/// Where one row group sits in the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupInfo {
    pub shard: usize,
    pub row_group: usize,
    pub first_row: u64,
    pub num_rows: u64,
}

/// Decoded chunks by key, least recently used evicted first. Chunks of uncompressed columns
/// borrow the mapped file and cost no heap, so the cache is bounded by entries and by the heap
/// bytes of decompressed chunks.
struct ChunkCache {
    entries: HashMap<ChunkKey, (Arc<ColumnChunk>, u64)>,
    heap_bytes: usize,
    tick: u64,
}

impl ChunkCache {
    fn get(&mut self, key: &ChunkKey) -> Option<Arc<ColumnChunk>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(c, t)| {
            *t = tick;
            c.clone()
        })
    }

    fn insert(&mut self, key: ChunkKey, chunk: Arc<ColumnChunk>) {
        self.tick += 1;
        self.heap_bytes += chunk.bytes.heap_bytes();
        if let Some((old, _)) = self.entries.insert(key, (chunk, self.tick)) {
            self.heap_bytes -= old.bytes.heap_bytes();
        }
        while self.entries.len() > CACHE_MAX_ENTRIES || self.heap_bytes > CACHE_MAX_HEAP_BYTES {
            let oldest = *self.entries.iter().min_by_key(|(_, (_, t))| *t).unwrap().0;
            let (old, _) = self.entries.remove(&oldest).unwrap();
            self.heap_bytes -= old.bytes.heap_bytes();
        }
    }
}

const CACHE_MAX_ENTRIES: usize = 4096;
const CACHE_MAX_HEAP_BYTES: usize = 256 << 20;

pub struct Dataset {
    root: PathBuf,
    schema: Schema,
    shards: Vec<ShardSlot>,
    shard_starts: Vec<u64>,
    num_rows: u64,
    /// The manifest this dataset was opened from, and the XXH3-64 of its bytes (None for a
    /// single shard): a shard opened later must belong to it, not to a dataset written over
    /// this one since.
    manifest: Option<(FileId, u64)>,
    /// The manifest's user metadata (empty for a single shard).
    metadata: BTreeMap<String, String>,
    /// Where the shards are when they are on object storage.
    remote: Option<RemoteSource>,
    cache: Mutex<ChunkCache>,
    /// One gate per chunk being read (see `chunk`).
    in_flight: Mutex<HashMap<ChunkKey, Arc<Mutex<()>>>>,
    /// The first pages (buffer table and offsets) of image chunks read sparsely, verified:
    /// each batch that reads such a chunk before it is in the node cache needs them again.
    pub(crate) sparse_heads: Memo<ChunkKey>,
    /// The other pages of those chunks read so far (by page number), until the chunk is in
    /// the node cache: later batches need some of them again.
    pub(crate) sparse_pages: Memo<(ChunkKey, usize)>,
}

/// What `sparse_heads` may hold: a 64 KiB page for each of 1,024 chunks.
const SPARSE_HEADS_BYTES: usize = 64 << 20;
/// What `sparse_pages` may hold (the oldest pages go first).
const SPARSE_PAGES_BYTES: usize = 64 << 20;

/// A dataset on object storage: its directory, the node cache, and the XXH3-64 of its
/// manifest's bytes (None for a single shard).
struct RemoteSource {
    dir: RemoteDir,
    cache: Option<Arc<NodeCache>>,
    manifest_hash: Option<u64>,
}

impl ShardSlot {
    /// The shards a manifest lists, each at `path_of(file name)`.
    fn listed(m: &Manifest, path_of: impl Fn(&str) -> PathBuf) -> Vec<ShardSlot> {
        m.shards
            .iter()
            .map(|s| ShardSlot {
                path: path_of(&s.file),
                name: s.file.clone(),
                num_rows: s.num_rows,
                num_bytes: Some(s.num_bytes),
                rg_starts: starts(s.row_groups.iter().copied()),
                reader: OnceLock::new(),
                opening: Mutex::new(()),
            })
            .collect()
    }

    /// A dataset's only shard, already open (read as a dataset of its own).
    fn opened(path: PathBuf, name: String, r: ShardReader) -> ShardSlot {
        let slot = ShardSlot {
            path,
            name,
            num_rows: r.num_rows(),
            num_bytes: Some(r.file_len()),
            rg_starts: r.row_group_starts.clone(),
            reader: OnceLock::new(),
            opening: Mutex::new(()),
        };
        let _ = slot.reader.set(r);
        slot
    }
}

fn starts(counts: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut out = vec![0u64];
    for c in counts {
        out.push(out.last().unwrap() + c);
    }
    out
}

impl Dataset {
    /// Opens a dataset directory (with `manifest.json`) or a single shard file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let (schema, shards, manifest, metadata) = if meta.is_dir() {
            if !path.join(MANIFEST_NAME).exists() {
                let shards_there = std::fs::read_dir(path).is_ok_and(|mut d| {
                    d.any(|e| e.is_ok_and(|e| is_shard_file(&e.file_name().to_string_lossy())))
                });
                let path = path.join(MANIFEST_NAME);
                return Err(if shards_there {
                    Error::Incomplete { path }
                } else {
                    Error::NotFound { path }
                });
            }
            let (m, id, hash) = Manifest::read_with_id(path)?;
            // Absolute, so that shards opened later are found whatever the working directory.
            let dir = id.path.parent().unwrap_or(path).to_path_buf();
            let shards = ShardSlot::listed(&m, |f| dir.join(f));
            (m.schema, shards, Some((id, hash)), m.metadata)
        } else {
            let r = ShardReader::open(path, None)?;
            let schema = r.schema().clone();
            let slot = ShardSlot::opened(path.to_path_buf(), String::new(), r);
            (schema, vec![slot], None, BTreeMap::new())
        };
        Ok(Self::assemble(
            path.to_path_buf(),
            schema,
            shards,
            metadata,
            manifest,
            None,
        ))
    }

    /// Opens a local path or, for a URL (`s3://`, `gs://`, `az://`, `http(s)://`), a dataset
    /// on object storage, with `opts`.
    pub fn open_with(path: &str, opts: &OpenOptions) -> Result<Self> {
        if !is_url(path) {
            return Self::open(path);
        }
        let cache = opts.cache()?;
        let url = path.trim_end_matches('/');
        if url.ends_with(crate::format::SHARD_EXTENSION) {
            let (parent, name) = url.rsplit_once('/').unwrap();
            let dir = RemoteDir::new(parent, &opts.storage)?;
            let len = dir.len(name)?;
            let r = ShardReader::open_remote(&dir, name, len, None, cache.clone(), 0)?;
            let schema = r.schema().clone();
            let slot = ShardSlot::opened(url.into(), name.to_string(), r);
            let remote = RemoteSource {
                dir,
                cache,
                manifest_hash: None,
            };
            return Ok(Self::assemble(
                url.into(),
                schema,
                vec![slot],
                BTreeMap::new(),
                None,
                Some(remote),
            ));
        }
        let dir = RemoteDir::new(url, &opts.storage)?;
        let manifest_url = PathBuf::from(dir.url_of(MANIFEST_NAME));
        let key = format!("manifest\0{url}");
        let cached = || cache.as_ref().and_then(|c| c.get_bytes(&key));
        let text = if dir.offline {
            cached().ok_or_else(|| Error::Remote {
                url: manifest_url.to_string_lossy().into_owned(),
                kind: crate::error::RemoteErrorKind::Failed,
                reason: "offline, and the node cache has no copy (open it once online, \
                         with this cache)"
                    .into(),
            })?
        } else {
            match dir.get(MANIFEST_NAME) {
                Ok(b) => {
                    if let Some(c) = &cache {
                        let _ = c.put_bytes(&key, &b);
                    }
                    b.to_vec()
                }
                Err(Error::NotFound { .. }) => {
                    let shards_there = dir
                        .list()
                        .is_ok_and(|l| l.iter().any(|(n, _)| is_shard_file(n)));
                    return Err(if shards_there {
                        Error::Incomplete { path: manifest_url }
                    } else {
                        Error::NotFound { path: manifest_url }
                    });
                }
                Err(e) => return Err(e),
            }
        };
        let m = Manifest::parse(&text, &manifest_url)?;
        let shards = ShardSlot::listed(&m, |f| dir.url_of(f).into());
        let remote = RemoteSource {
            dir,
            cache,
            manifest_hash: Some(xxhash_rust::xxh3::xxh3_64(&text)),
        };
        Ok(Self::assemble(
            url.into(),
            m.schema,
            shards,
            m.metadata,
            None,
            Some(remote),
        ))
    }

    fn assemble(
        root: PathBuf,
        schema: Schema,
        shards: Vec<ShardSlot>,
        metadata: BTreeMap<String, String>,
        manifest: Option<(FileId, u64)>,
        remote: Option<RemoteSource>,
    ) -> Self {
        let shard_starts = starts(shards.iter().map(|s: &ShardSlot| s.num_rows));
        Dataset {
            root,
            schema,
            num_rows: *shard_starts.last().unwrap(),
            shards,
            shard_starts,
            manifest,
            metadata,
            remote,
            cache: Mutex::new(ChunkCache {
                entries: HashMap::new(),
                heap_bytes: 0,
                tick: 0,
            }),
            in_flight: Mutex::new(HashMap::new()),
            sparse_heads: Memo::new(SPARSE_HEADS_BYTES),
            sparse_pages: Memo::new(SPARSE_PAGES_BYTES),
        }
    }

    /// The directory of a dataset on object storage.
    pub(crate) fn remote_dir(&self) -> Option<RemoteDir> {
        self.remote.as_ref().map(|r| r.dir.clone())
    }

    /// The file name of shard `i` in the dataset directory.
    pub(crate) fn shard_name(&self, i: usize) -> &str {
        &self.shards[i].name
    }

    /// Is chunk `key` in the in-memory chunk cache?
    pub(crate) fn in_memory(&self, key: ChunkKey) -> bool {
        self.cache.lock().unwrap().entries.contains_key(&key)
    }

    /// The node cache of a dataset on object storage, if it has one.
    pub(crate) fn node_cache(&self) -> Option<&Arc<NodeCache>> {
        self.remote.as_ref().and_then(|r| r.cache.as_ref())
    }

    /// Does this dataset on object storage have a node cache?
    pub fn has_node_cache(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| r.cache.is_some())
    }

    /// Is this dataset read from object storage?
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn num_rows(&self) -> u64 {
        self.num_rows
    }

    pub fn num_shards(&self) -> usize {
        self.shards.len()
    }

    pub fn shard_path(&self, shard: usize) -> &Path {
        &self.shards[shard].path
    }

    /// Opens (once) and returns a shard, checking it against the manifest. Threads asking
    /// at once wait for the first one's open; a failed open is not kept (the next read tries
    /// again: the store may have been down for a while).
    pub fn shard(&self, i: usize) -> Result<&ShardReader> {
        let slot = &self.shards[i];
        if let Some(r) = slot.reader.get() {
            return Ok(r);
        }
        let _opening = slot.opening.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = slot.reader.get() {
            return Ok(r);
        }
        let expect = slot.num_bytes.map(|b| (b, slot.num_rows));
        let opened = match &self.remote {
            None => ShardReader::open(&slot.path, expect),
            Some(r) => ShardReader::open_remote(
                &r.dir,
                &slot.name,
                slot.num_bytes.unwrap_or(0),
                expect,
                r.cache.clone(),
                r.manifest_hash.unwrap_or(0),
            ),
        };
        // Checked after the shard is open: the writer removes the manifest before it touches a
        // shard, so a manifest unchanged now means the file just opened is the one it lists.
        self.check_unchanged()?;
        let r = opened?;
        if r.schema() != &self.schema {
            return Err(Error::corrupt(
                Location::file(&slot.path),
                "shard schema differs from the manifest's",
            ));
        }
        if r.row_group_starts != slot.rg_starts {
            return Err(Error::corrupt(
                Location::file(&slot.path),
                "shard row groups differ from the manifest's",
            ));
        }
        let _ = slot.reader.set(r);
        Ok(slot.reader.get().unwrap())
    }

    /// The user metadata the writer stored in the manifest.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The XXH3-64 of the manifest this dataset was opened from (None for a single shard):
    /// what identifies the dataset to readers opened later.
    pub fn manifest_hash(&self) -> Option<u64> {
        match &self.remote {
            Some(r) => r.manifest_hash,
            None => self.manifest.as_ref().map(|(_, h)| *h),
        }
    }

    /// Fails if `manifest.json` is no longer the file this dataset was opened from: the
    /// dataset has been rewritten (or is being rewritten, or was removed) since.
    pub fn check_unchanged(&self) -> Result<()> {
        // On object storage, a shard is checked against the manifest (size, rows, row groups)
        // when it is opened; asking for the manifest again before every shard would cost a
        // request each.
        let Some((id, hash)) = &self.manifest else {
            return Ok(());
        };
        let path = &id.path;
        // The same file, untouched: the common case, one stat. Otherwise (a `touch`, a copy,
        // a remount that changes device numbers) the bytes decide.
        if FileId::of_path(path).is_ok_and(|now| now.same_file(id)) {
            return Ok(());
        }
        match std::fs::read(path) {
            Ok(bytes) if xxhash_rust::xxh3::xxh3_64(&bytes) == *hash => Ok(()),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
            _ => Err(Error::Changed {
                path: self.root.clone(),
                reason: "the dataset was rewritten or removed after it was opened \
                         (manifest.json is not what it was); open it again"
                    .into(),
            }),
        }
    }

    /// Every row group in dataset order (from the manifest; no shard is opened).
    pub fn row_groups(&self) -> Vec<RowGroupInfo> {
        let mut out = Vec::new();
        for (s, slot) in self.shards.iter().enumerate() {
            for g in 0..slot.rg_starts.len() - 1 {
                out.push(RowGroupInfo {
                    shard: s,
                    row_group: g,
                    first_row: self.shard_starts[s] + slot.rg_starts[g],
                    num_rows: slot.rg_starts[g + 1] - slot.rg_starts[g],
                });
            }
        }
        out
    }

    /// (shard, row group, row within the group) of a global row.
    pub fn locate(&self, row: u64) -> Result<(usize, usize, usize)> {
        if row >= self.num_rows {
            return Err(Error::InvalidArgument(format!(
                "row {row} out of range for {} rows",
                self.num_rows
            )));
        }
        let s = self.shard_starts.partition_point(|&x| x <= row) - 1;
        let local = row - self.shard_starts[s];
        let st = &self.shards[s].rg_starts;
        let g = st.partition_point(|&x| x <= local) - 1;
        Ok((s, g, (local - st[g]) as usize))
    }

    /// A decoded, verified chunk, through a small cache shared by all threads.
    /// Threads that miss on the same chunk at once read it once: the first reads it while the
    /// others wait on that key's gate, then find it in the cache.
    pub fn chunk(&self, key: ChunkKey) -> Result<Arc<ColumnChunk>> {
        if let Some(c) = self.cache.lock().unwrap().get(&key) {
            return Ok(c);
        }
        let gate = self
            .in_flight
            .lock()
            .unwrap()
            .entry(key)
            .or_default()
            .clone();
        let _reading = gate.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = self.cache.lock().unwrap().get(&key) {
            return Ok(c);
        }
        let (s, g, c) = key;
        let result = self.shard(s).and_then(|r| r.read_chunk(g, c)).map(Arc::new);
        if let Ok(chunk) = &result {
            self.cache.lock().unwrap().insert(key, chunk.clone());
        }
        self.in_flight.lock().unwrap().remove(&key);
        result
    }

    /// Several chunks at once, through the shared cache. For a dataset on object storage the
    /// missing ones are read in one batch per shard, all shards at once, so that the requests
    /// of a batch of rows wait for the store's latency together rather than one by one.
    pub fn read_chunks(&self, keys: &[ChunkKey]) -> Vec<Result<Arc<ColumnChunk>>> {
        if self.remote.is_none() {
            return keys.iter().map(|&k| self.chunk(k)).collect();
        }
        let mut out: Vec<Option<Result<Arc<ColumnChunk>>>> = {
            let mut cache = self.cache.lock().unwrap();
            keys.iter().map(|k| cache.get(k).map(Ok)).collect()
        };
        let mut by_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            if out[i].is_none() {
                by_shard.entry(k.0).or_default().push(i);
            }
        }
        let groups: Vec<(usize, Vec<usize>)> = by_shard.into_iter().collect();
        // A thread per shard (they only wait on the store), at most 16 at once.
        for part in groups.chunks(16) {
            let answers: Vec<Vec<(usize, Result<ColumnChunk>)>> = std::thread::scope(|scope| {
                let handles: Vec<_> = part
                    .iter()
                    .map(|(s, idx)| {
                        scope.spawn(move || {
                            let wanted: Vec<(usize, usize)> =
                                idx.iter().map(|&i| (keys[i].1, keys[i].2)).collect();
                            match self.shard(*s) {
                                Ok(r) => idx.iter().copied().zip(r.read_chunks(&wanted)).collect(),
                                Err(e) => idx.iter().map(|&i| (i, Err(e.duplicate()))).collect(),
                            }
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            vec![] // a panic in a reader: its chunks are read again below
                        })
                    })
                    .collect()
            });
            let mut cache = self.cache.lock().unwrap();
            for (i, res) in answers.into_iter().flatten() {
                out[i] = Some(res.map(|c| {
                    let c = Arc::new(c);
                    cache.insert(keys[i], c.clone());
                    c
                }));
            }
        }
        out.into_iter()
            .zip(keys)
            .map(|(o, &k)| o.unwrap_or_else(|| self.chunk(k)))
            .collect()
    }

    /// The chunks of columns `cols` of one row group, without touching the shared cache (for
    /// one-pass scans); on object storage in one batch of requests.
    pub fn read_group_uncached(
        &self,
        shard: usize,
        row_group: usize,
        cols: &[usize],
    ) -> Result<Vec<ColumnChunk>> {
        let wanted: Vec<(usize, usize)> = cols.iter().map(|&c| (row_group, c)).collect();
        self.shard(shard)?
            .read_chunks(&wanted)
            .into_iter()
            .collect()
    }

    /// Reads a chunk without touching the shared cache (for one-pass scans).
    pub fn chunk_uncached(&self, key: ChunkKey) -> Result<ColumnChunk> {
        let (s, g, c) = key;
        self.shard(s)?.read_chunk(g, c)
    }

    /// Checks every chunk of every shard (checksums, padding, buffers, offsets, UTF-8).
    /// Returns the number of chunks checked and every problem found.
    pub fn verify(&self) -> (usize, Vec<Error>) {
        let mut errors = Vec::new();
        let mut checked = 0;
        for s in 0..self.shards.len() {
            let reader = match self.shard(s) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for g in 0..reader.num_row_groups() {
                for c in 0..self.schema.fields.len() {
                    checked += 1;
                    if let Err(e) = reader.verify_chunk(g, c) {
                        errors.push(e);
                    }
                }
            }
        }
        (checked, errors)
    }

    /// Column indices of `names` (all columns for `None`).
    pub fn column_indices(&self, names: Option<&[String]>) -> Result<Vec<usize>> {
        match names {
            None => Ok((0..self.schema.fields.len()).collect()),
            Some(names) => names
                .iter()
                .map(|n| {
                    self.schema.index_of(n).ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "unknown column '{n}'; columns are: {}",
                            self.schema.names().join(", ")
                        ))
                    })
                })
                .collect(),
        }
    }
}
