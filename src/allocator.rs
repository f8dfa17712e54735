//! Keeping freed tensor buffers in the process.
//!
//! A train step allocates and frees the same few hundred megabytes of activations and gradients
//! every step. glibc hands buffers above 128 KiB back to the kernel on `free` (and trims the
//! heap), so the next step pays a page fault and a page clear for every 4 KiB again: a tenth of
//! a ResNet-18 step on two cores. Taking every block from the heap and never trimming it makes
//! it reuse them: memory is not returned between steps, and the peak grows by a few percent at
//! most from the heap's fragmentation (ViT-S/16's 224-px step: 2,481 → 2,543 MB).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Tunes the C allocator for repeated large allocations (glibc only; elsewhere a no-op).
/// Call once at start-up, before the first tensor exists.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads allocate.
    unsafe {
        // Every block from the heap, none from fresh mappings: a mapping is faulted in and
        // cleared afresh on each use (with glibc's 32 MiB ceiling on the mapping threshold,
        // ResNet-50's 100 MB activations at 224 px still were: half of its step's system time).
        libc::mallopt(libc::M_MMAP_MAX, 0);
        // Never give the heap's free top back to the kernel between steps.
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        // Keep other threads' heaps too. Their arenas are built of 64 MiB mappings, and one
        // left entirely free is unmapped unless this pad exceeds what two such heaps hold: a
        // thread stepping half a batch (`train::loss_and_gradients`) then faulted its memory
        // in afresh every step (6× the page faults, that half a sixth slower). One arena for
        // all threads avoided that too, but the augmenting threads then queued on its lock.
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

/// Reads how much heap memory the process holds ([`Counting`] when it is the global allocator).
pub trait MemoryMeter {
    /// Bytes allocated and not yet freed.
    fn live(&self) -> usize;
    /// The most `live` has been since the last [`MemoryMeter::reset_peak`].
    fn peak(&self) -> usize;
    fn reset_peak(&self);
}

/// The system allocator, counting live and peak bytes: two atomic updates per allocation, too
/// few to show next to tensor work. Install it with `#[global_allocator]` to measure memory.
pub struct Counting {
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl Counting {
    pub const fn new() -> Self {
        Counting {
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    fn grew(&self, bytes: usize) {
        let live = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(live, Ordering::Relaxed);
    }

    fn shrank(&self, bytes: usize) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Default for Counting {
    fn default() -> Self {
        Counting::new()
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            self.grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            self.grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        self.shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `alloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            self.shrank(layout.size());
            self.grew(new_size);
        }
        new
    }
}

impl MemoryMeter for Counting {
    fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn reset_peak(&self) {
        self.peak.store(self.live(), Ordering::Relaxed);
    }
}
