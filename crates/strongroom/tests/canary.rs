//! The plaintext canary across the whole system: a marker goes into document values,
//! field names, an index and a sort large enough to spill; the key is revoked and
//! restored; then every byte under every data directory — clusters, control plane, key
//! vault, identity, audit log — is scanned. The marker must never appear.

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
    let d = Deployment::start(
        "1s",
        &[
            "--no-default-cluster",
            "--grace-period",
            "1s",
            "--sort-memory-limit",
            "65536",
        ],
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
    // A failing query that carries the marker (it must not end up in logs on disk).
    let _ = coll.find_one(doc! {"$where": marker.clone()}).await;

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
        3000
    );

    let (hits, scanned) = files_containing(d.dir.path(), marker.as_bytes());
    assert!(
        scanned > 100_000,
        "the scan must have read the data ({scanned} bytes)"
    );
    assert!(hits.is_empty(), "plaintext marker found in {hits:?}");
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}
