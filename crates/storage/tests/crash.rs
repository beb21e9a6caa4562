//! Crash tests.
//!
//! * Through [`FaultyFs`]: random writes (synced and buffered) with background flush and
//!   compaction, then a simulated power cut that drops unsynced data or tears the last
//!   write, sometimes after an injected fsync failure. After reopening, the database must
//!   equal the state after some prefix of the write history that includes every write
//!   acknowledged as synced — nothing acknowledged lost, nothing corrupted.
//! * A real `kill -9` of a child process writing in a loop: every key the child reported
//!   as synced must be there after reopen.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};
use storage::{CrashMode, Direction, Durability, Engine, FaultyFs, Options, WriteBatch};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Clone)]
enum W {
    Put(Vec<u8>, Vec<u8>),
    Del(Vec<u8>),
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
}

fn apply(s: &mut State, w: &W) {
    match w {
        W::Put(k, v) => {
            s.insert(k.clone(), v.clone());
        }
        W::Del(k) => {
            s.remove(k);
        }
        W::Batch(items) => {
            for (k, v) in items {
                match v {
                    Some(v) => s.insert(k.clone(), v.clone()),
                    None => s.remove(k),
                };
            }
        }
    }
}

fn faulty_opts(fs: &FaultyFs) -> Options {
    Options {
        memtable_bytes: 8 << 10,
        block_size: 256,
        fs: Arc::new(fs.clone()),
        data_key_rotation: None,
        ..Options::default()
    }
}

fn run_crash_rounds(seed: u64, rounds: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    // `base` is the state known to be on disk at the start of a round.
    let mut base: State = BTreeMap::new();
    for round in 0..rounds {
        let db = Engine::open(d.path(), root(), faulty_opts(&fs))
            .unwrap_or_else(|e| panic!("seed {seed} round {round}: reopen failed: {e}"));
        let got: State = collect(&db, Direction::Forward).into_iter().collect();
        assert_eq!(got, base, "seed {seed} round {round}: state after recovery");
        let mut history: Vec<W> = Vec::new();
        let mut last_acked_sync = 0usize; // number of history entries that must survive
        let n = rng.random_range(20..200);
        let fail_at = if rng.random_bool(0.3) {
            Some(rng.random_range(0..n))
        } else {
            None
        };
        for i in 0..n {
            if Some(i) == fail_at {
                fs.fail_syncs(1);
            }
            let k = format!("k{:03}", rng.random_range(0..150)).into_bytes();
            let v = vec![rng.random::<u8>(); rng.random_range(0..300)];
            let w = match rng.random_range(0..10) {
                0 => W::Del(k),
                1 => W::Batch(
                    (0..rng.random_range(1..5))
                        .map(|j| {
                            (
                                format!("b{:03}", (i + j) % 150).into_bytes(),
                                if j % 3 == 2 { None } else { Some(v.clone()) },
                            )
                        })
                        .collect(),
                ),
                _ => W::Put(k, v),
            };
            let sync = rng.random_bool(0.3);
            let d = if sync {
                Durability::Sync
            } else {
                Durability::Buffered
            };
            let r = match &w {
                W::Put(k, v) => db.put(k, v, d),
                W::Del(k) => db.delete(k, d),
                W::Batch(items) => {
                    let mut b = WriteBatch::new();
                    for (k, v) in items {
                        match v {
                            Some(v) => b.put(k, v),
                            None => b.delete(k),
                        };
                    }
                    db.write(b, d)
                }
            };
            history.push(w);
            match r {
                Ok(()) if sync => last_acked_sync = history.len(),
                Ok(()) => {}
                // A failed write (or a poisoned engine) is not acknowledged; stop writing.
                Err(_) => break,
            }
            if rng.random_bool(0.02) {
                let _ = db.flush();
            }
        }
        let mode = if round % 2 == 0 {
            CrashMode::DropUnsynced
        } else {
            CrashMode::TearLastWrite
        };
        fs.crash(mode).unwrap();
        drop(db);
        fs.revive();
        let db = Engine::open(d.path(), root(), faulty_opts(&fs))
            .unwrap_or_else(|e| panic!("seed {seed} round {round} ({mode:?}): reopen failed: {e}"));
        let got: State = collect(&db, Direction::Forward).into_iter().collect();
        // Find a prefix p >= last_acked_sync of the history that explains `got`.
        let mut s = base.clone();
        for w in &history[..last_acked_sync] {
            apply(&mut s, w);
        }
        let mut ok = s == got;
        for w in &history[last_acked_sync..] {
            if ok {
                break;
            }
            apply(&mut s, w);
            ok = s == got;
        }
        assert!(
            ok,
            "seed {seed} round {round} ({mode:?}): recovered state is not a prefix including all {last_acked_sync} synced writes"
        );
        // Point reads agree with the scan.
        for (k, v) in got.iter().take(20) {
            assert_eq!(db.get(k).unwrap().as_ref(), Some(v));
        }
        base = got;
        db.close().unwrap();
    }
}

