//! The native module's allocator: blocks of 1 MiB and more from mimalloc, smaller ones from the
//! system's malloc.
//!
//! A decode allocates megabytes of planes and pixels per image. glibc's malloc hands such
//! blocks back to the system when they are freed and page-faults them in again for the next
//! image, which cost 10-25 % of a decode (medians of six interleaved runs, 1.69 MP photos:
//! full decode 121 -> 139 images per CPU-second, Molmo exact 31.7 -> 40.0, with mimalloc for
//! everything). mimalloc keeps them for reuse. For everything else the system allocator was as
//! fast or faster, and mimalloc for all sizes raised a full scan's peak memory from 4 to 32 MB.

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
