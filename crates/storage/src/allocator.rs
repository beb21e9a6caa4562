//! Allocator tuning the engine wants from the process it runs in. The binaries install
//! mimalloc as the global allocator and call [`keep_freed_memory`] first thing in `main`.

/// Index of mimalloc's `purge_delay` option in v3's `mi_option_e` (`libmimalloc-sys`
/// names no constant for it; a test checks the index against the option's default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory stays with the allocator for a minute instead of one second. A compaction
/// frees the cached blocks of the tables it replaced while it warms the cache with its
/// outputs, so a write burst recycles the cache's memory every few seconds; behind a
/// one-second purge each cycle went back to the kernel and was faulted in again: 3.3 GiB
/// of minor faults during a 1 M-document load, against 0.01 GiB at a minute
/// (docs/benchmarks.md, Run 9).
///
/// # Safety
///
/// mimalloc's option setter is not thread-safe: call this before the process starts any
/// other thread.
pub unsafe fn keep_freed_memory() {
    // SAFETY: the caller guarantees no other thread exists; this sets an integer option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 60_000) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_index_is_mimallocs_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // v3 defaults purge_delay to 1000 ms; its neighbours default to 1 and 0, so a
        // wrong index shows here.
        // SAFETY: reads an integer option.
        let v = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(v, 1000);
    }
}