#[test]
fn faulty_fs_crashes_keep_every_synced_write() {
    let rounds = std::env::var("STORAGE_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    for seed in 0..3u64 {
        run_crash_rounds(seed, rounds);
    }
}

#[test]
fn failed_fsync_poisons_writes_and_is_not_acknowledged() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let db = Engine::open(d.path(), root(), faulty_opts(&fs)).unwrap();
    db.put(b"a", b"1", Durability::Sync).unwrap();
    fs.fail_syncs(1);
    assert!(db.put(b"b", b"2", Durability::Sync).is_err());
    assert!(matches!(
        db.put(b"c", b"3", Durability::Buffered),
        Err(storage::Error::Poisoned(_))
    ));
    // Reads still work.
    assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()));
    fs.crash(CrashMode::DropUnsynced).unwrap();
    drop(db);
    fs.revive();
    let db = Engine::open(d.path(), root(), faulty_opts(&fs)).unwrap();
    assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(
        db.get(b"b").unwrap(),
        None,
        "un-synced write survived a crash after its fsync failed"
    );
    assert_eq!(db.get(b"c").unwrap(), None);
}

#[test]
fn sync_wal_makes_earlier_buffered_writes_durable() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let db = Engine::open(d.path(), root(), faulty_opts(&fs)).unwrap();
    for i in 0..50u32 {
        db.put(&i.to_be_bytes(), b"buffered", Durability::Buffered)
            .unwrap();
    }
    db.sync_wal().unwrap();
    db.put(b"after", b"not synced", Durability::Buffered)
        .unwrap();
    fs.crash(CrashMode::DropUnsynced).unwrap();
    drop(db);
    fs.revive();
    let db = Engine::open(d.path(), root(), faulty_opts(&fs)).unwrap();
    for i in 0..50u32 {
        assert_eq!(
            db.get(&i.to_be_bytes()).unwrap(),
            Some(b"buffered".to_vec()),
            "write {i} lost"
        );
    }
    assert_eq!(
        db.get(b"after").unwrap(),
        None,
        "a write after the sync was not made durable"
    );
}

const CHILD_ENV: &str = "STORAGE_KILL9_CHILD_DIR";

