//! Backup and point-in-time-restore primitives: commit timestamps, WAL archiving, the live
//! WAL position, checkpoints, offline readers and the restore builder — all over real files
//! in temp dirs. The central property: a checkpoint's tables plus the archived and live WAL
//! reproduce the source exactly (or exactly its state as of an instant).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use rand::{Rng, SeedableRng};
use storage::offline::{OfflineKeys, WalReader, verify_registry, verify_table};
use storage::restore::RestoreBuilder;
use storage::{
    BatchOp, CrashMode, Direction, Durability, Engine, Error, FaultyFs, Options, RootKey,
    WriteBatch,
};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

fn archive_opts() -> Options {
    Options {
        archive_wal: true,
        data_key_rotation: None,
        ..small_opts()
    }
}

fn state(db: &Engine) -> State {
    collect(db, Direction::Forward).into_iter().collect()
}

fn apply(s: &mut State, b: &WriteBatch) {
    for op in b.iter() {
        match op {
            BatchOp::Put(k, v) => {
                s.insert(k.to_vec(), v.to_vec());
            }
            BatchOp::Delete(k) => {
                s.remove(k);
            }
        }
    }
}

fn wal_id(p: &Path) -> u64 {
    p.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".wal"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a WAL name: {}", p.display()))
}

fn keys_of(db: &Engine, extra: &[(u64, Vec<u8>)]) -> OfflineKeys {
    let reg = db.key_registry().unwrap();
    let mut regs: Vec<(u64, &[u8])> = vec![(reg.id, &reg.bytes)];
    for (id, b) in extra {
        regs.push((*id, b));
    }
    OfflineKeys::from_registries(&root(), &regs).unwrap()
}

fn read_records(path: &Path, keys: &OfflineKeys) -> Vec<storage::offline::WalRecord> {
    let mut r = WalReader::open(path, wal_id(path), keys).unwrap();
    let recs: Vec<_> = r.by_ref().collect::<Result<_, _>>().unwrap();
    assert!(!r.torn_tail(), "{}: unexpected torn tail", path.display());
    recs
}

/// A backup taken the way the backup agent will: checkpoint tables + registry copied while
/// the checkpoint pins them, then archived segments and a prefix of the live one.
struct BackupCopy {
    dir: tempfile::TempDir,
    tables: Vec<(u8, u64, PathBuf)>,
    registries: Vec<(u64, Vec<u8>)>,
    covered_seq: u64,
    first_wal: u64,
    wals: Vec<PathBuf>,
}

fn copy_checkpoint(db: &Engine) -> (storage::Checkpoint, BackupCopy) {
    let cp = db.checkpoint().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut tables = Vec::new();
    for t in &cp.tables {
        let to = dir.path().join(format!("t-{}-{}.sst", t.level, t.id));
        std::fs::copy(&t.path, &to).unwrap();
        assert_eq!(std::fs::metadata(&to).unwrap().len(), t.size);
        tables.push((t.level, t.id, to));
    }
    let copy = BackupCopy {
        dir,
        tables,
        registries: vec![(cp.registry_id, cp.registry.clone())],
        covered_seq: cp.covered_seq,
        first_wal: cp.first_wal,
        wals: Vec::new(),
    };
    (cp, copy)
}

/// Copies what the backup agent would: closed-but-unarchived segments, archived segments
/// from `first_wal` on, and the live segment's prefix.
fn copy_wal(db: &Engine, copy: &mut BackupCopy) -> storage::WalPosition {
    let pos = db.wal_position().unwrap();
    let dir = pos.path.parent().unwrap().to_path_buf();
    for &id in &pos.closed_segments {
        let name = format!("{id:06}.wal");
        let to = copy.dir.path().join(&name);
        // Flushed (and archived) since the position was taken? Then it is in archive/.
        if std::fs::copy(dir.join(&name), &to).is_err() {
            std::fs::copy(dir.join("archive").join(&name), &to).unwrap();
        }
        copy.wals.push(to);
    }
    for a in db.archived_wal().unwrap() {
        if a.id >= copy.first_wal && !pos.closed_segments.contains(&a.id) {
            let to = copy.dir.path().join(format!("{:06}.wal", a.id));
            std::fs::copy(&a.path, &to).unwrap();
            copy.wals.push(to);
        }
    }
    let live = std::fs::read(&pos.path).unwrap();
    assert!(live.len() as u64 >= pos.len);
    let to = copy.dir.path().join(format!("{:06}.wal", pos.segment));
    std::fs::write(&to, &live[..pos.len as usize]).unwrap();
    copy.wals.push(to);
    copy.wals.sort();
    let reg = db.key_registry().unwrap();
    copy.registries.push((reg.id, reg.bytes));
    pos
}

