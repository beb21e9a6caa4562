//! `maxTimeMS` through the driver: long scans, blocking sorts and groups stop at the
//! deadline with `MaxTimeMSExpired` (50); a cursor's budget is cumulative over its
//! getMores; invalid values are `BadValue` (2). And the temp-disk quota: a spill beyond
//! it fails with `OutOfDiskSpace` (14031), leaves no temp file, and frees the quota.

mod common;

use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use common::{Options, TestServer, command_code};
use futures::TryStreamExt;
use mongodb::Collection;

const LIMIT_MS: u64 = 50;
/// Slack over the limit for a debug build on a shared 2-core machine: the engine polls
/// the deadline every 64 items, so the real overshoot is milliseconds.
const SLACK: Duration = Duration::from_millis(700);

/// Documents in the big collection: an unbounded scan, sort or group over them takes
/// well over [`LIMIT_MS`] in a debug build (measured on the 2-core CI machine: a full
/// scan of 40k ~1.8 s, a `$sort` ~2.7 s; 200k took 9 s and 13 s, too slow a test).
const DOCS: i32 = 40_000;

async fn fill(coll: &Collection<Document>, n: i32) {
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        batch.push(doc! {"_id": i, "a": (i * 7919) % 100_003, "g": i % 10_000});
        if batch.len() == 10_000 {
            coll.insert_many(std::mem::take(&mut batch))
                .await
                .expect("insert");
        }
    }
    if !batch.is_empty() {
        coll.insert_many(batch).await.expect("insert");
    }
}

