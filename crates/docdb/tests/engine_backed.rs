//! docdb on the real encrypted engine (tempdir + random root key).

use bson::{Bson, Document, doc};
use docdb::{Db, DbConfig, DeleteOp, FindAndModifyOptions, FindOptions, UpdateDoc, UpdateOp};
use storage::{Engine, Options, RootKey};

struct Env {
    dir: tempfile::TempDir,
    key: [u8; 32],
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            key: rand::random(),
        }
    }

    fn open(&self) -> Db {
        self.open_with(DbConfig::default())
    }

    fn open_with(&self, cfg: DbConfig) -> Db {
        let engine = Engine::open(
            self.dir.path(),
            RootKey::from_bytes(self.key),
            Options::default(),
        )
        .unwrap();
        Db::open_with(engine, cfg).unwrap()
    }
}

fn find(db: &Db, coll: &str, filter: Document) -> Vec<Document> {
    db.find(
        "t",
        coll,
        FindOptions {
            filter,
            ..Default::default()
        },
    )
    .unwrap()
    .map(|d| d.unwrap())
    .collect()
}

fn find_opts(db: &Db, coll: &str, opts: FindOptions) -> Vec<Document> {
    db.find("t", coll, opts)
        .unwrap()
        .map(|d| d.unwrap())
        .collect()
}

fn upd(q: Document, u: Document, multi: bool, upsert: bool) -> UpdateOp {
    UpdateOp {
        q,
        u: UpdateDoc::Doc(u),
        multi,
        upsert,
        array_filters: vec![],
        hint: None,
    }
}

#[test]
fn crud_round_trip_and_id_rules() {
    let env = Env::new();
    let db = env.open();
    let r = db
        .insert(
            "t",
            "c",
            vec![
                doc! {"a": 1, "_id": 5},
                doc! {"a": 2},
                doc! {"a": 3, "tags": ["x", "y"]},
            ],
            true,
        )
        .unwrap();
    assert_eq!(r.n, 3);
    assert!(r.write_errors.is_empty());
    assert!(matches!(r.inserted_ids[1], Bson::ObjectId(_)));
    let all = find(&db, "c", doc! {});
    assert_eq!(all.len(), 3);
    for d in &all {
        assert_eq!(
            d.keys().next().map(String::as_str),
            Some("_id"),
            "_id is stored first"
        );
    }
    assert_eq!(find(&db, "c", doc! {"tags": "y"}).len(), 1);
    let sorted = find_opts(
        &db,
        "c",
        FindOptions {
            sort: Some(doc! {"a": -1}),
            projection: Some(doc! {"a": 1, "_id": 0}),
            limit: 2,
            ..Default::default()
        },
    );
    assert_eq!(sorted, vec![doc! {"a": 3}, doc! {"a": 2}]);

    let u = db
        .update(
            "t",
            "c",
            vec![upd(
                doc! {"a": {"$gte": 2}},
                doc! {"$inc": {"a": 10}},
                true,
                false,
            )],
            true,
        )
        .unwrap();
    assert_eq!((u.n, u.n_modified), (2, 2));
    let u = db
        .update(
            "t",
            "c",
            vec![upd(doc! {"_id": 5}, doc! {"$set": {"a": 1}}, false, false)],
            true,
        )
        .unwrap();
    assert_eq!(
        (u.n, u.n_modified),
        (1, 0),
        "no-op update is matched but not modified"
    );
    let u = db
        .update(
            "t",
            "c",
            vec![upd(
                doc! {"_id": 5},
                doc! {"$set": {"_id": 6}},
                false,
                false,
            )],
            true,
        )
        .unwrap();
    assert_eq!(u.write_errors[0].error.code, 66);
    let u = db
        .update(
            "t",
            "c",
            vec![upd(doc! {"k": "new"}, doc! {"$set": {"v": 1}}, false, true)],
            true,
        )
        .unwrap();
    assert_eq!(u.upserted.len(), 1);
    assert_eq!(
        find(&db, "c", doc! {"k": "new"})[0].get_i32("v").unwrap(),
        1
    );

    assert_eq!(db.count("t", "c", &doc! {}, 0, 0).unwrap(), 4);
    let st = db.collection_stats("t", "c").unwrap();
    assert_eq!((st.count, st.nindexes), (4, 1));
    assert!(st.size > 0 && st.avg_obj_size > 0);
    assert_eq!(db.collection_stats("t", "nope").unwrap_err().code, 26);
    assert_eq!(
        db.distinct("t", "c", "tags", &doc! {}).unwrap(),
        vec![Bson::String("x".into()), Bson::String("y".into())]
    );
    let d = db
        .delete(
            "t",
            "c",
            vec![DeleteOp {
                q: doc! {"a": {"$gt": 10}},
                limit: 1,
                hint: None,
            }],
            true,
        )
        .unwrap();
    assert_eq!(d.n, 1);
    let d = db
        .delete(
            "t",
            "c",
            vec![DeleteOp {
                q: doc! {},
                limit: 0,
                hint: None,
            }],
            true,
        )
        .unwrap();
    assert_eq!(d.n, 3);

    // _id validation and the 16 MiB limit.
    let r = db
        .insert("t", "c", vec![doc! {"_id": [1, 2]}], true)
        .unwrap();
    assert_eq!(r.write_errors[0].error.code, 53);
    let big = "x".repeat(16 * 1024 * 1024);
    let r = db.insert("t", "c", vec![doc! {"big": big}], true).unwrap();
    assert_eq!(r.write_errors[0].error.code, 10334);
    let r = db
        .insert(
            "t",
            "c",
            vec![doc! {"_id": 1}, doc! {"_id": 1}, doc! {"_id": 2}],
            false,
        )
        .unwrap();
    assert_eq!(r.n, 2);
    assert_eq!(r.write_errors[0].index, 1);
    assert_eq!(r.write_errors[0].error.code, 11000);
    assert!(
        r.write_errors[0]
            .error
            .errmsg
            .contains("index: _id_ dup key: { _id: 1 }"),
        "{}",
        r.write_errors[0].error.errmsg
    );
}

