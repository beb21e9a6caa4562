//! Tamper tests: flip a byte in each kind of file, truncate, swap blocks, copy an old file
//! over a new one. Each must be detected and reported as corruption (naming the file) or
//! as a wrong key — never wrong data, never a panic.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::*;
use storage::{Direction, Durability, Engine, Error, Options};

fn opts() -> Options {
    Options {
        background_compaction: false,
        data_key_rotation: None,
        block_size: 512,
        memtable_bytes: 1 << 20,
        ..Options::default()
    }
}

fn fixed_key(i: u32) -> Vec<u8> {
    format!("k{i:010}").into_bytes()
}
fn fixed_value(i: u32) -> Vec<u8> {
    format!("v{i:039}").into_bytes()
}

struct Fixture {
    dir: tempfile::TempDir,
    expect: BTreeMap<Vec<u8>, Vec<u8>>,
    old_sst: PathBuf,
    new_sst: PathBuf,
    old_keys: Vec<u8>,
    keys: PathBuf,
    wal: PathBuf,
    manifest: PathBuf,
}

/// Two SSTs under two data keys, plus a WAL with 50 unflushed records.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut expect = BTreeMap::new();
    let db = Engine::open(dir.path(), root(), opts()).unwrap();
    for i in 0..300u32 {
        db.put(&fixed_key(i), &fixed_value(i), Durability::Buffered)
            .unwrap();
        expect.insert(fixed_key(i), fixed_value(i));
    }
    db.flush().unwrap();
    let old_keys = std::fs::read(&files_with_suffix(dir.path(), "KEYS-")[0]).unwrap();
    db.rotate_data_key().unwrap();
    for i in 300..600u32 {
        db.put(&fixed_key(i), &fixed_value(i), Durability::Buffered)
            .unwrap();
        expect.insert(fixed_key(i), fixed_value(i));
    }
    db.flush().unwrap();
    for i in 600..650u32 {
        db.put(&fixed_key(i), &fixed_value(i), Durability::Sync)
            .unwrap();
        expect.insert(fixed_key(i), fixed_value(i));
    }
    db.close().unwrap();
    let ssts = files_with_suffix(dir.path(), ".sst");
    assert_eq!(ssts.len(), 2, "{ssts:?}");
    let one = |p: &str| {
        let v = files_with_suffix(dir.path(), p);
        assert_eq!(v.len(), 1, "{p}: {v:?}");
        v[0].clone()
    };
    Fixture {
        expect,
        old_sst: ssts[0].clone(),
        new_sst: ssts[1].clone(),
        old_keys,
        keys: one("KEYS-"),
        wal: one(".wal"),
        manifest: one("MANIFEST-"),
        dir,
    }
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn flip(p: &Path, off: u64) {
    let mut b = std::fs::read(p).unwrap();
    let i = off as usize;
    b[i] ^= 0x20;
    std::fs::write(p, b).unwrap();
}

/// Opens and reads everything. Returns the first reported error; panics if any read
/// returns data different from what was written.
fn open_and_read_all(f: &Fixture) -> Option<Error> {
    let db = match Engine::open(f.dir.path(), root(), opts()) {
        Ok(db) => db,
        Err(e) => return Some(e),
    };
    let mut first = None;
    match db.iter(.., Direction::Forward) {
        Err(e) => first = first.or(Some(e)),
        Ok(it) => {
            for r in it {
                match r {
                    Ok((k, v)) => {
                        assert_eq!(f.expect.get(&k), Some(&v), "wrong data returned for {k:?}")
                    }
                    Err(e) => {
                        first = first.or(Some(e));
                        break;
                    }
                }
            }
        }
    }
    for (k, v) in &f.expect {
        match db.get(k) {
            Ok(got) => assert_eq!(got.as_ref(), Some(v), "wrong data returned for {k:?}"),
            Err(e) => first = first.or(Some(e)),
        }
    }
    first
}

