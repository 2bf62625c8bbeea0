//! Giving freed heap back to the OS after a large execution.
//!
//! glibc keeps freed memory for reuse: after a 100,000-test execution the
//! host measured 200-240 MB RSS of which 50 MB was live (see
//! docs/BENCHMARKS.md, issue 13), so each later run started from the
//! retained high-water mark. `malloc_trim` hands the free pages back.

/// Executions with at least this many tests trim the heap when they end.
pub const TRIM_AFTER_TESTS: usize = 10_000;

/// Returns freed heap pages to the OS (glibc on Linux; elsewhere nothing),
/// on the blocking pool: it walks the whole heap.
pub async fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and works under glibc's own
        // allocator locks; it may be called from any thread at any time.
        let _ = tokio::task::spawn_blocking(|| unsafe { malloc_trim(0) }).await;
    }
}
