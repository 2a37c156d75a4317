//! The native module's allocator: blocks of 1 MiB and more from mimalloc, smaller ones from the
//! system's malloc.
//!
//! A decode allocates megabytes of planes and pixels per image. glibc's malloc hands such
//! blocks back to the system when they are freed and page-faults them in again for the next
//! image, which cost 10-25 % of a decode (medians of six interleaved runs, 1.69 MP photos:
//! full decode 121 -> 139 images per CPU-second, Molmo exact 31.7 -> 40.0, with mimalloc for
//! everything). mimalloc keeps them for reuse. For everything else the system allocator was as
//! fast or faster, and mimalloc for all sizes raised a full scan's peak memory from 4 to 32 MB.
//!
//! mimalloc (v3) gives freed memory back to the system ("purges" it) 1 s after it is freed. A
//! stream frees and allocates blocks of megabytes continuously, but a freed block is not
//! always taken again within a second, and a purge takes every free block at once, so the
//! kernel zeroed the same pages again and again: 41 % of Molmo's exact preprocessing was the
//! kernel clearing pages (`perf`), 35-57 CPU ms per PixMo image on 2 threads against 22-29
//! with a 10 s delay. The delay is therefore 10 s: memory a stream stopped using goes back to
//! the system that long after. `MIMALLOC_PURGE_DELAY` in the environment still decides.

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// From this size up, blocks come from mimalloc.
const LARGE: usize = 1 << 20;

pub struct Split;

// SAFETY: every block is freed (or resized) by the allocator that made it, which the size in
// its layout tells, since Rust passes the layout a block was allocated (or last resized) with.
unsafe impl GlobalAlloc for Split {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE {
            MiMalloc.alloc(layout)
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE {
            MiMalloc.alloc_zeroed(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= LARGE {
            MiMalloc.dealloc(ptr, layout)
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (was_large, is_large) = (layout.size() >= LARGE, new_size >= LARGE);
        match (was_large, is_large) {
            (true, true) => MiMalloc.realloc(ptr, layout, new_size),
            (false, false) => System.realloc(ptr, layout, new_size),
            _ => {
                // Across the threshold: a block of the other allocator, and a copy.
                // SAFETY: `new_size` with the old alignment is a valid layout (the caller's
                // contract for `realloc`).
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

/// mimalloc's option `purge_delay` (its enum's 16th entry; the crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc's purge delay, ms (see the module's doc).
pub const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Sets mimalloc's options where the environment does not (see the module's doc). Call once,
/// before the module starts threads.
pub fn configure() {
    // SAFETY: called from the module's initialisation, which the import lock serialises,
    // before any thread of ours exists; the option index is within mimalloc's table.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_the_option_we_set() {
        // Index 15 must be mimalloc's `purge_delay`: its default is 1000 ms unless set.
        // SAFETY: reading and setting options; no other thread of this test uses them.
        unsafe {
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
                assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
            }
            configure();
            let want = std::env::var("MIMALLOC_PURGE_DELAY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(PURGE_DELAY_MS);
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), want);
        }
    }
}
