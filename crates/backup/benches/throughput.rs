//! Backup and restore throughput against a plain copy of the data directory.
//!
//! `cargo bench -p backup --bench throughput` loads an engine with ~`BENCH_MB` MiB of
//! logical data (16-byte keys, 1 KiB random values), then times, interleaved and best of
//! `BENCH_REPEAT`: `cp -r` of the data directory, `tar -cf` of it, a full backup (first
//! snapshot + WAL into an empty location: hashes and fsyncs every file), and a
//! point-in-time restore of that backup (re-seals every table, replays the WAL tail).
//! Prints MB/s of logical data and the ratio to `cp -r`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup::{Agent, AgentConfig, BackupKeys, DirStore, Store};
use storage::{Durability, Engine, Options, RootKey, WriteBatch};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("run");
    assert!(status.success(), "{cmd:?} failed");
}

fn sync_all() {
    run(&mut Command::new("sync"));
}

fn main() {
    let mb = env_or("BENCH_MB", 256);
    let repeat = env_or("BENCH_REPEAT", 3);
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    let dek = [0x42; 32];
    let engine = Engine::open(
        &data,
        RootKey::from_bytes(dek),
        Options {
            archive_wal: true,
            ..Options::default()
        },
    )
    .unwrap();
    let value_len = 1024;
    let count = mb * 1024 * 1024 / (value_len as u64 + 16);
    let mut value = vec![0u8; value_len];
    let mut batch = WriteBatch::new();
    let load = Instant::now();
    // As in a running node, an agent archives the WAL as it is written, so the engine can
    // release retired segments: the directory holds tables and a short live WAL.
    let warmup: Arc<dyn Store> = Arc::new(DirStore::open(base.path().join("warmup")).unwrap());
    let mut agent = Agent::start(
        engine.clone(),
        warmup,
        BackupKeys::from_root_dek(&dek).unwrap(),
        "warmup",
        AgentConfig::default(),
        0,
        None,
    )
    .unwrap();
    for i in 0..count {
        if i % 20_000 == 0 {
            agent.cycle().unwrap();
        }
        aws_lc_rs::rand::fill(&mut value).unwrap();
        let key = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes();
        batch.put(&[key.as_slice(), &i.to_be_bytes()].concat(), &value);
        if batch.len() == 100 {
            engine
                .write(std::mem::take(&mut batch), Durability::Buffered)
                .unwrap();
        }
    }
    engine.write(batch, Durability::Sync).unwrap();
    engine.flush().unwrap();
    agent.cycle().unwrap();
    drop(agent);
    std::fs::remove_dir_all(base.path().join("warmup")).unwrap();
    let logical = count * (value_len as u64 + 16);
    let logical_mb = logical as f64 / (1024.0 * 1024.0);
    eprintln!(
        "loaded {count} entries ({logical_mb:.0} MiB logical) in {:?}",
        load.elapsed()
    );
    // Let compaction settle so every round copies the same files.
    engine.compact().unwrap();
    let on_disk: u64 = walk_size(&data);

    let mut best = [Duration::MAX; 5];
    for round in 0..repeat {
        let out = base.path().join(format!("round{round}"));
        std::fs::create_dir_all(&out).unwrap();
        sync_all();
        best[0] = best[0].min(timed(|| {
            run(Command::new("cp").arg("-r").arg(&data).arg(out.join("cp")));
        }));
        best[1] = best[1].min(timed(|| {
            run(Command::new("cp")
                .arg("-r")
                .arg(&data)
                .arg(out.join("cp-sync")));
            sync_all();
        }));
        best[2] = best[2].min(timed(|| {
            run(Command::new("tar")
                .arg("-cf")
                .arg(out.join("data.tar"))
                .arg("-C")
                .arg(base.path())
                .arg("data"));
        }));
        let location = out.join("backup");
        let keys = BackupKeys::from_root_dek(&dek).unwrap();
        best[3] = best[3].min(timed(|| {
            let store: Arc<dyn Store> = Arc::new(DirStore::open(&location).unwrap());
            let mut agent = Agent::start(
                engine.clone(),
                store,
                keys,
                "bench",
                AgentConfig::default(),
                0,
                None,
            )
            .unwrap();
            agent.cycle().unwrap();
        }));
        let store = DirStore::open(&location).unwrap();
        let keys = BackupKeys::from_root_dek(&dek).unwrap();
        let catalog = backup::Catalog::load(&store, &keys, 0).unwrap().unwrap();
        let target = out.join("restored");
        best[4] = best[4].min(timed(|| {
            backup::restore(
                &store,
                &keys,
                0,
                catalog.restorable_until_micros,
                &target,
                RootKey::from_bytes([7; 32]),
                Options::default(),
                &mut |_| {},
            )
            .unwrap();
        }));
        std::fs::remove_dir_all(&out).unwrap();
    }
    let rate = |d: Duration| logical_mb / d.as_secs_f64();
    let cp = rate(best[0]);
    println!(
        "\n{logical_mb:.0} MiB logical ({:.0} MiB on disk), 1 KiB values; best of {repeat}; page cache warm\n",
        on_disk as f64 / (1024.0 * 1024.0)
    );
    println!("| operation | seconds | MB/s (logical) | vs cp -r |");
    println!("|---|---:|---:|---:|");
    for (name, d) in [
        ("cp -r data directory", best[0]),
        ("cp -r + sync", best[1]),
        ("tar -cf", best[2]),
        ("strongroom backup (full, hashed, fsynced)", best[3]),
        ("strongroom restore (re-seal + replay)", best[4]),
    ] {
        println!(
            "| {name} | {:.2} | {:.0} | {:.2}× |",
            d.as_secs_f64(),
            rate(d),
            rate(d) / cp
        );
    }
}

fn walk_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            walk_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}
