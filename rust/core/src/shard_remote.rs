//! Shards on object storage: opening reads the file's first 64 bytes and its end (footer and
//! trailer) in ranged requests; a chunk is read with one ranged request (several chunks of a
//! shard in one batch, neighbours coalesced), verified whole when it arrives, and kept in the
//! node cache when there is one.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::chunk::ChunkBytes;
use crate::error::{Error, Location, Result};
use crate::format::{align_up, CHUNK_ALIGNMENT, TRAILER_LEN};
use crate::shard::{parse_layout, ShardReader, StoredChunks};
use crate::storage::cache::{Filler, Mapped, Slot};
use crate::storage::{NodeCache, RemoteDir};

/// Bytes read from a shard's end to find its footer in one request (most footers fit): a
/// 256th of the file, between 8 and 64 KiB.
fn tail_guess(len: u64) -> u64 {
    (len / 256).clamp(8 << 10, 64 << 10)
}

/// Where a shard on object storage is, and the node cache its chunks are kept in.
struct RemoteShard {
    dir: RemoteDir,
    name: String,
    cache: Option<Arc<NodeCache>>,
}

impl RemoteShard {
    fn url(&self) -> String {
        self.dir.url_of(&self.name)
    }
}

impl StoredChunks for RemoteShard {
    fn stored(
        &self,
        shard: &ShardReader,
        wanted: &[(usize, usize)],
        recheck: bool,
    ) -> Vec<Result<ChunkBytes>> {
        shard.remote_stored(self, wanted, recheck)
    }

    fn at_hand(&self, shard: &ShardReader, g: usize, c: usize) -> bool {
        self.cache
            .as_ref()
            .is_some_and(|cache| cache.contains(&shard.chunk_key(self, g, c)))
    }
}

impl ShardReader {
    /// Opens shard `name` of `dir`, `len` bytes long; `expect` is `(num_bytes, num_rows)` from
    /// the manifest, `tag` names the manifest (so cached footers of another write of the same
    /// dataset are never taken for this one's).
    pub fn open_remote(
        dir: &RemoteDir,
        name: &str,
        len: u64,
        expect: Option<(u64, u64)>,
        cache: Option<Arc<NodeCache>>,
        tag: u64,
    ) -> Result<Self> {
        let url = dir.url_of(name);
        let path = PathBuf::from(&url);
        let key = format!("tail\0{url}\0{len}\0{tag:x}");
        // The footer kept in the node cache, if any; a damaged entry is dropped and read again.
        let cached = cache
            .as_ref()
            .and_then(|c| c.get_bytes(&key))
            .and_then(|b| split_cached_tail(&b, len))
            .and_then(|(head, tail_start, tail)| {
                let parsed = parse_layout(&path, len, &head, &tail, tail_start, expect).ok();
                if parsed.is_none() {
                    cache.as_ref().unwrap().remove(&key);
                }
                parsed
            });
        let (footer, starts) = match cached {
            Some(parsed) => parsed,
            None => {
                let (head, tail_start, tail) = fetch_tail(dir, name, len)?;
                if let Some(c) = &cache {
                    let mut b = Vec::with_capacity(8 + head.len() + tail.len());
                    b.extend_from_slice(&tail_start.to_le_bytes());
                    b.extend_from_slice(&head);
                    b.extend_from_slice(&tail);
                    let _ = c.put_bytes(&key, &b);
                }
                parse_layout(&path, len, &head, &tail, tail_start, expect)?
            }
        };
        let remote = RemoteShard {
            dir: dir.clone(),
            name: name.to_string(),
            cache,
        };
        Ok(ShardReader::from_remote(
            path,
            Box::new(remote),
            len,
            footer,
            starts,
        ))
    }

