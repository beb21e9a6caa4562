//! The plaintext canary across the whole system: a marker goes into document values,
//! field names, an index and a sort large enough to spill; the key is revoked and
//! restored; then every byte under every data directory — clusters, control plane, key
//! vault, identity, audit log — is scanned. The marker must never appear. It is also
//! part of the administrator's new password, reset through the management API.

mod common;

use std::path::Path;
use std::time::Duration;

use bson::doc;
use common::*;
use futures::TryStreamExt;
use keyvault::client::{CreateKeyOptions, UpdateKeyOptions};

fn files_containing(dir: &Path, needle: &[u8]) -> (Vec<String>, u64) {
    let mut hits = Vec::new();
    let mut scanned = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                scanned += bytes.len() as u64;
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    (hits, scanned)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_plaintext_anywhere_after_a_cmk_scenario() {
    let marker = format!("CANARY{:016x}", rand_u64());
    // Every operation is a "slow" one and the database logs at debug level, so the logs
    // hold as much about the queries as they ever could.
    let d = Deployment::start_env(
        "1s",
        &[
            "--no-default-cluster",
            "--grace-period",
            "1s",
            "--sort-memory-limit",
            "65536",
            "--slow-op-threshold",
            "0ms",
            "--backup-interval",
            "200ms",
            "--snapshot-interval",
            "1s",
        ],
        &[(
            "RUST_LOG",
            "info,wire=debug,docdb=debug,storage=debug,backup=debug",
        )],
    )
    .await;
    let vault = d.create_vault("canaryvault").await;
    d.grant_admin(&vault).await;
    d.vault
        .create_key(vault.base(), "cmk", &CreateKeyOptions::default())
        .await
        .unwrap();
    let id = d.create_identity("canary-id").await;
    d.vault
        .assign_role(d.mgmt_url(), &vault.id, CSEU, &id.principal_id)
        .await
        .unwrap();
    let key_url = format!("{}/keys/cmk", vault.base());
    let (status, cluster) = d.put_cluster("canary", cmk_cluster(&key_url, &id.id)).await;
    assert_eq!(status, 201, "{cluster:#}");

    let client = d.mongo(&cluster, "clusteradmin", ADMIN_PASSWORD).await;
    let coll = client
        .database("secrets")
        .collection::<bson::Document>("docs");
    let field = format!("f_{marker}");
    let docs: Vec<bson::Document> = (0..3000)
        .map(|i| doc! {"_id": i, "payload": format!("{marker}-{i:05}-{}", "x".repeat(200)), field.clone(): i})
        .collect();
    coll.insert_many(docs).await.unwrap();
    coll.create_index(
        mongodb::IndexModel::builder()
            .keys(doc! {"payload": 1})
            .build(),
    )
    .await
    .unwrap();
    // A sort on an unindexed field over ~700 KB with a 64 KiB budget spills.
    let sorted: Vec<bson::Document> = coll
        .find(doc! {})
        .sort(doc! {field.clone(): -1})
        .allow_disk_use(true)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(sorted.len(), 3000);
    assert_eq!(sorted[0].get_i32("_id").unwrap(), 2999);
    // Failing queries that carry the marker (it must not end up in logs on disk): an
    // unknown operator, a bad regex, a duplicate key, an unknown command, a bad update.
    let _ = coll.find_one(doc! {"$where": marker.clone()}).await;
    assert!(coll.find_one(doc! {format!("${marker}"): 1}).await.is_err());
    assert!(
        coll.find_one(doc! {"payload": {"$regex": format!("({marker}")}})
            .await
            .is_err()
    );
    coll.create_index(
        mongodb::IndexModel::builder()
            .keys(doc! {field.clone(): 1})
            .options(
                mongodb::options::IndexOptions::builder()
                    .unique(true)
                    .build(),
            )
            .build(),
    )
    .await
    .unwrap();
    let dup = coll
        .insert_one(doc! {"_id": 99_999, field.clone(): 7, "payload": marker.clone()})
        .await
        .unwrap_err();
    assert!(dup.to_string().contains("E11000"), "{dup}");
    assert!(
        client
            .database("secrets")
            .run_command(doc! {marker.clone(): 1})
            .await
            .is_err()
    );
    assert!(
        coll.update_one(doc! {"_id": 1}, doc! {format!("$set{marker}"): {"a": 1}})
            .await
            .is_err()
    );
    // The backups must hold all of it before the scan: everything up to a last write.
    let until = time::OffsetDateTime::now_utc();
    coll.insert_one(doc! {"_id": 100_000, field.clone(): -1, "payload": marker.clone()})
        .await
        .unwrap();
    // Slow (every) operations with the marker in values and field names.
    coll.count_documents(doc! {field.clone(): {"$gte": 0}, "payload": {"$regex": marker.clone()}})
        .await
        .unwrap();
    d.wait_restorable("canary", until, Duration::from_secs(60))
        .await;

    // Revoke and restore the key: the node is replaced, the data reopened.
    d.vault
        .update_key(
            &key_url,
            &UpdateKeyOptions {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    d.wait_status("canary", "Inaccessible", Duration::from_secs(20))
        .await;
    d.vault
        .update_key(
            &key_url,
            &UpdateKeyOptions {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    d.wait_status("canary", "Ready", Duration::from_secs(20))
        .await;
    let client = d
        .mongo(
            &d.get_cluster("canary").await,
            "clusteradmin",
            ADMIN_PASSWORD,
        )
        .await;
    let coll = client
        .database("secrets")
        .collection::<bson::Document>("docs");
    assert_eq!(
        coll.count_documents(doc! {"payload": {"$regex": marker.clone()}})
            .await
            .unwrap(),
        3001
    );
    // The administrator's password reset (issue 17) carries the marker: it must reach no
    // log, no audit record and no file — only its SCRAM derivation is stored.
    let new_password = format!("Reset!1{marker}");
    let (status, body) = d
        .control(
            reqwest::Method::PATCH,
            &d.cluster_url("canary"),
            Some(serde_json::json!({"properties": {"administrator": {"password": new_password}}})),
        )
        .await;
    assert_eq!(status, 200, "{body:#}");
    let client = d
        .mongo(
            &d.get_cluster("canary").await,
            "clusteradmin",
            &new_password,
        )
        .await;
    client
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .expect("login with the reset password");

    let (hits, scanned) = files_containing(d.dir.path(), marker.as_bytes());
    assert!(
        scanned > 100_000,
        "the scan must have read the data ({scanned} bytes)"
    );
    let leaked_lines: Vec<String> = hits
        .iter()
        .filter(|h| h.ends_with(".log"))
        .flat_map(|h| {
            std::fs::read_to_string(h)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(&marker))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        hits.is_empty(),
        "plaintext marker found in {hits:?}; log lines: {leaked_lines:#?}"
    );
    // The scan covered what it claims: backups, logs with slow operations, the audit log.
    let (_, backup_bytes) = files_containing(&d.dir.path().join("backups"), b"-");
    assert!(
        backup_bytes > 500_000,
        "backups hold the data ({backup_bytes} bytes)"
    );
    let nodes_log = std::fs::read_to_string(d.dir.path().join("logs/nodes.log")).unwrap();
    assert!(
        nodes_log.contains("slow operation"),
        "slow operations are logged"
    );
    assert!(
        nodes_log.contains("code=Some(59)") && nodes_log.contains("<unknown command>"),
        "failing operations are logged (redacted)"
    );
    let (_, audit_bytes) = files_containing(&d.dir.path().join("security-audit"), b"-");
    assert!(audit_bytes > 0, "the audit log exists");
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}
