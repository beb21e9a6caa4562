//! Revalidation benchmark: how fast revocation takes effect and how much revalidation
//! costs, at a 1-second interval.
//!
//! `cargo bench -p strongroom --bench revalidation` starts `strongroom up` twice: once with
//! 10 CMK clusters revalidating every second, once with the same clusters revalidating
//! hourly, and compares the CPU time the whole deployment (control plane, key vault,
//! identity, nodes) uses while idle. Then it disables and re-enables a key several
//! times and measures, from the client's side, how long until new connections are
//! refused and how long until they succeed again. It prints two tables.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use bson::doc;
use common::*;
use keyvault::client::{CreateKeyOptions, UpdateKeyOptions};

const CLUSTERS: usize = 10;
const MEASURE: Duration = Duration::from_secs(30);

/// CPU seconds used by `pid` and all its descendants so far.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            let after = stat.rsplit(')').next().unwrap_or_default();
            let fields: Vec<&str> = after.split_whitespace().collect();
            if fields.len() > 13 {
                let utime: f64 = fields[11].parse().unwrap_or(0.0);
                let stime: f64 = fields[12].parse().unwrap_or(0.0);
                total += (utime + stime) / ticks;
            }
        }
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                stack.extend(
                    text.split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    total
}

async fn deployment_with_clusters(interval: &str) -> (Deployment, Vec<String>) {
    let d = Deployment::start(interval, &["--no-default-cluster", "--grace-period", "1s"]).await;
    let vault = d.create_vault("benchvault").await;
    d.grant_admin(&vault).await;
    let id = d.create_identity("bench-id").await;
    d.vault
        .assign_role(d.mgmt_url(), &vault.id, CSEU, &id.principal_id)
        .await
        .unwrap();
    let mut keys = Vec::new();
    for i in 0..CLUSTERS {
        let name = format!("cmk{i}");
        d.vault
            .create_key(vault.base(), &name, &CreateKeyOptions::default())
            .await
            .unwrap();
        let key_url = format!("{}/keys/{name}", vault.base());
        let (status, body) = d
            .put_cluster(&format!("bench{i}"), cmk_cluster(&key_url, &id.id))
            .await;
        assert_eq!(status, 201, "{body:#}");
        keys.push(key_url);
    }
    (d, keys)
}

async fn idle_cpu(interval: &str) -> f64 {
    let (d, _) = deployment_with_clusters(interval).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cpu_seconds(d.pid());
    let start = Instant::now();
    tokio::time::sleep(MEASURE).await;
    let used = cpu_seconds(d.pid()) - before;
    used / start.elapsed().as_secs_f64() * 100.0
}

/// Polls a fresh connection until `want_ok` holds; returns the elapsed time.
async fn until_connection(d: &Deployment, cluster: &serde_json::Value, want_ok: bool) -> Duration {
    let start = Instant::now();
    loop {
        // A short selection timeout: a refused attempt must cost milliseconds, not the
        // driver's default 30 s, or it would be measured instead of the cluster.
        let client = d
            .mongo_with_timeout(
                cluster,
                "clusteradmin",
                ADMIN_PASSWORD,
                Duration::from_millis(150),
            )
            .await;
        let ok = client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .is_ok()
            && client
                .database("b")
                .collection::<bson::Document>("c")
                .count_documents(doc! {})
                .await
                .is_ok();
        if ok == want_ok {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no change after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rounds = 5;
    let (d, keys) = deployment_with_clusters("1s").await;
    let cluster = d.get_cluster("bench0").await;
    let mut revoke = Vec::new();
    let mut recover = Vec::new();
    for _ in 0..rounds {
        d.vault
            .update_key(
                &keys[0],
                &UpdateKeyOptions {
                    enabled: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        revoke.push(until_connection(&d, &cluster, false).await);
        d.vault
            .update_key(
                &keys[0],
                &UpdateKeyOptions {
                    enabled: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        recover.push(until_connection(&d, &cluster, true).await);
    }
    drop(d);
    revoke.sort();
    recover.sort();
    println!(
        "\nRevocation and recovery, revalidation interval 1 s, {rounds} rounds (client-observed)"
    );
    println!("| transition | min ms | median ms | max ms | target |");
    println!("|---|---:|---:|---:|---|");
    for (label, v) in [
        ("key disabled → new connections refused", &revoke),
        ("key enabled → connections served", &recover),
    ] {
        println!(
            "| {label} | {} | {} | {} | < 2000 |",
            ms(v[0]),
            ms(v[v.len() / 2]),
            ms(v[v.len() - 1])
        );
    }

    let busy = idle_cpu("1s").await;
    let quiet = idle_cpu("60m").await;
    println!(
        "\nCPU of the whole deployment (all processes), {CLUSTERS} CMK clusters, idle, {}s each",
        MEASURE.as_secs()
    );
    println!("| revalidation interval | CPU (% of one core) |");
    println!("|---|---:|");
    println!("| 60 min | {quiet:.2} |");
    println!("| 1 s | {busy:.2} |");
    println!(
        "| cost of revalidation | {:.2} (target < 1) |",
        busy - quiet
    );
}