/// A unique index `email_1` on `t.u`.
fn unique_email_index(db: &Db) {
    db.create_indexes(
        "t",
        "u",
        &[doc! {"key": {"email": 1}, "name": "email_1", "unique": true}],
    )
    .unwrap();
}

/// An insert command writes its documents to the engine in batches of about 1 MiB, so a
/// duplicate may repeat a document that is staged but not yet written: it must be caught
/// all the same, before and after a batch boundary, and nothing else may be lost.
#[test]
fn duplicates_within_one_insert_command_are_caught_across_its_write_batches() {
    let env = Env::new();
    let pad = "x".repeat(1000);
    let docs = |ids: std::ops::Range<i32>| -> Vec<Document> {
        ids.map(|i| doc! {"_id": i, "email": format!("{i}@x"), "pad": pad.clone()})
            .collect()
    };
    {
        let db = env.open();
        unique_email_index(&db);
        // 3,000 documents of ~1 KiB span three write batches. Unordered: the repeats of
        // an `_id` (one staged in the same batch, one written in an earlier batch) and of
        // a unique email (staged in the same batch) fail, the rest go in.
        let mut batch = docs(0..3000);
        batch.insert(10, doc! {"_id": 5, "email": "other@x"});
        batch.insert(2500, doc! {"_id": 7, "email": "late@x"});
        batch.insert(2600, doc! {"_id": 9000, "email": "2550@x"});
        let r = db.insert("t", "u", batch, false).unwrap();
        let failed: Vec<(usize, i32)> = r
            .write_errors
            .iter()
            .map(|e| (e.index, e.error.code))
            .collect();
        assert_eq!(failed, vec![(10, 11000), (2500, 11000), (2600, 11000)]);
        assert_eq!(r.n, 3000);
        assert_eq!(r.inserted_ids.len(), 3000);
        // Ordered: stops at the repeat staged just before it; what came before is written.
        let mut batch = docs(5000..5100);
        batch.insert(60, doc! {"_id": 5030, "email": "dup@x"});
        let r = db.insert("t", "u", batch, true).unwrap();
        assert_eq!(r.n, 60);
        assert_eq!(r.write_errors.len(), 1);
        assert_eq!(r.write_errors[0].index, 60);
        assert_eq!(r.write_errors[0].error.code, 11000);
    }
    // Everything acknowledged is there after a reopen, and nothing else.
    let db = env.open();
    assert_eq!(find(&db, "u", doc! {}).len(), 3060);
    assert_eq!(
        find(&db, "u", doc! {"_id": 5})[0].get_str("email").unwrap(),
        "5@x"
    );
    assert!(find(&db, "u", doc! {"email": "late@x"}).is_empty());
    assert!(find(&db, "u", doc! {"_id": 9000}).is_empty());
    assert_eq!(find(&db, "u", doc! {"email": "2550@x"}).len(), 1);
    assert_eq!(find(&db, "u", doc! {"_id": {"$gte": 5000}}).len(), 60);
}

