//! The allocator of provider components: a bump arena in the module's zero-initialised
//! memory, falling back to the system allocator when it is full.
//!
//! The host gives every call a fresh instance and throws it away afterwards, so nothing
//! allocated during a call needs to be freed for reuse: freeing is a no-op inside the arena.
//! What this buys is speed on the hot path. The standard allocator starts every fresh instance
//! by growing linear memory (`memory.grow`, a host call that maps pages) before the first
//! string can be lowered into the guest; the arena lives in memory that already exists when
//! the instance starts, so lowering the arguments of `sign` costs a few additions.
//!
//! Only active on `wasm32` with the `arena` feature (on by default). A provider that needs its
//! own global allocator turns the feature off.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use std::alloc::System;

/// Bytes of the arena. Part of the module's initial memory (zero pages, no data image).
const ARENA_SIZE: usize = 256 << 10;

#[repr(C, align(16))]
struct Arena {
    bytes: UnsafeCell<[u8; ARENA_SIZE]>,
    /// Offset of the first free byte.
    next: UnsafeCell<usize>,
}

// SAFETY: provider components are single-threaded (no threads in the contract, none on
// wasm32-unknown-unknown), so the arena is never accessed concurrently.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena {
    bytes: UnsafeCell::new([0; ARENA_SIZE]),
    next: UnsafeCell::new(0),
};

/// Bump allocation in [`ARENA`], then the system allocator.
pub struct BumpThenSystem;

impl BumpThenSystem {
    fn start() -> usize {
        ARENA.bytes.get() as usize
    }

    fn owns(ptr: *mut u8) -> bool {
        let p = ptr as usize;
        p >= Self::start() && p < Self::start() + ARENA_SIZE
    }
}

// SAFETY: every pointer handed out is either inside the arena, aligned as requested and not
// overlapping another live allocation (the offset only moves forward), or comes from
// `System`, to which it is returned.
unsafe impl GlobalAlloc for BumpThenSystem {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let start = Self::start();
        // SAFETY: single-threaded, see `Sync` above.
        let next = unsafe { &mut *ARENA.next.get() };
        let aligned = (start + *next + layout.align() - 1) & !(layout.align() - 1);
        match aligned.checked_add(layout.size()) {
            Some(end) if end <= start + ARENA_SIZE => {
                *next = end - start;
                aligned as *mut u8
            }
            // SAFETY: forwarding a valid layout.
            _ => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !Self::owns(ptr) {
            // SAFETY: the pointer came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = Self::start();
        // SAFETY: single-threaded, see `Sync` above.
        let next = unsafe { &mut *ARENA.next.get() };
        // The most recent arena allocation grows (or shrinks) in place when it fits.
        if Self::owns(ptr)
            && ptr as usize + layout.size() == start + *next
            && let Some(end) = (ptr as usize).checked_add(new_size)
            && end <= start + ARENA_SIZE
        {
            *next = end - start;
            return ptr;
        }
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as for `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both regions are valid for the smaller size and do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` was allocated by this allocator with `layout`.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[global_allocator]
static GLOBAL: BumpThenSystem = BumpThenSystem;
