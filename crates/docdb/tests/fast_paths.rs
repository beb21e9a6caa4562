//! The read fast paths return exactly what the general path returns.
//!
//! - `Db::find_by_id` (one engine `get`, stored BSON passed through) against `find` forced
//!   through the planner with `hint: "_id_"`, with and without projections, for present
//!   and missing `_id`s of several types, including numerically equal ones of another type;
//! - `Db::find_raw` (stored BSON, only the filtered fields decoded) against `find`, over
//!   filters, sorts, skips and limits on indexed, multikey and unindexed fields;
//! - writes addressed by `_id` (served by the same point lookup) against the same writes
//!   forced through the planner.
//!
//! On the real encrypted engine, with many versions of the same key in the memtable (the
//! case where a range scan and a point lookup differ most in cost).

use bson::{Bson, Document, doc, oid::ObjectId};
use docdb::{Db, FindOptions, PointRead, UpdateDoc, UpdateOp};
use storage::{Engine, Options, RootKey};

fn open(dir: &std::path::Path) -> Db {
    let engine =
        Engine::open(dir, RootKey::from_bytes(rand::random()), Options::default()).expect("open");
    Db::open(engine).expect("db")
}

fn general(db: &Db, coll: &str, opts: FindOptions) -> docdb::Result<Vec<Document>> {
    db.find("t", coll, opts)?.collect()
}

fn seed(db: &Db, oid: ObjectId) -> ObjectId {
    db.create_index_simple("c", "rank");
    db.create_index_simple("c", "tags");
    let docs = vec![
        doc! {"_id": "k1", "rank": 1, "tags": ["a", "b"], "n": {"x": 1, "y": [1, 2]}, "s": "one"},
        doc! {"_id": 7, "rank": 2, "tags": ["b"], "n": {"x": 2}, "s": "two"},
        doc! {"_id": 2.5, "rank": 3, "tags": [], "s": "three", "arr": [{"q": 1}, {"q": 2}]},
        doc! {"_id": oid, "rank": 4, "s": "four"},
        doc! {"_id": true, "rank": 5, "tags": "c", "s": Bson::Null},
        doc! {"_id": Bson::Int64(1 << 40), "rank": 6, "s": "six"},
    ];
    db.insert("t", "c", docs, true).expect("insert");
    // Many versions of one key in the memtable.
    for i in 0..300 {
        let op = UpdateOp {
            q: doc! {"_id": "k1"},
            u: UpdateDoc::Doc(doc! {"$set": {"v": i}}),
            multi: false,
            upsert: false,
            array_filters: Vec::new(),
            hint: None,
        };
        db.update("t", "c", vec![op], true).expect("update");
    }
    oid
}

trait Simple {
    fn create_index_simple(&self, coll: &str, field: &str);
}

impl Simple for Db {
    fn create_index_simple(&self, coll: &str, field: &str) {
        self.create_indexes(
            "t",
            coll,
            &[doc! {"key": {field: 1}, "name": format!("{field}_1")}],
        )
        .expect("index");
    }
}

fn code(r: &docdb::Result<impl std::fmt::Debug>) -> Option<i32> {
    r.as_ref().err().map(|e| e.code)
}