fn offline_keys(copy: &BackupCopy, root: &RootKey) -> storage::Result<OfflineKeys> {
    let regs: Vec<(u64, &[u8])> = copy
        .registries
        .iter()
        .map(|(i, b)| (*i, b.as_slice()))
        .collect();
    OfflineKeys::from_registries(root, &regs)
}

/// Restores `copy` into `target` and replays records with seq > covered_seq and (if set)
/// commit time <= `until`. Returns the engine and the number of records replayed.
fn restore(
    copy: &BackupCopy,
    target: &Path,
    target_root: RootKey,
    until: Option<u64>,
) -> (Engine, usize) {
    let keys = offline_keys(copy, &root()).unwrap();
    let mut b = RestoreBuilder::new(target, target_root, small_opts()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    b.on_progress(move |_| {
        c2.fetch_add(1, Ordering::Relaxed);
    });
    let mut total = 0;
    for (level, id, path) in &copy.tables {
        let n = b.add_table(*level, path, *id, &keys).unwrap();
        assert_eq!(n, std::fs::metadata(path).unwrap().len());
        total += n;
    }
    assert_eq!(b.progress().bytes_written, total);
    assert_eq!(b.progress().tables_done, copy.tables.len());
    assert!(calls.load(Ordering::Relaxed) >= copy.tables.len());
    let db = b.finish(copy.covered_seq).unwrap();
    let mut replayed = 0;
    let mut next_seq = copy.covered_seq + 1;
    'outer: for w in &copy.wals {
        for rec in read_records(w, &keys) {
            if rec.last_seq() <= copy.covered_seq {
                continue;
            }
            assert!(
                rec.base_seq > copy.covered_seq,
                "record straddles covered_seq"
            );
            if until.is_some_and(|t| rec.commit_micros > t) {
                break 'outer;
            }
            assert_eq!(rec.base_seq, next_seq, "gap in the WAL sequence");
            next_seq = rec.last_seq() + 1;
            db.write(rec.batch, Durability::Buffered).unwrap();
            replayed += 1;
        }
    }
    db.flush().unwrap();
    (db, replayed)
}

