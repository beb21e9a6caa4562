//! Hostile paths and nesting against a running server: a read-only user's 50,000-part
//! projection, a 1,500-level BSON body sent before authenticating and a 1,000,000-level
//! one after, each get an error reply with MongoDB's code, and the server keeps
//! answering on other connections.

mod common;

use bson::{Document, doc};
use common::{RawClient, TestServer};
use futures::TryStreamExt;
use mongodb::Client;
use mongodb::error::ErrorKind;
use wire::message::{HEADER_LEN, opcode};

/// MongoDB's `Overflow`.
const OVERFLOW: i32 = 15;

fn server_code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

fn long_path(parts: usize) -> String {
    vec!["a"; parts].join(".")
}

async fn pings(ts: &TestServer) -> bool {
    let mut c = RawClient::connect(ts).await;
    match c.command(1, doc! {"ping": 1, "$db": "admin"}).await {
        Some(d) => d.get_f64("ok").map(|v| v == 1.0).unwrap_or(false),
        None => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_users_50000_part_projection_is_an_error_not_a_crash() {
    let ts = TestServer::start().await;
    let admin = ts.client().await;
    let app = admin.database("app");
    app.collection::<Document>("x")
        .insert_one(doc! {"_id": 1, "a": {"a": 1}})
        .await
        .expect("insert");
    app.run_command(doc! {"createUser": "reader", "pwd": "reader-pass", "roles": ["read"]})
        .await
        .expect("createUser");
    let reader = Client::with_uri_str(ts.uri_for("reader", "reader-pass", "app"))
        .await
        .expect("client");
    let coll = reader.database("app").collection::<Document>("x");

    let err = coll
        .find(doc! {})
        .projection(doc! {long_path(50_000): 1})
        .await
        .expect_err("a 50,000-part projection is refused");
    assert_eq!(server_code(&err), Some(OVERFLOW), "{err}");
    let err = coll
        .find(doc! {long_path(50_000): 1})
        .await
        .expect_err("a 50,000-part filter path is refused");
    assert_eq!(server_code(&err), Some(OVERFLOW), "{err}");

    // The same connection and a fresh one still work.
    let docs: Vec<Document> = coll
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("docs");
    assert_eq!(docs.len(), 1);
    assert!(pings(&ts).await);

    // Writes: a long update path, and a document deeper than MongoDB stores.
    let writer = admin.database("app").collection::<Document>("x");
    let err = writer
        .update_one(doc! {"_id": 1}, doc! {"$set": {long_path(50_000): 1}})
        .await
        .expect_err("a 50,000-part update path is refused");
    assert_eq!(server_code(&err), Some(OVERFLOW), "{err}");
    let mut deep = doc! {"v": 1};
    for _ in 0..120 {
        deep = doc! {"a": deep};
    }
    let err = writer
        .insert_one(deep)
        .await
        .expect_err("a document 122 levels deep is refused");
    assert_eq!(server_code(&err), Some(OVERFLOW), "{err}");
    assert!(pings(&ts).await);

    reader.shutdown().await;
    admin.shutdown().await;
    ts.stop().await;
}

/// An `OP_MSG` whose body is `{ping: 1, $db: "admin", n: {a: {a: ...}}}` with `levels`
/// levels under `n`, built directly as bytes (no recursion anywhere).
fn deep_ping(levels: usize) -> Vec<u8> {
    let head = doc! {"ping": 1, "$db": "admin"}.to_vec().expect("bson");
    let mut body = head[..head.len() - 1].to_vec();
    body.push(3);
    body.extend_from_slice(b"n\0");
    for i in 0..levels {
        body.extend_from_slice(&((5 + 8 * (levels - i)) as i32).to_le_bytes());
        body.push(3);
        body.extend_from_slice(b"a\0");
    }
    body.extend_from_slice(&[5, 0, 0, 0, 0]);
    body.resize(body.len() + levels, 0);
    body.push(0);
    let len = body.len() as i32;
    body[0..4].copy_from_slice(&len.to_le_bytes());
    let mut msg = Vec::with_capacity(HEADER_LEN + 5 + body.len());
    msg.extend_from_slice(&((HEADER_LEN + 5 + body.len()) as i32).to_le_bytes());
    msg.extend_from_slice(&7i32.to_le_bytes());
    msg.extend_from_slice(&0i32.to_le_bytes());
    msg.extend_from_slice(&opcode::OP_MSG.to_le_bytes());
    msg.extend_from_slice(&0u32.to_le_bytes());
    msg.push(0);
    msg.extend_from_slice(&body);
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_bson_bodies_are_refused_before_and_after_authentication() {
    let ts = TestServer::start().await;
    // Before login a frame may hold 16 KiB (docs/wire.md, "Limits"): 1,500 levels fit,
    // ten times the depth limit.
    let shallow_enough_to_send = deep_ping(1_500);
    assert!(shallow_enough_to_send.len() < 16 * 1024);
    // After login a frame may hold 48 MB: a 1,000,000-level body fits.
    let million = deep_ping(1_000_000);
    assert!(million.len() < wire::message::MAX_MESSAGE_SIZE);
    let mut anonymous = RawClient::connect(&ts).await;
    let mut logged_in = RawClient::connect(&ts).await;
    let r = common::authenticate(&mut logged_in, common::ADMIN_USER, common::ADMIN_PASSWORD).await;
    assert_eq!(r.get_f64("ok").ok(), Some(1.0), "{r}");
    for (c, msg) in [
        (&mut anonymous, &shallow_enough_to_send),
        (&mut logged_in, &million),
    ] {
        c.send(msg).await;
        // A well-formed frame that is too deep: an error reply with MongoDB's code for
        // BSON nested too deeply, refused on the raw bytes before anything recursive ran.
        let r = c.recv().await.expect("an error reply");
        assert_eq!(r.get_i32("code").ok(), Some(OVERFLOW), "{r}");
    }
    assert!(pings(&ts).await);
    ts.stop().await;
}
