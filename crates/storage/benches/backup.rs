//! Backup/restore throughput: checkpoint, offline verification and re-seal restore of a
//! database of ~BENCH_MB megabytes, against a plain `std::fs::copy` of the same table files.
//!
//! ```text
//! cargo bench -p storage --bench backup
//! # knobs: BENCH_MB=200 BENCH_VALUE=1024 BENCH_DIR=/tmp BENCH_REPEAT=3
//! ```
//! Files are read from the page cache (the bench does not drop caches on a shared machine),
//! so the numbers are CPU + write cost, not disk read speed. Best of BENCH_REPEAT rounds.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::RngCore;
use storage::offline::{OfflineKeys, verify_table};
use storage::restore::RestoreBuilder;
use storage::{Durability, Engine, Options, RootKey};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

fn best<T>(repeat: usize, mut f: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    let mut out = f();
    for _ in 1..repeat {
        let r = f();
        if r.0 < out.0 {
            out = r;
        }
    }
    out
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mb = env_usize("BENCH_MB", 200);
    let value_len = env_usize("BENCH_VALUE", 1024);
    let repeat = env_usize("BENCH_REPEAT", 3).max(1);
    let base =
        std::env::var("BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let work = tempfile::tempdir_in(&base)?;
    let root = RootKey::from_bytes([0x42; 32]);
    let opts = Options {
        archive_wal: true,
        data_key_rotation: None,
        ..Options::default()
    };
    let src = work.path().join("src");
    let db = Engine::open(&src, root.clone(), opts.clone())?;
    let n = mb * (1 << 20) / (value_len + 16);
    let mut rng = rand::rng();
    let mut v = vec![0u8; value_len];
    let t = Instant::now();
    for i in 0..n as u64 {
        rng.fill_bytes(&mut v);
        let k = format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        db.put(k.as_bytes(), &v, Durability::Buffered)?;
    }
    db.flush()?;
    let fill = t.elapsed();
    println!(
        "filled {n} keys x {value_len} B in {:.1} s; tables: {} files, {:.1} MiB",
        fill.as_secs_f64(),
        db.stats().files,
        db.stats().table_bytes as f64 / (1 << 20) as f64
    );

    let (t_cp, cp) = best(repeat, || {
        let t = Instant::now();
        let cp = db.checkpoint().expect("checkpoint");
        (t.elapsed(), cp)
    });
    let bytes = cp.table_bytes();
    let keys = OfflineKeys::from_registries(&root, &[(cp.registry_id, &cp.registry)])?;

    let mut round = 0;
    let (t_copy, _) = best(repeat, || {
        round += 1;
        let to = work.path().join(format!("copy{round}"));
        std::fs::create_dir_all(&to).expect("mkdir");
        let t = Instant::now();
        for tb in &cp.tables {
            std::fs::copy(&tb.path, to.join(format!("{}.sst", tb.id))).expect("copy");
        }
        let d = t.elapsed();
        std::fs::remove_dir_all(&to).expect("rm");
        (d, ())
    });

    let (t_copy_sync, _) = best(repeat, || {
        round += 1;
        let to = work.path().join(format!("copy{round}"));
        std::fs::create_dir_all(&to).expect("mkdir");
        let t = Instant::now();
        for tb in &cp.tables {
            let p = to.join(format!("{}.sst", tb.id));
            std::fs::copy(&tb.path, &p).expect("copy");
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .expect("fsync");
        }
        let d = t.elapsed();
        std::fs::remove_dir_all(&to).expect("rm");
        (d, ())
    });

    let (t_verify, _) = best(repeat, || {
        let t = Instant::now();
        for tb in &cp.tables {
            verify_table(&tb.path, tb.id, &keys).expect("verify");
        }
        (t.elapsed(), ())
    });

    let (t_restore, written) = best(repeat, || {
        round += 1;
        let to = work.path().join(format!("restore{round}"));
        let t = Instant::now();
        let mut b =
            RestoreBuilder::new(&to, RootKey::from_bytes([7; 32]), opts.clone()).expect("builder");
        for tb in &cp.tables {
            b.add_table(tb.level, &tb.path, tb.id, &keys)
                .expect("add_table");
        }
        let e = b.finish(cp.covered_seq).expect("finish");
        let d = t.elapsed();
        e.close().expect("close");
        let w = dir_bytes(&to);
        std::fs::remove_dir_all(&to).expect("rm");
        (d, w)
    });
    assert!(written >= bytes);

    println!();
    println!(
        "database: {:.1} MiB in {} tables; best of {repeat}; source files in page cache",
        bytes as f64 / (1 << 20) as f64,
        cp.tables.len()
    );
    println!();
    println!("| operation | MiB | seconds | MiB/s | speed vs copy+fsync |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, d: Duration| {
        println!(
            "| {name} | {:.1} | {:.3} | {:.0} | {:.2} |",
            bytes as f64 / (1 << 20) as f64,
            d.as_secs_f64(),
            mbps(bytes, d),
            t_copy_sync.as_secs_f64() / d.as_secs_f64()
        );
    };
    row("std::fs::copy of the tables", t_copy);
    row("std::fs::copy + fsync per table", t_copy_sync);
    row("verify_table (every block)", t_verify);
    row("RestoreBuilder re-seal + finish", t_restore);
    println!();
    println!(
        "checkpoint() itself (no data copied): {:.0} µs",
        t_cp.as_secs_f64() * 1e6
    );
    drop(cp);
    db.close()?;
    Ok(())
}