fn random_writes(db: &Engine, rng: &mut rand::rngs::StdRng, n: usize, gen_: u32) {
    for _ in 0..n {
        let k = rng.random_range(0..400u32);
        if rng.random_bool(0.15) {
            db.delete(&key(k), Durability::Buffered).unwrap();
        } else if rng.random_bool(0.2) {
            let mut b = WriteBatch::new();
            for j in 0..4 {
                b.put(&key(k + j), &value(k + j, gen_));
            }
            db.write(b, Durability::Buffered).unwrap();
        } else {
            db.put(&key(k), &value(k, gen_), Durability::Buffered)
                .unwrap();
        }
    }
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[test]
fn commit_times_are_monotonic_across_batches_and_reopen() {
    let d = tempfile::tempdir().unwrap();
    let before = now_micros();
    let mut all = Vec::new();
    for round in 0..3u32 {
        let db = Engine::open(d.path(), root(), archive_opts()).unwrap();
        for i in 0..200u32 {
            db.put(&key(i), &value(i, round), Durability::Buffered)
                .unwrap();
        }
        if round == 1 {
            // Everything flushed: the next reopen learns the last commit time from the
            // manifest, not from a WAL record.
            db.flush().unwrap();
        }
        db.close().unwrap();
    }
    let after = now_micros();
    // Every segment ends up archived after the reopen; read them all in id order.
    let db = Engine::open(d.path(), root(), archive_opts()).unwrap();
    let keys = keys_of(&db, &[]);
    for a in db.archived_wal().unwrap() {
        all.extend(read_records(&a.path, &keys));
    }
    assert_eq!(all.len(), 600);
    for w in all.windows(2) {
        assert!(
            w[0].commit_micros <= w[1].commit_micros,
            "commit time went back"
        );
        assert_eq!(w[0].last_seq() + 1, w[1].base_seq);
    }
    assert!(all[0].commit_micros >= before && all[599].commit_micros <= after);
    // The next write commits after everything before the reopen.
    db.put(b"later", b"x", Durability::Sync).unwrap();
    let pos = db.wal_position().unwrap();
    let live = read_records(&pos.path, &keys);
    assert_eq!(live.len(), 1);
    assert!(live[0].commit_micros >= all[599].commit_micros);
    assert_eq!(pos.last_commit_micros, live[0].commit_micros);
}

#[test]
fn wal_position_bounds_the_live_segment_and_orders_time() {
    let d = tempfile::tempdir().unwrap();
    let opts = Options {
        memtable_bytes: 64 << 20,
        ..archive_opts()
    };
    let db = Engine::open(d.path(), root(), opts).unwrap();
    let keys = keys_of(&db, &[]);
    let mut copied: Vec<u8> = Vec::new();
    let mut last = None;
    for round in 0..20u32 {
        for i in 0..(round * 7 % 23 + 1) {
            db.put(&key(i), &value(i, round), Durability::Buffered)
                .unwrap();
        }
        let pos = db.wal_position().unwrap();
        if let Some((seg, _)) = last {
            assert_eq!(
                pos.segment, seg,
                "no switch expected with a 64 MiB memtable"
            );
        }
        // Tail copy: append [already_copied, len) to the copy.
        let live = std::fs::read(&pos.path).unwrap();
        copied.extend_from_slice(&live[copied.len()..pos.len as usize]);
        let copy = d.path().join("prefix.bin");
        std::fs::write(&copy, &copied).unwrap();
        let mut r = WalReader::open(&copy, pos.segment, &keys).unwrap();
        let recs: Vec<_> = r.by_ref().collect::<Result<_, _>>().unwrap();
        assert!(!r.torn_tail());
        assert_eq!(r.valid_len(), pos.len);
        let max_seq = recs.iter().map(|r| r.last_seq()).max().unwrap();
        assert_eq!(
            max_seq, pos.last_seq,
            "every record <= last_seq lies in [0, len)"
        );
        assert!(recs.iter().all(|r| r.commit_micros <= pos.as_of_micros));
        assert_eq!(recs.last().unwrap().commit_micros, pos.last_commit_micros);
        if let Some((_, prev_as_of)) = last {
            // Records appended after the previous position commit strictly after it.
            let new: Vec<_> = recs
                .iter()
                .filter(|r| r.commit_micros > prev_as_of)
                .collect();
            assert!(!new.is_empty());
            assert!(
                recs.iter()
                    .filter(|r| r.commit_micros <= prev_as_of)
                    .all(|r| r.last_seq() < new[0].base_seq)
            );
        }
        // Two positions back to back: the second as_of is strictly later only if nothing
        // was written in between; a write right after commits after both.
        let p2 = db.wal_position().unwrap();
        assert!(p2.as_of_micros > pos.as_of_micros);
        db.put(b"probe", b"p", Durability::Buffered).unwrap();
        let p3 = db.wal_position().unwrap();
        assert!(p3.last_commit_micros > p2.as_of_micros);
        last = Some((p3.segment, p3.as_of_micros));
        let live = std::fs::read(&p3.path).unwrap();
        copied.extend_from_slice(&live[copied.len()..p3.len as usize]);
    }
}

#[test]
fn archive_mode_keeps_every_segment_and_release_deletes() {
    let d = tempfile::tempdir().unwrap();
    let db = Engine::open(d.path(), root(), archive_opts()).unwrap();
    let mut model = State::new();
    for i in 0..3000u32 {
        let (k, v) = (key(i % 700), value(i, i / 700));
        let d = if i % 100 == 99 {
            Durability::Sync
        } else {
            Durability::Buffered
        };
        db.put(&k, &v, d).unwrap();
        model.insert(k, v);
    }
    // Writers stall at 4 unflushed memtables, so most segments are flushed and archived.
    let archived = db.archived_wal().unwrap();
    assert!(archived.len() >= 3, "archived: {archived:?}");
    assert!(archived.windows(2).all(|w| w[0].id < w[1].id));
    for a in &archived {
        assert_eq!(a.path.parent().unwrap(), d.path().join("archive"));
        assert_eq!(std::fs::metadata(&a.path).unwrap().len(), a.len);
    }
    // Archived + live segments hold every acknowledged write, in sequence order.
    let keys = keys_of(&db, &[]);
    let pos = db.wal_position().unwrap();
    // Segments not yet flushed are still in the main directory (until the flush thread
    // archives them, which may happen while we read).
    // Position first, then the archive listing: a segment closed before the position is
    // then either among `closed_segments` or already in the listing.
    let mut ids: Vec<u64> = db.archived_wal().unwrap().iter().map(|a| a.id).collect();
    ids.extend(&pos.closed_segments);
    ids.push(pos.segment);
    ids.sort_unstable();
    ids.dedup();
    let mut replayed = State::new();
    let mut next = 1;
    for id in ids {
        let name = format!("{id:06}.wal");
        let bytes = std::fs::read(d.path().join(&name))
            .or_else(|_| std::fs::read(d.path().join("archive").join(&name)))
            .unwrap();
        let mut rd = WalReader::from_bytes(&name, bytes, id, &keys).unwrap();
        for r in rd.by_ref() {
            let r = r.unwrap();
            assert_eq!(r.base_seq, next);
            next = r.last_seq() + 1;
            apply(&mut replayed, &r.batch);
        }
        assert!(!rd.torn_tail());
    }
    assert_eq!(next - 1, pos.last_seq);
    assert_eq!(replayed, model);
    assert_eq!(state(&db), model);
    // Release (after a flush, so the flush thread archives nothing more meanwhile).
    db.flush().unwrap();
    let archived = db.archived_wal().unwrap();
    let first = archived[0].id;
    db.release_archived_wal(first).unwrap();
    assert!(!archived[0].path.exists());
    let after = db.archived_wal().unwrap();
    assert_eq!(after.len(), archived.len() - 1);
    assert!(after.iter().all(|a| a.id != first));
    assert!(matches!(
        db.release_archived_wal(first),
        Err(Error::InvalidArgument(_))
    ));
    // Reopen: archive/ is not garbage; the old live segments join it.
    db.close().unwrap();
    let db = Engine::open(d.path(), root(), archive_opts()).unwrap();
    let again = db.archived_wal().unwrap();
    for a in &after {
        assert!(
            again.iter().any(|b| b.id == a.id),
            "segment {} lost at reopen",
            a.id
        );
    }
    assert_eq!(state(&db), model);
    // Archive mode off: the archive is left alone, nothing new is archived.
    db.close().unwrap();
    let n = again.len();
    let db = Engine::open(d.path(), root(), small_opts()).unwrap();
    db.put(b"x", b"y", Durability::Sync).unwrap();
    db.flush().unwrap();
    assert_eq!(db.archived_wal().unwrap().len(), n);
}

#[test]
fn crash_between_flush_and_archive_rename_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let db = Engine::open(d.path(), root(), archive_opts()).unwrap();
    for i in 0..50u32 {
        db.put(&key(i), &value(i, 0), Durability::Sync).unwrap();
    }
    db.flush().unwrap();
    let archived = db.archived_wal().unwrap();
    let seg = archived.last().unwrap().clone();
    db.close().unwrap();
    // The state a crash after the manifest edit but before the rename leaves: the segment
    // is still in the main directory, unreferenced by the manifest.
    let back = d.path().join(seg.path.file_name().unwrap());
    std::fs::rename(&seg.path, &back).unwrap();
    let db = Engine::open(d.path(), root(), archive_opts()).unwrap();
    assert!(!back.exists(), "unreferenced segment left in place");
    let keys = keys_of(&db, &[]);
    let recs = read_records(&seg.path, &keys);
    let mut s = State::new();
    for r in &recs {
        apply(&mut s, &r.batch);
    }
    assert_eq!(s.len(), 50);
    assert_eq!(state(&db).len(), 50);
}