#[test]
fn unique_index_violations_carry_key_info() {
    let env = Env::new();
    let db = env.open();
    unique_email_index(&db);
    db.insert("t", "u", vec![doc! {"_id": 1, "email": "a@x"}], true)
        .unwrap();
    let r = db
        .insert(
            "t",
            "u",
            vec![
                doc! {"_id": 2, "email": "b@x"},
                doc! {"_id": 3, "email": "a@x"},
                doc! {"_id": 4, "email": "c@x"},
            ],
            true,
        )
        .unwrap();
    assert_eq!(r.n, 1, "ordered insert stops at the first error");
    let e = &r.write_errors[0];
    assert_eq!(e.index, 1);
    assert_eq!(e.error.code, 11000);
    assert_eq!(
        e.error.errmsg,
        "E11000 duplicate key error collection: t.u index: email_1 dup key: { email: \"a@x\" }"
    );
    let info = e.error.info.clone().unwrap();
    assert_eq!(info.get_document("keyPattern").unwrap(), &doc! {"email": 1});
    assert_eq!(
        info.get_document("keyValue").unwrap(),
        &doc! {"email": "a@x"}
    );
    // Updating into a duplicate is rejected too; updating a doc to its own value is fine.
    let u = db
        .update(
            "t",
            "u",
            vec![upd(
                doc! {"_id": 2},
                doc! {"$set": {"email": "a@x"}},
                false,
                false,
            )],
            true,
        )
        .unwrap();
    assert_eq!(u.write_errors[0].error.code, 11000);
    let u = db
        .update(
            "t",
            "u",
            vec![upd(
                doc! {"_id": 2},
                doc! {"$set": {"email": "b@x", "n": 1}},
                false,
                false,
            )],
            true,
        )
        .unwrap();
    assert!(u.write_errors.is_empty());
    // After deleting, the key is free again.
    db.delete(
        "t",
        "u",
        vec![DeleteOp {
            q: doc! {"_id": 1},
            limit: 1,
            hint: None,
        }],
        true,
    )
    .unwrap();
    assert_eq!(
        db.insert("t", "u", vec![doc! {"_id": 9, "email": "a@x"}], true)
            .unwrap()
            .n,
        1
    );
    // Numeric keys are compared by exact value across types.
    db.create_indexes(
        "t",
        "num",
        &[doc! {"key": {"v": 1}, "name": "v_1", "unique": true}],
    )
    .unwrap();
    let dec = |s: &str| Bson::Decimal128(s.parse().unwrap());
    let r = db
        .insert(
            "t",
            "num",
            vec![
                doc! {"v": 1},
                doc! {"v": dec("1.00")},
                doc! {"v": 1.0},
                doc! {"v": 0.1},
                doc! {"v": dec("0.1")},
            ],
            false,
        )
        .unwrap();
    assert_eq!(
        r.n, 3,
        "1 == 1.00 == 1.0, but the decimal 0.1 differs from the double 0.1"
    );
    assert_eq!(r.write_errors.len(), 2);
    let found = find_opts(
        &db,
        "num",
        FindOptions {
            filter: doc! {"v": {"$lt": 0.1}},
            ..Default::default()
        },
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get("v"), Some(&dec("0.1")));

    // Building a unique index over existing duplicates fails and leaves no index behind.
    db.insert("t", "u", vec![doc! {"_id": 10, "n": 1}], true)
        .unwrap();
    let e = db
        .create_indexes(
            "t",
            "u",
            &[doc! {"key": {"n": 1}, "name": "n_1", "unique": true}],
        )
        .unwrap_err();
    assert_eq!(e.code, 11000);
    assert_eq!(db.list_indexes("t", "u").unwrap().len(), 2);
}