/// The child side of the kill -9 test: writes forever, printing `ack <round> <i>` after each
/// synced write. Only runs when re-executed by the parent.
#[test]
#[ignore = "child process of kill9_child_acks_survive"]
fn kill9_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u32 = std::env::var("STORAGE_KILL9_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let opts = Options {
        memtable_bytes: 64 << 10,
        ..Options::default()
    };
    let db = Engine::open(std::path::Path::new(&dir), root(), opts).unwrap();
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for i in 0u32.. {
        let k = format!("r{round}-{i:08}").into_bytes();
        // Buffered writes in between must never break the synced ones.
        db.put(
            format!("buf{round}-{i}").as_bytes(),
            &value(i, round),
            Durability::Buffered,
        )
        .unwrap();
        db.put(&k, &value(i, round), Durability::Sync).unwrap();
        writeln!(out, "ack {round} {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill9_child_acks_survive() {
    let d = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<(u32, u32)> = Vec::new();
    for round in 0..3u32 {
        let mut child = Command::new(&exe)
            .args([
                "kill9_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, d.path())
            .env("STORAGE_KILL9_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Lines arrive through a thread so that a stalled child fails the test at the
        // deadline instead of blocking it forever.
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let target = 150 + round * 120;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut n = 0;
        loop {
            let line = match lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => line,
                Err(RecvTimeoutError::Disconnected) => break, // the child exited
                Err(RecvTimeoutError::Timeout) => {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    panic!("round {round}: child too slow, {n} acks within 60s");
                }
            };
            if let Some(rest) = line.strip_prefix("ack ") {
                let mut it = rest.split(' ');
                let r: u32 = it.next().unwrap().parse().unwrap();
                let i: u32 = it.next().unwrap().parse().unwrap();
                acked.push((r, i));
                n += 1;
                if n >= target {
                    break;
                }
            }
        }
        assert!(n >= target, "child ended early after {n} acks");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let db = Engine::open(d.path(), root(), small_opts()).unwrap();
        for &(r, i) in &acked {
            let k = format!("r{r}-{i:08}").into_bytes();
            assert_eq!(
                db.get(&k).unwrap(),
                Some(value(i, r)),
                "acked key r{r}-{i} lost after kill -9"
            );
        }
        db.close().unwrap();
    }
}

/// Waits for a `sync_wal_then` answer (the sync thread calls back from its own thread).
fn durable(db: &Engine, ticket: u64) -> storage::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    db.sync_wal_then(
        ticket,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("the sync thread answered")
}

#[test]
fn sync_wal_then_acknowledges_only_durable_writes() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let db = Engine::open(d.path(), root(), faulty_opts(&fs)).unwrap();
    // Many writers hand their tickets to the sync thread at once: every one is answered
    // and every acknowledged write survives a crash that drops what was not synced.
    let db = Arc::new(db);
    let acked: Vec<u32> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u32)
            .map(|t| {
                let db = db.clone();
                s.spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..25u32 {
                        let k = t * 1000 + i;
                        db.put(&k.to_be_bytes(), b"v", Durability::Buffered)
                            .unwrap();
                        durable(&db, db.wal_ticket()).unwrap();
                        acked.push(k);
                    }
                    acked
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(acked.len(), 200);
    // Unacknowledged: written but never synced.
    db.put(b"late", b"v", Durability::Buffered).unwrap();
    fs.crash(CrashMode::DropUnsynced).unwrap();
    drop(db);
    fs.revive();
    let db = Engine::open(d.path(), root(), faulty_opts(&fs)).unwrap();
    for k in acked {
        assert_eq!(
            db.get(&k.to_be_bytes()).unwrap(),
            Some(b"v".to_vec()),
            "{k}"
        );
    }
    assert_eq!(db.get(b"late").unwrap(), None);
}

#[test]
fn sync_wal_then_reports_a_failed_fsync_and_a_closed_engine() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let db = Engine::open(d.path(), root(), faulty_opts(&fs)).unwrap();
    db.put(b"a", b"1", Durability::Buffered).unwrap();
    durable(&db, db.wal_ticket()).unwrap();
    // Already durable: answered at once, without the sync thread.
    durable(&db, db.wal_ticket()).unwrap();
    db.put(b"b", b"2", Durability::Buffered).unwrap();
    fs.fail_syncs(1);
    assert!(matches!(
        durable(&db, db.wal_ticket()),
        Err(storage::Error::Poisoned(_))
    ));
    drop(db);
    fs.revive();
    let db = Engine::open(d.path(), root(), faulty_opts(&fs)).unwrap();
    let ticket = db.wal_ticket() + 1;
    let db2 = db.clone();
    db.close().unwrap();
    assert!(matches!(durable(&db2, ticket), Err(storage::Error::Closed)));
}

#[test]
fn try_sync_wal_makes_writes_durable_on_the_caller_and_reports_a_failed_fsync() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let db = Engine::open(d.path(), root(), faulty_opts(&fs)).unwrap();
    for i in 0..10u32 {
        db.put(&key(i), &value(i, 1), Durability::Buffered).unwrap();
        // Nobody else is syncing: the caller always leads its own fsync.
        match db.try_sync_wal(db.wal_ticket()) {
            Some(Ok(())) => {}
            other => panic!("an idle engine refused to sync on the caller: {other:?}"),
        }
    }
    db.put(b"late", b"v", Durability::Buffered).unwrap();
    fs.crash(CrashMode::DropUnsynced).unwrap();
    drop(db);
    fs.revive();
    let db = Engine::open(d.path(), root(), faulty_opts(&fs)).unwrap();
    for i in 0..10u32 {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i, 1)), "{i}");
    }
    assert_eq!(
        db.get(b"late").unwrap(),
        None,
        "never synced, so not durable"
    );

    db.put(b"b", b"2", Durability::Buffered).unwrap();
    fs.fail_syncs(1);
    assert!(matches!(
        db.try_sync_wal(db.wal_ticket()),
        Some(Err(storage::Error::Io(_)))
    ));
    // The engine is poisoned: later callers learn it, on either path.
    assert!(matches!(
        db.try_sync_wal(db.wal_ticket() + 1),
        Some(Err(storage::Error::Poisoned(_)))
    ));
    assert!(durable(&db, db.wal_ticket() + 1).is_err());
}