/// Power cuts (FaultyFs) at random points of a workload with background flushes in archive
/// mode: after each reopen, the archived and live WAL replayed from sequence 1 must equal
/// the engine's state, with no gap in sequence numbers, and hold every synced write.
#[test]
fn faulty_fs_crashes_never_lose_archived_records() {
    for seed in 0..2u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0xA7C4 + seed);
        let d = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let opts = Options {
            memtable_bytes: 8 << 10,
            block_size: 256,
            fs: Arc::new(fs.clone()),
            data_key_rotation: None,
            archive_wal: true,
            ..Options::default()
        };
        // seq -> (key, value) of every write acknowledged as synced, across all rounds.
        let mut acked: BTreeMap<u64, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
        for round in 0..5 {
            let db = Engine::open(d.path(), root(), opts.clone())
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: reopen: {e}"));
            // Replay the whole history from the WAL archive and compare.
            let keys = keys_of(&db, &[]);
            let pos = db.wal_position().unwrap();
            let mut segs: Vec<PathBuf> = db
                .archived_wal()
                .unwrap()
                .into_iter()
                .map(|a| a.path)
                .collect();
            segs.push(pos.path.clone());
            let mut replayed = State::new();
            let mut next = 1;
            let mut by_seq: BTreeMap<u64, WriteBatch> = BTreeMap::new();
            for s in &segs {
                for r in read_records(s, &keys) {
                    assert_eq!(r.base_seq, next, "seed {seed} round {round}: gap");
                    next = r.last_seq() + 1;
                    apply(&mut replayed, &r.batch);
                    by_seq.insert(r.base_seq, r.batch);
                }
            }
            assert_eq!(next - 1, pos.last_seq);
            let got = state(&db);
            assert_eq!(
                got, replayed,
                "seed {seed} round {round}: archive != engine"
            );
            for (seq, (k, v)) in &acked {
                let b = by_seq
                    .get(seq)
                    .unwrap_or_else(|| panic!("seed {seed} round {round}: synced seq {seq} lost"));
                let ops: Vec<BatchOp<'_>> = b.iter().collect();
                assert_eq!(
                    ops,
                    vec![BatchOp::Put(k, v)],
                    "seed {seed} round {round}: seq {seq}"
                );
            }
            let n = rng.random_range(50..400);
            for i in 0..n {
                let k = key(rng.random_range(0..300));
                let v = value(i, round);
                let sync = rng.random_bool(0.3);
                let d = if sync {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                if db.put(&k, &v, d).is_err() {
                    break;
                }
                if sync {
                    acked.insert(db.stats().last_sequence, (k, v));
                }
            }
            let mode = if rng.random_bool(0.5) {
                CrashMode::DropUnsynced
            } else {
                CrashMode::TearLastWrite
            };
            fs.crash(mode).unwrap();
            drop(db);
            fs.revive();
        }
    }
}

