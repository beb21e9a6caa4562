//! The workloads and the settings of a run.

use std::time::Duration;

use crate::record::Shape;

/// An operation mix of the run phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mix {
    /// YCSB workload A: 50 % reads, 50 % updates by `_id`.
    A,
    /// YCSB workload B: 95 % reads, 5 % updates by `_id`.
    B,
    /// Like YCSB workload E but without inserts: 100 % range queries on the indexed
    /// `rank` (`rank BETWEEN x AND x+100 LIMIT 100`, full documents returned).
    E,
}

impl Mix {
    pub const ALL: [Mix; 3] = [Mix::A, Mix::B, Mix::E];

    /// Short label used in tables.
    pub fn label(self) -> &'static str {
        match self {
            Mix::A => "A 50/50 read/update",
            Mix::B => "B 95/5 read/update",
            Mix::E => "E range (100 docs)",
        }
    }

    /// Fraction of reads among the point operations (the rest are updates).
    pub fn read_fraction(self) -> f64 {
        match self {
            Mix::A => 0.5,
            Mix::B => 0.95,
            Mix::E => 0.0,
        }
    }

    pub fn parse(s: &str) -> Option<Mix> {
        match s.trim().to_ascii_uppercase().as_str() {
            "A" => Some(Mix::A),
            "B" => Some(Mix::B),
            "E" | "RANGE" => Some(Mix::E),
            _ => None,
        }
    }
}

/// How keys are chosen in the run phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    Uniform,
    Zipfian,
}

/// How the concurrent clients of a timed run execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientModel {
    /// YCSB's own model: one OS thread per client, each with a single-threaded runtime
    /// and a connection of its own, so a client's request, its wait and its reply run
    /// on that thread (what YCSB's synchronous Java drivers do). The default.
    #[default]
    Threads,
    /// Every client a task on one shared multi-threaded runtime, sharing one driver
    /// `Client` and its pool (the model of Runs 1-5).
    Tasks,
}

/// The transport both targets are reached over: the same on both sides, so a ratio
/// compares the databases and not their transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// TLS 1.3 on both (rustls on aws-lc-rs in both clients): Strongroom's default and
    /// what a managed service requires. The default.
    #[default]
    Tls,
    /// Plain TCP on both (Strongroom started with its explicit insecure flag).
    Plain,
}

/// What each database is given; both always get the same.
#[derive(Debug, Clone)]
pub struct Resources {
    /// MiB of cache: Strongroom's decrypted-block cache (`ycsb-server --block-cache-mb`)
    /// and PostgreSQL's `shared_buffers`. Both also have the OS page cache, which for
    /// Strongroom holds only ciphertext.
    pub cache_mb: usize,
    /// CPUs the database processes run on (`None`: every CPU, shared with the client).
    pub cpus: Option<crate::cpus::CpuList>,
}

impl Resources {
    /// A small cache on every CPU: what the harness's own tests use.
    pub fn small() -> Resources {
        Resources {
            cache_mb: 64,
            cpus: None,
        }
    }
}

/// The cache both databases get unless `--cache-mb` says otherwise: a quarter of the
/// host's memory, PostgreSQL's own starting point for `shared_buffers` ("a reasonable
/// starting value for shared_buffers is 25% of the memory in your system"), and never
/// less than 256 MiB.
pub fn default_cache_mb() -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .unwrap_or(0);
    (total_kib / 1024 / 4).max(256)
}

/// Width of the range query (`rank BETWEEN x AND x + RANGE_WIDTH`) and its limit.
pub const RANGE_WIDTH: i64 = 100;
pub const RANGE_LIMIT: i64 = 100;

/// Everything a target run needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub records: u64,
    pub shape: Shape,
    /// Documents per insert batch in the load phase (the same for every target).
    pub batch_size: usize,
    /// Concurrent loaders in the load phase.
    pub load_clients: usize,
    pub clients: Vec<usize>,
    pub mixes: Vec<Mix>,
    /// Measured time of each (mix, clients) run.
    pub duration: Duration,
    /// Unmeasured time before each run (connections warm, caches primed).
    pub warmup: Duration,
    pub distribution: Distribution,
    pub seed: u64,
    /// Print a progress line this often during the load phase.
    pub progress_every: Duration,
    /// How the benchmark clients of a timed run execute.
    pub client_model: ClientModel,
}

impl Settings {
    /// The settings the issue asks for: 1 M records, 1/8/32 clients, 30 s per run.
    pub fn full_scale() -> Settings {
        Settings {
            records: 1_000_000,
            shape: Shape::DEFAULT,
            batch_size: 100,
            load_clients: 4,
            clients: vec![1, 8, 32],
            mixes: Mix::ALL.to_vec(),
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(3),
            distribution: Distribution::Zipfian,
            seed: 0x5eed,
            progress_every: Duration::from_secs(10),
            client_model: ClientModel::default(),
        }
    }

    /// The biggest client count (connection pools are sized for it).
    pub fn max_clients(&self) -> usize {
        self.clients
            .iter()
            .copied()
            .chain(std::iter::once(self.load_clients))
            .max()
            .unwrap_or(1)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_have_the_ycsb_read_fractions() {
        assert_eq!(Mix::parse("a"), Some(Mix::A));
        assert_eq!(Mix::parse(" B "), Some(Mix::B));
        assert_eq!(Mix::parse("range"), Some(Mix::E));
        assert_eq!(Mix::parse("c"), None);
        assert_eq!(Mix::A.read_fraction(), 0.5);
        assert_eq!(Mix::B.read_fraction(), 0.95);
    }

    #[test]
    fn pools_are_sized_for_the_largest_client_count() {
        let mut s = Settings::full_scale();
        assert_eq!(s.max_clients(), 32);
        s.clients = vec![1];
        s.load_clients = 4;
        assert_eq!(s.max_clients(), 4);
    }
}
