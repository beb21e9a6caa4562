//! Allocator tuning the engine wants from the process it runs in. The binaries install
//! mimalloc as the global allocator and call [`keep_freed_memory`] first thing in `main`.

/// Index of mimalloc's `purge_delay` option in v3's `mi_option_e` (`libmimalloc-sys`
/// names no constant for it; a test checks the index against the option's default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory stays with the allocator: it is reused, never handed back to the kernel.
///
/// mimalloc returns ("purges") freed memory after a delay, one second by default, with
/// `madvise` calls made from inside its allocation and free calls (it has no thread of its
/// own), so in a server they land on the threads serving requests. A compaction frees the cached blocks of the tables it replaced
/// while it warms the cache with its outputs, so a write burst recycles hundreds of MiB:
/// - behind a one-second purge each cycle went back to the kernel and was faulted in
///   again: 3.3 GiB of minor faults during a 1 M-document load, against 0.01 GiB at a
///   minute (docs/benchmarks.md, Run 9);
/// - behind a one-minute purge the load's ~780 MiB went back a minute after it, in the
///   middle of whatever came next. One client's 75 s A-mix cell started right after a
///   load ran at 3,649 ops/s (read p99 1.66 ms), and at 6,121 (0.31 ms) with no purge
///   (Run 11).
///
/// What the engine holds is bounded by its configuration (the block cache, at most five
/// memtables, compaction and sort buffers), so the high-water mark is too; a database
/// keeping it is what PostgreSQL does with `shared_buffers`. An operator who wants memory
/// back sets `MIMALLOC_PURGE_DELAY` (milliseconds), which this then leaves alone.
///
/// # Safety
///
/// mimalloc's option setter is not thread-safe: call this before the process starts any
/// other thread.
pub unsafe fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: the caller guarantees no other thread exists; this sets an integer option.
    // A negative delay never purges.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
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
