//! Side-by-side benchmark: this engine with AES-256-GCM vs the same engine with the null
//! cipher vs fjall 3, on fill-sequential, fill-random, read-random and range-scan.
//!
//! Run (release):
//! ```text
//! cargo bench -p storage --features bench-null-cipher --bench compare
//! BENCH_KEYS=200000 BENCH_VALUES=100 cargo bench -p storage --features bench-null-cipher --bench compare
//! ```
//! Durability for the fill workloads is buffered for every engine: no fsync per write
//! (`Durability::Buffered` here, fjall's default `PersistMode::Buffer` flush-to-OS per write).

use std::path::Path;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use storage::{CipherSuite, Direction, Durability, Engine, Options, RootKey};

const KEY_LEN: usize = 16;
const SCAN_LEN: usize = 100;

trait Db {
    fn put(&self, k: &[u8], v: &[u8]);
    fn get(&self, k: &[u8]) -> bool;
    /// Reads up to `n` entries from `start`; returns how many.
    fn scan(&self, start: &[u8], n: usize) -> usize;
    /// Makes everything readable from tables (memtable flushed).
    fn settle(&self);
}

struct Ours(Engine);

impl Db for Ours {
    fn put(&self, k: &[u8], v: &[u8]) {
        self.0.put(k, v, Durability::Buffered).expect("put");
    }
    fn get(&self, k: &[u8]) -> bool {
        self.0.get(k).expect("get").is_some()
    }
    fn scan(&self, start: &[u8], n: usize) -> usize {
        let mut c = 0;
        for r in self
            .0
            .iter(start.to_vec().., Direction::Forward)
            .expect("iter")
            .take(n)
        {
            std::hint::black_box(r.expect("scan item"));
            c += 1;
        }
        c
    }
    fn settle(&self) {
        self.0.flush().expect("flush");
    }
}

struct Fjall {
    _db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Db for Fjall {
    fn put(&self, k: &[u8], v: &[u8]) {
        self.ks.insert(k, v).expect("insert");
    }
    fn get(&self, k: &[u8]) -> bool {
        self.ks.get(k).expect("get").is_some()
    }
    fn scan(&self, start: &[u8], n: usize) -> usize {
        let mut c = 0;
        for g in self.ks.range(start.to_vec()..).take(n) {
            std::hint::black_box(g.into_inner().expect("scan item"));
            c += 1;
        }
        c
    }
    fn settle(&self) {
        self.ks.rotate_memtable_and_wait().expect("rotate memtable");
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Encrypted,
    Null,
    Fjall,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Encrypted => "strongroom aes-256-gcm",
            Kind::Null => "strongroom null-cipher",
            Kind::Fjall => "fjall 3",
        }
    }
}

const CACHE: usize = 64 << 20;

fn open(kind: Kind, dir: &Path) -> Box<dyn Db> {
    match kind {
        Kind::Encrypted | Kind::Null => {
            let opts = Options {
                cipher: if kind == Kind::Null {
                    CipherSuite::Null
                } else {
                    CipherSuite::Aes256Gcm
                },
                block_cache_bytes: CACHE,
                ..Options::default()
            };
            Box::new(Ours(
                Engine::open(dir, RootKey::from_bytes([9; 32]), opts).expect("open"),
            ))
        }
        Kind::Fjall => {
            let db = fjall::Database::builder(dir)
                .cache_size(CACHE as u64)
                .open()
                .expect("fjall open");
            let ks = db
                .keyspace("bench", fjall::KeyspaceCreateOptions::default)
                .expect("keyspace");
            Box::new(Fjall { _db: db, ks })
        }
    }
}

fn key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(b"user0000");
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

struct Row {
    workload: &'static str,
    value: usize,
    kind: Kind,
    ops: u64,
    secs: f64,
    bytes: u64,
}

