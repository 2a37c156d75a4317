//! Memory for a batch's gathered Molmo crops ([`crate::images::MolmoBatch`]), reused batch
//! after batch from a [`CropsPool`]: on the heap, or (for a DataLoader worker) in an anonymous
//! shared-memory file of its own that the batch crosses to the main process in, uncopied.
//!
//! A buffer of tens of MB made anew for every batch is fresh pages that the kernel zeroes
//! (5-7 % of the read threads' time for uint8 crops); a pooled one is already mapped.
//!
//! A shared block ([`SharedBlock`], Linux `memfd`) follows the protocol of
//! `pixmo_stream._transport`: its first [`HEADER`] bytes count the times it was sent
//! (little-endian u64 at 0, counted by the sender: [`SharedBlock::mark_sent`]) and returned
//! (u64 at 8, counted by each receiving process when its last array over the block is gone);
//! the values follow. A block is reused once its batch is dropped here and the counts agree.

use std::ops::Range;
use std::sync::Mutex;

use pixmo_stream_image as img;

/// Bytes before a shared block's values: the sent and returned counts, then padding to a
/// cache line (the values' alignment).
pub const HEADER: usize = 64;

/// Where a stage that gathers crops puts each batch's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gather {
    /// Not gathered: each row's crops are a buffer of its own.
    Off,
    /// In memory of this process.
    Heap,
    /// In shared memory (falls back to the heap where that cannot be made).
    Shared,
}

/// A batch's crops: float32 or uint8 values.
#[derive(Debug)]
pub enum CropsMemory {
    Heap(img::Crops),
    Shared(SharedBlock),
}

impl CropsMemory {
    pub fn is_float(&self) -> bool {
        match self {
            CropsMemory::Heap(c) => matches!(c, img::Crops::F32(_)),
            CropsMemory::Shared(b) => b.float,
        }
    }

    fn empty() -> Self {
        CropsMemory::Heap(img::Crops::U8(Vec::new()))
    }

    /// The values' bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            CropsMemory::Heap(img::Crops::F32(v)) => {
                // SAFETY: any f32 is 4 initialised bytes; the slice covers `v` exactly.
                unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), 4 * v.len()) }
            }
            CropsMemory::Heap(img::Crops::U8(v)) => v,
            CropsMemory::Shared(b) => &b.map[HEADER..HEADER + b.value_bytes()],
        }
    }

    /// Values `range` as the destination of crops.
    pub fn out(&mut self, range: Range<usize>) -> img::CropsOut<'_> {
        match self {
            CropsMemory::Heap(img::Crops::F32(v)) => img::CropsOut::F32(&mut v[range]),
            CropsMemory::Heap(img::Crops::U8(v)) => img::CropsOut::U8(&mut v[range]),
            CropsMemory::Shared(b) => {
                let n = b.value_bytes();
                let bytes = &mut b.map[HEADER..HEADER + n];
                if b.float {
                    // SAFETY: the mapping is page-aligned and HEADER a multiple of 4, so the
                    // bytes are aligned for f32, and any 4 bytes are a valid f32; the slice
                    // borrows the mapping mutably for its lifetime.
                    let values: &mut [f32] =
                        unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast(), n / 4) };
                    img::CropsOut::F32(&mut values[range])
                } else {
                    img::CropsOut::U8(&mut bytes[range])
                }
            }
        }
    }

    /// The shared block the values lie in, if any.
    pub fn shared(&self) -> Option<&SharedBlock> {
        match self {
            CropsMemory::Shared(b) => Some(b),
            CropsMemory::Heap(_) => None,
        }
    }
}

/// An anonymous shared-memory file, mapped here (see the module's doc).
#[derive(Debug)]
pub struct SharedBlock {
    file: std::fs::File,
    map: memmap2::MmapMut,
    float: bool,
    /// Values in use.
    len: usize,
}

