//! docdb throughput on the real encrypted engine. Run in release:
//! `cargo bench -p docdb --bench docdb` (set DOCDB_BENCH_N to change the size).

use std::time::Instant;

use bson::{Document, doc};
use docdb::{Db, DbConfig, FindOptions};
use storage::{Engine, Options, RootKey};

fn row(name: &str, n: usize, secs: f64) {
    println!(
        "| {name:<44} | {n:>8} | {secs:>9.3} | {:>12.0} |",
        n as f64 / secs
    );
}

fn main() {
    let n: usize = std::env::var("DOCDB_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(
        dir.path(),
        RootKey::from_bytes(rand::random()),
        Options::default(),
    )
    .expect("engine");
    let db = Db::open_with(
        engine,
        DbConfig {
            sync_writes: false,
            sort_memory_limit: 4 * 1024 * 1024,
            ..DbConfig::default()
        },
    )
    .expect("db");
    db.create_indexes(
        "b",
        "c",
        &[
            doc! {"key": {"k": 1}, "name": "k_1"},
            doc! {"key": {"tags": 1}, "name": "tags_1"},
        ],
    )
    .expect("index");
    println!(
        "| {:<44} | {:>8} | {:>9} | {:>12} |",
        "operation", "ops", "seconds", "ops/s"
    );
    println!("|{:-<46}|{:-<10}|{:-<11}|{:-<14}|", "", "", "", "");

    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let docs: Vec<Document> = chunk.iter().map(|&i| doc! {"_id": i as i64, "k": ((i * 7919) % n) as i64, "g": (i % 16) as i32, "tags": [(i % 7) as i32, (i % 11) as i32], "pad": "x".repeat(100)}).collect();
        db.insert("b", "c", docs, true).expect("insert");
    }
    row(
        "insert (batches of 100, 2 indexes)",
        n,
        t.elapsed().as_secs_f64(),
    );

    let lookups = n.min(5_000);
    let t = Instant::now();
    for i in 0..lookups {
        let c = db
            .find(
                "b",
                "c",
                FindOptions {
                    filter: doc! {"_id": ((i * 31) % n) as i64},
                    ..Default::default()
                },
            )
            .expect("find")
            .count();
        assert_eq!(c, 1);
    }
    row("find by _id", lookups, t.elapsed().as_secs_f64());

    // The YCSB update: `$set` of one unindexed field, one document by `_id`.
    let t = Instant::now();
    for i in 0..lookups {
        let r = db
            .update(
                "b",
                "c",
                vec![docdb::UpdateOp {
                    q: doc! {"_id": ((i * 31) % n) as i64},
                    u: docdb::UpdateDoc::Doc(doc! {"$set": {"pad": format!("{i:0>100}")}}),
                    multi: false,
                    upsert: false,
                    array_filters: vec![],
                    hint: None,
                }],
                true,
            )
            .expect("update");
        assert_eq!(r.n, 1);
    }
    row(
        "update by _id ($set, no sync)",
        lookups,
        t.elapsed().as_secs_f64(),
    );

    let t = Instant::now();
    for i in 0..lookups {
        let c = db
            .find(
                "b",
                "c",
                FindOptions {
                    filter: doc! {"k": ((i * 17) % n) as i64},
                    ..Default::default()
                },
            )
            .expect("find")
            .count();
        assert_eq!(c, 1);
    }
    row(
        "find by secondary index (equality)",
        lookups,
        t.elapsed().as_secs_f64(),
    );

    let t = Instant::now();
    let c = db
        .find(
            "b",
            "c",
            FindOptions {
                filter: doc! {"g": 3},
                ..Default::default()
            },
        )
        .expect("find")
        .count();
    row(
        "collection scan with filter (docs scanned)",
        n,
        t.elapsed().as_secs_f64(),
    );
    assert!(c > 0);

    let t = Instant::now();
    let c = db
        .find(
            "b",
            "c",
            FindOptions {
                sort: Some(doc! {"pad": 1, "g": -1}),
                ..Default::default()
            },
        )
        .expect("find")
        .count();
    row(
        "blocking sort (spills past 4 MiB)",
        c,
        t.elapsed().as_secs_f64(),
    );

    let t = Instant::now();
    let c = db
        .find(
            "b",
            "c",
            FindOptions {
                sort: Some(doc! {"k": 1}),
                ..Default::default()
            },
        )
        .expect("find")
        .count();
    row("sort provided by index (k_1)", c, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let out = db
        .aggregate(
            "b",
            "c",
            &[doc! {"$group": {"_id": "$g", "n": {"$sum": 1}, "avg": {"$avg": "$k"}}}],
            Default::default(),
        )
        .expect("agg")
        .count();
    row(
        "aggregate $group over all docs",
        n,
        t.elapsed().as_secs_f64(),
    );
    assert_eq!(out, 16);

    let t = Instant::now();
    let r = db
        .update(
            "b",
            "c",
            vec![docdb::UpdateOp {
                q: doc! {"g": 5},
                u: docdb::UpdateDoc::Doc(doc! {"$inc": {"k": 1}}),
                multi: true,
                upsert: false,
                array_filters: vec![],
                hint: None,
            }],
            true,
        )
        .expect("update");
    row(
        "multi update ($inc, index maintenance)",
        r.n as usize,
        t.elapsed().as_secs_f64(),
    );
}
