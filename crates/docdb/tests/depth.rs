//! Hostile nesting never takes the process down: every case runs on a thread with a
//! small stack (a recursion the input drives would overflow it and abort the whole test
//! binary) and must come back as MongoDB's error code.

use std::sync::Arc;

use bson::{Bson, Document, doc};
use docdb::error::code;
use docdb::expr::Expr;
use docdb::matcher::Matcher;
use docdb::memkv::MemKv;
use docdb::{AggregateOptions, Db, DbConfig, FindOptions, UpdateDoc, UpdateOp, depth};

/// The stack of the server's threads (tokio workers and Rust's spawned threads default to
/// 2 MiB). Cases at the limits recurse up to 100 levels, which unoptimised (test) builds
/// need most of a megabyte for (about 8 KiB a level in the matcher's parser), while an
/// unbounded recursion over 50,000 levels overflows it whatever the build.
const STACK: usize = 2 * 1024 * 1024;
/// Components in a hostile dotted path.
const LONG: usize = 50_000;

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

fn long_path(parts: usize) -> String {
    vec!["a"; parts].join(".")
}

fn open() -> Db {
    let db = Db::open_kv(Arc::new(MemKv::new()), DbConfig::default()).unwrap();
    let r = db
        .insert("t", "c", vec![doc! {"_id": 1, "a": {"a": [1, 2]}}], true)
        .unwrap();
    assert!(r.write_errors.is_empty());
    db
}

fn find_code(db: &Db, opts: FindOptions) -> i32 {
    match db.find("t", "c", opts) {
        Err(e) => e.code,
        Ok(cursor) => match cursor.collect::<Result<Vec<_>, _>>() {
            Err(e) => e.code,
            Ok(docs) => panic!("expected an error, found {docs:?}"),
        },
    }
}

fn aggregate_code(db: &Db, pipeline: Vec<Document>) -> i32 {
    match db.aggregate("t", "c", &pipeline, AggregateOptions::default()) {
        Err(e) => e.code,
        Ok(cursor) => match cursor.collect::<Result<Vec<_>, _>>() {
            Err(e) => e.code,
            Ok(docs) => panic!("expected an error, found {docs:?}"),
        },
    }
}

fn update(db: &Db, u: Document) -> Option<i32> {
    let op = UpdateOp {
        q: doc! {"_id": 1},
        u: UpdateDoc::Doc(u),
        multi: false,
        upsert: false,
        array_filters: Vec::new(),
        hint: None,
    };
    match db.update("t", "c", vec![op], true) {
        Err(e) => Some(e.code),
        Ok(r) => r.write_errors.first().map(|w| w.error.code),
    }
}

const OVERFLOW: i32 = code::OVERFLOW.code;
const BAD_VALUE: i32 = code::BAD_VALUE.code;

#[test]
fn a_find_projection_on_a_50000_part_path_is_refused() {
    on_small_stack(|| {
        let db = open();
        let opts = FindOptions {
            projection: Some(doc! {long_path(LONG): 1}),
            ..Default::default()
        };
        assert_eq!(find_code(&db, opts), OVERFLOW);
        // Still serving.
        let n = db.find("t", "c", FindOptions::default()).unwrap().count();
        assert_eq!(n, 1);
    });
}

#[test]
fn long_paths_in_filters_sorts_and_projections_are_refused() {
    on_small_stack(|| {
        let db = open();
        let long = long_path(LONG);
        let cases = [
            FindOptions {
                filter: doc! {&long: 1},
                ..Default::default()
            },
            FindOptions {
                filter: doc! {"a": {"$elemMatch": {&long: 1}}},
                ..Default::default()
            },
            FindOptions {
                sort: Some(doc! {&long: 1}),
                ..Default::default()
            },
            FindOptions {
                projection: Some(doc! {&long: 0}),
                ..Default::default()
            },
            FindOptions {
                projection: Some(doc! {format!("{long}.$"): 1}),
                filter: doc! {"a": 1},
                ..Default::default()
            },
            FindOptions {
                projection: Some(doc! {"x": format!("${long}")}),
                ..Default::default()
            },
        ];
        for opts in cases {
            assert_eq!(find_code(&db, opts), OVERFLOW);
        }
        // The limit itself: 200 components are a path, 201 are not.
        let at_limit = FindOptions {
            filter: doc! {long_path(200): 1},
            ..Default::default()
        };
        assert_eq!(db.find("t", "c", at_limit).unwrap().count(), 0);
        let over = FindOptions {
            filter: doc! {long_path(201): 1},
            ..Default::default()
        };
        assert_eq!(find_code(&db, over), OVERFLOW);
    });
}