#[test]
fn checkpoint_plus_wal_reproduces_state_and_point_in_time() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let src = tempfile::tempdir().unwrap();
    let db = Engine::open(src.path(), root(), archive_opts()).unwrap();
    random_writes(&db, &mut rng, 1500, 1);
    let (cp, mut copy) = copy_checkpoint(&db);
    assert!(!cp.tables.is_empty());
    assert!(cp.covered_seq > 0 && cp.covered_commit_micros > 0);
    assert!(cp.taken_micros >= cp.covered_commit_micros);
    // Keep writing under a new key, then compact everything: the checkpoint's tables leave
    // the live version but stay on disk while the checkpoint is held.
    db.rotate_data_key().unwrap();
    random_writes(&db, &mut rng, 1500, 2);
    db.compact().unwrap();
    for t in &cp.tables {
        assert!(t.path.exists(), "pinned table {} deleted", t.id);
    }
    // The instant T between two write phases, and the state as of T.
    let t_pos = db.wal_position().unwrap();
    let at_t = state(&db);
    random_writes(&db, &mut rng, 1500, 3);
    let pos = copy_wal(&db, &mut copy);
    let now = state(&db);
    assert_ne!(now, at_t);

    let dst = tempfile::tempdir().unwrap();
    let (full, n) = restore(&copy, &dst.path().join("full"), other_root(), None);
    assert!(n > 0);
    assert_eq!(state(&full), now, "checkpoint + WAL != source");
    assert_eq!(full.stats().last_sequence, pos.last_seq);
    let (pitr, _) = restore(
        &copy,
        &dst.path().join("pitr"),
        RootKey::from_bytes([9; 32]),
        Some(t_pos.as_of_micros),
    );
    assert_eq!(state(&pitr), at_t, "restore to T != state as of T");
    assert_eq!(pitr.stats().last_sequence, t_pos.last_seq);
    // The restored engines are ordinary databases: they reopen and take writes.
    pitr.put(b"after", b"restore", Durability::Sync).unwrap();
    pitr.close().unwrap();
    let pitr = Engine::open(
        &dst.path().join("pitr"),
        RootKey::from_bytes([9; 32]),
        small_opts(),
    )
    .unwrap();
    assert_eq!(pitr.get(b"after").unwrap(), Some(b"restore".to_vec()));

    // Dropping the checkpoint releases its tables.
    let paths: Vec<PathBuf> = cp.tables.iter().map(|t| t.path.clone()).collect();
    drop(cp);
    assert!(
        paths.iter().all(|p| !p.exists()),
        "released tables not deleted"
    );
}

#[test]
fn restoring_twice_shares_no_salt_or_key_and_keys_are_separate() {
    let src = tempfile::tempdir().unwrap();
    let db = Engine::open(src.path(), root(), archive_opts()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    random_writes(&db, &mut rng, 2000, 1);
    let (_cp, mut copy) = copy_checkpoint(&db);
    copy_wal(&db, &mut copy);
    let dst = tempfile::tempdir().unwrap();
    let (a_root, b_root) = (RootKey::from_bytes([1; 32]), RootKey::from_bytes([2; 32]));
    let (a, _) = restore(&copy, &dst.path().join("a"), a_root.clone(), None);
    let (b, _) = restore(&copy, &dst.path().join("b"), b_root.clone(), None);
    assert_eq!(state(&a), state(&b));
    assert_eq!(state(&a), state(&db));
    a.close().unwrap();
    b.close().unwrap();
    // Headers: salt at 20..52, key check value (HMAC of the data key) at 52..68.
    let headers = |dir: &Path| -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        for suffix in [".sst", ".wal"] {
            for p in files_with_suffix(dir, suffix) {
                v.push(std::fs::read(&p).unwrap()[..84].to_vec());
            }
        }
        v
    };
    let (ha, hb) = (
        headers(&dst.path().join("a")),
        headers(&dst.path().join("b")),
    );
    let hs = headers(src.path());
    assert!(!ha.is_empty() && !hb.is_empty());
    for x in &ha {
        for y in hb.iter().chain(hs.iter()) {
            assert_ne!(x[20..52], y[20..52], "salt reused");
            assert_ne!(x[52..68], y[52..68], "data key shared");
        }
    }
    for (dir, own, others) in [
        ("a", &a_root, [&b_root, &root()]),
        ("b", &b_root, [&a_root, &root()]),
    ] {
        let p = dst.path().join(dir);
        for r in others {
            assert!(matches!(
                Engine::open(&p, r.clone(), small_opts()),
                Err(Error::WrongKey)
            ));
        }
        let e = Engine::open(&p, own.clone(), small_opts()).unwrap();
        assert_eq!(state(&e), state(&db));
    }
}

