//! End-to-end tests through the official Rust driver (`mongodb` 3.x) over TLS with
//! SCRAM-SHA-256 against a real server on the encrypted engine.

mod common;

use std::time::Duration;

use bson::{Document, doc};
use common::{ADMIN_PASSWORD, ADMIN_USER, Options, TestServer};
use futures::TryStreamExt;
use mongodb::options::{FindOptions, IndexOptions};
use mongodb::{Client, IndexModel};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_round_trip_through_the_driver() {
    let ts = TestServer::start().await;
    let client = ts.client().await;
    let coll = client.database("app").collection::<Document>("people");
    let inserted = coll
        .insert_many(vec![
            doc! {"name": "ada", "age": 36},
            doc! {"name": "bob", "age": 25},
            doc! {"name": "cyd", "age": 41},
        ])
        .await
        .expect("insert_many");
    assert_eq!(inserted.inserted_ids.len(), 3);
    let ada = coll
        .find_one(doc! {"name": "ada"})
        .await
        .expect("find_one")
        .expect("ada exists");
    assert_eq!(ada.get_i32("age").ok(), Some(36));
    let older: Vec<Document> = coll
        .find(doc! {"age": {"$gt": 30}})
        .sort(doc! {"age": -1})
        .projection(doc! {"_id": 0, "name": 1})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect");
    assert_eq!(older, vec![doc! {"name": "cyd"}, doc! {"name": "ada"}]);
    let upd = coll
        .update_one(doc! {"name": "bob"}, doc! {"$inc": {"age": 1}})
        .await
        .expect("update");
    assert_eq!((upd.matched_count, upd.modified_count), (1, 1));
    let del = coll
        .delete_many(doc! {"age": {"$lt": 40}})
        .await
        .expect("delete");
    assert_eq!(del.deleted_count, 2);
    assert_eq!(coll.count_documents(doc! {}).await.expect("count"), 1);
    let names = client
        .database("app")
        .list_collection_names()
        .await
        .expect("list collections");
    assert_eq!(names, vec!["people".to_string()]);
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_span_many_get_more_batches() {
    let ts = TestServer::start().await;
    let client = ts.client().await;
    let coll = client.database("app").collection::<Document>("nums");
    let docs: Vec<Document> = (0..1234).map(|i| doc! {"i": i}).collect();
    coll.insert_many(docs).await.expect("insert");
    let opts = FindOptions::builder()
        .batch_size(50)
        .sort(doc! {"i": 1})
        .build();
    let got: Vec<Document> = coll
        .find(doc! {})
        .with_options(opts)
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect");
    let ids: Vec<i32> = got.iter().map(|d| d.get_i32("i").expect("i")).collect();
    assert_eq!(ids, (0..1234).collect::<Vec<_>>());
    // Aggregation cursors page the same way.
    let agg: Vec<Document> = coll
        .aggregate(vec![
            doc! {"$match": {"i": {"$gte": 1000}}},
            doc! {"$sort": {"i": -1}},
        ])
        .batch_size(7)
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("collect");
    assert_eq!(agg.len(), 234);
    assert_eq!(agg[0].get_i32("i").ok(), Some(1233));
    // Exhausted cursors leave nothing open on the server.
    assert_eq!(ts.server.open_cursors(), 0);
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_index_and_unique_violations_are_11000() {
    let ts = TestServer::start().await;
    let client = ts.client().await;
    let db = client.database("app");
    let coll = db.collection::<Document>("users");
    coll.create_index(
        IndexModel::builder()
            .keys(doc! {"email": 1})
            .options(IndexOptions::builder().unique(true).build())
            .build(),
    )
    .await
    .expect("create index");
    for i in 0..50 {
        coll.insert_one(doc! {"email": format!("u{i}@x"), "n": i})
            .await
            .expect("insert");
    }
    let plan = db
        .run_command(doc! {"explain": {"find": "users", "filter": {"email": "u7@x"}}, "verbosity": "queryPlanner"})
        .await
        .expect("explain");
    let winning = plan
        .get_document("queryPlanner")
        .and_then(|q| q.get_document("winningPlan"))
        .expect("winningPlan")
        .to_string();
    assert!(winning.contains("IXSCAN"), "{winning}");
    assert!(winning.contains("email_1"), "{winning}");
    let err = coll
        .insert_one(doc! {"email": "u7@x"})
        .await
        .expect_err("duplicate must fail");
    match *err.kind {
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(ref we)) => {
            assert_eq!(we.code, 11000);
            assert!(we.message.contains("E11000"), "{}", we.message);
        }
        ref other => panic!("expected a write error, got {other:?}"),
    }
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_fail_authentication() {
    let ts = TestServer::start().await;
    for (user, pass) in [(ADMIN_USER, "wrong"), ("ghost", "whatever")] {
        let client = Client::with_uri_str(ts.uri_for(user, pass, "admin"))
            .await
            .expect("client");
        let err = client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .expect_err("auth must fail");
        assert!(
            matches!(*err.kind, mongodb::error::ErrorKind::Authentication { .. }),
            "{err:?}"
        );
    }
    // Right password works.
    let ok = Client::with_uri_str(ts.uri_for(ADMIN_USER, ADMIN_PASSWORD, "admin"))
        .await
        .expect("client");
    ok.database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .expect("ping");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_users_survive_a_restart() {
    let ts = TestServer::start().await;
    {
        let client = ts.client().await;
        let db = client.database("keep");
        db.collection::<Document>("c")
            .insert_many((0..100).map(|i| doc! {"_id": i, "v": i * i}))
            .await
            .expect("insert");
        db.collection::<Document>("c")
            .create_index(IndexModel::builder().keys(doc! {"v": 1}).build())
            .await
            .expect("index");
        db.run_command(doc! {"createUser": "app", "pwd": "app-pass", "roles": ["readWrite"]})
            .await
            .expect("createUser");
        client.shutdown().await;
    }
    let dir = ts.stop().await;
    let ts = TestServer::start_in(dir, Options::default()).await;
    let app = Client::with_uri_str(ts.uri_for("app", "app-pass", "keep"))
        .await
        .expect("client");
    let coll = app.database("keep").collection::<Document>("c");
    assert_eq!(coll.count_documents(doc! {}).await.expect("count"), 100);
    let d = coll
        .find_one(doc! {"v": 81})
        .await
        .expect("find")
        .expect("doc");
    assert_eq!(d.get_i32("_id").ok(), Some(9));
    let indexes = coll.list_index_names().await.expect("indexes");
    assert!(indexes.contains(&"v_1".to_string()), "{indexes:?}");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_cursors_are_reaped() {
    let ts = TestServer::start_with(Options {
        cursor_idle_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let client = ts.client().await;
    let db = client.database("app");
    db.collection::<Document>("c")
        .insert_many((0..20).map(|i| doc! {"i": i}))
        .await
        .expect("insert");
    let reply = db
        .run_command(doc! {"find": "c", "batchSize": 2})
        .await
        .expect("find");
    let id = reply
        .get_document("cursor")
        .and_then(|c| c.get_i64("id"))
        .expect("Int64 cursor id");
    assert_ne!(id, 0);
    assert_eq!(ts.server.open_cursors(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ts.server.open_cursors() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cursor never reaped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = db
        .run_command(doc! {"getMore": id, "collection": "c"})
        .await
        .expect_err("reaped cursor");
    assert!(
        err.to_string().contains("43") || err.to_string().contains("not found"),
        "{err}"
    );
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_monitor_expires_documents() {
    let ts = TestServer::start_with(Options {
        ttl_monitor_interval: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    let client = ts.client().await;
    let coll = client.database("app").collection::<Document>("sessions");
    coll.create_index(
        IndexModel::builder()
            .keys(doc! {"at": 1})
            .options(
                IndexOptions::builder()
                    .expire_after(Duration::from_secs(60))
                    .build(),
            )
            .build(),
    )
    .await
    .expect("ttl index");
    let old = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - 3_600_000);
    coll.insert_many(vec![
        doc! {"_id": "old", "at": old},
        doc! {"_id": "new", "at": bson::DateTime::now()},
        doc! {"_id": "no-date", "at": "not a date"},
    ])
    .await
    .expect("insert");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while coll
        .count_documents(doc! {"_id": "old"})
        .await
        .expect("count")
        > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expired document never removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(coll.count_documents(doc! {}).await.expect("count"), 2);
    ts.stop().await;
}
