//! Sparse reads of image chunks on object storage: the values a batch needs, not whole chunks.
//!
//! A shuffled stream's batch takes rows from many row groups; reading each of their image
//! chunks whole before the batch can go (16 MiB each by default) makes the first batches wait
//! for most of a shuffle window. For an uncompressed `binary` chunk with page checksums (the
//! format's image columns), a sparse read fetches the chunk's buffer table and offsets, then
//! only the 64 KiB pages that hold the rows asked for, each verified against its page
//! checksum, in two rounds of requests for all the chunks of a batch at once. The chunk built
//! this way serves those rows only (its other bytes are zeros and are never read); with a
//! node cache, the whole chunk is meanwhile read into the cache on a background thread, and
//! later batches use it from there.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::chunk::{buffer_layout, ChunkBytes, Codec};
use crate::dataset::ChunkKey;
use crate::decode::ColumnChunk;
use crate::error::{Error, Location, Result};
use crate::format::PAGE_LEN;
use crate::schema::DataType;
use crate::shard::ShardReader;
use crate::storage::cache::{Filler, Slot};
use crate::Dataset;
use memmap2::MmapMut;

/// The chunks being read into the node cache, by dataset, and the process that reads them.
type Filling = (u32, HashSet<(usize, ChunkKey)>);

/// A chunk read for some of its rows only.
pub struct SparseChunk {
    pub chunk: Arc<ColumnChunk>,
    /// Rows (within the row group) whose bytes are there and verified.
    pub rows: BTreeSet<usize>,
}

/// Bytes read first from a chunk, for its buffer table and offsets: enough for the offsets of
/// `rows` rows in one request, in whole pages.
fn head_guess(rows: u64, stored_len: u64) -> u64 {
    let want = 4096 + 8 * (rows + 2);
    (want.div_ceil(PAGE_LEN as u64) * PAGE_LEN as u64).min(stored_len)
}

impl ShardReader {
    /// Can chunk `(g, c)` be read sparsely (uncompressed top-level binary, page checksums)?
    pub(crate) fn sparse_ok(&self, g: usize, c: usize) -> bool {
        let m = &self.footer.row_groups[g].columns[c];
        m.codec == Codec::None
            && m.page_xxh3.is_some()
            && matches!(self.footer.schema.fields[c].dtype, DataType::Binary)
    }

    /// The XXH3-64 of page `p` of chunk `(g, c)`, from the footer.
    fn page_hash(&self, g: usize, c: usize, p: usize) -> u64 {
        let h = self.footer.row_groups[g].columns[c]
            .page_xxh3
            .as_ref()
            .unwrap();
        u64::from_le_bytes(h[8 * p..8 * p + 8].try_into().unwrap())
    }

    /// Copies `bytes` (file offsets `at..`, whole pages of chunk `(g, c)`) into `buf` (the
    /// chunk's bytes), verifying each page.
    fn put_pages(&self, g: usize, c: usize, buf: &mut [u8], at: u64, bytes: &[u8]) -> Result<()> {
        let m = &self.footer.row_groups[g].columns[c];
        let start = (at - m.offset) as usize;
        buf[start..start + bytes.len()].copy_from_slice(bytes);
        let (first, end) = (start / PAGE_LEN, start + bytes.len());
        for p in first..end.div_ceil(PAGE_LEN) {
            let (a, b) = (p * PAGE_LEN, ((p + 1) * PAGE_LEN).min(buf.len()));
            if xxhash_rust::xxh3::xxh3_64(&buf[a..b]) != self.page_hash(g, c, p) {
                let name = &self.footer.schema.fields[c].name;
                return Err(Error::corrupt(
                    Location::chunk(&self.path, g, name),
                    format!("checksum mismatch in page {p} (bytes {a}..{b} of the chunk)"),
                ));
            }
        }
        Ok(())
    }
}

/// One chunk being read sparsely.
struct Work<'a> {
    key: ChunkKey,
    reader: &'a ShardReader,
    name: String,
    rows: BTreeSet<usize>,
    /// The chunk's bytes, in anonymous memory: zero pages cost nothing until written.
    buf: MmapMut,
    /// Bytes of the chunk read so far from its start.
    head: u64,
    failed: Option<Error>,
}