#[test]
fn multikey_partial_sparse_and_explain() {
    let env = Env::new();
    let db = env.open();
    let docs: Vec<Document> = (0..200).map(|i| doc! {"_id": i, "n": i, "tags": [format!("t{}", i % 10), "all"], "opt": if i % 2 == 0 { Bson::Int32(i) } else { Bson::Null }}).collect();
    db.insert("t", "m", docs, true).unwrap();
    db.create_indexes("t", "m", &[
        doc! {"key": {"tags": 1}, "name": "tags_1"},
        doc! {"key": {"n": 1}, "name": "n_1"},
        doc! {"key": {"s": 1}, "name": "s_1", "sparse": true},
        doc! {"key": {"opt": 1}, "name": "opt_partial", "partialFilterExpression": {"opt": {"$exists": true}}},
    ]).unwrap();
    // Multikey: one entry per element, documents returned once.
    assert_eq!(find(&db, "m", doc! {"tags": "all"}).len(), 200);
    assert_eq!(
        find(&db, "m", doc! {"tags": {"$in": ["t1", "all"]}}).len(),
        200
    );
    assert_eq!(find(&db, "m", doc! {"tags": "t3"}).len(), 20);
    let ix = db.list_indexes("t", "m").unwrap();
    assert_eq!(ix.len(), 5);

    let ex = db
        .explain_find(
            "t",
            "m",
            FindOptions {
                filter: doc! {"n": {"$gte": 10, "$lt": 20}},
                ..Default::default()
            },
        )
        .unwrap();
    let plan = ex
        .get_document("queryPlanner")
        .unwrap()
        .get_document("winningPlan")
        .unwrap();
    assert_eq!(plan.get_str("stage").unwrap(), "FETCH");
    let input = plan.get_document("inputStage").unwrap();
    assert_eq!(input.get_str("stage").unwrap(), "IXSCAN");
    assert_eq!(input.get_str("indexName").unwrap(), "n_1");
    let stats = ex.get_document("executionStats").unwrap();
    assert_eq!(stats.get_i64("nReturned").unwrap(), 10);
    assert_eq!(stats.get_i64("totalKeysExamined").unwrap(), 10);
    assert_eq!(stats.get_i64("totalDocsExamined").unwrap(), 10);

    let ex = db
        .explain_find(
            "t",
            "m",
            FindOptions {
                filter: doc! {"tags": "t3"},
                ..Default::default()
            },
        )
        .unwrap();
    let input = ex
        .get_document("queryPlanner")
        .unwrap()
        .get_document("winningPlan")
        .unwrap()
        .get_document("inputStage")
        .unwrap();
    assert!(input.get_bool("isMultiKey").unwrap());

    // No index on "zz": a collection scan examining every document.
    let ex = db
        .explain_find(
            "t",
            "m",
            FindOptions {
                filter: doc! {"zz": 1},
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        ex.get_document("queryPlanner")
            .unwrap()
            .get_document("winningPlan")
            .unwrap()
            .get_str("stage")
            .unwrap(),
        "COLLSCAN"
    );
    assert_eq!(
        ex.get_document("executionStats")
            .unwrap()
            .get_i64("totalDocsExamined")
            .unwrap(),
        200
    );

    // Sort provided by the index: no SORT stage; results in order.
    let ex = db
        .explain_find(
            "t",
            "m",
            FindOptions {
                sort: Some(doc! {"n": -1}),
                limit: 3,
                ..Default::default()
            },
        )
        .unwrap();
    let plan = ex
        .get_document("queryPlanner")
        .unwrap()
        .get_document("winningPlan")
        .unwrap();
    assert_eq!(plan.get_str("stage").unwrap(), "LIMIT");
    assert_eq!(
        plan.get_document("inputStage")
            .unwrap()
            .get_str("stage")
            .unwrap(),
        "FETCH"
    );
    let top = find_opts(
        &db,
        "m",
        FindOptions {
            sort: Some(doc! {"n": -1}),
            limit: 3,
            projection: Some(doc! {"n": 1}),
            ..Default::default()
        },
    );
    assert_eq!(
        top,
        vec![
            doc! {"_id": 199, "n": 199},
            doc! {"_id": 198, "n": 198},
            doc! {"_id": 197, "n": 197}
        ]
    );

    // Aggregation: a leading $match + $sort is served by the index (order preserved,
    // only the matching keys examined).
    let mut cur = db
        .aggregate(
            "t",
            "m",
            &[
                doc! {"$match": {"n": {"$gte": 190}}},
                doc! {"$sort": {"n": -1}},
                doc! {"$project": {"n": 1}},
            ],
            Default::default(),
        )
        .unwrap();
    let got: Vec<Document> = cur.by_ref().map(|d| d.unwrap()).collect();
    assert_eq!(got.len(), 10);
    assert_eq!(got[0], doc! {"_id": 199, "n": 199});
    assert_eq!(cur.stats().get().0, 10);

    let ex = db
        .explain_aggregate(
            "t",
            "m",
            &[doc! {"$match": {"n": 7}}, doc! {"$group": {"_id": null}}],
            Default::default(),
        )
        .unwrap();
    let stages = ex.get_array("stages").unwrap();
    let cursor = stages[0]
        .as_document()
        .unwrap()
        .get_document("$cursor")
        .unwrap();
    assert_eq!(
        cursor
            .get_document("queryPlanner")
            .unwrap()
            .get_document("winningPlan")
            .unwrap()
            .get_document("inputStage")
            .unwrap()
            .get_str("indexName")
            .unwrap(),
        "n_1"
    );
    assert_eq!(stages.len(), 2);

    // $or over indexed branches: union of index scans, deduplicated.
    let ex = db
        .explain_find(
            "t",
            "m",
            FindOptions {
                filter: doc! {"$or": [{"n": {"$lt": 5}}, {"tags": "t1"}, {"_id": 3}]},
                ..Default::default()
            },
        )
        .unwrap();
    let plan = ex
        .get_document("queryPlanner")
        .unwrap()
        .get_document("winningPlan")
        .unwrap();
    assert_eq!(
        plan.get_document("inputStage")
            .unwrap()
            .get_str("stage")
            .unwrap(),
        "OR"
    );
    assert_eq!(
        ex.get_document("executionStats")
            .unwrap()
            .get_i64("nReturned")
            .unwrap(),
        24
    );
    assert_eq!(
        find(
            &db,
            "m",
            doc! {"$or": [{"n": {"$lt": 5}}, {"tags": "t1"}, {"_id": 3}]}
        )
        .len(),
        24
    );

    // Anchored regexes scan a prefix range of the index.
    db.create_indexes("t", "m", &[doc! {"key": {"name": 1}, "name": "name_1"}])
        .unwrap();
    db.insert("t", "m", vec![doc! {"_id": 500, "name": "alpha"}, doc! {"_id": 501, "name": "alpine"}, doc! {"_id": 502, "name": "beta"}, doc! {"_id": 503, "name": bson::Regex { pattern: "^al".try_into().unwrap(), options: "".try_into().unwrap() }}], true).unwrap();
    let ex = db
        .explain_find(
            "t",
            "m",
            FindOptions {
                filter: doc! {"name": {"$regex": "^al"}},
                ..Default::default()
            },
        )
        .unwrap();
    let stats = ex.get_document("executionStats").unwrap();
    assert_eq!(stats.get_i64("nReturned").unwrap(), 3);
    assert_eq!(stats.get_i64("totalKeysExamined").unwrap(), 3);
    db.delete(
        "t",
        "m",
        vec![DeleteOp {
            q: doc! {"_id": {"$gte": 500}},
            limit: 0,
            hint: None,
        }],
        true,
    )
    .unwrap();

    // Sparse: documents without the field are not indexed, and queries stay correct.
    db.insert("t", "m", vec![doc! {"_id": 1000, "s": 5}], true)
        .unwrap();
    assert_eq!(find(&db, "m", doc! {"s": 5}).len(), 1);
    assert_eq!(
        find(&db, "m", doc! {"s": null}).len(),
        200,
        "null query on a sparse index falls back to a scan"
    );
    // Partial index: used only when the query implies the filter.
    let ex = db
        .explain_find(
            "t",
            "m",
            FindOptions {
                filter: doc! {"opt": {"$exists": true}, "n": 5},
                ..Default::default()
            },
        )
        .unwrap();
    assert!(
        ex.get_document("executionStats")
            .unwrap()
            .get_i64("nReturned")
            .unwrap()
            == 1
    );
    assert_eq!(find(&db, "m", doc! {"opt": 4}).len(), 1);
}

#[test]
fn ttl_expiry_removes_old_documents() {
    let env = Env::new();
    let db = env.open();
    db.create_indexes(
        "t",
        "ttl",
        &[doc! {"key": {"at": 1}, "name": "at_1", "expireAfterSeconds": 60}],
    )
    .unwrap();
    let now = bson::DateTime::now();
    let old = bson::DateTime::from_millis(now.timestamp_millis() - 120_000);
    db.insert(
        "t",
        "ttl",
        vec![
            doc! {"_id": 1, "at": old},
            doc! {"_id": 2, "at": now},
            doc! {"_id": 3, "at": "not a date"},
            doc! {"_id": 4, "at": [now, old]},
        ],
        true,
    )
    .unwrap();
    assert_eq!(db.expire_ttl(now).unwrap(), 2);
    let left: Vec<Bson> = find(&db, "ttl", doc! {})
        .into_iter()
        .map(|d| d.get("_id").unwrap().clone())
        .collect();
    assert_eq!(left, vec![Bson::Int32(2), Bson::Int32(3)]);
}

#[test]
fn index_ddl_idempotence_and_conflicts() {
    let env = Env::new();
    let db = env.open();
    let r = db
        .create_indexes("t", "i", &[doc! {"key": {"a": 1}, "name": "a_1"}])
        .unwrap();
    assert!(r.created_collection_automatically);
    assert_eq!((r.num_indexes_before, r.num_indexes_after), (1, 2));
    let r = db
        .create_indexes("t", "i", &[doc! {"key": {"a": 1}, "name": "a_1"}])
        .unwrap();
    assert_eq!(r.note.as_deref(), Some("all indexes already exist"));
    assert_eq!(
        db.create_indexes("t", "i", &[doc! {"key": {"a": 1}, "name": "other"}])
            .unwrap_err()
            .code,
        85
    );
    assert_eq!(
        db.create_indexes("t", "i", &[doc! {"key": {"b": 1}, "name": "a_1"}])
            .unwrap_err()
            .code,
        86
    );
    assert_eq!(
        db.create_indexes(
            "t",
            "i",
            &[doc! {"key": {"a": 1}, "name": "a_1", "unique": true}]
        )
        .unwrap_err()
        .code,
        85
    );
    db.create_indexes(
        "t",
        "i",
        &[
            doc! {"key": {"b": -1}, "name": "b_-1"},
            doc! {"key": {"c": 1}, "name": "c_1"},
        ],
    )
    .unwrap();
    assert_eq!(
        db.drop_indexes("t", "i", &Bson::Document(doc! {"b": -1}))
            .unwrap(),
        4
    );
    assert_eq!(
        db.drop_indexes("t", "i", &Bson::String("nope".into()))
            .unwrap_err()
            .code,
        27
    );
    assert_eq!(
        db.drop_indexes("t", "i", &Bson::String("_id_".into()))
            .unwrap_err()
            .code,
        72
    );
    assert_eq!(
        db.drop_indexes("t", "i", &Bson::String("*".into()))
            .unwrap(),
        3
    );
    assert_eq!(db.list_indexes("t", "i").unwrap().len(), 1);
    assert_eq!(db.list_indexes("t", "missing").unwrap_err().code, 26);
}

#[test]
fn catalog_survives_reopen_and_namespace_ops() {
    let env = Env::new();
    {
        let db = env.open();
        db.create_collection("t", "a", doc! {"capped": false})
            .unwrap();
        assert_eq!(
            db.create_collection("t", "a", doc! {}).unwrap_err().code,
            48
        );
        db.insert("t", "a", vec![doc! {"_id": 1, "x": [1, 2]}], true)
            .unwrap();
        db.create_indexes("t", "a", &[doc! {"key": {"x": 1}, "name": "x_1"}])
            .unwrap();
        db.insert(
            "admin",
            "system.users",
            vec![doc! {"_id": "admin.root", "user": "root", "db": "admin"}],
            true,
        )
        .unwrap();
        db.insert("other", "z", vec![doc! {"_id": 1}], true)
            .unwrap();
    }
    let db = env.open();
    assert_eq!(find(&db, "a", doc! {"x": 2}).len(), 1);
    let ix = db.list_indexes("t", "a").unwrap();
    assert_eq!(ix[1].get_str("name").unwrap(), "x_1");
    let ex = db
        .explain_find(
            "t",
            "a",
            FindOptions {
                filter: doc! {"x": 2},
                ..Default::default()
            },
        )
        .unwrap();
    let input = ex
        .get_document("queryPlanner")
        .unwrap()
        .get_document("winningPlan")
        .unwrap()
        .get_document("inputStage")
        .unwrap();
    assert!(
        input.get_bool("isMultiKey").unwrap(),
        "multikey flag persisted"
    );
    let users: Vec<Document> = db
        .find(
            "admin",
            "system.users",
            FindOptions {
                filter: doc! {"user": "root"},
                ..Default::default()
            },
        )
        .unwrap()
        .map(|d| d.unwrap())
        .collect();
    assert_eq!(users.len(), 1);

    let names: Vec<String> = db
        .list_databases()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, vec!["admin", "other", "t"]);
    let lc = db.list_collections("t", Some(&doc! {"name": "a"})).unwrap();
    assert_eq!(lc.len(), 1);
    assert_eq!(
        lc[0].get_document("options").unwrap(),
        &doc! {"capped": false}
    );

    db.rename_collection("t", "a", "t", "b", false).unwrap();
    assert!(find(&db, "a", doc! {}).is_empty());
    assert_eq!(find(&db, "b", doc! {"x": 1}).len(), 1);
    assert_eq!(
        db.rename_collection("t", "nope", "t", "c", false)
            .unwrap_err()
            .code,
        26
    );
    db.drop_database("other").unwrap();
    assert!(db.drop_collection("t", "b").unwrap());
    assert!(!db.drop_collection("t", "b").unwrap());
    drop(db);
    let db = env.open();
    let names: Vec<String> = db
        .list_databases()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, vec!["admin"]);
}