fn main() {
    let n: u64 = std::env::var("BENCH_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let sizes: Vec<usize> = std::env::var("BENCH_VALUES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1024]);
    let kinds: Vec<Kind> = std::env::var("BENCH_ENGINES")
        .unwrap_or_else(|_| "enc,null,fjall".into())
        .split(',')
        .filter_map(|s| match s {
            "enc" => Some(Kind::Encrypted),
            "null" => Some(Kind::Null),
            "fjall" => Some(Kind::Fjall),
            _ => None,
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut order: Vec<u64> = (0..n).collect();
    order.shuffle(&mut rng);
    let reads: Vec<u64> = (0..n).map(|_| rng.random_range(0..n)).collect();
    let scans: Vec<u64> = (0..n / SCAN_LEN as u64)
        .map(|_| rng.random_range(0..n))
        .collect();
    let workloads =
        std::env::var("BENCH_WORKLOADS").unwrap_or_else(|_| "fillseq,fillrandom,read,scan".into());
    let want = |w: &str| workloads.split(',').any(|x| x == w);
    let mut rows: Vec<Row> = Vec::new();
    let base = std::env::var("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    eprintln!("keys={n} values={sizes:?} dir={}", base.display());
    let repeat: usize = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for &vs in &sizes {
        // Incompressible values (fjall compresses blocks with LZ4 by default).
        let mut pool = vec![0u8; vs + 4096];
        rng.fill(&mut pool[..]);
        let value = |i: u64| {
            let off = (i.wrapping_mul(2_654_435_761) % 4096) as usize;
            &pool[off..off + vs]
        };
        // Engines are interleaved round by round and the best round is kept, so a burst of
        // load from other processes on a shared machine does not decide the comparison.
        for round in 0..repeat {
            eprintln!("-- value {vs} B, round {}/{repeat}", round + 1);
            for &kind in &kinds {
                let entry_bytes = (KEY_LEN + vs) as u64;
                // fill-sequential
                let d = tempfile::tempdir_in(&base).expect("tempdir");
                if want("fillseq") {
                    let db = open(kind, d.path());
                    let t = Instant::now();
                    for i in 0..n {
                        db.put(&key(i), value(i));
                    }
                    let secs = t.elapsed().as_secs_f64();
                    rows.push(Row {
                        workload: "fill-sequential",
                        value: vs,
                        kind,
                        ops: n,
                        secs,
                        bytes: n * entry_bytes,
                    });
                    eprintln!(
                        "{} v={vs} fill-sequential {:.0} ops/s",
                        kind.name(),
                        n as f64 / secs
                    );
                }
                drop(d);
                if !want("fillrandom") {
                    continue;
                }
                // fill-random, then reads and scans on the same database.
                let d = tempfile::tempdir_in(&base).expect("tempdir");
                let db = open(kind, d.path());
                let t = Instant::now();
                for &i in &order {
                    db.put(&key(i), value(i));
                }
                let secs = t.elapsed().as_secs_f64();
                rows.push(Row {
                    workload: "fill-random",
                    value: vs,
                    kind,
                    ops: n,
                    secs,
                    bytes: n * entry_bytes,
                });
                eprintln!(
                    "{} v={vs} fill-random {:.0} ops/s",
                    kind.name(),
                    n as f64 / secs
                );
                if !want("read") && !want("scan") {
                    continue;
                }
                db.settle();
                std::thread::sleep(Duration::from_secs(2));
                let t = Instant::now();
                let mut hits = 0u64;
                for &i in &reads {
                    hits += db.get(&key(i)) as u64;
                }
                let secs = t.elapsed().as_secs_f64();
                assert_eq!(hits, n, "{}: every read must hit", kind.name());
                rows.push(Row {
                    workload: "read-random",
                    value: vs,
                    kind,
                    ops: n,
                    secs,
                    bytes: n * entry_bytes,
                });
                eprintln!(
                    "{} v={vs} read-random {:.0} ops/s",
                    kind.name(),
                    n as f64 / secs
                );
                let t = Instant::now();
                let mut got = 0u64;
                for &s in &scans {
                    got += db.scan(&key(s), SCAN_LEN) as u64;
                }
                let secs = t.elapsed().as_secs_f64();
                rows.push(Row {
                    workload: "range-scan",
                    value: vs,
                    kind,
                    ops: got,
                    secs,
                    bytes: got * entry_bytes,
                });
                eprintln!(
                    "{} v={vs} range-scan {:.0} entries/s",
                    kind.name(),
                    got as f64 / secs
                );
                drop(db);
                drop(d);
            }
        }
    }
    // Keep the best round of each (workload, value, engine).
    let mut best: Vec<Row> = Vec::new();
    for r in rows {
        match best
            .iter_mut()
            .find(|b| b.workload == r.workload && b.value == r.value && b.kind == r.kind)
        {
            Some(b) if r.ops as f64 / r.secs > b.ops as f64 / b.secs => *b = r,
            Some(_) => {}
            None => best.push(r),
        }
    }
    print_table(&best, n, repeat);
}

fn print_table(rows: &[Row], n: u64, repeat: usize) {
    println!();
    println!(
        "keys = {n}, key = {KEY_LEN} B; range-scan = seek + {SCAN_LEN} entries, ops = entries read; best of {repeat} interleaved rounds"
    );
    println!();
    println!("| workload | value | engine | ops/s | MB/s | enc / null | enc / fjall |");
    println!("|---|---:|---|---:|---:|---:|---:|");
    let rate = |w: &str, v: usize, k: Kind| {
        rows.iter()
            .find(|r| r.workload == w && r.value == v && r.kind == k)
            .map(|r| r.ops as f64 / r.secs)
    };
    for r in rows {
        let ops = r.ops as f64 / r.secs;
        let mbs = r.bytes as f64 / r.secs / 1e6;
        let (vs_null, vs_fjall) = if r.kind == Kind::Encrypted {
            let null = rate(r.workload, r.value, Kind::Null)
                .map(|x| format!("{:.2}", ops / x))
                .unwrap_or_default();
            let fj = rate(r.workload, r.value, Kind::Fjall)
                .map(|x| format!("{:.2}", ops / x))
                .unwrap_or_default();
            (null, fj)
        } else {
            (String::new(), String::new())
        };
        println!(
            "| {} | {} B | {} | {:.0} | {:.1} | {} | {} |",
            r.workload,
            r.value,
            r.kind.name(),
            ops,
            mbs,
            vs_null,
            vs_fjall
        );
    }
}
