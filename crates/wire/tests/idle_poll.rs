//! Idle polling (`ServerConfig::idle_poll`): after replying to a connection that has the
//! server to itself, its task polls for the next request instead of sleeping — until the
//! budget is spent, another connection starts a request, or the connection closes.
//! `serverStatus.network.idlePoll` counts requests found by polling (`found`) and polls
//! that ended without one (`slept`, counted as the poll ends).
//!
//! Raw TLS clients keep the traffic exactly what each test sends: a driver would add
//! monitoring connections of its own.

mod common;

use std::time::{Duration, Instant};

use bson::{Document, doc};
use common::{ADMIN_PASSWORD, ADMIN_USER, Options, RawClient, TestServer, authenticate};

/// `(budgetMicros, found, slept)` from `serverStatus`.
async fn idle_poll(raw: &mut RawClient, id: i32) -> (i64, i64, i64) {
    let status = raw
        .command(id, doc! {"serverStatus": 1, "$db": "admin"})
        .await
        .expect("serverStatus reply");
    assert_eq!(status.get_f64("ok").ok(), Some(1.0), "{status}");
    let p: &Document = status
        .get_document("network")
        .and_then(|n| n.get_document("idlePoll"))
        .expect("network.idlePoll");
    (
        p.get_i64("budgetMicros").expect("budgetMicros"),
        p.get_i64("found").expect("found"),
        p.get_i64("slept").expect("slept"),
    )
}

async fn pings(raw: &mut RawClient, n: i32) {
    for id in 1..=n {
        let reply = raw
            .command(id, doc! {"ping": 1, "$db": "admin"})
            .await
            .expect("ping reply");
        assert_eq!(reply.get_f64("ok").ok(), Some(1.0), "{reply}");
    }
}

async fn start(idle_poll: Duration) -> TestServer {
    TestServer::start_with(Options {
        idle_poll,
        ..Options::default()
    })
    .await
}

async fn status_client(ts: &TestServer) -> RawClient {
    let mut raw = RawClient::connect(ts).await;
    let auth = authenticate(&mut raw, ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(auth.get_f64("ok").ok(), Some(1.0), "{auth}");
    raw
}

#[tokio::test]
async fn a_lone_client_is_answered_from_a_poll_until_another_connection_speaks() {
    // A budget far longer than the test: a poll that ends does so because it was told to.
    let ts = start(Duration::from_secs(120)).await;
    let mut lone = RawClient::connect(&ts).await;
    // The first request on a connection is never "alone" (the last requester was
    // someone else); each later one is, and the wait for the one after it is a poll.
    pings(&mut lone, 20).await;

    // A second connection's first request ends the first connection's poll at once:
    // `slept` counts it as it ends, though the lone connection sends nothing more.
    let mut other = status_client(&ts).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (budget, found, slept) = loop {
        let counts = idle_poll(&mut other, 1000).await;
        if counts.2 >= 1 || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(budget, 120_000_000);
    assert!(
        found >= 18,
        "pings 3..=20 were found by polling: found {found}"
    );
    assert!(
        slept >= 1,
        "the lone connection's poll never ended (slept {slept})"
    );
    // The lone connection still works after its poll gave way.
    pings(&mut lone, 2).await;
    ts.stop().await;
}

#[tokio::test]
async fn a_client_that_pauses_longer_than_the_budget_is_waited_for() {
    let ts = start(Duration::from_millis(20)).await;
    let mut raw = status_client(&ts).await;
    let (budget, _, slept_before) = idle_poll(&mut raw, 1).await;
    assert_eq!(budget, 20_000);
    // This connection had the server to itself: its poll runs out during the pause,
    // the task sleeps, and the next request is still read and answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, _, slept_after) = idle_poll(&mut raw, 2).await;
    assert!(
        slept_after > slept_before,
        "a 20 ms poll outlived a 300 ms pause (slept {slept_before} -> {slept_after})"
    );
    ts.stop().await;
}

#[tokio::test]
async fn a_zero_budget_never_polls() {
    let ts = start(Duration::ZERO).await;
    let mut raw = RawClient::connect(&ts).await;
    pings(&mut raw, 20).await;
    let mut status = status_client(&ts).await;
    pings(&mut status, 5).await;
    assert_eq!(idle_poll(&mut status, 100).await, (0, 0, 0));
    ts.stop().await;
}