#[test]
fn interrupted_purge_is_finished_on_open() {
    use docdb::kv::{Batch, Kv};
    let env = Env::new();
    {
        let engine = Engine::open(
            env.dir.path(),
            RootKey::from_bytes(env.key),
            Options::default(),
        )
        .unwrap();
        let kv = docdb::engine::EngineKv::new(engine);
        // Simulate a crash in the middle of an index build: entries and the marker exist,
        // the catalog never learned about the index.
        let mut b = Batch::default();
        let prefix = docdb::catalog::index_prefix(77);
        for i in 0..10u8 {
            b.put([prefix.as_slice(), &[i]].concat(), Vec::new());
        }
        b.put(docdb::catalog::garbage_key(&prefix), Vec::new());
        kv.write(b, true).unwrap();
    }
    let _db = env.open();
    drop(_db);
    let engine = Engine::open(
        env.dir.path(),
        RootKey::from_bytes(env.key),
        Options::default(),
    )
    .unwrap();
    let kv = docdb::engine::EngineKv::new(engine);
    let snap = kv.snapshot().unwrap();
    let mut left = 0;
    snap.scan(
        std::ops::Bound::Unbounded,
        std::ops::Bound::Unbounded,
        false,
        &mut |_, _| {
            left += 1;
            Ok(true)
        },
    )
    .unwrap();
    assert_eq!(left, 0, "index entries and marker purged");
}