/// Runs `body` on `app` and asserts it fails with `code` within the limit plus slack.
async fn expect_expired(db: &mongodb::Database, body: Document, what: &str) {
    let start = Instant::now();
    let err = db
        .run_command(body)
        .await
        .expect_err(&format!("{what} must fail"));
    let took = start.elapsed();
    assert_eq!(command_code(&err), Some(50), "{what}: {err}");
    assert!(
        err.to_string().contains("operation exceeded time limit"),
        "{what}: {err}"
    );
    assert!(
        took < Duration::from_millis(LIMIT_MS) + SLACK,
        "{what} stopped after {took:?}"
    );
    eprintln!("{what}: MaxTimeMSExpired after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_time_ms_stops_scans_sorts_groups_and_cursors() {
    let ts = TestServer::start().await;
    let client = ts.client().await;
    let db = client.database("app");
    let coll = db.collection::<Document>("big");
    let t = Instant::now();
    fill(&coll, DOCS).await;
    eprintln!("inserted {DOCS} documents in {:?}", t.elapsed());

    // Without a limit the same work completes (and takes well over the limit).
    let t = Instant::now();
    let sorted: Vec<Document> = coll
        .aggregate(vec![doc! {"$sort": {"a": -1}}, doc! {"$limit": 1}])
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("collect");
    assert_eq!(sorted.len(), 1);
    eprintln!("unbounded $sort: {:?}", t.elapsed());
    let t = Instant::now();
    let n = db
        .run_command(doc! {"count": "big", "query": {"nomatch": 1}})
        .await
        .expect("count");
    assert_eq!(n.get_i64("n").ok(), Some(0));
    eprintln!("unbounded scan: {:?}", t.elapsed());

    let ms = LIMIT_MS as i64;
    expect_expired(
        &db,
        doc! {"find": "big", "filter": {"nomatch": 1}, "maxTimeMS": ms},
        "collection scan (find)",
    )
    .await;
    expect_expired(
        &db,
        doc! {"find": "big", "sort": {"a": 1}, "maxTimeMS": ms},
        "find with blocking sort",
    )
    .await;
    expect_expired(
        &db,
        doc! {"aggregate": "big", "pipeline": [{"$sort": {"a": 1}}], "cursor": {}, "maxTimeMS": ms},
        "$sort",
    )
    .await;
    expect_expired(
        &db,
        doc! {"aggregate": "big", "pipeline": [{"$group": {"_id": "$g", "n": {"$sum": 1}}}], "cursor": {}, "maxTimeMS": ms},
        "$group",
    )
    .await;
    expect_expired(
        &db,
        doc! {"count": "big", "query": {"nomatch": 1}, "maxTimeMS": ms},
        "count",
    )
    .await;
    expect_expired(
        &db,
        doc! {"distinct": "big", "key": "a", "maxTimeMS": ms},
        "distinct",
    )
    .await;
    expect_expired(
        &db,
        doc! {"findAndModify": "big", "query": {"nomatch": 1}, "update": {"$set": {"b": 1}}, "maxTimeMS": ms},
        "findAndModify",
    )
    .await;
    // A write command reports the statement that ran out of time as its write error.
    let start = Instant::now();
    let reply = db
        .run_command(doc! {"update": "big", "updates": [{"q": {"nomatch": 1}, "u": {"$set": {"b": 1}}, "multi": true}], "maxTimeMS": ms})
        .await
        .expect("update reply");
    let errors = reply.get_array("writeErrors").expect("writeErrors");
    assert_eq!(
        errors[0].as_document().and_then(|e| e.get_i32("code").ok()),
        Some(50),
        "{reply}"
    );
    assert!(start.elapsed() < Duration::from_millis(LIMIT_MS) + SLACK);
    let reply = db
        .run_command(
            doc! {"delete": "big", "deletes": [{"q": {"nomatch": 1}, "limit": 0}], "maxTimeMS": ms},
        )
        .await
        .expect("delete reply");
    let errors = reply.get_array("writeErrors").expect("writeErrors");
    assert_eq!(
        errors[0].as_document().and_then(|e| e.get_i32("code").ok()),
        Some(50),
        "{reply}"
    );

    // A generous limit does not get in the way; 0 means no limit.
    let n = db
        .run_command(doc! {"count": "big", "query": {"a": {"$gte": 0}}, "maxTimeMS": 600_000})
        .await
        .expect("count within its limit");
    assert_eq!(n.get_i64("n").ok(), Some(DOCS as i64));
    db.run_command(doc! {"count": "big", "query": {"nomatch": 1}, "maxTimeMS": 0})
        .await
        .expect("maxTimeMS 0 is no limit");

    // A cursor's budget covers its getMores, cumulatively; idle time between batches
    // does not count. The filter matches 80 documents spread over the collection, so
    // the getMores after the first 20 each scan thousands of documents.
    let mut cursor = coll
        .find(doc! {"g": {"$lt": 20}})
        .batch_size(1)
        .max_time(Duration::from_millis(100))
        .await
        .expect("find");
    assert!(cursor.advance().await.expect("first batch"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        cursor.advance().await.expect("idle time must not count"),
        "second document"
    );
    let mut seen = 2u64;
    let err = loop {
        match cursor.advance().await {
            Ok(true) => seen += 1,
            Ok(false) => panic!("the cursor read all {seen} documents within its budget"),
            Err(e) => break e,
        }
    };
    assert_eq!(command_code(&err), Some(50), "{err}");
    assert!(seen < 80);
    eprintln!("cursor ran out of time on a getMore after {seen} documents");

    // getMore's own maxTimeMS is for awaitData cursors only.
    let first = db
        .run_command(doc! {"find": "big", "batchSize": 1})
        .await
        .expect("find");
    let id = first.get_document("cursor").unwrap().get_i64("id").unwrap();
    let err = db
        .run_command(doc! {"getMore": id, "collection": "big", "maxTimeMS": 10})
        .await
        .expect_err("getMore maxTimeMS");
    assert_eq!(command_code(&err), Some(2), "{err}");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_max_time_ms_is_bad_value() {
    let ts = TestServer::start().await;
    let client = ts.client().await;
    let db = client.database("app");
    db.collection::<Document>("c")
        .insert_one(doc! {"a": 1})
        .await
        .expect("insert");
    let bad: [(Bson, &str); 5] = [
        (Bson::Int32(-1), "-1 value for maxTimeMS is out of range"),
        (Bson::String("x".into()), "maxTimeMS must be a number"),
        (
            Bson::Int64(1 << 31),
            "2147483648 value for maxTimeMS is out of range",
        ),
        (Bson::Double(1.5), "maxTimeMS has non-integral value"),
        (Bson::Null, "maxTimeMS must be a number"),
    ];
    for (v, msg) in bad {
        for mut body in [
            doc! {"find": "c"},
            doc! {"aggregate": "c", "pipeline": [], "cursor": {}},
            doc! {"count": "c"},
            doc! {"distinct": "c", "key": "a"},
        ] {
            body.insert("maxTimeMS", v.clone());
            let err = db
                .run_command(body.clone())
                .await
                .expect_err("invalid maxTimeMS");
            assert_eq!(command_code(&err), Some(2), "{body}: {err}");
            assert!(err.to_string().contains(msg), "{body}: {err}");
        }
    }
    // Whole doubles are accepted.
    db.run_command(doc! {"find": "c", "maxTimeMS": 1000.0})
        .await
        .expect("whole double");
    ts.stop().await;
}

fn temp_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tmp") {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spills_beyond_the_temp_disk_quota_fail_and_free_it() {
    const QUOTA: u64 = 512 * 1024;
    let ts = TestServer::start_with(Options {
        db_config: docdb::DbConfig {
            sort_memory_limit: 64 * 1024,
            temp_disk_quota: QUOTA,
            ..docdb::DbConfig::default()
        },
        ..Options::default()
    })
    .await;
    let client = ts.client().await;
    let db = client.database("app");
    let coll = db.collection::<Document>("wide");
    let pad = "p".repeat(200);
    let docs: Vec<Document> = (0..6000)
        .map(|i: i32| doc! {"_id": i, "a": (i * 7919) % 6007, "pad": pad.clone()})
        .collect();
    coll.insert_many(docs).await.expect("insert");

    // ~1.4 MB to sort with 64 KiB of memory: the runs outgrow the 512 KiB quota.
    for body in [
        doc! {"aggregate": "wide", "pipeline": [{"$sort": {"a": 1}}], "cursor": {}},
        doc! {"find": "wide", "sort": {"a": 1}},
        doc! {"aggregate": "wide", "pipeline": [{"$group": {"_id": "$_id", "p": {"$first": "$pad"}}}], "cursor": {}},
    ] {
        let err = db
            .run_command(body.clone())
            .await
            .expect_err("spill over quota");
        assert_eq!(command_code(&err), Some(14031), "{body}: {err}");
        assert!(
            err.to_string().contains("temporary disk quota"),
            "{body}: {err}"
        );
        assert_eq!(temp_files(ts.dir.path()), Vec::<String>::new());
        let status = db
            .run_command(doc! {"serverStatus": 1})
            .await
            .expect("serverStatus");
        let temp = status
            .get_document("storageEngine")
            .and_then(|s| s.get_document("tempDisk"))
            .expect("tempDisk");
        assert_eq!(temp.get_i64("bytesInUse").ok(), Some(0), "{temp}");
        assert_eq!(temp.get_i64("quotaBytes").ok(), Some(QUOTA as i64));
    }

    // A spill within the quota (~230 KB: over the memory budget, under the quota) works.
    let sorted: Vec<Document> = coll
        .aggregate(vec![
            doc! {"$match": {"_id": {"$lt": 1000}}},
            doc! {"$sort": {"a": 1}},
        ])
        .await
        .expect("aggregate within quota")
        .try_collect()
        .await
        .expect("collect");
    assert_eq!(sorted.len(), 1000);
    let keys: Vec<i32> = sorted.iter().map(|d| d.get_i32("a").unwrap()).collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(temp_files(ts.dir.path()), Vec::<String>::new());
    ts.stop().await;
}