#[test]
fn long_paths_in_updates_are_refused() {
    on_small_stack(|| {
        let db = open();
        let long = long_path(LONG);
        for u in [
            doc! {"$set": {&long: 1}},
            doc! {"$inc": {&long: 1}},
            doc! {"$unset": {&long: ""}},
            doc! {"$rename": {"a": &long}},
            doc! {"$rename": {&long: "b"}},
            doc! {"$push": {&long: 1}},
            doc! {"$addToSet": {&long: 1}},
            doc! {"$pull": {&long: 1}},
            doc! {"$min": {&long: 1}},
            doc! {"$currentDate": {&long: true}},
        ] {
            let op = u.keys().next().cloned();
            assert_eq!(update(&db, u), Some(OVERFLOW), "{op:?}");
        }
        let pipeline = UpdateOp {
            q: doc! {"_id": 1},
            u: UpdateDoc::Pipeline(vec![doc! {"$set": {&long: 1}}]),
            multi: false,
            upsert: false,
            array_filters: Vec::new(),
            hint: None,
        };
        let r = db.update("t", "c", vec![pipeline], true);
        let code = match r {
            Err(e) => e.code,
            Ok(r) => r.write_errors[0].error.code,
        };
        assert_eq!(code, OVERFLOW);
    });
}

#[test]
fn long_paths_in_pipelines_are_refused() {
    on_small_stack(|| {
        let db = open();
        let long = long_path(LONG);
        let field = format!("${long}");
        for pipeline in [
            vec![doc! {"$addFields": {&long: 1}}],
            vec![doc! {"$set": {&long: 1}}],
            vec![doc! {"$set": {"x": &field}}],
            vec![doc! {"$project": {&long: 1}}],
            vec![doc! {"$unset": &long}],
            vec![doc! {"$group": {"_id": &field}}],
            vec![doc! {"$group": {"_id": null, "s": {"$sum": &field}}}],
            vec![doc! {"$sort": {&long: 1}}],
            vec![doc! {"$match": {&long: 1}}],
            vec![doc! {"$unwind": &field}],
            vec![doc! {"$replaceRoot": {"newRoot": &field}}],
        ] {
            assert_eq!(
                aggregate_code(&db, pipeline.clone()),
                OVERFLOW,
                "{pipeline:?}"
            );
        }
    });
}

/// `{$and: [{$and: [... {a: 1}]}]}` nested `n` levels.
fn deep_and(n: usize) -> Document {
    let mut d = doc! {"a": 1};
    for _ in 0..n {
        d = doc! {"$and": [d]};
    }
    d
}

/// `{a: {$not: {$not: ... {$eq: 1}}}}` nested `n` levels.
fn deep_not(n: usize) -> Document {
    let mut d = doc! {"$eq": 1};
    for _ in 0..n {
        d = doc! {"$not": d};
    }
    doc! {"a": d}
}

/// `{a: {$elemMatch: {a: {$elemMatch: ... {a: 1}}}}}` nested `n` levels.
fn deep_elem_match(n: usize) -> Document {
    let mut d = doc! {"a": 1};
    for _ in 0..n {
        d = doc! {"a": {"$elemMatch": d}};
    }
    d
}

/// `{$add: [{$add: [... 1, 1] }, 1]}` nested `n` levels.
fn deep_add(n: usize) -> Bson {
    let mut e = Bson::Int32(1);
    for _ in 0..n {
        e = Bson::Document(doc! {"$add": [e, 1]});
    }
    e
}

#[test]
fn deeply_nested_filters_are_refused() {
    on_small_stack(|| {
        // Far deeper than a client can send (the wire layer stops at 150 BSON levels):
        // docdb bounds its own recursion. Built and dropped without recursion.
        for filter in [deep_and(LONG), deep_not(LONG), deep_elem_match(LONG)] {
            assert_eq!(Matcher::new(&filter).unwrap_err().code, BAD_VALUE);
            depth::dismantle(Bson::Document(filter));
        }
        // The limit itself, through the database, at depths a client can send.
        let db = open();
        for (ok, bad) in [
            (deep_and(100), deep_and(101)),
            (deep_not(100), deep_not(101)),
            (deep_elem_match(100), deep_elem_match(101)),
        ] {
            let ok = FindOptions {
                filter: ok,
                ..Default::default()
            };
            assert!(db.find("t", "c", ok).is_ok());
            let bad = FindOptions {
                filter: bad,
                ..Default::default()
            };
            assert_eq!(find_code(&db, bad), BAD_VALUE);
        }
        let filter = doc! {"$expr": deep_add(LONG)};
        assert_eq!(Matcher::new(&filter).unwrap_err().code, OVERFLOW);
        depth::dismantle(Bson::Document(filter));
    });
}

