//! Background compaction runs at a lower CPU priority than the threads serving requests.
//!
//! A compaction is long and CPU-bound; a request is short and waits for nothing but the
//! CPU. At equal priority the scheduler may let a compaction finish its time slice before
//! a woken request thread runs, and the request's latency takes the hit. RocksDB lowers
//! its compaction pool the same way (`Env::LowerThreadPoolCPUPriority`). Compaction does
//! not starve: when writers get ahead of it, L0 fills up, they stall, and the CPU is its.

/// Gives the calling thread nice value `nice` (`Options::compaction_nice`; 0 leaves it
/// alone). Best effort: where the platform has no per-thread nice value, or the call
/// fails, the thread keeps the normal priority (only latency under load differs).
pub(crate) fn lower_for_compaction(nice: i32) {
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority on our own thread id with
        // PRIO_PROCESS changes only this thread's nice value (Linux threads are tasks).
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
        };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower the compaction thread's priority"
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The nice value of the calling thread, from `/proc/thread-self/stat` (field 19).
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) may hold spaces; fields after it start past ')'.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn lowers_only_the_calling_thread() {
        let before = own_nice();
        let lowered = std::thread::spawn(|| {
            super::lower_for_compaction(19);
            own_nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, 19);
        assert_eq!(own_nice(), before, "the caller's own priority changed");
    }
}
