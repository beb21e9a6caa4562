//! Plaintext canary: records carrying a unique marker go through every code path that
//! writes files (WAL, flush, compaction, rotation, re-encryption, temp spill); at several
//! points every byte under the directory is scanned. The marker must never appear.

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use storage::{Direction, Durability, Engine, Options, WriteBatch};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn assert_no_marker(dir: &Path, markers: &[Vec<u8>], when: &str) {
    let files = all_files(dir);
    assert!(!files.is_empty());
    for (name, bytes) in files {
        for m in markers {
            assert!(
                !contains(&bytes, m),
                "{when}: marker {:?} found in {name}",
                String::from_utf8_lossy(m)
            );
        }
    }
}

#[test]
fn scanner_finds_a_plaintext_marker() {
    // Guards against a scanner that can never fail.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("plain"), b"xxCANARY-selftest-markerxx").unwrap();
    let files = all_files(d.path());
    assert!(
        files
            .iter()
            .any(|(_, b)| contains(b, b"CANARY-selftest-marker"))
    );
}

#[test]
fn marker_never_appears_on_disk() {
    let d = tempfile::tempdir().unwrap();
    let nonce: u64 = rand::random();
    let marker = format!("CANARY-{nonce:016x}-SECRET").into_bytes();
    // Also look for short slices, as a key prefix or value fragment might be stored alone.
    let markers = vec![marker.clone(), marker[..16].to_vec()];
    let opts = Options {
        memtable_bytes: 16 << 10,
        block_size: 256,
        data_key_rotation: None,
        ..Options::default()
    };
    let db = Engine::open(d.path(), root(), opts.clone()).unwrap();
    let rec = |i: u32| {
        let mut k = marker.clone();
        k.extend_from_slice(format!("{i:06}").as_bytes());
        let mut v = format!("value {i} ").into_bytes();
        v.extend_from_slice(&marker);
        v.extend_from_slice(&marker);
        (k, v)
    };
    for i in 0..400u32 {
        let (k, v) = rec(i);
        db.put(
            &k,
            &v,
            if i % 10 == 0 {
                Durability::Sync
            } else {
                Durability::Buffered
            },
        )
        .unwrap();
    }
    let mut b = WriteBatch::new();
    for i in 400..450u32 {
        let (k, v) = rec(i);
        b.put(&k, &v);
    }
    db.write(b, Durability::Sync).unwrap();
    assert_no_marker(d.path(), &markers, "after WAL writes");
    db.flush().unwrap();
    assert_no_marker(d.path(), &markers, "after flush");
    db.compact().unwrap();
    assert_no_marker(d.path(), &markers, "after compact");
    db.rotate_data_key().unwrap();
    for i in 450..600u32 {
        let (k, v) = rec(i);
        db.put(&k, &v, Durability::Buffered).unwrap();
    }
    db.reencrypt(&|_| {}).unwrap();
    assert_no_marker(d.path(), &markers, "after rotate + reencrypt");
    // Spill files: one finished (reader alive) and one still being written.
    let mut w = db.temp_file().unwrap();
    for _ in 0..5000 {
        w.write_all(&marker).unwrap();
    }
    let reader = w.finish().unwrap();
    let mut w2 = db.temp_file().unwrap();
    for _ in 0..5000 {
        w2.write_all(&marker).unwrap();
    }
    // Unflushed WAL data too.
    for i in 600..650u32 {
        let (k, v) = rec(i);
        db.put(&k, &v, Durability::Sync).unwrap();
    }
    assert_no_marker(d.path(), &markers, "with live temp files and WAL");
    drop(reader);
    drop(w2);
    assert_eq!(collect(&db, Direction::Forward).len(), 650);
    db.close().unwrap();
    assert_no_marker(d.path(), &markers, "after close");
    // Reopen replays the WAL into a table.
    let db = Engine::open(d.path(), root(), opts).unwrap();
    assert_eq!(collect(&db, Direction::Forward).len(), 650);
    db.close().unwrap();
    assert_no_marker(d.path(), &markers, "after reopen");
}