impl Dataset {
    /// Reads chunks for some of their rows only (see the module doc); `wanted` are chunk keys
    /// and rows within their row group. For a chunk that cannot be read so, the error says so
    /// (callers only ask for chunks that `sparse_candidate` accepted).
    pub fn read_sparse(&self, wanted: &[(ChunkKey, Vec<usize>)]) -> Vec<Result<SparseChunk>> {
        let Some(dir) = self.remote_dir() else {
            return wanted
                .iter()
                .map(|_| {
                    Err(Error::InvalidArgument(
                        "not a dataset on object storage".into(),
                    ))
                })
                .collect();
        };
        let mut work: Vec<Work> = Vec::with_capacity(wanted.len());
        let mut out: Vec<Option<Result<SparseChunk>>> = (0..wanted.len()).map(|_| None).collect();
        let mut index = Vec::with_capacity(wanted.len());
        for (i, (key, rows)) in wanted.iter().enumerate() {
            match self.shard(key.0) {
                Ok(r) if r.sparse_ok(key.1, key.2) => {
                    let m = &r.footer.row_groups[key.1].columns[key.2];
                    let n = r.footer.row_groups[key.1].num_rows;
                    let buf = match MmapMut::map_anon(m.stored_len as usize) {
                        Ok(b) => b,
                        Err(e) => {
                            out[i] = Some(Err(Error::io(&r.path, e)));
                            continue;
                        }
                    };
                    work.push(Work {
                        key: *key,
                        reader: r,
                        name: self.shard_name(key.0).to_string(),
                        rows: rows.iter().copied().collect(),
                        buf,
                        head: head_guess(n, m.stored_len),
                        failed: None,
                    });
                    index.push(i);
                }
                Ok(_) => {
                    out[i] = Some(Err(Error::InvalidArgument(
                        "not a chunk that can be read sparsely".into(),
                    )))
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        // Round 1: each chunk's first pages (buffer table and offsets). Every batch that
        // reads a chunk before it is in the node cache needs them: they are read once and
        // shared, through the node cache by the node's processes and in memory by this one.
        let mut mine = Vec::new();
        let mut later = Vec::new();
        for (k, w) in work.iter_mut().enumerate() {
            match self.known_head(w) {
                Head::Known => {}
                Head::Mine(filler) => mine.push((k, filler)),
                Head::Later(path) => later.push((k, path)),
            }
        }
        self.read_heads(&dir, &mut work, mine);
        // Those another thread or process was reading: from the node cache now, else here.
        let mut again = Vec::new();
        if let Some(cache) = self.node_cache() {
            for (k, path) in later {
                let w = &mut work[k];
                match cache.wait(path) {
                    Ok(Ok((_, map))) if take_head(w, &map) => {
                        self.sparse_heads.put(w.key, Arc::from(&map[..]));
                    }
                    Ok(Ok(_)) => {
                        cache.remove(&head_key(w.reader, w.key.1, w.key.2));
                        again.push((k, None));
                    }
                    Ok(Err(filler)) => again.push((k, Some(filler))),
                    Err(_) => again.push((k, None)),
                }
            }
        }
        self.read_heads(&dir, &mut work, again);
        // Round 2: the pages of the rows asked for, but those an earlier batch read (a page
        // often holds the end of one image and the start of the next).
        let mut pages: Vec<Vec<Range<u64>>> = Vec::with_capacity(work.len());
        let mut fetched: Vec<Vec<usize>> = Vec::with_capacity(work.len());
        for w in &mut work {
            let m = &w.reader.footer.row_groups[w.key.1].columns[w.key.2];
            let spans = match &w.failed {
                Some(_) => None,
                None => value_spans(w),
            };
            let Some(spans) = spans else {
                pages.push(vec![]);
                fetched.push(vec![]);
                continue;
            };
            let mut wanted_pages = BTreeSet::new();
            for s in spans.iter().filter(|s| s.end > s.start) {
                for p in s.start / PAGE_LEN..s.end.div_ceil(PAGE_LEN) {
                    if ((p * PAGE_LEN) as u64) >= w.head {
                        wanted_pages.insert(p);
                    }
                }
            }
            wanted_pages.retain(|&p| match self.sparse_pages.get(&(w.key, p)) {
                Some(page) if (p * PAGE_LEN + page.len()) <= w.buf.len() => {
                    w.buf[p * PAGE_LEN..p * PAGE_LEN + page.len()].copy_from_slice(&page);
                    false
                }
                _ => true,
            });
            fetched.push(wanted_pages.iter().copied().collect());
            let mut ranges: Vec<Range<u64>> = Vec::new();
            for p in wanted_pages {
                let a = m.offset + (p * PAGE_LEN) as u64;
                let b = m.offset + (((p + 1) * PAGE_LEN) as u64).min(m.stored_len);
                match ranges.last_mut() {
                    Some(last) if last.end == a => last.end = b,
                    _ => ranges.push(a..b),
                }
            }
            pages.push(ranges);
        }
        fetch_into(&dir, &mut work, pages);
        for (w, fetched) in work.iter().zip(fetched) {
            if w.failed.is_some() {
                continue;
            }
            for p in fetched {
                let page = &w.buf[p * PAGE_LEN..((p + 1) * PAGE_LEN).min(w.buf.len())];
                self.sparse_pages.put((w.key, p), Arc::from(page));
            }
        }
        for (w, i) in work.into_iter().zip(index) {
            out[i] = Some(match w.failed {
                Some(e) => Err(e),
                None => {
                    let rows = w.rows.clone();
                    let reader = w.reader;
                    let key = w.key;
                    let field = &reader.footer.schema.fields[key.2];
                    let n = reader.footer.row_groups[key.1].num_rows as usize;
                    w.buf
                        .make_read_only()
                        .map_err(|e| Error::io(&reader.path, e))
                        .and_then(|map| {
                            ColumnChunk::parse(
                                ChunkBytes::Anon(Arc::new(map)),
                                &field.dtype,
                                field.nullable,
                                n,
                            )
                            .map_err(|e| {
                                Error::corrupt(Location::chunk(&reader.path, key.1, &field.name), e)
                            })
                            .map(|chunk| SparseChunk {
                                chunk: Arc::new(chunk),
                                rows,
                            })
                        })
                }
            });
        }
        out.into_iter()
            .map(|o| o.expect("every chunk is answered"))
            .collect()
    }

    /// Copies chunk `w`'s first pages into its buffer if this process or the node cache has
    /// them; else says who reads them.
    fn known_head(&self, w: &mut Work) -> Head {
        if let Some(head) = self.sparse_heads.get(&w.key) {
            if take_head(w, &head) {
                return Head::Known;
            }
            self.sparse_heads.remove(&w.key);
        }
        let Some(cache) = self.node_cache() else {
            return Head::Mine(None);
        };
        let key = head_key(w.reader, w.key.1, w.key.2);
        match cache.lock(&key) {
            Ok(Slot::Hit((_, map))) if take_head(w, &map) => {
                self.sparse_heads.put(w.key, Arc::from(&map[..]));
                Head::Known
            }
            Ok(Slot::Hit(_)) => {
                cache.remove(&key); // damaged: read again
                Head::Mine(None)
            }
            Ok(Slot::Fill(filler)) => Head::Mine(Some(filler)),
            Ok(Slot::Busy(path)) => Head::Later(path),
            Err(_) => Head::Mine(None),
        }
    }

    /// Reads the first pages of chunks `which` (indices into `work`): a guess first, then
    /// the rest of the offsets where the guess fell short; keeps them for later batches.
    fn read_heads(
        &self,
        dir: &crate::storage::RemoteDir,
        work: &mut [Work],
        which: Vec<(usize, Option<Filler>)>,
    ) {
        if which.is_empty() {
            return;
        }
        let offset = |w: &Work| w.reader.footer.row_groups[w.key.1].columns[w.key.2].offset;
        let mut ranges: Vec<Vec<Range<u64>>> = vec![vec![]; work.len()];
        for (k, _) in &which {
            let (w, off) = (&work[*k], offset(&work[*k]));
            ranges[*k] = std::iter::once(off..off + w.head).collect();
        }
        fetch_into(dir, work, ranges);
        let mut more: Vec<Vec<Range<u64>>> = vec![vec![]; work.len()];
        for (k, _) in &which {
            let w = &mut work[*k];
            let need = match (&w.failed, buffer_layout(&w.buf)) {
                (None, Ok(layout)) => layout.last().map_or(0, |(r, _)| r.start as u64),
                (None, Err(e)) => {
                    let name = &w.reader.footer.schema.fields[w.key.2].name;
                    w.failed = Some(Error::corrupt(
                        Location::chunk(&w.reader.path, w.key.1, name),
                        e,
                    ));
                    0
                }
                _ => 0,
            };
            if need > w.head {
                let end =
                    (need.div_ceil(PAGE_LEN as u64) * PAGE_LEN as u64).min(w.buf.len() as u64);
                more[*k] = std::iter::once(offset(w) + w.head..offset(w) + end).collect();
                w.head = end;
            }
        }
        fetch_into(dir, work, more);
        for (k, filler) in which {
            let w = &work[k];
            if w.failed.is_some() {
                continue; // dropping the filler lets another process try
            }
            let head = &w.buf[..w.head as usize];
            self.sparse_heads.put(w.key, Arc::from(head));
            if let (Some(f), Some(cache)) = (filler, self.node_cache()) {
                let _ = cache.fill(f, head);
            }
        }
    }

    /// Reads `keys` whole into the node cache on a background thread (once per key at a time),
    /// so that later batches find them there.
    pub fn fill_in_background(self: &Arc<Self>, keys: Vec<ChunkKey>) {
        static FILLING: Mutex<Option<Filling>> = Mutex::new(None);
        let id = Arc::as_ptr(self) as usize;
        let pid = std::process::id();
        let todo: Vec<ChunkKey> = {
            let mut f = FILLING.lock().unwrap_or_else(|e| e.into_inner());
            if f.as_ref().is_none_or(|(p, _)| *p != pid) {
                *f = Some((pid, HashSet::new())); // set by the parent of a forked process
            }
            let set = &mut f.as_mut().unwrap().1;
            keys.into_iter().filter(|k| set.insert((id, *k))).collect()
        };
        if todo.is_empty() {
            return;
        }
        let ds = self.clone();
        let keys = todo.clone();
        let spawned = std::thread::Builder::new()
            .name("pixmo-fill".into())
            .spawn(move || {
                for (k, res) in todo.iter().zip(ds.read_chunks(&todo)) {
                    // Later batches read the whole chunk: its first pages are not needed in
                    // memory. (The node cache's copy stays, for a batch that chose to read
                    // the chunk sparsely a moment before: it is evicted as any entry is.)
                    if res.is_ok() {
                        ds.sparse_heads.remove(k);
                        ds.sparse_pages.remove_if(|(key, _)| key == k);
                    }
                }
                let mut f = FILLING.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((p, set)) = f.as_mut() {
                    if *p == std::process::id() {
                        for k in &todo {
                            set.remove(&(id, *k));
                        }
                    }
                }
            });
        if spawned.is_err() {
            // No thread to be had: the chunks stay sparse until a batch reads them whole.
            let mut f = FILLING.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, set)) = f.as_mut() {
                for k in &keys {
                    set.remove(&(id, *k));
                }
            }
        }
    }

    /// Should chunk `key` of this dataset be read sparsely for a batch? Only image chunks of
    /// a dataset on object storage, and only while they are not in the node cache.
    pub fn sparse_candidate(&self, key: ChunkKey) -> bool {
        if self.remote_dir().is_none() || self.in_memory(key) {
            return false;
        }
        match self.shard(key.0) {
            Ok(r) => r.sparse_ok(key.1, key.2) && !r.in_node_cache(key.1, key.2),
            Err(_) => false,
        }
    }
}

/// Who reads a chunk's first pages for a batch.
enum Head {
    /// They are in its buffer already (read by an earlier batch).
    Known,
    /// This batch, filling the node cache's entry for them when it holds its lock.
    Mine(Option<Filler>),
    /// Another process or thread is reading them into the node cache (this lock file).
    Later(PathBuf),
}

/// The node cache's key of a chunk's first pages (the chunk named as its cache entry is).
fn head_key(r: &ShardReader, g: usize, c: usize) -> String {
    let m = &r.footer.row_groups[g].columns[c];
    format!(
        "head\0{}\0{}\0{}\0{:08x}",
        r.path.display(),
        m.offset,
        m.stored_len,
        m.crc32c
    )
}

/// Copies `head` (a chunk's first pages, kept earlier) into `w`'s buffer, verifying each page
/// against the footer; false if it does not fit or is damaged.
fn take_head(w: &mut Work, head: &[u8]) -> bool {
    let (g, c) = (w.key.1, w.key.2);
    let off = w.reader.footer.row_groups[g].columns[c].offset;
    if head.is_empty() || head.len() > w.buf.len() {
        return false;
    }
    if w.reader.put_pages(g, c, &mut w.buf, off, head).is_err() {
        w.buf[..head.len()].fill(0);
        return false;
    }
    w.head = head.len() as u64;
    true
}

/// Where the values of `w.rows` lie in the chunk, from its offsets (read in round 1); the
/// chunk is parsed over `w.buf`, whose data are still zeros, and the buffer is given back.
fn value_spans(w: &mut Work) -> Option<Vec<Range<usize>>> {
    let field = &w.reader.footer.schema.fields[w.key.2];
    let n = w.reader.footer.row_groups[w.key.1].num_rows as usize;
    let placeholder = MmapMut::map_anon(1).ok()?;
    let buf = std::mem::replace(&mut w.buf, placeholder);
    let fail = |w: &mut Work, e: String| {
        w.failed = Some(Error::corrupt(
            Location::chunk(&w.reader.path, w.key.1, &field.name),
            e,
        ));
        None
    };
    let shared = match buf.make_read_only() {
        Ok(m) => Arc::new(m),
        Err(e) => return fail(w, e.to_string()),
    };
    let parsed = ColumnChunk::parse(
        ChunkBytes::Anon(shared.clone()),
        &field.dtype,
        field.nullable,
        n,
    );
    let spans: Option<Vec<Range<usize>>> = parsed.as_ref().ok().map(|chunk| {
        w.rows
            .iter()
            .filter(|&&r| r < n)
            .filter_map(|&r| chunk.var_value_range(r))
            .collect()
    });
    let err = parsed.err();
    // The parsed chunk is gone: this is the only reference to the bytes again.
    match Arc::try_unwrap(shared).map(|m| m.make_mut()) {
        Ok(Ok(m)) => w.buf = m,
        _ => return fail(w, "cannot write the chunk's memory again".into()),
    }
    match err {
        Some(e) => fail(w, e),
        None => spans,
    }
}

/// Fetches `ranges[k]` of every `work[k]` in one batch and copies them into the chunk
/// buffers, verifying their pages.
fn fetch_into(dir: &crate::storage::RemoteDir, work: &mut [Work], ranges: Vec<Vec<Range<u64>>>) {
    let mut by_object: BTreeMap<String, Vec<(usize, Range<u64>)>> = BTreeMap::new();
    for (k, (w, rs)) in work.iter().zip(ranges).enumerate() {
        if w.failed.is_some() {
            continue;
        }
        for r in rs {
            by_object.entry(w.name.clone()).or_default().push((k, r));
        }
    }
    if by_object.is_empty() {
        return;
    }
    let request: Vec<(String, Vec<Range<u64>>)> = by_object
        .iter()
        .map(|(n, v)| (n.clone(), v.iter().map(|(_, r)| r.clone()).collect()))
        .collect();
    match dir.get_ranges(&request) {
        Ok(got) => {
            for ((_, v), bytes) in by_object.iter().zip(got) {
                for ((k, r), b) in v.iter().zip(bytes) {
                    let w = &mut work[*k];
                    if w.failed.is_some() {
                        continue;
                    }
                    let (g, c) = (w.key.1, w.key.2);
                    if let Err(e) = w.reader.put_pages(g, c, &mut w.buf, r.start, &b) {
                        w.failed = Some(e);
                    }
                }
            }
        }
        Err(e) => {
            for w in work.iter_mut() {
                if w.failed.is_none() {
                    w.failed = Some(e.duplicate());
                }
            }
        }
    }
}
