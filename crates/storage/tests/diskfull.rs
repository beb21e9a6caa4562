//! A full disk (ENOSPC) or a failing device (EIO) during a WAL append, a WAL fsync, a flush
//! or a compaction: the engine turns read-only with the right [`Cause`] and names the
//! operation, reads keep working, nothing it wrote for the failed operation is left behind,
//! a reopen while the disk is still full fails without leaving files behind either, and a
//! reopen once the fault is gone brings back every acknowledged write and takes writes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use common::*;
use storage::{Cause, Direction, Durability, Engine, Error, FaultyFs, Options};

fn opts(fs: &FaultyFs) -> Options {
    Options {
        // Flushes and compactions only when the test asks.
        background_compaction: false,
        memtable_bytes: 1 << 20,
        ..opts_with_fs(Arc::new(fs.clone()))
    }
}

fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn tables(dir: &Path) -> BTreeSet<String> {
    files(dir)
        .into_iter()
        .filter(|n| n.ends_with(".sst"))
        .collect()
}

/// Writes keys `from..to`, each acknowledged (fsynced) before the next.
fn write_acked(db: &Engine, from: u32, to: u32) {
    for i in from..to {
        db.put(&key(i), &value(i, 0), Durability::Sync)
            .expect("acknowledged write");
    }
}

fn assert_all_there(db: &Engine, to: u32) {
    for i in 0..to {
        assert_eq!(
            db.get(&key(i)).expect("read"),
            Some(value(i, 0)),
            "acknowledged key {i}"
        );
    }
}

/// Checks the engine is read-only for `cause` after `operation`, that writes are refused
/// with that reason on every path, and that reads still work.
fn assert_read_only(db: &Engine, cause: Cause, operation: &str, acked: u32) {
    let why = db.read_only().expect("engine is read-only");
    assert_eq!((why.cause, why.operation), (cause, operation), "{why}");
    match db.put(b"later", b"refused", Durability::Sync) {
        Err(Error::Poisoned(p)) => assert_eq!(p, why),
        other => panic!("write on a read-only engine: {other:?}"),
    }
    match db.put(b"later", b"refused", Durability::Buffered) {
        Err(Error::Poisoned(p)) => assert_eq!(p.cause, cause),
        other => panic!("buffered write on a read-only engine: {other:?}"),
    }
    assert_all_there(db, acked);
    assert_eq!(db.get(b"later").expect("read"), None);
    // A write whose fsync failed was in the memtable before: reads may see it (as they
    // see a buffered write before its fsync), and the reopen may or may not keep it.
    let scanned = collect(db, Direction::Forward);
    assert!(
        (acked as usize..=acked as usize + 1).contains(&scanned.len()),
        "a scan sees every acknowledged key: {}",
        scanned.len()
    );
}

/// Reopens `dir` after the fault is gone and checks every acknowledged write is back and
/// writes work again.
fn reopen_and_check(dir: &Path, fs: &FaultyFs, acked: u32) {
    let db = Engine::open(dir, root(), opts(fs)).expect("reopen once the fault is gone");
    assert!(db.read_only().is_none());
    assert_all_there(&db, acked);
    write_acked(&db, acked, acked + 10);
    db.flush().expect("flush after recovery");
    db.compact().expect("compaction after recovery");
    db.close().expect("close");
    let db = Engine::open(dir, root(), opts(fs)).expect("reopen");
    assert_all_there(&db, acked + 10);
    db.close().expect("close");
}

