//! Crash tests: docdb over the engine with a fault-injecting file system.

use std::sync::Arc;

use bson::{Bson, Document, doc};
use docdb::{Db, DbConfig, DeleteOp, FindOptions, UpdateDoc, UpdateOp};
use storage::{CrashMode, Engine, FaultyFs, Options, RootKey};

fn open(dir: &std::path::Path, key: [u8; 32], fs: &FaultyFs, sync: bool) -> Db {
    open_with_engine(dir, key, fs, sync).0
}

/// [`open`], also returning the engine underneath (to sync the WAL at a chosen point).
fn open_with_engine(
    dir: &std::path::Path,
    key: [u8; 32],
    fs: &FaultyFs,
    sync: bool,
) -> (Db, Engine) {
    let opts = Options {
        fs: Arc::new(fs.clone()),
        ..Options::default()
    };
    let engine = Engine::open(dir, RootKey::from_bytes(key), opts).unwrap();
    let db = Db::open_with(
        engine.clone(),
        DbConfig {
            sync_writes: sync,
            ..DbConfig::default()
        },
    )
    .unwrap();
    (db, engine)
}

fn ids(db: &Db, opts: FindOptions) -> Vec<Bson> {
    let mut v: Vec<Bson> = db
        .find("t", "c", opts)
        .unwrap()
        .map(|d| d.unwrap().get("_id").unwrap().clone())
        .collect();
    v.sort_by(docdb::order::cmp);
    v
}

#[test]
fn acknowledged_writes_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let key: [u8; 32] = rand::random();
    let fs = FaultyFs::new();
    {
        let db = open(dir.path(), key, &fs, true);
        db.create_indexes(
            "t",
            "c",
            &[doc! {"key": {"n": 1}, "name": "n_1", "unique": true}],
        )
        .unwrap();
        for i in 0..50 {
            assert_eq!(
                db.insert("t", "c", vec![doc! {"_id": i, "n": i}], true)
                    .unwrap()
                    .n,
                1
            );
        }
        fs.crash(CrashMode::DropUnsynced).unwrap();
        drop(db);
    }
    fs.revive();
    let db = open(dir.path(), key, &fs, true);
    assert_eq!(ids(&db, FindOptions::default()).len(), 50);
    assert_eq!(db.list_indexes("t", "c").unwrap().len(), 2);
    // The unique index is intact after recovery.
    assert_eq!(
        db.insert("t", "c", vec![doc! {"_id": 99, "n": 7}], true)
            .unwrap()
            .write_errors[0]
            .error
            .code,
        11000
    );
}

#[test]
fn documents_and_index_entries_agree_after_a_torn_crash() {
    /// Inserts made durable before the crash: the comparisons below cover at least these.
    const SYNCED: i32 = 120;
    for mode in [CrashMode::DropUnsynced, CrashMode::TearLastWrite] {
        let dir = tempfile::tempdir().unwrap();
        let key: [u8; 32] = rand::random();
        let fs = FaultyFs::new();
        {
            let db = open(dir.path(), key, &fs, true);
            db.create_indexes(
                "t",
                "c",
                &[
                    doc! {"key": {"n": 1}, "name": "n_1"},
                    doc! {"key": {"tags": 1}, "name": "tags_1"},
                ],
            )
            .unwrap();
        }
        {
            // Buffered writes: the first SYNCED of them are made durable by a WAL sync (as
            // an acknowledged write would be); the rest, the updates and the deletes may
            // be lost, but never half of one.
            let (db, engine) = open_with_engine(dir.path(), key, &fs, false);
            for i in 0..200 {
                db.insert(
                    "t",
                    "c",
                    vec![doc! {"_id": i, "n": i, "tags": [i % 3, i % 5]}],
                    true,
                )
                .unwrap();
                if i + 1 == SYNCED {
                    engine.sync_wal().unwrap();
                }
            }
            for i in 0..50 {
                let op = UpdateOp {
                    q: doc! {"_id": i},
                    u: UpdateDoc::Doc(doc! {"$set": {"n": 1000 + i}}),
                    multi: false,
                    upsert: false,
                    array_filters: vec![],
                    hint: None,
                };
                db.update("t", "c", vec![op], true).unwrap();
            }
            db.delete(
                "t",
                "c",
                vec![DeleteOp {
                    q: doc! {"_id": {"$gte": 150}},
                    limit: 0,
                    hint: None,
                }],
                true,
            )
            .unwrap();
            fs.crash(mode).unwrap();
            drop(db);
        }
        fs.revive();
        let db = open(dir.path(), key, &fs, true);
        let all = ids(&db, FindOptions::default());
        // Everything synced survives (the deletes only touch ids from 150 up).
        for i in 0..SYNCED {
            assert!(
                all.contains(&Bson::Int32(i)),
                "{mode:?}: synced document {i} lost ({} survived)",
                all.len()
            );
        }
        let via_n = ids(
            &db,
            FindOptions {
                hint: Some(Bson::String("n_1".into())),
                ..Default::default()
            },
        );
        let via_tags = ids(
            &db,
            FindOptions {
                hint: Some(Bson::String("tags_1".into())),
                ..Default::default()
            },
        );
        assert_eq!(all, via_n, "{mode:?}");
        assert_eq!(all, via_tags, "{mode:?}");
        // No dangling index entries: one n_1 key per document.
        let ex = db
            .explain_find(
                "t",
                "c",
                FindOptions {
                    hint: Some(Bson::String("n_1".into())),
                    ..Default::default()
                },
            )
            .unwrap();
        let keys = ex
            .get_document("executionStats")
            .unwrap()
            .get_i64("totalKeysExamined")
            .unwrap();
        assert_eq!(keys as usize, all.len(), "{mode:?}");
        // Every surviving document is a whole version: n is either the original or updated.
        let docs: Vec<Document> = db
            .find("t", "c", FindOptions::default())
            .unwrap()
            .map(|d| d.unwrap())
            .collect();
        for d in docs {
            let id = d.get_i32("_id").unwrap();
            let n = d.get_i32("n").unwrap();
            assert!(n == id || n == 1000 + id, "{d:?}");
            let hits = ids(
                &db,
                FindOptions {
                    filter: doc! {"n": n},
                    ..Default::default()
                },
            );
            assert_eq!(hits, vec![Bson::Int32(id)]);
        }
    }
}