#[test]
fn sort_spills_to_encrypted_temp_files() {
    let env = Env::new();
    let db = env.open_with(DbConfig {
        sort_memory_limit: 16 * 1024,
        sync_writes: false,
        ..DbConfig::default()
    });
    let marker = "PLAINTEXT-MARKER-7f3a";
    let docs: Vec<Document> = (0..2000)
        .map(|i| doc! {"_id": i, "k": (i * 7919) % 2000, "m": format!("{marker}-{i}")})
        .collect();
    db.insert("t", "s", docs, false).unwrap();
    let mut cur = db
        .find(
            "t",
            "s",
            FindOptions {
                sort: Some(doc! {"k": 1}),
                ..Default::default()
            },
        )
        .unwrap();
    let first = cur.next_batch(10).unwrap();
    assert_eq!(first[0].get_i32("k").unwrap(), 0);
    assert!(
        cur.stats()
            .spills
            .load(std::sync::atomic::Ordering::Relaxed)
            > 1,
        "sort spilled runs"
    );
    // While spilled runs are open, nothing on disk holds the plaintext marker.
    assert_no_plaintext(env.dir.path(), marker.as_bytes());
    let mut prev = 9;
    let mut n = 10;
    for d in cur {
        let k = d.unwrap().get_i32("k").unwrap();
        assert!(k > prev);
        prev = k;
        n += 1;
    }
    assert_eq!(n, 2000);
    // Refusing disk use errors out with MongoDB's code.
    let e = db
        .find(
            "t",
            "s",
            FindOptions {
                sort: Some(doc! {"k": 1}),
                allow_disk_use: Some(false),
                ..Default::default()
            },
        )
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, 292);
    // Aggregation $sort spills the same way.
    let out: Vec<Document> = db
        .aggregate(
            "t",
            "s",
            &[doc! {"$sort": {"k": -1}}, doc! {"$limit": 5}],
            Default::default(),
        )
        .unwrap()
        .map(|d| d.unwrap())
        .collect();
    assert_eq!(out[0].get_i32("k").unwrap(), 1999);
    assert_no_plaintext(env.dir.path(), marker.as_bytes());
    // $group past the budget spills partial groups the same way.
    let mut cur = db.aggregate("t", "s", &[doc! {"$group": {"_id": {"$mod": ["$k", 100]}, "ms": {"$push": "$m"}, "n": {"$sum": 1}}}, doc! {"$sort": {"_id": 1}}], Default::default()).unwrap();
    let first = cur.next().unwrap().unwrap();
    assert_no_plaintext(env.dir.path(), marker.as_bytes());
    assert_eq!(first.get_i32("n").unwrap(), 20);
    assert_eq!(first.get_array("ms").unwrap().len(), 20);
    assert_eq!(cur.count(), 99);
}

