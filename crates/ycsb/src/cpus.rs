//! Where the load generator and the databases run.
//!
//! YCSB drives a database from client machines of its own. On one host the harness
//! does the same with CPUs: its client threads get one half of the CPUs this process may
//! use, and both databases are started on the other half. Without the split, a
//! database's throughput also pays for its client library, and the two libraries differ
//! by about 2x (the `mongodb` driver spends 40–55 µs of CPU per point operation,
//! tokio-postgres 20–26 µs; docs/benchmarks.md). `--cpu-split off` runs everything on
//! every CPU, as Runs 1–6 did.

use std::ffi::OsStr;
use std::fmt;
use std::io;

use tokio::process::Command;

/// A set of CPU numbers, as `taskset -c` and `sched_setaffinity` take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(Vec<usize>);

impl CpuList {
    pub fn cpus(&self) -> &[usize] {
        &self.0
    }

    /// A command that runs `program` on these CPUs only, through util-linux's `taskset`.
    /// The CPU mask survives `exec` and `fork`, so it also holds for what `program`
    /// starts (`runuser` → `pg_ctl` → the postmaster → every backend).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("taskset");
        c.arg("--cpu-list").arg(self.to_string()).arg(program);
        c
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(|c| c.to_string()).collect();
        f.write_str(&list.join(","))
    }
}

/// The client's CPUs and the databases' CPUs; disjoint, neither empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSplit {
    pub client: CpuList,
    pub database: CpuList,
}

impl CpuSplit {
    /// Splits `allowed` in two halves, the databases getting the larger one when the
    /// count is odd. `None` with fewer than two CPUs.
    pub fn halves(allowed: &[usize]) -> Option<CpuSplit> {
        if allowed.len() < 2 {
            return None;
        }
        let (client, database) = allowed.split_at(allowed.len() / 2);
        Some(CpuSplit {
            client: CpuList(client.to_vec()),
            database: CpuList(database.to_vec()),
        })
    }
}

/// The CPUs the calling thread may run on.
pub fn allowed() -> io::Result<Vec<usize>> {
    // SAFETY: `cpu_set_t` is plain data for which all-zero is the empty set, and the
    // kernel writes at most `size_of::<cpu_set_t>()` bytes into it.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        set
    };
    // SAFETY: `CPU_ISSET` only reads the set; every index is below `CPU_SETSIZE`.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Restricts the calling thread, and every thread it starts afterwards, to `cpus`.
/// Called before the async runtime exists, so all of the harness's threads inherit it.
pub fn pin_current_thread(cpus: &CpuList) -> io::Result<()> {
    // SAFETY: as in `allowed`; `CPU_SET` writes inside the set for indices below
    // `CPU_SETSIZE`, which `allowed` guarantees for every listed CPU.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus.cpus() {
            if c >= libc::CPU_SETSIZE as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "CPU out of range",
                ));
            }
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_are_disjoint_and_cover_the_set() {
        assert_eq!(CpuSplit::halves(&[3]), None);
        let s = CpuSplit::halves(&[0, 1]).unwrap();
        assert_eq!(
            (s.client.to_string(), s.database.to_string()),
            ("0".into(), "1".into())
        );
        let s = CpuSplit::halves(&[0, 2, 4, 5, 7]).unwrap();
        assert_eq!(s.client.cpus(), &[0, 2]);
        assert_eq!(s.database.cpus(), &[4, 5, 7]);
    }

    #[tokio::test]
    async fn a_command_runs_on_the_listed_cpus_only() {
        let first = allowed().unwrap()[0];
        let list = CpuList(vec![first]);
        let out = list
            .command("cat")
            .arg("/proc/self/status")
            .output()
            .await
            .expect("taskset (util-linux) runs cat");
        assert!(out.status.success());
        let status = String::from_utf8_lossy(&out.stdout);
        let allowed_list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim);
        assert_eq!(allowed_list, Some(first.to_string().as_str()));
    }

    #[test]
    fn this_thread_can_be_pinned_to_a_cpu_it_may_use() {
        // A thread of its own, so the test runner's threads keep their mask.
        std::thread::spawn(|| {
            let all = allowed().unwrap();
            assert!(!all.is_empty());
            let first = CpuList(vec![all[0]]);
            pin_current_thread(&first).unwrap();
            assert_eq!(allowed().unwrap(), vec![all[0]]);
        })
        .join()
        .unwrap();
    }
}