#[test]
fn enospc_on_a_wal_append_turns_read_only_and_a_reopen_once_space_is_back_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new();
    let db = Engine::open(dir.path(), root(), opts(&fs)).expect("open");
    write_acked(&db, 0, 200);
    fs.fail_appends(".wal", libc::ENOSPC);
    let err = db
        .put(&key(999), b"lost", Durability::Sync)
        .expect_err("the disk is full");
    assert_eq!(err.cause(), Cause::NoSpace, "{err}");
    assert_read_only(&db, Cause::NoSpace, "WAL append", 200);
    db.close().expect("closing a read-only engine");

    // Still full: the reopen fails and leaves the directory as it was.
    let before = files(dir.path());
    let err = Engine::open(dir.path(), root(), opts(&fs)).expect_err("disk still full");
    assert_eq!(err.cause(), Cause::NoSpace, "{err}");
    assert_eq!(
        files(dir.path()),
        before,
        "a failed reopen leaves nothing behind"
    );

    fs.clear_append_faults();
    reopen_and_check(dir.path(), &fs, 200);
}

#[test]
fn enospc_on_a_flush_output_keeps_the_memtable_and_removes_the_partial_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new();
    let db = Engine::open(dir.path(), root(), opts(&fs)).expect("open");
    write_acked(&db, 0, 300);
    fs.fail_appends(".sst", libc::ENOSPC);
    let err = db.flush().expect_err("no room for the table");
    assert_eq!(err.cause(), Cause::NoSpace, "{err}");
    assert!(
        tables(dir.path()).is_empty(),
        "the partial table is removed"
    );
    assert_read_only(&db, Cause::NoSpace, "flush", 300);
    db.close().expect("close");

    // Still full: the replayed WAL cannot become a table; nothing is left behind.
    let before = files(dir.path());
    let err = Engine::open(dir.path(), root(), opts(&fs)).expect_err("disk still full");
    assert_eq!(err.cause(), Cause::NoSpace, "{err}");
    assert_eq!(
        files(dir.path()),
        before,
        "a failed reopen leaves nothing behind"
    );

    fs.clear_append_faults();
    reopen_and_check(dir.path(), &fs, 300);
}

#[test]
fn enospc_on_a_compaction_output_keeps_its_inputs_and_removes_its_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new();
    let db = Engine::open(dir.path(), root(), opts(&fs)).expect("open");
    write_acked(&db, 0, 150);
    db.flush().expect("flush");
    write_acked(&db, 150, 300);
    db.flush().expect("flush");
    let inputs = tables(dir.path());
    assert_eq!(inputs.len(), 2);
    fs.fail_appends(".sst", libc::ENOSPC);
    let err = db.compact().expect_err("no room for the output");
    assert_eq!(err.cause(), Cause::NoSpace, "{err}");
    assert_eq!(
        tables(dir.path()),
        inputs,
        "inputs stay, outputs are removed"
    );
    assert_read_only(&db, Cause::NoSpace, "compaction", 300);
    db.close().expect("close");
    fs.clear_append_faults();
    reopen_and_check(dir.path(), &fs, 300);
}

#[test]
fn eio_on_a_wal_fsync_is_never_retried_and_a_reopen_replays_the_wal_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new();
    let db = Engine::open(dir.path(), root(), opts(&fs)).expect("open");
    write_acked(&db, 0, 100);
    fs.fail_syncs(1);
    let err = db
        .put(&key(500), b"not acknowledged", Durability::Sync)
        .expect_err("the fsync fails");
    assert_eq!(err.cause(), Cause::Io, "{err}");
    assert_read_only(&db, Cause::Io, "WAL fsync", 100);
    // The callback path hears the same reason.
    let (tx, rx) = std::sync::mpsc::channel();
    db.sync_wal_then(
        db.wal_ticket() + 1,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    match rx.recv().expect("answered") {
        Err(Error::Poisoned(p)) => assert_eq!(p.cause, Cause::Io),
        other => panic!("{other:?}"),
    }
    db.close().expect("close");
    reopen_and_check(dir.path(), &fs, 100);
}

#[test]
fn the_space_a_reopen_needs_covers_the_memtables_and_a_wal_reservation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new();
    let db = Engine::open(dir.path(), root(), opts(&fs)).expect("open");
    let empty = db.reopen_space_needed();
    assert!(empty >= (1 << 20) + (1 << 20) / 4, "{empty}");
    write_acked(&db, 0, 100);
    assert!(db.reopen_space_needed() > empty);
    db.close().expect("close");
}