fn assert_corruption_in(err: Option<Error>, file: &str) {
    match err {
        Some(Error::Corruption {
            file: f, detail, ..
        }) => assert_eq!(f, file, "corruption reported in wrong file: {detail}"),
        other => panic!("expected corruption in {file}, got {other:?}"),
    }
}

#[test]
fn untampered_fixture_reads_back() {
    let f = fixture();
    assert!(open_and_read_all(&f).is_none());
}

#[test]
fn flipped_byte_in_sst_data_block_is_reported_with_block() {
    let f = fixture();
    let len = std::fs::metadata(&f.new_sst).unwrap().len();
    flip(&f.new_sst, 84 + 1000.min(len / 3));
    match open_and_read_all(&f) {
        Some(Error::Corruption { file, block, .. }) => {
            assert_eq!(file, name(&f.new_sst));
            assert!(block.is_some());
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn flipped_byte_anywhere_in_sst_is_detected() {
    let f = fixture();
    let orig = std::fs::read(&f.old_sst).unwrap();
    let len = orig.len() as u64;
    // Header, first data block, middle, index/bloom/footer region, trailer.
    for off in [
        0,
        5,
        30,
        60,
        75,
        90,
        200,
        len / 2,
        len - 300,
        len - 40,
        len - 2,
    ] {
        std::fs::write(&f.old_sst, &orig).unwrap();
        flip(&f.old_sst, off);
        let e = open_and_read_all(&f);
        match e {
            Some(Error::Corruption { ref file, .. }) => {
                assert_eq!(file, &name(&f.old_sst), "offset {off}")
            }
            other => panic!("offset {off}: expected corruption, got {other:?}"),
        }
    }
}

#[test]
fn flipped_byte_in_wal_middle_is_reported() {
    let f = fixture();
    // Inside the sealed payload of the first record (header 84 + frame header 16).
    flip(&f.wal, 84 + 16 + 10);
    match open_and_read_all(&f) {
        Some(Error::Corruption { file, block, .. }) => {
            assert_eq!(file, name(&f.wal));
            assert_eq!(block, Some(0));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn flipped_byte_in_wal_frame_length_is_reported() {
    let f = fixture();
    flip(&f.wal, 84 + 1);
    assert_corruption_in(open_and_read_all(&f), &name(&f.wal));
}

#[test]
fn swapped_wal_records_are_reported() {
    let f = fixture();
    let mut b = std::fs::read(&f.wal).unwrap();
    // All records have the same size (fixed-size single puts).
    let rec = (b.len() - 84) / 50;
    let (a, c) = (84, 84 + rec);
    let first: Vec<u8> = b[a..a + rec].to_vec();
    b.copy_within(c..c + rec, a);
    b[c..c + rec].copy_from_slice(&first);
    std::fs::write(&f.wal, b).unwrap();
    assert_corruption_in(open_and_read_all(&f), &name(&f.wal));
}

#[test]
fn flipped_byte_in_manifest_is_detected() {
    let f = fixture();
    let orig = std::fs::read(&f.manifest).unwrap();
    for off in [2, 10, 40, 70, 84 + 3, 84 + 20, orig.len() as u64 / 2] {
        std::fs::write(&f.manifest, &orig).unwrap();
        flip(&f.manifest, off);
        match open_and_read_all(&f) {
            Some(Error::Corruption { file, .. }) => {
                assert_eq!(file, name(&f.manifest), "offset {off}")
            }
            Some(Error::WrongKey) => assert!(
                (52..68).contains(&off),
                "offset {off}: WrongKey outside key-check bytes"
            ),
            other => panic!("offset {off}: expected corruption, got {other:?}"),
        }
    }
}

#[test]
fn flipped_byte_in_key_registry_is_detected() {
    let f = fixture();
    let orig = std::fs::read(&f.keys).unwrap();
    for off in [0, 20, 55, 70, 84 + 2, 84 + 10, orig.len() as u64 - 1] {
        std::fs::write(&f.keys, &orig).unwrap();
        flip(&f.keys, off);
        match open_and_read_all(&f) {
            Some(Error::Corruption { file, .. }) => assert_eq!(file, name(&f.keys), "offset {off}"),
            Some(Error::WrongKey) => assert!(
                (52..68).contains(&off),
                "offset {off}: WrongKey outside key-check bytes"
            ),
            other => panic!("offset {off}: expected corruption, got {other:?}"),
        }
    }
}

#[test]
fn truncated_files_are_detected() {
    let f = fixture();
    for p in [&f.new_sst, &f.keys] {
        let orig = std::fs::read(p).unwrap();
        for cut in [orig.len() - 1, orig.len() - 30, orig.len() / 2, 50] {
            std::fs::write(p, &orig[..cut]).unwrap();
            assert_corruption_in(open_and_read_all(&f), &name(p));
        }
        std::fs::write(p, &orig).unwrap();
    }
    assert!(open_and_read_all(&f).is_none());
}

#[test]
fn swapped_sst_blocks_are_detected() {
    let f = fixture();
    let mut b = std::fs::read(&f.new_sst).unwrap();
    // Fixed-size entries make the first data blocks equal in size: swap blocks 0 and 1.
    // entry = 4+11 key, 8 seq, 1 kind, 4+40 value = 68 bytes; a block closes at >= 512
    // plaintext bytes: 7 entries -> 7*68 + 7*4 + 4 = 508, 8 entries -> 580 (+16 tag).
    let blk = 580 + 16;
    let (a, c) = (84, 84 + blk);
    let first: Vec<u8> = b[a..a + blk].to_vec();
    b.copy_within(c..c + blk, a);
    b[c..c + blk].copy_from_slice(&first);
    std::fs::write(&f.new_sst, b).unwrap();
    match open_and_read_all(&f) {
        Some(Error::Corruption { file, block, .. }) => {
            assert_eq!(file, name(&f.new_sst));
            assert!(matches!(block, Some(0) | Some(1)), "{block:?}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn old_file_copied_over_new_is_detected() {
    // An older SST copied over a newer one.
    let f = fixture();
    std::fs::copy(&f.old_sst, &f.new_sst).unwrap();
    assert_corruption_in(open_and_read_all(&f), &name(&f.new_sst));
    // The key registry from before the rotation copied over the current one.
    let f = fixture();
    std::fs::write(&f.keys, &f.old_keys).unwrap();
    assert_corruption_in(open_and_read_all(&f), &name(&f.keys));
    // A WAL segment copied over ... the SST name (wrong kind) is caught by the header.
    let f = fixture();
    std::fs::copy(&f.wal, &f.new_sst).unwrap();
    assert_corruption_in(open_and_read_all(&f), &name(&f.new_sst));
}

#[test]
fn tampered_temp_file_is_detected() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    for (what, off) in [
        ("flip body", 84 + 5 + 100),
        ("flip header", 30),
        ("truncate", 0),
    ] {
        let mut w = db.temp_file().unwrap();
        w.write_all(&data).unwrap();
        let mut r = w.finish().unwrap();
        let p = r.path().to_path_buf();
        if what == "truncate" {
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() - 100]).unwrap();
        } else {
            flip(&p, off);
        }
        let mut back = Vec::new();
        let res = r.read_to_end(&mut back);
        if what == "flip header" {
            // The reader keeps the cipher the writer derived and never reads the header
            // back, so a flipped header byte changes nothing it returns: the data reads
            // back whole and authenticated.
            res.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(back == data, "{what}: the data read back differs");
        } else {
            let e = res.expect_err(what);
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{what}: {e}");
            assert!(
                data.starts_with(&back),
                "{what}: wrong data before the error"
            );
        }
    }
}

#[test]
fn wrong_key_never_returns_data() {
    let f = fixture();
    let r = Engine::open(f.dir.path(), other_root(), opts());
    assert!(matches!(r, Err(Error::WrongKey)), "{r:?}");
}
