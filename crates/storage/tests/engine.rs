//! Functional tests of the engine API: reads, writes, batches, iterators, snapshots,
//! flush/reopen, compaction, keys, temp files, locking.

mod common;

use std::io::{Read, Write};

use common::*;
use storage::{Direction, Durability, Engine, Error, Options, WriteBatch};

#[test]
fn put_get_delete_roundtrip_and_reopen() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    db.put(b"a", b"1", Durability::Sync).unwrap();
    db.put(b"b", b"2", Durability::Buffered).unwrap();
    db.delete(b"a", Durability::Sync).unwrap();
    assert_eq!(db.get(b"a").unwrap(), None);
    assert_eq!(db.get(b"b").unwrap(), Some(b"2".to_vec()));
    db.close().unwrap();
    let db = open(d.path());
    assert_eq!(db.get(b"a").unwrap(), None);
    assert_eq!(db.get(b"b").unwrap(), Some(b"2".to_vec()));
}

#[test]
fn batch_is_atomic_and_later_ops_win() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    let mut b = WriteBatch::new();
    b.put(b"k", b"v1")
        .put(b"k", b"v2")
        .put(b"x", b"y")
        .delete(b"x");
    db.write(b, Durability::Sync).unwrap();
    assert_eq!(db.get(b"k").unwrap(), Some(b"v2".to_vec()));
    assert_eq!(db.get(b"x").unwrap(), None);
}

#[test]
fn iterators_forward_reverse_and_bounds_across_memtable_and_tables() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    for i in 0..2000u32 {
        db.put(&key(i), &value(i, 0), Durability::Buffered).unwrap();
        if i % 700 == 0 {
            db.flush().unwrap();
        }
    }
    for i in (0..2000u32).step_by(3) {
        db.delete(&key(i), Durability::Buffered).unwrap();
    }
    let expect: Vec<(Vec<u8>, Vec<u8>)> = (0..2000u32)
        .filter(|i| i % 3 != 0)
        .map(|i| (key(i), value(i, 0)))
        .collect();
    assert_eq!(collect(&db, Direction::Forward), expect);
    let mut rev = expect.clone();
    rev.reverse();
    assert_eq!(collect(&db, Direction::Reverse), rev);
    let r: Vec<_> = db
        .iter(key(100)..key(200), Direction::Forward)
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    let e: Vec<_> = (100..200u32).filter(|i| i % 3 != 0).map(key).collect();
    assert_eq!(r, e);
    let r: Vec<_> = db
        .iter(key(100)..=key(200), Direction::Reverse)
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    let mut e: Vec<_> = (100..=200u32).filter(|i| i % 3 != 0).map(key).collect();
    e.reverse();
    assert_eq!(r, e);
    db.compact().unwrap();
    assert_eq!(collect(&db, Direction::Forward), expect);
}

#[test]
fn snapshot_sees_point_in_time_while_writes_and_compaction_continue() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    for i in 0..500u32 {
        db.put(&key(i), &value(i, 0), Durability::Buffered).unwrap();
    }
    let snap = db.snapshot();
    let it = db.iter(.., Direction::Forward).unwrap();
    for i in 0..500u32 {
        if i % 2 == 0 {
            db.delete(&key(i), Durability::Buffered).unwrap();
        } else {
            db.put(&key(i), &value(i, 1), Durability::Buffered).unwrap();
        }
    }
    db.compact().unwrap();
    for i in 0..500u32 {
        assert_eq!(snap.get(&key(i)).unwrap(), Some(value(i, 0)));
    }
    let seen: Vec<_> = it.map(|r| r.unwrap()).collect();
    assert_eq!(seen.len(), 500);
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, (k, v))| *k == key(i as u32) && *v == value(i as u32, 0))
    );
    assert_eq!(db.get(&key(0)).unwrap(), None);
    assert_eq!(db.get(&key(1)).unwrap(), Some(value(1, 1)));
    drop(snap);
    db.compact().unwrap();
    assert_eq!(collect(&db, Direction::Forward).len(), 250);
    let st = db.stats();
    let entries: u64 = st.levels.iter().map(|l| l.entries).sum();
    assert_eq!(
        entries, 250,
        "compaction without snapshots keeps one version per live key"
    );
}