/// WAL segments are preallocated (zeros after the last record). Recovery must read those
/// zeros as the log's end: nothing dropped, no torn tail — which archive mode would have
/// cut off, shrinking the archived segment to its records.
#[test]
fn a_preallocated_wal_segment_recovers_whole_and_is_not_a_torn_tail() {
    let d = tempfile::tempdir().unwrap();
    let opts = Options {
        archive_wal: true,
        background_compaction: false,
        ..small_opts()
    };
    let db = Engine::open(d.path(), root(), opts.clone()).unwrap();
    for i in 0..20u32 {
        db.put(&key(i), &value(i, 1), Durability::Sync).unwrap();
    }
    let live = db.wal_position().unwrap();
    let reserved = std::fs::metadata(&live.path).unwrap().len();
    assert!(
        reserved > live.len,
        "the live segment is preallocated beyond its records ({reserved} <= {})",
        live.len
    );
    db.close().unwrap();

    let db = Engine::open(d.path(), root(), opts).unwrap();
    for i in 0..20u32 {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i, 1)));
    }
    // Recovery retired the old segment into the archive as it was, zeros and all.
    let archived = db.archived_wal().unwrap();
    let seg = archived
        .iter()
        .find(|a| a.id == live.segment)
        .expect("the recovered segment is archived");
    assert_eq!(seg.len, reserved, "no torn tail was cut off");
}

/// The `.walspare` files in `dir`, by id.
fn spares(dir: &std::path::Path) -> Vec<u64> {
    let mut ids: Vec<u64> = files_with_suffix(dir, ".walspare")
        .iter()
        .filter_map(|p| p.file_stem()?.to_str()?.parse().ok())
        .collect();
    ids.sort();
    ids
}

/// Waits (bounded) until the spare thread has written a segment; returns its id.
fn await_spare(dir: &std::path::Path) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(&id) = spares(dir).last() {
            return id;
        }
        assert!(Instant::now() < deadline, "no spare WAL segment appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes synced keys from `*next` on until the live WAL segment changes.
fn write_until_switch(db: &Engine, next: &mut u32) {
    let before = db.wal_position().unwrap().segment;
    while db.wal_position().unwrap().segment == before {
        db.put(&key(*next), &value(*next, 1), Durability::Sync)
            .unwrap();
        *next += 1;
        assert!(*next < 100_000, "the memtable never switched");
    }
}

/// After the first memtable switch the spare thread writes the next WAL segment ahead
/// (zeros and all); the next switch renames it into place. A spare a crash leaves behind
/// is removed at open, never replayed, and loses nothing.
#[test]
fn a_spare_wal_segment_is_taken_at_a_switch_and_removed_after_a_crash() {
    let d = tempfile::tempdir().unwrap();
    let db = Engine::open(d.path(), root(), small_opts()).unwrap();
    let mut next = 0u32;
    write_until_switch(&db, &mut next);
    let spare = await_spare(d.path());
    let reserved = std::fs::metadata(d.path().join(format!("{spare:06}.walspare")))
        .unwrap()
        .len();
    write_until_switch(&db, &mut next);
    let live = db.wal_position().unwrap();
    assert_eq!(live.segment, spare, "the switch took the spare segment");
    assert!(!spares(d.path()).contains(&spare));
    assert_eq!(
        std::fs::metadata(&live.path).unwrap().len(),
        reserved,
        "the segment kept its zeros"
    );

    // A power cut with a fresh spare on disk: a copy of the directory as it stands.
    let left = await_spare(d.path());
    assert!(left > spare);
    let image = tempfile::tempdir().unwrap();
    for (name, bytes) in all_files(d.path()) {
        std::fs::write(image.path().join(name), bytes).unwrap();
    }
    db.close().unwrap();
    assert!(spares(d.path()).is_empty(), "close removes the spare");

    let db = Engine::open(image.path(), root(), small_opts()).unwrap();
    assert!(spares(image.path()).is_empty(), "open removes the spare");
    for i in 0..next {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i, 1)), "key {i}");
    }
    db.close().unwrap();
}
