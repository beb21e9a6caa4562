//! Crash isolation: a cluster node that dies (here `kill -9`; in life a crash, an OOM kill)
//! is restarted by the control plane at once — not at the next revalidation, which these
//! deployments put an hour away — and handed its key again, with growing delays when it
//! keeps dying. The management API reports the crash until the node is healthy again.

mod common;

use std::time::{Duration, Instant};

use bson::doc;
use common::*;
use serde_json::Value;

/// Far beyond every deadline below: a cluster back within them was not brought back by
/// the revalidation loop's timer.
const INTERVAL: &str = "1h";
/// How long a restart may take on a loaded 2-core machine (spawn, key unwrap, WAL replay).
const RESTART_DEADLINE: Duration = Duration::from_secs(30);

/// The one node process of a deployment with one cluster.
fn node_pid(d: &Deployment) -> u32 {
    let nodes = children(d.pid());
    assert_eq!(nodes.len(), 1, "one cluster, one node process: {nodes:?}");
    nodes[0]
}

fn kill_9(pid: u32) {
    let status = std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

/// Polls the cluster until `done` holds for its view; returns every view seen and the
/// time it took.
async fn wait_view(
    d: &Deployment,
    name: &str,
    deadline: Duration,
    done: impl Fn(&Value) -> bool,
) -> (Vec<Value>, Duration) {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let view = d.get_cluster(name).await;
        let finished = done(&view);
        seen.push(view);
        if finished {
            return (seen, start.elapsed());
        }
        assert!(
            start.elapsed() < deadline,
            "cluster {name} not back after {deadline:?}: {:#}",
            seen.last().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ready, with a healthy node that has crashed `crashes` times.
fn recovered(crashes: u64) -> impl Fn(&Value) -> bool {
    move |view| {
        let p = &view["properties"];
        p["clusterStatus"] == "Ready"
            && p["nodeHealth"]["state"] == "Healthy"
            && p["nodeHealth"]["crashCount"] == crashes
    }
}

/// The audit records of one kind for a cluster, once at least one is there.
async fn audited(d: &Deployment, cluster: &str, kind: &str) -> Vec<Value> {
    let url = format!(
        "{}/providers/Strongroom.Control/auditEvents?cluster={cluster}&kind={kind}",
        d.control_url()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = d.control(reqwest::Method::GET, &url, None).await;
        assert_eq!(status, 200, "{body:#}");
        let records = body["value"].as_array().cloned().unwrap_or_default();
        if !records.is_empty() {
            return records;
        }
        assert!(Instant::now() < deadline, "no {kind} audit event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_node_is_restarted_at_once_and_loses_nothing_acknowledged() {
    let d = Deployment::start(INTERVAL, &["--no-default-cluster"]).await;
    let (status, body) = d.put_cluster("crashy", smk_cluster()).await;
    assert_eq!(status, 201, "{body:#}");
    assert_eq!(body["properties"]["clusterStatus"], "Ready", "{body:#}");
    assert_eq!(
        body["properties"]["nodeHealth"],
        serde_json::json!({"state": "Healthy", "crashCount": 0}),
        "{body:#}"
    );

    // Every write acknowledged as journaled must survive the kill.
    let client = d.mongo(&body, "clusteradmin", ADMIN_PASSWORD).await;
    let journaled = mongodb::options::WriteConcern::builder()
        .w(mongodb::options::Acknowledgment::Nodes(1))
        .journal(true)
        .build();
    let coll = client
        .database("app")
        .collection::<bson::Document>("orders");
    for i in 0..200 {
        coll.insert_one(doc! {"_id": i, "item": format!("item-{i}")})
            .write_concern(journaled.clone())
            .await
            .unwrap();
    }
    drop(client);

    let before = node_pid(&d);
    let killed = Instant::now();
    kill_9(before);
    // A fresh client gets answers again, well before the revalidation interval.
    let count = loop {
        let client = d
            .mongo_with_timeout(
                &body,
                "clusteradmin",
                ADMIN_PASSWORD,
                Duration::from_secs(1),
            )
            .await;
        let coll = client
            .database("app")
            .collection::<bson::Document>("orders");
        match coll.count_documents(doc! {}).await {
            Ok(n) => break n,
            Err(e) => assert!(
                killed.elapsed() < RESTART_DEADLINE,
                "the cluster does not answer {RESTART_DEADLINE:?} after its node was killed: {e}"
            ),
        }
    };
    println!("kill -9 → first query answered: {:?}", killed.elapsed());
    assert_eq!(count, 200, "every journaled write survives");
    let (views, _) = wait_view(&d, "crashy", RESTART_DEADLINE, recovered(1)).await;
    println!(
        "kill -9 → API shows Ready with a healthy node: {:?}",
        killed.elapsed()
    );

    // The crash is reported, with its signal, and stays visible after the recovery.
    let view = views.last().unwrap();
    let crash = &view["properties"]["nodeHealth"]["lastCrash"];
    assert_eq!(crash["reason"], "SIGKILL", "{view:#}");
    assert_eq!(crash["signal"], 9, "{view:#}");
    assert!(
        crash["message"]
            .as_str()
            .unwrap()
            .contains("killed by signal SIGKILL (9)"),
        "{view:#}"
    );
    assert!(
        view["properties"]["nodeHealth"]
            .get("nextRestartTime")
            .is_none(),
        "{view:#}"
    );
    // While the node was down the cluster did not claim to be Ready.
    for v in &views {
        let p = &v["properties"];
        if p["nodeHealth"]["state"] == "Restarting" {
            assert_eq!(p["clusterStatus"], "Starting", "{v:#}");
        }
    }
    let after = node_pid(&d);
    assert_ne!(before, after, "a new node process serves the cluster");

    // Same data, served again.
    let client = d
        .mongo(
            &d.get_cluster("crashy").await,
            "clusteradmin",
            ADMIN_PASSWORD,
        )
        .await;
    let coll = client
        .database("app")
        .collection::<bson::Document>("orders");
    let last = coll.find_one(doc! {"_id": 199}).await.unwrap().unwrap();
    assert_eq!(last.get_str("item").unwrap(), "item-199");
    coll.insert_one(doc! {"_id": 200}).await.unwrap();

    // The audit trail has the crash and the recovery.
    let crashed = audited(&d, "crashy", "node_crashed").await;
    assert_eq!(crashed.len(), 1, "{crashed:#?}");
    assert!(
        serde_json::to_string(&crashed[0])
            .unwrap()
            .contains("SIGKILL"),
        "{crashed:#?}"
    );
    audited(&d, "crashy", "node_recovered").await;

    // The CLI shows what the API returns.
    let (ok, text) = cli(&d, &["cluster", "show", "crashy"]);
    assert!(ok, "{text}");
    assert!(text.contains("\"nodeHealth\""), "{text}");
    assert!(text.contains("\"SIGKILL\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_keeps_dying_is_restarted_with_growing_delays() {
    let d = Deployment::start(INTERVAL, &["--no-default-cluster"]).await;
    let (status, body) = d.put_cluster("loop", smk_cluster()).await;
    assert_eq!(status, 201, "{body:#}");

    // The schedule (RestartPolicy::default): at once, then 1 s, then 2 s.
    let delays = [
        Duration::ZERO,
        Duration::from_secs(1),
        Duration::from_secs(2),
    ];
    for (i, delay) in delays.into_iter().enumerate() {
        let crashes = i as u64 + 1;
        kill_9(node_pid(&d));
        let (views, took) = wait_view(&d, "loop", RESTART_DEADLINE, recovered(crashes)).await;
        println!("crash {crashes}: back after {took:?} (backoff {delay:?})");
        assert!(
            took >= delay,
            "crash {crashes} restarted after {took:?}, before its {delay:?} backoff"
        );
        if delay > Duration::ZERO {
            // Waiting out the backoff is visible: the restart time, and a cluster that is
            // Starting rather than Ready.
            let waiting = views
                .iter()
                .find(|v| {
                    v["properties"]["nodeHealth"]
                        .get("nextRestartTime")
                        .is_some()
                })
                .unwrap_or_else(|| panic!("no nextRestartTime seen: {views:#?}"));
            assert_eq!(
                waiting["properties"]["clusterStatus"], "Starting",
                "{waiting:#}"
            );
            assert_eq!(waiting["properties"]["nodeHealth"]["state"], "Restarting");
            assert_eq!(waiting["properties"]["nodeHealth"]["crashCount"], crashes);
        }
    }
    let crashed = audited(&d, "loop", "node_crashed").await;
    assert_eq!(crashed.len(), 3, "{crashed:#?}");
}