#[test]
fn large_values_and_keys_roundtrip() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let bigkey = vec![7u8; 60 << 10];
    db.put(&bigkey, &big, Durability::Sync).unwrap();
    assert_eq!(db.get(&bigkey).unwrap().as_deref(), Some(&big[..]));
    db.flush().unwrap();
    assert_eq!(db.get(&bigkey).unwrap().as_deref(), Some(&big[..]));
    let too_big = vec![0u8; storage::MAX_KEY_LEN + 1];
    assert!(matches!(
        db.put(&too_big, b"v", Durability::Sync),
        Err(Error::InvalidArgument(_))
    ));
    db.close().unwrap();
    let db = open(d.path());
    assert_eq!(db.get(&bigkey).unwrap().as_deref(), Some(&big[..]));
}

#[test]
fn wrong_root_key_is_reported() {
    let d = tempfile::tempdir().unwrap();
    open(d.path()).close().unwrap();
    let r = Engine::open(d.path(), other_root(), small_opts());
    assert!(matches!(r, Err(Error::WrongKey)), "{r:?}");
    // The right key still works afterwards.
    open(d.path()).close().unwrap();
}

#[test]
fn directory_lock_prevents_second_open() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    let r = Engine::open(d.path(), root(), small_opts());
    assert!(matches!(r, Err(Error::Locked(_))), "{r:?}");
    db.close().unwrap();
    open(d.path()).close().unwrap();
}

#[test]
fn closed_engine_refuses_operations() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    let db2 = db.clone();
    db.close().unwrap();
    assert!(matches!(db2.get(b"x"), Err(Error::Closed)));
    assert!(matches!(
        db2.put(b"x", b"y", Durability::Sync),
        Err(Error::Closed)
    ));
}

#[test]
fn rotation_then_reencrypt_retires_old_keys() {
    let d = tempfile::tempdir().unwrap();
    // No background compaction: it would re-encrypt old tables on its own.
    let opts = Options {
        background_compaction: false,
        ..small_opts()
    };
    let db = Engine::open(d.path(), root(), opts.clone()).unwrap();
    for i in 0..1000u32 {
        db.put(&key(i), &value(i, 0), Durability::Buffered).unwrap();
    }
    db.flush().unwrap();
    let k1 = db.stats().newest_key;
    let k2 = db.rotate_data_key().unwrap();
    assert!(k2 > k1);
    for i in 1000..1500u32 {
        db.put(&key(i), &value(i, 0), Durability::Buffered).unwrap();
    }
    db.flush().unwrap();
    let st = db.stats();
    assert!(
        st.key_ids_in_use.contains(&k1) && st.key_ids_in_use.contains(&k2),
        "{st:?}"
    );
    let calls = std::sync::Mutex::new(Vec::new());
    db.reencrypt(&|p| calls.lock().unwrap().push(p)).unwrap();
    let calls = calls.into_inner().unwrap();
    assert!(!calls.is_empty() && calls.last().is_some_and(|p| p.done == p.total));
    let st = db.stats();
    assert_eq!(st.key_ids_in_use, vec![k2], "{st:?}");
    assert_eq!(st.key_ids_known, vec![k2], "{st:?}");
    for i in 0..1500u32 {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i, 0)));
    }
    db.close().unwrap();
    let db = Engine::open(d.path(), root(), opts).unwrap();
    assert_eq!(db.stats().key_ids_known, vec![k2]);
    assert_eq!(collect(&db, Direction::Forward).len(), 1500);
}

#[test]
fn rotation_period_rotates_at_open() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    let k1 = db.stats().newest_key;
    db.close().unwrap();
    let opts = Options {
        data_key_rotation: Some(std::time::Duration::ZERO),
        ..small_opts()
    };
    let db = Engine::open(d.path(), root(), opts).unwrap();
    assert!(db.stats().newest_key > k1);
}

#[test]
fn temp_file_roundtrip_and_cleanup() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    let mut w = db.temp_file().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    w.write_all(&data).unwrap();
    let mut r = w.finish().unwrap();
    let path = r.path().to_path_buf();
    assert!(path.exists());
    let mut back = Vec::new();
    r.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    drop(r);
    assert!(!path.exists());
    let w = db.temp_file().unwrap();
    drop(w);
    assert!(files_with_suffix(d.path(), ".tmp").is_empty());
}

