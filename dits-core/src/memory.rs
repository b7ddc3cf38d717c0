//! How the allocator hands memory back, set once at the start of each Dits process.
//!
//! Dits moves media through buffers of a few hundred KiB to a few tens of MiB that are
//! freed and allocated again thousands of times per GB. glibc's defaults give those back to
//! the kernel on free (large blocks are `mmap`ed; the heap top is trimmed past 128 KiB), so
//! each new buffer costs fresh page faults and zeroed pages: on a push or clone of a
//! 248 MB clip that was most of the client's system time (`perf`: `clear_page_erms`).
//! Keeping freed memory for reuse trades a higher resting RSS (bounded by the peak, which
//! the transfer and add paths bound themselves) for not faulting the same memory in again.

/// Blocks up to this size come from the heap (reusable) rather than their own `mmap`;
/// glibc accepts at most 32 MiB here on 64-bit.
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of the heap is returned to the kernel only past this much.
const TRIM_THRESHOLD: i32 = 256 << 20;

/// Tells the allocator to keep freed memory for reuse; call first thing in `main`.
/// A no-op where the C library is not glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any other
    // thread exists, as glibc asks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