#[test]
fn tampered_or_truncated_table_copy_fails_verify_and_restore() {
    let src = tempfile::tempdir().unwrap();
    let db = Engine::open(src.path(), root(), archive_opts()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    random_writes(&db, &mut rng, 1500, 1);
    db.flush().unwrap();
    let (_cp, copy) = copy_checkpoint(&db);
    let keys = offline_keys(&copy, &root()).unwrap();
    let (level, id, path) = copy.tables[0].clone();
    let clean = std::fs::read(&path).unwrap();
    let sum = verify_table(&path, id, &keys).unwrap();
    assert_eq!(sum.size, clean.len() as u64);
    assert!(sum.entries > 0 && sum.blocks > 1);
    let name = path.display().to_string();
    let dst = tempfile::tempdir().unwrap();
    let mut n = 0;
    // Flip one byte at many positions: header, data blocks, metadata, trailer.
    let step = (clean.len() / 37).max(1);
    for off in (0..clean.len())
        .step_by(step)
        .chain([clean.len() - 1, 30, 90])
    {
        let mut bad = clean.clone();
        bad[off] ^= 0x04;
        std::fs::write(&path, &bad).unwrap();
        match verify_table(&path, id, &keys) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, name, "offset {off}"),
            other => panic!("flip at {off}: expected corruption, got {other:?}"),
        }
        let target = dst.path().join(format!("r{n}"));
        n += 1;
        let mut b = RestoreBuilder::new(&target, other_root(), small_opts()).unwrap();
        match b.add_table(level, &path, id, &keys) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, name, "offset {off}"),
            other => panic!("flip at {off}: expected corruption from add_table, got {other:?}"),
        }
        assert!(
            files_with_suffix(&target, ".sst").is_empty(),
            "partial table left"
        );
    }
    // A flipped data block is reported with its block index.
    let mut bad = clean.clone();
    bad[84 + 40] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        verify_table(&path, id, &keys),
        Err(Error::Corruption { block: Some(0), .. })
    ));
    // Truncations.
    for cut in [clean.len() - 1, clean.len() - 5, clean.len() / 2, 100, 10] {
        std::fs::write(&path, &clean[..cut]).unwrap();
        assert!(
            matches!(
                verify_table(&path, id, &keys),
                Err(Error::Corruption { .. })
            ),
            "truncated to {cut}"
        );
        let target = dst.path().join(format!("r{n}"));
        n += 1;
        let mut b = RestoreBuilder::new(&target, other_root(), small_opts()).unwrap();
        assert!(
            b.add_table(level, &path, id, &keys)
                .unwrap_err()
                .is_corruption()
        );
    }
    // Wrong file id for the copy.
    std::fs::write(&path, &clean).unwrap();
    assert!(
        verify_table(&path, id + 1, &keys)
            .unwrap_err()
            .is_corruption()
    );
    // Keys that lack the table's data key.
    let other = Engine::open(&dst.path().join("other"), root(), small_opts()).unwrap();
    let foreign = keys_of(&other, &[]);
    assert!(
        verify_table(&path, id, &foreign)
            .unwrap_err()
            .is_corruption()
    );
}