fn assert_no_plaintext(dir: &std::path::Path, marker: &[u8]) {
    let mut files = 0;
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        files += 1;
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "plaintext found in {}",
            entry.display()
        );
    }
    assert!(files > 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn cursors_are_lazy_snapshots_across_batches() {
    let env = Env::new();
    let db = env.open();
    let docs: Vec<Document> = (0..1000).map(|i| doc! {"_id": i}).collect();
    db.insert("t", "cur", docs, true).unwrap();
    let mut cur = db.find("t", "cur", FindOptions::default()).unwrap();
    let b1 = cur.next_batch(101).unwrap();
    assert_eq!(b1.len(), 101);
    // Writes after the cursor opened are not visible to it.
    db.delete(
        "t",
        "cur",
        vec![DeleteOp {
            q: doc! {"_id": {"$gte": 500}},
            limit: 0,
            hint: None,
        }],
        true,
    )
    .unwrap();
    db.insert("t", "cur", vec![doc! {"_id": 5000}], true)
        .unwrap();
    let mut total = b1.len();
    while !cur.is_exhausted() {
        total += cur.next_batch(300).unwrap().len();
    }
    assert_eq!(total, 1000);
    assert_eq!(db.count("t", "cur", &doc! {}, 0, 0).unwrap(), 501);
}

#[test]
fn find_and_modify_and_aggregate() {
    let env = Env::new();
    let db = env.open();
    db.insert(
        "t",
        "f",
        vec![
            doc! {"_id": 1, "q": 5, "g": "a"},
            doc! {"_id": 2, "q": 1, "g": "a"},
            doc! {"_id": 3, "q": 9, "g": "b"},
        ],
        true,
    )
    .unwrap();
    let r = db
        .find_and_modify(
            "t",
            "f",
            FindAndModifyOptions {
                query: doc! {"g": "a"},
                sort: Some(doc! {"q": 1}),
                update: Some(UpdateDoc::Doc(doc! {"$inc": {"q": 100}})),
                new: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.value, Some(doc! {"_id": 2, "q": 101, "g": "a"}));
    assert!(r.updated_existing);
    let r = db
        .find_and_modify(
            "t",
            "f",
            FindAndModifyOptions {
                query: doc! {"g": "b"},
                remove: true,
                fields: Some(doc! {"q": 1}),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.value, Some(doc! {"_id": 3, "q": 9}));
    let r = db
        .find_and_modify(
            "t",
            "f",
            FindAndModifyOptions {
                query: doc! {"_id": 7},
                update: Some(UpdateDoc::Doc(doc! {"$set": {"g": "c"}})),
                upsert: true,
                new: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.value, Some(doc! {"_id": 7, "g": "c"}));
    assert_eq!(r.upserted, Some(Bson::Int32(7)));
    let r = db
        .find_and_modify(
            "t",
            "f",
            FindAndModifyOptions {
                query: doc! {"_id": 99},
                remove: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((r.value, r.n), (None, 0));

    let out: Vec<Document> = db
        .aggregate(
            "t",
            "f",
            &[
                doc! {"$match": {"g": {"$in": ["a", "c"]}}},
                doc! {"$group": {"_id": "$g", "total": {"$sum": "$q"}, "n": {"$sum": 1}}},
                doc! {"$sort": {"_id": 1}},
            ],
            Default::default(),
        )
        .unwrap()
        .map(|d| d.unwrap())
        .collect();
    assert_eq!(
        out,
        vec![
            doc! {"_id": "a", "total": 106, "n": 2},
            doc! {"_id": "c", "total": 0, "n": 1}
        ]
    );

    // Pipeline-style update.
    let u = db
        .update(
            "t",
            "f",
            vec![UpdateOp {
                q: doc! {"_id": 1},
                u: UpdateDoc::Pipeline(vec![doc! {"$set": {"double": {"$multiply": ["$q", 2]}}}]),
                multi: false,
                upsert: false,
                array_filters: vec![],
                hint: None,
            }],
            true,
        )
        .unwrap();
    assert_eq!(u.n_modified, 1);
    assert_eq!(
        find(&db, "f", doc! {"_id": 1})[0]
            .get_i32("double")
            .unwrap(),
        10
    );
}

#[test]
fn concurrent_inserts_respect_unique_indexes() {
    let env = Env::new();
    let db = env.open_with(DbConfig {
        sync_writes: false,
        ..DbConfig::default()
    });
    db.create_indexes(
        "t",
        "cc",
        &[doc! {"key": {"k": 1}, "name": "k_1", "unique": true}],
    )
    .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                for k in 0..50 {
                    let r = db
                        .insert("t", "cc", vec![doc! {"k": k, "t": t}], true)
                        .unwrap();
                    ok += r.n;
                    if r.n == 0 {
                        assert_eq!(r.write_errors[0].error.code, 11000);
                    }
                }
                ok
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 50, "exactly one insert per key wins");
    assert_eq!(db.count("t", "cc", &doc! {}, 0, 0).unwrap(), 50);
}

#[test]
fn error_codes_surface_through_the_api() {
    let env = Env::new();
    let db = env.open();
    db.insert("t", "e", vec![doc! {"_id": 1, "s": "str", "a": [1]}], true)
        .unwrap();
    let bad = |q: Document| {
        db.find(
            "t",
            "e",
            FindOptions {
                filter: q,
                ..Default::default()
            },
        )
        .err()
        .map(|e| e.code)
    };
    assert_eq!(bad(doc! {"a": {"$in": 1}}), Some(2));
    assert_eq!(bad(doc! {"$where": "1"}), Some(2));
    assert_eq!(
        db.find(
            "t",
            "e",
            FindOptions {
                projection: Some(doc! {"a": 1, "s": 0}),
                ..Default::default()
            }
        )
        .err()
        .map(|e| e.code),
        Some(31254)
    );
    let e = db
        .update(
            "t",
            "e",
            vec![upd(doc! {"_id": 1}, doc! {"$inc": {"s": 1}}, false, false)],
            true,
        )
        .unwrap();
    assert_eq!(e.write_errors[0].error.code, 14);
    assert_eq!(e.write_errors[0].error.code_name, "TypeMismatch");
    let e = db
        .update(
            "t",
            "e",
            vec![upd(
                doc! {"_id": 1},
                doc! {"$set": {"a": 1}, "$push": {"a": 2}},
                false,
                false,
            )],
            true,
        )
        .unwrap();
    assert_eq!(e.write_errors[0].error.code, 40);
    assert_eq!(
        db.insert("t", "bad$name", vec![doc! {}], true)
            .unwrap_err()
            .code,
        73
    );
    assert_eq!(
        db.aggregate("t", "e", &[doc! {"$nope": 1}], Default::default())
            .err()
            .map(|e| e.code),
        Some(40324)
    );
    let rendered = e.write_errors[0].error.to_write_error(0);
    assert_eq!(
        rendered.get_str("codeName").unwrap(),
        "ConflictingUpdateOperators"
    );
}

#[test]
fn handles_are_send_and_sync_and_batches_respect_byte_limits() {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Send + Sync>() {}
    assert_send::<docdb::Cursor>();
    assert_sync::<Db>();
    let env = Env::new();
    let db = env.open();
    let docs: Vec<Document> = (0..10)
        .map(|i| doc! {"_id": i, "pad": "y".repeat(1000)})
        .collect();
    db.insert("t", "bytes", docs, true).unwrap();
    let mut cur = db.find("t", "bytes", FindOptions::default()).unwrap();
    let b = cur.next_batch_limited(100, 2500).unwrap();
    assert_eq!(b.len(), 2);
    let b = cur.next_batch_limited(100, 10).unwrap();
    assert_eq!(b.len(), 1, "at least one document per batch");
    assert_eq!(cur.next_batch(100).unwrap().len(), 7);
    assert!(cur.is_exhausted());
}

/// Update and delete commands report each failed statement under its index; an ordered
/// command stops at its first failure, an unordered one runs the rest. The same holds for
/// a collection that does not exist, where statements are only validated.
#[test]
fn update_and_delete_statement_errors_follow_ordered() {
    let env = Env::new();
    let db = env.open();
    db.insert(
        "t",
        "w",
        (1..=4).map(|i| doc! {"_id": i, "v": 0}).collect(),
        true,
    )
    .unwrap();
    let bad_update = || upd(doc! {"_id": 2}, doc! {"$bogus": {"v": 1}}, false, false);
    let updates = || {
        vec![
            upd(doc! {"_id": 1}, doc! {"$inc": {"v": 1}}, false, false),
            bad_update(),
            upd(doc! {"_id": 3}, doc! {"$inc": {"v": 1}}, false, false),
        ]
    };
    let r = db.update("t", "w", updates(), true).unwrap();
    assert_eq!((r.n, r.write_errors.len()), (1, 1));
    assert_eq!(r.write_errors[0].index, 1);
    let r = db.update("t", "w", updates(), false).unwrap();
    assert_eq!((r.n, r.write_errors.len()), (2, 1));
    assert_eq!(r.write_errors[0].index, 1);
    let v = |id: i32| find(&db, "w", doc! {"_id": id})[0].get_i32("v").unwrap();
    assert_eq!((v(1), v(2), v(3)), (2, 0, 1));

    let del = |q: Document, limit: u32| DeleteOp {
        q,
        limit,
        hint: None,
    };
    let deletes = || {
        vec![
            del(doc! {"_id": 1}, 1),
            del(doc! {"_id": 2}, 5), // limit must be 0 or 1
            del(doc! {"_id": {"$bogus": 1}}, 0),
            del(doc! {"_id": 3}, 0),
        ]
    };
    let r = db.delete("t", "w", deletes(), true).unwrap();
    assert_eq!(r.n, 1);
    assert_eq!(
        r.write_errors.iter().map(|e| e.index).collect::<Vec<_>>(),
        [1]
    );
    let r = db.delete("t", "w", deletes(), false).unwrap();
    assert_eq!(r.n, 1, "only _id 3 was left to delete");
    assert_eq!(
        r.write_errors.iter().map(|e| e.index).collect::<Vec<_>>(),
        [1, 2]
    );
    let left: Vec<Bson> = find(&db, "w", doc! {})
        .iter()
        .map(|d| d.get("_id").unwrap().clone())
        .collect();
    assert_eq!(left, [Bson::Int32(2), Bson::Int32(4)]);

    // No such collection: statements are validated, nothing is written.
    let r = db.update("t", "none", updates(), false).unwrap();
    assert_eq!(
        (
            r.n,
            r.write_errors.iter().map(|e| e.index).collect::<Vec<_>>()
        ),
        (0, vec![1])
    );
    let r = db.delete("t", "none", deletes(), true).unwrap();
    assert_eq!(
        (
            r.n,
            r.write_errors.iter().map(|e| e.index).collect::<Vec<_>>()
        ),
        (0, vec![2])
    );
}