impl SharedBlock {
    #[cfg(target_os = "linux")]
    fn new(value_bytes: usize) -> std::io::Result<SharedBlock> {
        use std::os::fd::FromRawFd;

        let page = 4096;
        let size = (HEADER + value_bytes).div_ceil(page) * page;
        // SAFETY: a NUL-terminated name and valid flags; the fd is checked before use.
        let fd = unsafe { libc::memfd_create(c"pixmo-stream-batch".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new file descriptor that nothing else owns.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.set_len(size as u64)?;
        // SAFETY: the file is ours; other processes map it only through the fd this block
        // sends, and write only its returned count (see the module's doc).
        let map = unsafe { memmap2::MmapMut::map_mut(&file)? };
        Ok(SharedBlock {
            file,
            map,
            float: false,
            len: 0,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn new(_value_bytes: usize) -> std::io::Result<SharedBlock> {
        Err(std::io::Error::other(
            "anonymous shared memory needs Linux's memfd",
        ))
    }

    fn value_bytes(&self) -> usize {
        self.len * if self.float { 4 } else { 1 }
    }

    fn capacity(&self) -> usize {
        self.map.len() - HEADER
    }

    fn count(&self, at: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: `at` is 0 or 8, inside the header of a page-aligned mapping that lives as
        // long as `self`; the count is only ever accessed as a whole aligned u64.
        unsafe {
            &*self
                .map
                .as_ptr()
                .add(at)
                .cast::<std::sync::atomic::AtomicU64>()
        }
    }

    /// Whether every process it was sent to has returned it.
    pub fn returned(&self) -> bool {
        use std::sync::atomic::Ordering::Acquire;
        self.count(0).load(Acquire) == self.count(8).load(Acquire)
    }

    /// Counts one more sending (done by whoever sends the file descriptor).
    pub fn mark_sent(&self) {
        self.count(0)
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The file descriptor (owned by the block).
    #[cfg(unix)]
    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }

    /// Where the mapping starts here (the header; the values at `HEADER` past it).
    pub fn address(&self) -> usize {
        self.map.as_ptr() as usize
    }

    /// Bytes a receiver maps: the header and the values in use, in whole pages.
    pub fn mapped_len(&self) -> usize {
        (HEADER + self.value_bytes()).div_ceil(4096) * 4096
    }
}

/// Batch buffers of a stage that gathers, kept for the next batches once their batches are
/// dropped.
#[derive(Debug, Default)]
pub struct CropsPool {
    idle: Mutex<Vec<CropsMemory>>,
}

impl CropsPool {
    /// Heap buffers kept beyond those in use: the consumer's batch and those read ahead are
    /// in use, so a few cover a stream's steady state.
    pub const IDLE: usize = 3;
    /// Shared blocks kept: most are still in flight to the main process (the DataLoader
    /// queues a few batches a worker), so more.
    pub const IDLE_SHARED: usize = 8;

    /// A buffer of `len` values (float32 or uint8), its contents whatever they were: an idle
    /// one large enough (for shared memory, returned by every receiver), else a new one
    /// (zeroed).
    pub fn take(&self, float: bool, len: usize, gather: Gather) -> CropsMemory {
        let bytes = len * if float { 4 } else { 1 };
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let fits = |m: &CropsMemory| match (m, gather) {
                (CropsMemory::Heap(img::Crops::F32(v)), Gather::Heap) => {
                    float && v.capacity() >= len
                }
                (CropsMemory::Heap(img::Crops::U8(v)), Gather::Heap) => {
                    !float && v.capacity() >= len
                }
                (CropsMemory::Shared(b), Gather::Shared) => b.capacity() >= bytes && b.returned(),
                _ => false,
            };
            idle.iter().position(fits).map(|i| idle.remove(i))
        };
        match reused {
            // (`resize` writes only values past the old length)
            Some(CropsMemory::Heap(img::Crops::F32(mut v))) => {
                v.resize(len, 0.0);
                CropsMemory::Heap(img::Crops::F32(v))
            }
            Some(CropsMemory::Heap(img::Crops::U8(mut v))) => {
                v.resize(len, 0);
                CropsMemory::Heap(img::Crops::U8(v))
            }
            Some(CropsMemory::Shared(mut b)) => {
                (b.float, b.len) = (float, len);
                CropsMemory::Shared(b)
            }
            None => match (gather, SharedBlock::new(bytes)) {
                (Gather::Shared, Ok(mut b)) => {
                    (b.float, b.len) = (float, len);
                    CropsMemory::Shared(b)
                }
                // (where shared memory cannot be made, the consumer copies from the heap)
                _ if float => CropsMemory::Heap(img::Crops::F32(vec![0.0; len])),
                _ => CropsMemory::Heap(img::Crops::U8(vec![0; len])),
            },
        }
    }

    /// Takes back a dropped batch's buffer; beyond the limits, drops the one least likely
    /// to be taken again (a shared block not yet returned before one that is, the oldest
    /// first).
    pub fn give(&self, memory: CropsMemory) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let shared = memory.shared().is_some();
        idle.push(memory);
        let of_kind = |m: &CropsMemory| m.shared().is_some() == shared;
        let limit = if shared {
            Self::IDLE_SHARED
        } else {
            Self::IDLE
        };
        if idle.iter().filter(|m| of_kind(m)).count() > limit {
            let busy = idle
                .iter()
                .position(|m| m.shared().is_some_and(|b| !b.returned()));
            let oldest = idle.iter().position(of_kind);
            if let Some(i) = busy.filter(|_| shared).or(oldest) {
                idle.remove(i);
            }
        }
    }

    /// Buffers idle now.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// `memory` back to `pool` (when the pool still exists), leaving `memory` empty.
pub(crate) fn give_back(pool: &std::sync::Weak<CropsPool>, memory: &mut CropsMemory) {
    if let Some(pool) = pool.upgrade() {
        pool.give(std::mem::replace(memory, CropsMemory::empty()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn start(m: &CropsMemory) -> *const u8 {
        m.bytes().as_ptr()
    }

    #[test]
    fn a_given_back_buffer_goes_to_the_next_of_its_type_that_fits() {
        let pool = Arc::new(CropsPool::default());
        let first = pool.take(false, 1000, Gather::Heap);
        let at = start(&first);
        pool.give(first);
        assert_eq!(pool.idle(), 1);
        // Not for float32, nor for more values than it holds.
        let (f, big) = (
            pool.take(true, 10, Gather::Heap),
            pool.take(false, 2000, Gather::Heap),
        );
        assert_ne!(start(&f), at);
        assert_ne!(start(&big), at);
        // A smaller uint8 batch gets it, at its own length.
        let small = pool.take(false, 600, Gather::Heap);
        assert_eq!((start(&small), small.bytes().len()), (at, 600));
        for m in [f, big, small] {
            pool.give(m);
        }
        assert_eq!(pool.idle(), 3);
        for len in [5, 6, 7, 8000] {
            let m = pool.take(false, len, Gather::Heap);
            pool.give(m);
            pool.give(CropsMemory::Heap(img::Crops::U8(vec![0; len])));
        }
        assert_eq!(pool.idle(), CropsPool::IDLE);
        // A batch outliving its pool frees its buffer.
        let mut orphan = pool.take(false, 5, Gather::Heap);
        let weak = Arc::downgrade(&pool);
        drop(pool);
        give_back(&weak, &mut orphan);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_shared_block_is_reused_only_once_every_receiver_returned_it() {
        use std::os::fd::{AsRawFd, FromRawFd};

        let pool = CropsPool::default();
        let mut block = pool.take(true, 300, Gather::Shared);
        let CropsMemory::Shared(b) = &block else {
            panic!("no shared memory: {block:?}")
        };
        assert_eq!(b.mapped_len(), 4096);
        assert_eq!(b.address() + HEADER, start(&block) as usize);
        let img::CropsOut::F32(values) = block.out(0..300) else {
            panic!("float32 crops")
        };
        values.fill(2.5);
        let b = block.shared().unwrap();
        // Another mapping of the same file (what a receiving process maps) sees the values.
        // SAFETY: a duplicate of the block's open fd.
        let file = unsafe { std::fs::File::from_raw_fd(libc::dup(b.fd())) };
        assert!(file.as_raw_fd() >= 0);
        // SAFETY: the file lives as long as the map; this test is its only other user.
        let mut other = unsafe { memmap2::MmapMut::map_mut(&file).unwrap() };
        assert_eq!(&other[HEADER..HEADER + 4], &2.5f32.to_le_bytes());
        b.mark_sent();
        assert_eq!(&other[0..8], &1u64.to_le_bytes());
        let at = start(&block);
        pool.give(block);
        // Sent and not returned: a new block, not this one.
        let second = pool.take(true, 300, Gather::Shared);
        assert_ne!(start(&second), at);
        pool.give(second);
        // The receiver returns it: reused, for uint8 values too.
        other[8..16].copy_from_slice(&1u64.to_le_bytes());
        let again = pool.take(false, 1000, Gather::Shared);
        assert_eq!((start(&again), again.bytes().len()), (at, 1000));
        assert!(!again.is_float());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn over_the_limit_a_block_still_in_flight_is_dropped_before_a_returned_one() {
        let pool = CropsPool::default();
        let blocks: Vec<_> = (0..=CropsPool::IDLE_SHARED)
            .map(|_| pool.take(false, 10, Gather::Shared))
            .collect();
        let returned = start(&blocks[0]);
        let in_flight = start(&blocks[1]);
        blocks[1].shared().unwrap().mark_sent();
        for b in blocks {
            pool.give(b);
        }
        assert_eq!(pool.idle(), CropsPool::IDLE_SHARED);
        let kept: Vec<_> = (0..CropsPool::IDLE_SHARED)
            .map(|_| pool.take(false, 10, Gather::Shared))
            .collect();
        assert!(kept.iter().any(|m| start(m) == returned));
        assert!(kept.iter().all(|m| start(m) != in_flight));
    }
}