#[test]
fn wal_copies_prefixes_damage_and_wrong_keys() {
    let d = tempfile::tempdir().unwrap();
    let opts = Options {
        memtable_bytes: 64 << 20,
        ..archive_opts()
    };
    let db = Engine::open(d.path(), root(), opts).unwrap();
    for i in 0..40u32 {
        db.put(&key(i), &value(i, 0), Durability::Buffered).unwrap();
    }
    let pos = db.wal_position().unwrap();
    let keys = keys_of(&db, &[]);
    let full = std::fs::read(&pos.path).unwrap()[..pos.len as usize].to_vec();
    let copy = d.path().join("copy.wal");
    // Record boundaries, from a clean read.
    std::fs::write(&copy, &full).unwrap();
    let mut r = WalReader::open(&copy, pos.segment, &keys).unwrap();
    let mut ends = Vec::new();
    while let Some(rec) = r.next() {
        rec.unwrap();
        ends.push(r.valid_len());
    }
    assert_eq!(ends.len(), 40);
    // Prefixes read cleanly: whole records, and a torn tail iff cut mid-record. Cuts: around
    // every record boundary, inside every frame header, and every 13th byte.
    let mut cuts: Vec<usize> = (84..=full.len()).step_by(13).collect();
    for &e in std::iter::once(&84u64).chain(ends.iter()) {
        let e = e as usize;
        cuts.extend([e.saturating_sub(1), e, e + 1, e + 8, e + 15, e + 16, e + 17]);
    }
    cuts.retain(|&c| (84..=full.len()).contains(&c));
    for cut in cuts {
        std::fs::write(&copy, &full[..cut]).unwrap();
        let mut r = WalReader::open(&copy, pos.segment, &keys).unwrap();
        let recs: Vec<_> = r.by_ref().collect::<Result<_, _>>().unwrap();
        let whole = ends.iter().filter(|&&e| e <= cut as u64).count();
        assert_eq!(recs.len(), whole, "cut {cut}");
        assert_eq!(r.torn_tail(), !(cut == 84 || ends.contains(&(cut as u64))));
    }
    // Garbage after a valid prefix (a torn write) also ends cleanly.
    let mut torn = full[..ends[10] as usize].to_vec();
    torn.extend(std::iter::repeat_n(0xA5u8, 50));
    std::fs::write(&copy, &torn).unwrap();
    let mut r = WalReader::open(&copy, pos.segment, &keys).unwrap();
    assert_eq!(r.by_ref().count(), 11);
    assert!(r.torn_tail());
    // Damage followed by authentic records: corruption naming the file and record.
    let mut bad = full.clone();
    bad[ends[4] as usize + 30] ^= 0x10;
    std::fs::write(&copy, &bad).unwrap();
    let r = WalReader::open(&copy, pos.segment, &keys).unwrap();
    let out: Vec<_> = r.collect();
    assert_eq!(out.len(), 6);
    assert!(out[..5].iter().all(|x| x.is_ok()));
    match &out[5] {
        Err(Error::Corruption { file, block, .. }) => {
            assert_eq!(file, &copy.display().to_string());
            assert_eq!(*block, Some(5));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // Wrong id, wrong keys, wrong root.
    std::fs::write(&copy, &full).unwrap();
    assert!(
        WalReader::open(&copy, pos.segment + 1, &keys)
            .unwrap_err()
            .is_corruption()
    );
    let reg = db.key_registry().unwrap();
    assert!(matches!(
        OfflineKeys::from_registries(&other_root(), &[(reg.id, &reg.bytes)]),
        Err(Error::WrongKey)
    ));
    assert!(matches!(
        verify_registry(&reg.bytes, reg.id, &other_root()),
        Err(Error::WrongKey)
    ));
    verify_registry(&reg.bytes, reg.id, &root()).unwrap();
    assert!(
        verify_registry(&reg.bytes, reg.id + 1, &root())
            .unwrap_err()
            .is_corruption()
    );
    let mut flipped = reg.bytes.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 1;
    assert!(
        OfflineKeys::from_registries(&root(), &[(reg.id, &flipped)])
            .unwrap_err()
            .is_corruption()
    );
}

#[test]
fn reencrypt_keeps_keys_of_unreleased_archived_segments() {
    let d = tempfile::tempdir().unwrap();
    let db = Engine::open(d.path(), root(), archive_opts()).unwrap();
    for i in 0..100u32 {
        db.put(&key(i), &value(i, 0), Durability::Buffered).unwrap();
    }
    db.flush().unwrap();
    let old_key = db.stats().newest_key;
    db.rotate_data_key().unwrap();
    db.reencrypt(&|_| {}).unwrap();
    let st = db.stats();
    assert!(
        st.key_ids_known.contains(&old_key),
        "key of archived WAL retired"
    );
    // The current registry alone opens every archived segment.
    let keys = keys_of(&db, &[]);
    for a in db.archived_wal().unwrap() {
        WalReader::open(&a.path, a.id, &keys)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
    }
    // Once released, the next reencrypt retires the key.
    for a in db.archived_wal().unwrap() {
        db.release_archived_wal(a.id).unwrap();
    }
    db.reencrypt(&|_| {}).unwrap();
    assert!(!db.stats().key_ids_known.contains(&old_key));
}

#[test]
fn interrupted_restore_fails_to_open_clearly() {
    let src = tempfile::tempdir().unwrap();
    let db = Engine::open(src.path(), root(), archive_opts()).unwrap();
    for i in 0..500u32 {
        db.put(&key(i), &value(i, 0), Durability::Buffered).unwrap();
    }
    db.flush().unwrap();
    let (_cp, copy) = copy_checkpoint(&db);
    let keys = offline_keys(&copy, &root()).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let target = dst.path().join("t");
    // Crash points: right after new(), after a table.
    for tables in [0usize, 1] {
        let _ = std::fs::remove_dir_all(&target);
        let mut b = RestoreBuilder::new(&target, other_root(), small_opts()).unwrap();
        for (level, id, path) in copy.tables.iter().take(tables) {
            b.add_table(*level, path, *id, &keys).unwrap();
        }
        drop(b);
        match Engine::open(&target, other_root(), small_opts()) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, "RESTORING"),
            other => panic!("expected a clear failure, got {other:?}"),
        }
    }
    // The target must be empty or absent.
    assert!(matches!(
        RestoreBuilder::new(&target, other_root(), small_opts()),
        Err(Error::InvalidArgument(_))
    ));
    // covered_seq below the tables' sequence numbers is refused.
    std::fs::remove_dir_all(&target).unwrap();
    let mut b = RestoreBuilder::new(&target, other_root(), small_opts()).unwrap();
    for (level, id, path) in &copy.tables {
        b.add_table(*level, path, *id, &keys).unwrap();
    }
    assert!(matches!(b.finish(0), Err(Error::InvalidArgument(_))));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn restore_leaves_no_plaintext_marker() {
    let nonce: u64 = rand::random();
    let marker = format!("CANARY-{nonce:016x}-RESTORE").into_bytes();
    let src = tempfile::tempdir().unwrap();
    let db = Engine::open(src.path(), root(), archive_opts()).unwrap();
    for i in 0..800u32 {
        let mut k = marker.clone();
        k.extend_from_slice(&i.to_be_bytes());
        let mut v = b"value-".to_vec();
        v.extend_from_slice(&marker);
        db.put(&k, &v, Durability::Buffered).unwrap();
    }
    db.flush().unwrap();
    let (_cp, mut copy) = copy_checkpoint(&db);
    for i in 800..1200u32 {
        let mut k = marker.clone();
        k.extend_from_slice(&i.to_be_bytes());
        db.put(&k, &marker, Durability::Buffered).unwrap();
    }
    copy_wal(&db, &mut copy);
    let dst = tempfile::tempdir().unwrap();
    let (r, _) = restore(&copy, &dst.path().join("t"), other_root(), None);
    assert_eq!(state(&r).len(), 1200);
    let keys = offline_keys(&copy, &root()).unwrap();
    for (_, id, p) in &copy.tables {
        verify_table(p, *id, &keys).unwrap();
    }
    r.close().unwrap();
    for dir in [dst.path(), copy.dir.path(), src.path()] {
        for (name, bytes) in all_files(dir) {
            assert!(!contains(&bytes, &marker), "marker in {name}");
            assert!(!contains(&bytes, &marker[..16]), "marker prefix in {name}");
        }
    }
}

/// The exact crash point: the flush's manifest edit is durable, the archive rename fails
/// (the engine poisons itself rather than leave a gap), then the power goes. Reopening must
/// archive the segment with every acknowledged record.
#[test]
fn failed_archive_rename_then_crash_keeps_the_segment() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let opts = Options {
        fs: Arc::new(fs.clone()),
        archive_wal: true,
        data_key_rotation: None,
        memtable_bytes: 16 << 20,
        ..Options::default()
    };
    let db = Engine::open(d.path(), root(), opts.clone()).unwrap();
    let seg = db.wal_position().unwrap().segment;
    for i in 0..100u32 {
        db.put(&key(i), &value(i, 0), Durability::Sync).unwrap();
    }
    fs.fail_renames(1);
    assert!(db.flush().is_err());
    assert!(matches!(
        db.put(b"k", b"v", Durability::Sync),
        Err(Error::Poisoned(_))
    ));
    fs.crash(CrashMode::DropUnsynced).unwrap();
    drop(db);
    fs.revive();
    let db = Engine::open(d.path(), root(), opts).unwrap();
    let archived = db.archived_wal().unwrap();
    let a = archived
        .iter()
        .find(|a| a.id == seg)
        .unwrap_or_else(|| panic!("segment {seg} not archived: {archived:?}"));
    let keys = keys_of(&db, &[]);
    let recs = read_records(&a.path, &keys);
    assert_eq!(recs.len(), 100);
    let mut s = State::new();
    for r in &recs {
        apply(&mut s, &r.batch);
    }
    assert_eq!(s, state(&db));
    assert_eq!(s.len(), 100);
}