#[test]
fn id_lookups_return_what_the_planned_find_returns() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = open(dir.path());
    let oid = seed(&db, ObjectId::new());
    let filters = vec![
        doc! {"_id": "k1"},
        doc! {"_id": {"$eq": "k1"}},
        doc! {"_id": "missing"},
        doc! {"_id": 7},
        doc! {"_id": 7.0},
        doc! {"_id": Bson::Int64(7)},
        doc! {"_id": 2.5},
        doc! {"_id": oid},
        doc! {"_id": ObjectId::new()},
        doc! {"_id": true},
        doc! {"_id": false},
        doc! {"_id": (1i64 << 40) as f64},
    ];
    let projections = vec![
        None,
        Some(doc! {}),
        Some(doc! {"s": 1}),
        Some(doc! {"s": 0, "n.y": 0}),
        Some(doc! {"_id": 0, "rank": 1}),
        Some(doc! {"tags": {"$slice": 1}}),
        Some(doc! {"n.x": 1}),
        Some(doc! {"s": 1, "rank": 0}),
        Some(doc! {"$bad": 1}),
    ];
    let mut found = 0;
    for filter in &filters {
        for projection in &projections {
            let reference = general(
                &db,
                "c",
                FindOptions {
                    filter: filter.clone(),
                    projection: projection.clone(),
                    hint: Some(Bson::String("_id_".into())),
                    ..Default::default()
                },
            );
            let fast = db.find_by_id("t", "c", filter, projection.as_ref());
            assert_eq!(code(&fast), code(&reference), "{filter} {projection:?}");
            let (Ok(fast), Ok(reference)) = (fast, reference) else {
                continue;
            };
            let fast: Vec<Document> = match fast {
                PointRead::NotPoint => panic!("{filter} must be a point lookup"),
                PointRead::Missing => Vec::new(),
                PointRead::Found(raw) => vec![Document::try_from(raw).expect("valid BSON")],
            };
            assert_eq!(fast, reference, "{filter} {projection:?}");
            found += fast.len();
            // And the general `find` (which now plans `_id` equality as a point too).
            let unhinted = general(
                &db,
                "c",
                FindOptions {
                    filter: filter.clone(),
                    projection: projection.clone(),
                    ..Default::default()
                },
            )
            .expect("find");
            assert_eq!(unhinted, reference, "{filter} {projection:?}");
        }
    }
    assert!(
        found >= 40,
        "most lookups must find their document ({found})"
    );
    // The latest of the 300 versions is the one returned.
    let Ok(PointRead::Found(raw)) = db.find_by_id("t", "c", &doc! {"_id": "k1"}, None) else {
        panic!("k1 must be found");
    };
    assert_eq!(raw.get_i32("v").ok(), Some(299));
    // Not a point: the caller must take the general path.
    for filter in [
        doc! {"_id": {"$gte": 1}},
        doc! {"_id": "k1", "rank": 1},
        doc! {},
    ] {
        assert_eq!(
            db.find_by_id("t", "c", &filter, None).expect("ok"),
            PointRead::NotPoint
        );
    }
    // A missing collection: nothing found, but an invalid projection is still an error.
    assert_eq!(
        db.find_by_id("t", "nope", &doc! {"_id": 1}, None)
            .expect("ok"),
        PointRead::Missing
    );
    assert!(
        db.find_by_id("t", "nope", &doc! {"_id": 1}, Some(&doc! {"a": 1, "b": 0}))
            .is_err()
    );
}

