//! glibc malloc settings for a process that holds thousands of small, long-lived sessions.
//!
//! Measured with the load tool (docs/PERFORMANCE.md, "Memory per client"): with glibc's
//! defaults every thread that allocates gets an arena of its own (two runtime workers, the
//! blocking pool, the encoder threads), each arena keeps its freed pieces to itself, and the
//! threshold above which an allocation gets its own mapping rises for good after the first
//! large buffer is freed (a state file, a status reply of thousands of clients), so such
//! buffers then come out of the arenas and leave holes between sessions' allocations. One
//! arena and a fixed mapping threshold keep the resident set closer to what is actually
//! allocated (about 1 KiB less per client at 3200 clients).

/// Arenas: one. Steady state allocates nothing per chunk or send, so threads rarely meet at
/// the allocator; more arenas only spread free memory over more places.
const ARENAS: i32 = 1;
/// Allocations of this size or more get a mapping of their own and go back to the kernel
/// when freed (glibc's own starting value, kept fixed).
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Applies the settings; call before any thread starts. Environment variables that set the
/// same (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`) are left to win.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only changes allocator parameters; no thread allocates yet.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: as above.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        }
    }
}
