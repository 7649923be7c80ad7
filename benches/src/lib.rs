//! Shared helpers for the criterion benches in `benches/`.
//!
//! [`CountingAlloc`] wraps the system allocator and counts live and peak
//! bytes, so a bench can report a planner's working set per record. A bench
//! binary opts in with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: reclaim_benches::CountingAlloc = reclaim_benches::CountingAlloc::new();
//! ```
//!
//! and measures with [`CountingAlloc::measure`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A global allocator that counts live bytes and the peak since the last
/// [`CountingAlloc::reset_peak`].
pub struct CountingAlloc {
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl CountingAlloc {
    /// A counter with nothing allocated.
    pub const fn new() -> Self {
        Self {
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Bytes currently allocated.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Sets the peak to the current live bytes.
    pub fn reset_peak(&self) {
        self.peak.store(self.live(), Ordering::Relaxed);
    }

    /// Runs `f` and returns its result with the peak number of bytes
    /// allocated during the call on top of what was live before it.
    pub fn measure<T>(&self, f: impl FnOnce() -> T) -> (T, usize) {
        let before = self.live();
        self.reset_peak();
        let out = f();
        let peak = self.peak.load(Ordering::Relaxed);
        (out, peak.saturating_sub(before))
    }
}

impl Default for CountingAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are only statistics and never influence the allocation itself.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            self.grow(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        self.live.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            self.live.fetch_sub(layout.size(), Ordering::Relaxed);
            self.grow(new_size);
        }
        new
    }
}

impl CountingAlloc {
    fn grow(&self, bytes: usize) {
        let live = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(live, Ordering::Relaxed);
    }
}