#[test]
fn raw_finds_return_what_find_returns() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = open(dir.path());
    seed(&db, ObjectId::new());
    let more: Vec<Document> = (0..200)
        .map(|i: i32| doc! {"_id": format!("u{i:03}"), "rank": i % 37, "tags": [format!("t{}", i % 5), "all"], "n": {"x": i % 3}, "pad": "x".repeat((i % 50) as usize)})
        .collect();
    db.insert("t", "c", more, true).expect("insert");
    let filters = vec![
        doc! {},
        doc! {"rank": {"$gte": 3, "$lte": 10}},
        doc! {"rank": 5},
        doc! {"rank": {"$in": [1, 2, 30]}},
        doc! {"tags": "t3"},
        doc! {"tags": {"$all": ["t1", "all"]}},
        doc! {"n.x": 2},
        doc! {"n.x": {"$exists": false}},
        doc! {"s": Bson::Null},
        doc! {"rank": {"$gt": 4}, "n.x": {"$ne": 1}},
        doc! {"$and": [{"rank": {"$lt": 20}}, {"tags": {"$elemMatch": {"$eq": "t2"}}}]},
        doc! {"$nor": [{"rank": {"$lt": 30}}]},
        doc! {"_id": "u010"},
        doc! {"_id": {"$gte": "u100", "$lt": "u120"}},
        doc! {"rank": {"$not": {"$gt": 3}}},
        doc! {"pad": {"$regex": "^x{40}"}},
        doc! {"$or": [{"rank": 1}, {"rank": 2}]},
        doc! {"$expr": {"$gt": ["$rank", 30]}},
    ];
    let sorts = [
        None,
        Some(doc! {"rank": 1}),
        Some(doc! {"rank": -1}),
        Some(doc! {"pad": 1}),
    ];
    let mut served = 0;
    for filter in &filters {
        for sort in &sorts {
            for (skip, limit) in [(0, 0), (0, 5), (3, 0), (2, 7)] {
                let opts = FindOptions {
                    filter: filter.clone(),
                    sort: sort.clone(),
                    skip,
                    limit,
                    ..Default::default()
                };
                let reference = general(&db, "c", opts.clone()).expect("find");
                let Some(raw) = db.find_raw("t", "c", &opts).expect("find_raw") else {
                    continue;
                };
                served += 1;
                let got: Vec<Document> = raw
                    .map(|r| Document::try_from(r.expect("doc")).expect("valid BSON"))
                    .collect();
                assert_eq!(
                    got, reference,
                    "{filter} sort {sort:?} skip {skip} limit {limit}"
                );
            }
        }
    }
    // The fast path must actually serve the common shapes (it may not silently decline).
    assert!(served >= 100, "find_raw served only {served} queries");
    let declined = |f: Document, s: Option<Document>, p: Option<Document>| {
        let opts = FindOptions {
            filter: f,
            sort: s,
            projection: p,
            ..Default::default()
        };
        db.find_raw("t", "c", &opts).expect("ok").is_none()
    };
    assert!(declined(doc! {"$expr": {"$gt": ["$rank", 1]}}, None, None));
    assert!(declined(
        doc! {"$or": [{"rank": 1}, {"rank": 2}]},
        None,
        None
    ));
    assert!(declined(doc! {}, Some(doc! {"pad": 1}), None));
    assert!(declined(doc! {}, None, Some(doc! {"rank": 1})));
    assert!(!declined(
        doc! {"rank": {"$gt": 1}},
        Some(doc! {"rank": 1}),
        None
    ));
    // Errors are the general path's.
    let bad = FindOptions {
        filter: doc! {"rank": {"$bogus": 1}},
        ..Default::default()
    };
    assert_eq!(
        code(&db.find_raw("t", "c", &bad).map(|c| c.is_some())),
        code(&general(&db, "c", bad.clone()))
    );
}

#[test]
fn writes_by_id_match_the_planned_writes() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = open(dir.path());
    let oid = seed(&db, ObjectId::new());
    let other = tempfile::tempdir().expect("tmp");
    let reference = open(other.path());
    seed(&reference, oid);
    let statements = [
        (doc! {"_id": 7.0}, doc! {"$set": {"s": "seven"}}),
        (doc! {"_id": Bson::Int64(7)}, doc! {"$inc": {"rank": 10}}),
        (doc! {"_id": "k1"}, doc! {"$set": {"s": "one"}}),
        (doc! {"_id": "missing"}, doc! {"$set": {"s": "x"}}),
        (doc! {"_id": 2.5}, doc! {"$push": {"tags": "z"}}),
    ];
    for (q, u) in statements {
        let op = |hint: Option<Bson>| UpdateOp {
            q: q.clone(),
            u: UpdateDoc::Doc(u.clone()),
            multi: false,
            upsert: false,
            array_filters: Vec::new(),
            hint,
        };
        let a = db.update("t", "c", vec![op(None)], true).expect("update");
        let b = reference
            .update("t", "c", vec![op(Some(Bson::String("_id_".into())))], true)
            .expect("update");
        assert_eq!((a.n, a.n_modified), (b.n, b.n_modified), "{q}");
    }
    let a = db
        .delete(
            "t",
            "c",
            vec![docdb::DeleteOp {
                q: doc! {"_id": true},
                limit: 1,
                hint: None,
            }],
            true,
        )
        .expect("delete");
    assert_eq!(a.n, 1);
    let b = reference
        .delete(
            "t",
            "c",
            vec![docdb::DeleteOp {
                q: doc! {"_id": true},
                limit: 1,
                hint: Some(Bson::String("_id_".into())),
            }],
            true,
        )
        .expect("delete");
    assert_eq!(b.n, 1);
    let all = |d: &Db| general(d, "c", FindOptions::default()).expect("find");
    assert_eq!(all(&db), all(&reference));
}
