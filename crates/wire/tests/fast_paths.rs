//! The `find` fast paths over the wire answer exactly like the general path.
//!
//! `find({_id: v})` is served inline with the stored BSON, and other finds without a
//! projection or in-memory sort stream stored BSON too; the reference for each is the
//! same command forced through the planner with `hint: "_id_"` (or a `$comment`-free
//! equivalent the fast paths decline). Authentication and authorization are checked
//! before either path runs, and `collation` sends the command to the general path.

mod common;

use bson::{Bson, Document, doc};
use common::{ADMIN_PASSWORD, ADMIN_USER, RawClient, TestServer, authenticate};

fn ok(d: &Document) -> bool {
    d.get_f64("ok").map(|v| v == 1.0).unwrap_or(false)
}

fn code(d: &Document) -> i32 {
    d.get_i32("code").unwrap_or(-1)
}

/// `(firstBatch, cursor id is 0)`, or `Err(code)` for an error reply.
fn outcome(r: &Document) -> Result<(Vec<Bson>, bool), i32> {
    if !ok(r) {
        return Err(code(r));
    }
    let cursor = r.get_document("cursor").expect("cursor");
    Ok((
        cursor.get_array("firstBatch").expect("firstBatch").clone(),
        cursor.get_i64("id").expect("id") == 0,
    ))
}

async fn authed(ts: &TestServer, user: &str, password: &str) -> RawClient {
    let mut c = RawClient::connect(ts).await;
    let r = authenticate(&mut c, user, password).await;
    assert!(ok(&r), "auth: {r}");
    c
}

/// Runs a find and every getMore; all the documents in order.
async fn drain(c: &mut RawClient, body: Document, id: i32) -> Vec<Bson> {
    let mut r = c.command(id, body).await.expect("reply");
    assert!(ok(&r), "{r}");
    let mut cursor = r.get_document("cursor").expect("cursor").clone();
    let mut all = cursor.get_array("firstBatch").expect("batch").clone();
    while cursor.get_i64("id").expect("id") != 0 {
        let more =
            doc! {"getMore": cursor.get_i64("id").expect("id"), "collection": "c", "$db": "app"};
        r = c.command(id, more).await.expect("reply");
        assert!(ok(&r), "{r}");
        cursor = r.get_document("cursor").expect("cursor").clone();
        all.extend(cursor.get_array("nextBatch").expect("batch").clone());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_by_id_answers_like_the_planned_find() {
    let ts = TestServer::start().await;
    let mut c = authed(&ts, ADMIN_USER, ADMIN_PASSWORD).await;
    let docs: Vec<Document> = (0..30)
        .map(|i: i32| doc! {"_id": format!("k{i}"), "rank": i, "tags": ["a", format!("t{}", i % 3)], "sub": {"x": i, "y": "why"}})
        .chain([doc! {"_id": 5, "rank": 100, "s": "int five"}])
        .collect();
    let r = c
        .command(1, doc! {"insert": "c", "documents": docs, "$db": "app"})
        .await
        .expect("insert");
    assert!(ok(&r), "{r}");
    let r = c
        .command(
            2,
            doc! {"createIndexes": "c", "indexes": [{"key": {"rank": 1}, "name": "rank_1"}], "$db": "app"},
        )
        .await
        .expect("index");
    assert!(ok(&r), "{r}");

    let filters = [
        doc! {"_id": "k3"},
        doc! {"_id": {"$eq": "k7"}},
        doc! {"_id": "nope"},
        doc! {"_id": 5.0},
        doc! {"_id": Bson::Int64(5)},
    ];
    let variants: Vec<Document> = vec![
        doc! {},
        doc! {"limit": 1, "singleBatch": true},
        doc! {"limit": -1},
        doc! {"batchSize": 1},
        doc! {"batchSize": 0},
        doc! {"projection": {"rank": 1}},
        doc! {"projection": {"_id": 0, "sub.x": 1}},
        doc! {"projection": {"tags": {"$slice": -1}}},
        doc! {"projection": {"rank": 1, "sub": 0}},
        doc! {"projection": {}},
        doc! {"sort": {"rank": -1}},
        doc! {"skip": 1},
        doc! {"collation": {"locale": "simple"}},
    ];
    let mut id = 10;
    let mut found = 0;
    for filter in &filters {
        for extra in &variants {
            let mut fast = doc! {"find": "c", "filter": filter.clone(), "$db": "app"};
            fast.extend(extra.clone());
            let mut general = fast.clone();
            general.insert("hint", "_id_");
            id += 2;
            let a = c.command(id, fast.clone()).await.expect("reply");
            let b = c.command(id + 1, general).await.expect("reply");
            assert_eq!(outcome(&a), outcome(&b), "{fast}");
            if let Ok((batch, _)) = outcome(&a) {
                found += batch.len();
            }
        }
    }
    assert!(found >= 30, "most lookups must find a document ({found})");

    // Range queries streamed as stored BSON, across getMore batches.
    for (extra, n) in [
        (doc! {"sort": {"rank": 1}, "batchSize": 4}, 10),
        (doc! {"limit": 3}, 3),
        (doc! {"sort": {"rank": -1}, "skip": 2}, 8),
    ] {
        let mut fast =
            doc! {"find": "c", "filter": {"rank": {"$gte": 10, "$lt": 20}}, "$db": "app"};
        fast.extend(extra.clone());
        let mut general = fast.clone();
        general.insert("projection", doc! {"zzz": 0});
        id += 2;
        let a = drain(&mut c, fast.clone(), id).await;
        let b = drain(&mut c, general, id + 1).await;
        assert_eq!(a.len(), n, "{fast}");
        assert_eq!(a, b, "{fast}");
    }

    // Authentication and authorization come first, for the fast path as for any find.
    let mut anon = RawClient::connect(&ts).await;
    let r = anon
        .command(1, doc! {"find": "c", "filter": {"_id": "k3"}, "$db": "app"})
        .await
        .expect("reply");
    assert_eq!(code(&r), 13, "{r}");
    let r = c
        .command(
            3,
            doc! {"createUser": "other", "pwd": "other-password", "roles": [{"role": "read", "db": "elsewhere"}], "$db": "admin"},
        )
        .await
        .expect("createUser");
    assert!(ok(&r), "{r}");
    let mut other = authed(&ts, "other", "other-password").await;
    let r = other
        .command(4, doc! {"find": "c", "filter": {"_id": "k3"}, "$db": "app"})
        .await
        .expect("reply");
    assert_eq!(code(&r), 13, "{r}");
    assert!(
        r.get_str("errmsg").unwrap_or("").contains("not authorized"),
        "{r}"
    );
    ts.stop().await;
}