#[test]
fn background_compaction_bounds_l0() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    for i in 0..20_000u32 {
        let k = key((i * 7919) % 20_000);
        db.put(&k, &value(i, 1), Durability::Buffered).unwrap();
    }
    db.flush().unwrap();
    // Background compaction keeps L0 below the trigger once it has caught up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let st = db.stats();
        if st.levels[0].files < 4 {
            assert!(st.levels.iter().skip(1).any(|l| l.files > 0), "{st:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "compaction did not catch up: {st:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(collect(&db, Direction::Forward).len(), 20_000);
}

/// Point reads consult the memtables' filters without a lock while a writer sets their
/// bits: a key must be readable from the moment its write returns, through memtable
/// switches and flushes, and a key not yet written must stay absent.
#[test]
fn readers_see_each_key_as_soon_as_its_write_returns() {
    use std::sync::atomic::{AtomicU32, Ordering};
    const N: u32 = 20_000;
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    // One past the last key whose put has returned.
    let written = AtomicU32::new(0);
    std::thread::scope(|s| {
        for r in 0..3u32 {
            let (db, written) = (db.clone(), &written);
            s.spawn(move || {
                let mut probes = 0u32;
                loop {
                    let w = written.load(Ordering::Acquire);
                    if w == N {
                        break;
                    }
                    if w > 0 {
                        let i = (w - 1).saturating_sub(probes % 64 * r);
                        let got = db.get(&key(i)).unwrap();
                        assert_eq!(got, Some(value(i, 0)), "key {i} of {w} written");
                    }
                    assert_eq!(db.get(&key(N + probes)).unwrap(), None);
                    probes += 1;
                }
            });
        }
        for i in 0..N {
            db.put(&key(i), &value(i, 0), Durability::Buffered).unwrap();
            written.store(i + 1, Ordering::Release);
        }
    });
    assert!(
        db.stats().levels.iter().any(|l| l.files > 0),
        "no flush ran"
    );
}

#[test]
fn concurrent_sync_writers_group_commit() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..100u32 {
                    db.put(&key(t * 1000 + i), &value(i, t), Durability::Sync)
                        .unwrap();
                }
            });
        }
    });
    db.close().unwrap();
    let db = open(d.path());
    assert_eq!(collect(&db, Direction::Forward).len(), 400);
}

#[test]
fn a_no_wait_write_refuses_to_switch_the_memtable_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let db = Engine::open(d.path(), root(), small_opts()).unwrap();
    // No-wait writes go through until the memtable is full; the first one that would have
    // to switch it is refused and writes nothing.
    let mut i = 0u32;
    loop {
        match db.put(&key(i), &value(i, 0), Durability::NoWait) {
            Ok(()) => i += 1,
            Err(storage::Error::WouldBlock) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(i < 10_000, "the memtable never filled");
    }
    assert!(i > 0);
    assert_eq!(db.get(&key(i)).unwrap(), None);
    // A write that may wait switches the memtable; no-wait writes then go through again.
    db.put(b"waited", b"v", Durability::Buffered).unwrap();
    db.put(b"after", b"v", Durability::NoWait).unwrap();
    for j in 0..i {
        assert_eq!(db.get(&key(j)).unwrap(), Some(value(j, 0)));
    }
    assert_eq!(db.get(b"after").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn stats_report_due_compaction_until_it_has_run() {
    let d = tempfile::tempdir().unwrap();
    let opts = Options {
        background_compaction: false,
        ..small_opts()
    };
    let db = Engine::open(d.path(), root(), opts).unwrap();
    assert!(!db.stats().compaction_due, "an empty engine owes nothing");
    assert!(!db.background_work_pending());
    // Overlapping L0 tables, one per flush, until L0 is over its bound.
    let mut flushes = 0;
    while !db.stats().compaction_due {
        assert!(flushes < 64, "L0 never reported over its bound");
        for i in 0..200u32 {
            db.put(&key(i), &value(i, flushes), Durability::Buffered)
                .unwrap();
        }
        db.flush().unwrap();
        flushes += 1;
    }
    assert!(flushes > 1, "one L0 table alone is not over the bound");
    assert!(db.background_work_pending());
    assert_eq!(db.stats().levels[0].files, flushes as usize);
    db.compact().unwrap();
    let st = db.stats();
    assert!(!st.compaction_due, "a full compaction leaves nothing due");
    assert!(!db.background_work_pending());
    assert_eq!(st.levels[0].files, 0);
    assert_eq!(db.get(&key(7)).unwrap(), Some(value(7, flushes - 1)));
}