#[test]
fn deeply_nested_expressions_are_refused() {
    on_small_stack(|| {
        let e = deep_add(LONG);
        assert_eq!(Expr::parse(&e).unwrap_err().code, OVERFLOW);
        depth::dismantle(e);
        assert!(Expr::parse(&deep_add(depth::MAX_EXPR_DEPTH - 1)).is_ok());
        let db = open();
        let pipeline = vec![doc! {"$set": {"x": deep_add(depth::MAX_EXPR_DEPTH)}}];
        assert_eq!(aggregate_code(&db, pipeline), OVERFLOW);
        // Evaluated at a modest depth: `eval_op` is one large match whose unoptimised
        // frame is ~38 KiB, so 100 levels would not fit this stack in a test build.
        let pipeline = vec![doc! {"$set": {"x": deep_add(20)}}];
        let out: Vec<Document> = db
            .aggregate("t", "c", &pipeline, AggregateOptions::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(out[0].get("x"), Some(&Bson::Int32(21)));
    });
}

#[test]
fn documents_nested_deeper_than_100_levels_are_not_stored() {
    on_small_stack(|| {
        let db = open();
        let at_limit = depth::nested(depth::MAX_STORED_DEPTH);
        let r = db.insert("t", "d", vec![at_limit], true).unwrap();
        assert!(r.write_errors.is_empty());
        for levels in [depth::MAX_STORED_DEPTH + 1, 150, 100_000] {
            let r = db
                .insert("t", "d", vec![depth::nested(levels)], true)
                .unwrap();
            assert_eq!(r.n, 0);
            let e = &r.write_errors[0].error;
            assert_eq!(e.code, OVERFLOW);
            assert_eq!(
                e.errmsg,
                "cannot insert document because it exceeds 100 levels of nesting"
            );
        }
        // An update that deepens the document one level at a time is refused at 101:
        // `{$set: {"a.a…" (k parts): {}}}` makes the document k + 1 levels deep.
        let mut refused_at = None;
        for parts in 1..=depth::MAX_STORED_DEPTH + 5 {
            if let Some(code) = update(&db, doc! {"$set": {long_path(parts): {}}}) {
                assert_eq!(code, OVERFLOW);
                refused_at = Some(parts + 1);
                break;
            }
        }
        assert_eq!(refused_at, Some(depth::MAX_STORED_DEPTH + 1));
        let stored = db.find("t", "c", FindOptions::default()).unwrap();
        assert_eq!(stored.count(), 1);
        // A replacement, and an upsert, are bounded the same way.
        let mut deep = depth::nested(150);
        deep.insert("_id", 1);
        assert_eq!(update(&db, deep), Some(OVERFLOW));
        let op = UpdateOp {
            q: doc! {"_id": 7},
            u: UpdateDoc::Doc(doc! {"$set": {long_path(150): 1}}),
            multi: false,
            upsert: true,
            array_filters: Vec::new(),
            hint: None,
        };
        let r = db.update("t", "c", vec![op], true);
        let code = match r {
            Err(e) => e.code,
            Ok(r) => r.write_errors[0].error.code,
        };
        assert_eq!(code, OVERFLOW);
    });
}

#[test]
fn deep_values_compare_encode_and_decode_without_recursion() {
    on_small_stack(|| {
        let a = Bson::Document(depth::nested(100_000));
        let b = Bson::Document(depth::nested(100_000));
        assert_eq!(docdb::order::cmp(&a, &b), std::cmp::Ordering::Equal);
        let key = docdb::keycodec::encode(&a);
        assert_eq!(
            docdb::keycodec::encoded_len(&key, false).unwrap(),
            key.len()
        );
        depth::dismantle(a);
        depth::dismantle(b);
        // BSON bytes nested 1,000,000 levels: refused on the raw bytes.
        let levels = 1_000_000;
        let mut bytes = Vec::with_capacity(8 * levels + 5);
        for i in 0..levels {
            bytes.extend_from_slice(&((5 + 7 * (levels - i)) as i32).to_le_bytes());
            bytes.extend_from_slice(&[3, 0]);
        }
        bytes.extend_from_slice(&[5, 0, 0, 0, 0]);
        bytes.resize(bytes.len() + levels, 0);
        assert!(matches!(
            docdb::rawdoc::decode(&bytes),
            Err(docdb::rawdoc::Error::TooDeep(docdb::rawdoc::MAX_DEPTH))
        ));
    });
}

#[test]
fn pipelines_are_bounded_in_length_and_in_the_depth_they_build() {
    on_small_stack(|| {
        let db = open();
        let stage = doc! {"$set": {"b": 1}};
        let too_long = vec![stage.clone(); docdb::aggregate::MAX_STAGES + 1];
        assert_eq!(aggregate_code(&db, too_long), 7749501);
        // At the limit, each document is pulled through 1000 stages.
        let at_limit = vec![stage; docdb::aggregate::MAX_STAGES];
        let out = db
            .aggregate("t", "c", &at_limit, AggregateOptions::default())
            .unwrap()
            .count();
        assert_eq!(out, 1);
        // Every stage wraps `a` in one more array: refused once a document would be deeper
        // than BSON allows, long before the pipeline ends.
        let deepening = vec![doc! {"$set": {"a": ["$a"]}}; docdb::aggregate::MAX_STAGES];
        assert_eq!(aggregate_code(&db, deepening), OVERFLOW);
        let deepening = vec![doc! {"$replaceRoot": {"newRoot": {"a": "$$ROOT"}}}; 500];
        assert_eq!(aggregate_code(&db, deepening), OVERFLOW);
        // Five levels a stage; few stages, as pulling through a `$group` costs ~6 KiB of
        // stack a stage in a test build.
        let deepening = vec![doc! {"$group": {"_id": {"a": {"b": {"c": "$$ROOT"}}}}}; 100];
        assert_eq!(aggregate_code(&db, deepening), OVERFLOW);
    });
}