    /// The stored bytes of chunks `wanted` (each verified: CRC and padding), from the node
    /// cache where they are there, else from the store in one batch. With `recheck`, bytes
    /// already verified by this process are verified again (`verify`).
    fn remote_stored(
        &self,
        r: &RemoteShard,
        wanted: &[(usize, usize)],
        recheck: bool,
    ) -> Vec<Result<ChunkBytes>> {
        let mut out: Vec<Option<Result<ChunkBytes>>> = (0..wanted.len()).map(|_| None).collect();
        let mut fetch: Vec<(usize, Option<Filler>)> = Vec::new();
        let mut busy = Vec::new();
        for (i, &(g, c)) in wanted.iter().enumerate() {
            let Some(cache) = &r.cache else {
                fetch.push((i, None));
                continue;
            };
            let key = self.chunk_key(r, g, c);
            match cache.lock(&key) {
                Ok(Slot::Hit(m)) => match self.accept(g, c, m, recheck) {
                    Some(b) => out[i] = Some(Ok(b)),
                    None => {
                        // A damaged entry: dropped, and read again from the store.
                        cache.remove(&key);
                        match cache.lock(&key) {
                            Ok(Slot::Fill(f)) => fetch.push((i, Some(f))),
                            _ => fetch.push((i, None)),
                        }
                    }
                },
                Ok(Slot::Fill(f)) => fetch.push((i, Some(f))),
                Ok(Slot::Busy(p)) => busy.push((i, p)),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        self.fetch_into(r, wanted, fetch, &mut out);
        for (i, path) in busy {
            let (g, c) = wanted[i];
            let cache = r.cache.as_ref().unwrap();
            match cache.wait(path) {
                Ok(Ok(m)) => {
                    if let Some(b) = self.accept(g, c, m, recheck) {
                        out[i] = Some(Ok(b));
                        continue;
                    }
                    cache.remove(&self.chunk_key(r, g, c));
                    self.fetch_into(r, wanted, vec![(i, None)], &mut out);
                }
                // The other process failed: read it here.
                Ok(Err(filler)) => self.fetch_into(r, wanted, vec![(i, Some(filler))], &mut out),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        out.into_iter()
            .map(|o| o.expect("every chunk is answered"))
            .collect()
    }

    fn chunk_key(&self, r: &RemoteShard, g: usize, c: usize) -> String {
        let m = &self.footer.row_groups[g].columns[c];
        format!(
            "chunk\0{}\0{}\0{}\0{:08x}",
            r.url(),
            m.offset,
            m.stored_len,
            m.crc32c
        )
    }

    /// A cached chunk, verified once per process (None if it is damaged).
    fn accept(&self, g: usize, c: usize, (file, map): Mapped, recheck: bool) -> Option<ChunkBytes> {
        let flag = self.verified_flag(g, c);
        if recheck || !flag.load(Ordering::Acquire) {
            self.check_bytes(g, c, &map).ok()?;
            flag.store(true, Ordering::Release);
        }
        let len = self.footer.row_groups[g].columns[c].stored_len as usize;
        Some(ChunkBytes::Mapped {
            map,
            start: 0,
            len,
            file,
        })
    }

    /// Reads the chunks `fetch` names (indices into `wanted`) in one batch of requests,
    /// verifies them, fills the cache entries this process holds, and answers them in `out`.
    fn fetch_into(
        &self,
        r: &RemoteShard,
        wanted: &[(usize, usize)],
        fetch: Vec<(usize, Option<Filler>)>,
        out: &mut [Option<Result<ChunkBytes>>],
    ) {
        if fetch.is_empty() {
            return;
        }
        let ranges = fetch
            .iter()
            .map(|&(i, _)| {
                let m = &self.footer.row_groups[wanted[i].0].columns[wanted[i].1];
                m.offset..m.offset + align_up(m.stored_len as usize, CHUNK_ALIGNMENT) as u64
            })
            .collect();
        let got = match r.dir.get_ranges(&[(r.name.clone(), ranges)]) {
            Ok(mut g) => g.pop().unwrap(),
            Err(e) => {
                for (i, _) in fetch {
                    out[i] = Some(Err(e.duplicate()));
                }
                return;
            }
        };
        for ((i, filler), bytes) in fetch.into_iter().zip(got) {
            let (g, c) = wanted[i];
            if let Err(e) = self.check_bytes(g, c, &bytes) {
                out[i] = Some(Err(e));
                continue;
            }
            self.verified_flag(g, c).store(true, Ordering::Release);
            let len = self.footer.row_groups[g].columns[c].stored_len as usize;
            let cached = match (filler, &r.cache) {
                (Some(f), Some(cache)) => cache.fill(f, &bytes).ok(),
                _ => None,
            };
            out[i] = Some(Ok(match cached {
                Some((file, map)) => ChunkBytes::Mapped {
                    map,
                    start: 0,
                    len,
                    file,
                },
                // No cache (or it could not be written: a full disk): kept in memory.
                None => ChunkBytes::Owned(Arc::new(bytes[..len].to_vec())),
            }));
        }
    }
}

/// `(head, tail_start, tail)` of a shard: its first 64 bytes and its end, with the footer.
fn fetch_tail(dir: &RemoteDir, name: &str, len: u64) -> Result<(Vec<u8>, u64, Vec<u8>)> {
    let loc = || Location::file(dir.url_of(name));
    let min = (CHUNK_ALIGNMENT + TRAILER_LEN) as u64;
    if len < min {
        return Err(Error::corrupt(
            loc(),
            format!("file of {len} bytes is too short to be a shard"),
        ));
    }
    let tail_len = len.min(tail_guess(len));
    let mut got = dir.get_ranges(&[(
        name.to_string(),
        vec![0..CHUNK_ALIGNMENT as u64, len - tail_len..len],
    )])?;
    let mut parts = got.pop().unwrap();
    let mut tail = parts.pop().unwrap().to_vec();
    let head = parts.pop().unwrap().to_vec();
    let mut tail_start = len - tail_len;
    let t = tail.len() - TRAILER_LEN;
    let footer_len = u64::from_le_bytes(tail[t..t + 8].try_into().unwrap());
    let need = footer_len.saturating_add(TRAILER_LEN as u64);
    if need > tail_len && need <= len - CHUNK_ALIGNMENT as u64 {
        // A large footer: read the rest of it.
        let start = len - need;
        let mut more = dir.get_ranges(&[(
            name.to_string(),
            std::iter::once(start..tail_start).collect(),
        )])?;
        let mut whole = more.pop().unwrap().pop().unwrap().to_vec();
        whole.extend_from_slice(&tail);
        tail = whole;
        tail_start = start;
    }
    Ok((head, tail_start, tail))
}

fn split_cached_tail(b: &[u8], len: u64) -> Option<(Vec<u8>, u64, Vec<u8>)> {
    if b.len() < 8 + CHUNK_ALIGNMENT {
        return None;
    }
    let start = u64::from_le_bytes(b[..8].try_into().unwrap());
    let tail = &b[8 + CHUNK_ALIGNMENT..];
    (start + tail.len() as u64 == len)
        .then(|| (b[8..8 + CHUNK_ALIGNMENT].to_vec(), start, tail.to_vec()))
}