fn set_op(id: i32, v: i32) -> UpdateOp {
    UpdateOp {
        q: doc! {"_id": id},
        u: UpdateDoc::Doc(doc! {"$set": {"v": v}}),
        multi: false,
        upsert: false,
        array_filters: vec![],
        hint: None,
    }
}

/// Waits for `Db::when_durable`'s answer, which comes from the engine's sync thread.
fn durable(db: &Db, commit: docdb::Commit) -> docdb::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    db.when_durable(
        commit,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap()
}

#[test]
fn an_update_done_now_is_acknowledged_once_durable_and_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let key: [u8; 32] = rand::random();
    let fs = FaultyFs::new();
    {
        let db = open(dir.path(), key, &fs, true);
        let docs = (0..10).map(|i| doc! {"_id": i, "v": 0}).collect();
        db.insert("t", "c", docs, true).unwrap();
        // Not a point update, or no such collection: the caller must take the blocking path.
        let mut multi = set_op(1, 1);
        multi.multi = true;
        assert!(db.try_update_now("t", "c", &multi).is_none());
        let mut ranged = set_op(1, 1);
        ranged.q = doc! {"_id": {"$gte": 1}};
        assert!(db.try_update_now("t", "c", &ranged).is_none());
        assert!(db.try_update_now("t", "missing", &set_op(1, 1)).is_none());

        for i in 0..10 {
            let (r, commit) = db
                .try_update_now("t", "c", &set_op(i, i + 100))
                .unwrap()
                .unwrap();
            assert_eq!((r.n, r.n_modified), (1, 1));
            durable(&db, commit).unwrap();
        }
        // A statement error is reported per statement, like `update`.
        let mut bad = set_op(3, 0);
        bad.u = UpdateDoc::Doc(doc! {"$set": {"_id": 99}});
        let (r, commit) = db.try_update_now("t", "c", &bad).unwrap().unwrap();
        assert_eq!(r.write_errors.len(), 1);
        durable(&db, commit).unwrap();
        fs.crash(CrashMode::DropUnsynced).unwrap();
    }
    fs.revive();
    let db = open(dir.path(), key, &fs, true);
    for i in 0..10 {
        let got = db
            .find(
                "t",
                "c",
                FindOptions {
                    filter: doc! {"_id": i},
                    ..Default::default()
                },
            )
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(got.get_i32("v").unwrap(), i + 100, "update of {i} lost");
    }
}

#[test]
fn an_update_that_must_sync_the_catalog_is_left_to_the_blocking_path() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let db = open(dir.path(), rand::random(), &fs, true);
    db.insert("t", "c", vec![doc! {"_id": 1, "tags": 1}], true)
        .unwrap();
    db.create_indexes("t", "c", &[doc! {"key": {"tags": 1}, "name": "tags_1"}])
        .unwrap();
    // The first array value makes the index multikey, a catalog change synced in place:
    // declined, with nothing written.
    let mut to_array = set_op(1, 0);
    to_array.u = UpdateDoc::Doc(doc! {"$set": {"tags": [1, 2]}});
    assert!(db.try_update_now("t", "c", &to_array).is_none());
    let got = ids(
        &db,
        FindOptions {
            filter: doc! {"tags": 2},
            ..Default::default()
        },
    );
    assert!(got.is_empty(), "a declined update wrote something");
    // The blocking path does it, and later array updates can run in place.
    assert_eq!(db.update("t", "c", vec![to_array], true).unwrap().n, 1);
    let mut more = set_op(1, 0);
    more.u = UpdateDoc::Doc(doc! {"$set": {"tags": [3, 4]}});
    let (r, commit) = db.try_update_now("t", "c", &more).unwrap().unwrap();
    assert_eq!(r.n_modified, 1);
    durable(&db, commit).unwrap();
    assert_eq!(
        ids(
            &db,
            FindOptions {
                filter: doc! {"tags": 4},
                ..Default::default()
            }
        ),
        vec![Bson::Int32(1)]
    );
}
