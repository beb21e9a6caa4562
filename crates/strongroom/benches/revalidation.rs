//! Revalidation benchmark: how fast revocation takes effect and how much revalidation
//! costs, at a 1-second interval.
//!
//! `cargo bench -p strongroom --bench revalidation` first disables and re-enables a key
//! several times and measures, from the client's side, how long until new connections
//! are refused and how long until they succeed again. Then it starts `strongroom up`
//! twice side by side, one with 10 CMK clusters revalidating every second and one with
//! the same clusters revalidating hourly, and compares the CPU time each uses while idle
//! over the same window (so background load on a shared machine hits both), split per
//! thread: `up` runs the key vault and the identity service on runtimes of their own
//! (threads `kv-*`, `id-*`), the rest of that process is the control plane, and its
//! child processes are the cluster nodes. The target (< 1 % of one core for the cost of
//! revalidation) applies to the client side — control plane and nodes — because the
//! vault and the identity service stand in for Azure Key Vault and Entra ID, which do not
//! run on the cluster host; the whole-deployment number is printed too.
//!
//! Environment: `REVALIDATION_MEASURE_SECS` (default 30) sets each CPU window;
//! `REVALIDATION_CPU_ONLY=1` skips the revocation timings.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bson::doc;
use common::*;
use keyvault::client::{CreateKeyOptions, UpdateKeyOptions};

const CLUSTERS: usize = 10;
/// Length of each idle CPU window.
fn measure() -> Duration {
    let secs = std::env::var("REVALIDATION_MEASURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Where a thread's CPU time is booked. `strongroom up` runs the identity service and the
/// key vault on runtimes of their own with named threads (`id-*`, `kv-*`); everything
/// else in that process is the control plane; child processes are cluster nodes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Share {
    Control,
    Nodes,
    Vault,
    Identity,
}

const SHARES: [Share; 4] = [Share::Control, Share::Nodes, Share::Vault, Share::Identity];

impl Share {
    fn label(self) -> &'static str {
        match self {
            Share::Control => "control plane (supervisor threads)",
            Share::Nodes => "cluster nodes (10 processes)",
            Share::Vault => "key vault (`kv-*` threads)",
            Share::Identity => "identity (`id-*` threads)",
        }
    }
}

/// CPU time per thread (`/proc/<pid>/task/<tid>/schedstat`, nanoseconds on the CPU: exact,
/// unlike the tick-sampled utime/stime) of `pid` and all its descendants.
#[derive(Default)]
struct Snapshot {
    threads: HashMap<(u32, u32), (Share, u64)>,
    /// utime+stime of every process (ticks, includes threads that have exited): the
    /// method of the first measurement, kept as a cross-check.
    ticks: f64,
}

fn snapshot(root: u32) -> Snapshot {
    let mut snap = Snapshot::default();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let after = stat.rsplit(')').next().unwrap_or_default();
            let fields: Vec<&str> = after.split_whitespace().collect();
            if fields.len() > 13 {
                let utime: f64 = fields[11].parse().unwrap_or(0.0);
                let stime: f64 = fields[12].parse().unwrap_or(0.0);
                snap.ticks += utime + stime;
            }
        }
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let ns = std::fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
            let share = if pid != root {
                Share::Nodes
            } else if comm.starts_with("kv-") {
                Share::Vault
            } else if comm.starts_with("id-") {
                Share::Identity
            } else {
                Share::Control
            };
            snap.threads.insert((pid, tid), (share, ns));
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                stack.extend(
                    text.split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    snap
}

/// CPU of each share between two snapshots, in % of one core over `secs`. A thread that
/// exited in between loses its time (tokio's idle blocking threads exit after 10 s); the
/// tick-based total below includes it.
struct Usage {
    shares: BTreeMap<Share, f64>,
    ticks_total: f64,
}

impl Usage {
    fn between(before: &Snapshot, after: &Snapshot, secs: f64) -> Usage {
        let mut shares: BTreeMap<Share, f64> = SHARES.iter().map(|s| (*s, 0.0)).collect();
        for (key, (share, ns)) in &after.threads {
            let start = before.threads.get(key).map(|(_, ns)| *ns).unwrap_or(0);
            *shares.entry(*share).or_default() += ns.saturating_sub(start) as f64 / 1e9;
        }
        for v in shares.values_mut() {
            *v = *v / secs * 100.0;
        }
        Usage {
            shares,
            ticks_total: (after.ticks - before.ticks) / 100.0 / secs * 100.0,
        }
    }

    fn share(&self, s: Share) -> f64 {
        self.shares.get(&s).copied().unwrap_or(0.0)
    }

    fn client_side(&self) -> f64 {
        self.share(Share::Control) + self.share(Share::Nodes)
    }

    fn whole(&self) -> f64 {
        self.shares.values().sum()
    }
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

/// Idle CPU of two deployments measured over the same window — one revalidating every
/// second, one hourly — so that load from other work on a shared machine hits both alike.
async fn idle_cpu() -> (Usage, Usage) {
    let (busy, _) = deployment_with_clusters("1s").await;
    let (quiet, _) = deployment_with_clusters("60m").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = (snapshot(busy.pid()), snapshot(quiet.pid()));
    let start = Instant::now();
    tokio::time::sleep(measure()).await;
    let after = (snapshot(busy.pid()), snapshot(quiet.pid()));
    let secs = start.elapsed().as_secs_f64();
    (
        Usage::between(&before.0, &after.0, secs),
        Usage::between(&before.1, &after.1, secs),
    )
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
    if std::env::var_os("REVALIDATION_CPU_ONLY").is_none() {
        latency().await;
    }
    cpu().await;
}

async fn latency() {
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
}

async fn cpu() {
    let (busy, quiet) = idle_cpu().await;
    println!(
        "\nCPU (% of one core), {CLUSTERS} CMK clusters per deployment, idle, both deployments over the same {}s, per-thread schedstat",
        measure().as_secs()
    );
    println!("| share | interval 60 min | interval 1 s | cost of revalidation |");
    println!("|---|---:|---:|---:|");
    let row = |label: &str, q: f64, b: f64| {
        println!("| {label} | {q:.2} | {b:.2} | {:.2} |", b - q);
    };
    for s in SHARES {
        row(s.label(), quiet.share(s), busy.share(s));
    }
    row(
        "**client side** (control plane + nodes; target < 1)",
        quiet.client_side(),
        busy.client_side(),
    );
    row(
        "vault + identity (Azure's side in production)",
        quiet.share(Share::Vault) + quiet.share(Share::Identity),
        busy.share(Share::Vault) + busy.share(Share::Identity),
    );
    row("**whole deployment**", quiet.whole(), busy.whole());
    row(
        "whole deployment, utime+stime ticks (cross-check)",
        quiet.ticks_total,
        busy.ticks_total,
    );
    let revalidations = (CLUSTERS as f64) * 1.0;
    println!(
        "\nper revalidation at 1 s: client side {:.0} µs, vault {:.0} µs, identity {:.0} µs, whole {:.0} µs of CPU",
        (busy.client_side() - quiet.client_side()) * 10_000.0 / revalidations,
        (busy.share(Share::Vault) - quiet.share(Share::Vault)) * 10_000.0 / revalidations,
        (busy.share(Share::Identity) - quiet.share(Share::Identity)) * 10_000.0 / revalidations,
        (busy.whole() - quiet.whole()) * 10_000.0 / revalidations,
    );
}
