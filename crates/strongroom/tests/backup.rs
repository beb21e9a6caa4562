//! Continuous backup and point-in-time restore, end to end: real `strongroom up`, real
//! nodes, a real MongoDB driver, the real key vault.
//!
//! Writes happen in two timed phases on an SMK and a CMK source; each is restored to the
//! second between the phases into an SMK and a CMK target, which must hold exactly the
//! first phase. Then the CMK source's key is disabled: a restore fails naming the key;
//! enabled again, it succeeds. `backup list|verify` and `audit show` run as the CLI.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bson::{Document, doc};
use common::*;
use futures::TryStreamExt;
use keyvault::client::{CreateKeyOptions, UpdateKeyOptions};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn collection(d: &Deployment, view: &Value) -> mongodb::Collection<Document> {
    d.mongo(view, "clusteradmin", ADMIN_PASSWORD)
        .await
        .database("shop")
        .collection("orders")
}

async fn contents(c: &mongodb::Collection<Document>) -> BTreeMap<i64, Document> {
    c.find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.get_i64("_id").unwrap(), d))
        .collect()
}

/// Phase A, then the boundary second, then phase B (inserts, updates and deletes).
/// Returns (boundary as RFC 3339, state after phase A).
async fn two_phases(d: &Deployment, name: &str) -> (String, BTreeMap<i64, Document>) {
    let view = d.get_cluster(name).await;
    let c = collection(d, &view).await;
    let a: Vec<Document> = (0..40i64)
        .map(|i| doc! {"_id": i, "phase": "A", "n": i})
        .collect();
    c.insert_many(a).await.unwrap();
    c.update_one(doc! {"_id": 3i64}, doc! {"$set": {"n": 300i64}})
        .await
        .unwrap();
    let expected = contents(&c).await;
    // The boundary is the next whole second after phase A was acknowledged.
    let now = time::OffsetDateTime::now_utc();
    let boundary = now.replace_nanosecond(0).unwrap() + time::Duration::seconds(1);
    while time::OffsetDateTime::now_utc() <= boundary + time::Duration::milliseconds(50) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b: Vec<Document> = (100..130i64)
        .map(|i| doc! {"_id": i, "phase": "B", "n": i})
        .collect();
    c.insert_many(b).await.unwrap();
    c.update_many(doc! {"_id": {"$lt": 10i64}}, doc! {"$set": {"phase": "B"}})
        .await
        .unwrap();
    c.delete_many(doc! {"_id": {"$gte": 30i64, "$lt": 40i64}})
        .await
        .unwrap();
    (rfc3339(boundary), expected)
}

/// Waits until the cluster's backup can restore to `at` (RFC 3339).
async fn wait_restorable(d: &Deployment, name: &str, at: &str) {
    let target =
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
    let view = d.wait_restorable(name, target, WAIT).await;
    assert!(
        view["properties"]["backup"]["earliestRestoreTime"].is_string(),
        "{view:#}"
    );
}

/// The documents of a mongodump `.bson` file (concatenated BSON documents).
fn read_dump(path: &std::path::Path) -> BTreeMap<i64, Document> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = BTreeMap::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let doc = Document::from_reader(&bytes[at..at + len]).unwrap();
        out.insert(doc.get_i64("_id").unwrap(), doc);
        at += len;
    }
    out
}

fn restore_body(mut body: Value, source_id: &str, at: &str) -> Value {
    body["properties"]["createMode"] = json!("PointInTimeRestore");
    body["properties"]["restoreParameters"] =
        json!({"sourceResourceId": source_id, "pointInTimeUTC": at});
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn point_in_time_restore_across_key_modes_and_revocation() {
    let d = Deployment::start(
        "1s",
        &[
            "--no-default-cluster",
            "--grace-period",
            "1s",
            "--backup-interval",
            "200ms",
            "--snapshot-interval",
            "2s",
        ],
    )
    .await;
    let vault = d.create_vault("pitrvault").await;
    d.grant_admin(&vault).await;
    let key = d
        .vault
        .create_key(vault.base(), "cmk", &CreateKeyOptions::default())
        .await
        .unwrap();
    let id = d.create_identity("pitr-id").await;
    d.vault
        .assign_role(d.mgmt_url(), &vault.id, CSEU, &id.principal_id)
        .await
        .unwrap();
    let key_url = format!("{}/keys/cmk", vault.base());

    let (s, body) = d.put_cluster("smksrc", smk_cluster()).await;
    assert_eq!(s, 201, "{body:#}");
    let (s, body) = d.put_cluster("cmksrc", cmk_cluster(&key_url, &id.id)).await;
    assert_eq!(s, 201, "{body:#}");

    let mut cases = Vec::new();
    for source in ["smksrc", "cmksrc"] {
        let (at, expected) = two_phases(&d, source).await;
        wait_restorable(&d, source, &at).await;
        cases.push((source, at, expected));
    }

    for (source, at, expected) in &cases {
        let source_id = d.get_cluster(source).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        for (target_mode, body) in [
            ("smk", json!({"location": "local", "properties": {}})),
            ("cmk", cmk_cluster(&key_url, &id.id)),
        ] {
            let target = format!("{source}-to-{target_mode}");
            let started = Instant::now();
            let (status, view) = d
                .put_cluster(&target, restore_body(body, &source_id, at))
                .await;
            assert_eq!(status, 201, "restore {source} → {target}: {view:#}");
            assert_eq!(view["properties"]["clusterStatus"], "Ready", "{view:#}");
            assert_eq!(view["properties"]["createMode"], "PointInTimeRestore");
            assert_eq!(
                view["properties"]["keyStatus"]["mode"],
                if target_mode == "smk" {
                    "ServiceManaged"
                } else {
                    "CustomerManaged"
                }
            );
            let got = contents(&collection(&d, &view).await).await;
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>(),
                "{source} → {target} at {at}: exactly the documents acknowledged before"
            );
            assert!(got == *expected, "{source} → {target}: contents differ");
            eprintln!("restored {source} → {target} in {:?}", started.elapsed());
        }
    }

    // Outside the window: a clear error, nothing created.
    let cmk_id = d.get_cluster("cmksrc").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = d
        .put_cluster(
            "too-early",
            restore_body(
                json!({"location": "local", "properties": {}}),
                &cmk_id,
                "2001-01-01T00:00:00Z",
            ),
        )
        .await;
    assert_eq!(status, 400, "{body:#}");
    assert_eq!(body["error"]["code"], "PointInTimeOutOfRange", "{body:#}");

    // Revocation: the source's key disabled → its backups are locked, naming the key.
    let (_, at, expected) = &cases[1];
    let off = UpdateKeyOptions {
        enabled: Some(false),
        ..Default::default()
    };
    d.vault.update_key(&key.kid, &off).await.unwrap();
    let (status, body) = d
        .put_cluster(
            "while-revoked",
            restore_body(json!({"location": "local", "properties": {}}), &cmk_id, at),
        )
        .await;
    assert_eq!(status, 400, "{body:#}");
    assert_eq!(body["error"]["code"], "BackupKeyUnavailable", "{body:#}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&key.kid), "names the key: {message}");
    assert!(message.contains("KeyDisabled"), "says why: {message}");
    let (status, _) = d
        .control(reqwest::Method::GET, &d.cluster_url("while-revoked"), None)
        .await;
    assert_eq!(status, 404, "nothing half-created");
    let (ok, text) = cli(&d, &["backup", "verify", "cmksrc"]);
    assert!(!ok && text.contains("BackupKeyUnavailable"), "{text}");

    let on = UpdateKeyOptions {
        enabled: Some(true),
        ..Default::default()
    };
    d.vault.update_key(&key.kid, &on).await.unwrap();
    let (status, view) = d
        .put_cluster(
            "after-fix",
            restore_body(json!({"location": "local", "properties": {}}), &cmk_id, at),
        )
        .await;
    assert_eq!(status, 201, "{view:#}");
    assert!(contents(&collection(&d, &view).await).await == *expected);

    // The offline tools.
    let (ok, text) = cli(&d, &["backup", "list", "cmksrc"]);
    assert!(ok, "{text}");
    let info: Value = serde_json::from_str(&text).unwrap();
    assert!(
        !info["snapshots"].as_array().unwrap().is_empty(),
        "{info:#}"
    );
    let (ok, text) = cli(&d, &["backup", "verify", "cmksrc"]);
    assert!(ok, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert!(report["walRecords"].as_u64().unwrap() > 0, "{report:#}");

    // Export: encrypted by default (nothing readable), decryptable with the key; or
    // plaintext on request. Both hold exactly the documents of the restore point.
    let marker = "EXPORT-MARKER-5150";
    // The key was disabled above, so the source went Inaccessible; it serves again only
    // once a revalidation has seen the key enabled.
    let (cmksrc, _) = d
        .wait_status("cmksrc", "Ready", Duration::from_secs(30))
        .await;
    let c = collection(&d, &cmksrc).await;
    c.insert_one(doc! {"_id": 9_999i64, marker: marker})
        .await
        .unwrap();
    let now = rfc3339(time::OffsetDateTime::now_utc());
    wait_restorable(&d, "cmksrc", &now).await;
    let exports = tempfile::tempdir().unwrap();
    let sealed_dir = exports.path().join("sealed");
    let (ok, text) = cli(
        &d,
        &[
            "backup",
            "export",
            "cmksrc",
            "--out",
            sealed_dir.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    let manifest: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(manifest["encrypted"], true, "{manifest:#}");
    assert!(sealed_dir.join("shop/orders.bson.sealed").exists());
    for entry in std::fs::read_dir(sealed_dir.join("shop")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(marker.len()).any(|w| w == marker.as_bytes()));
    }
    let plain_dir = exports.path().join("decrypted");
    let (ok, text) = cli(
        &d,
        &[
            "backup",
            "decrypt-export",
            "cmksrc",
            "--input",
            sealed_dir.to_str().unwrap(),
            "--out",
            plain_dir.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    let dumped = read_dump(&plain_dir.join("shop/orders.bson"));
    let live = contents(&c).await;
    assert_eq!(dumped.len(), live.len(), "the export holds every document");
    assert!(
        dumped
            .get(&9_999)
            .is_some_and(|d| d.get_str(marker).ok() == Some(marker))
    );
    let clear_dir = exports.path().join("clear");
    let (ok, text) = cli(
        &d,
        &[
            "backup",
            "export",
            "cmksrc",
            "--plaintext",
            "--point-in-time",
            at,
            "--out",
            clear_dir.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    assert!(read_dump(&clear_dir.join("shop/orders.bson")) == *expected);
    assert!(clear_dir.join("shop/orders.metadata.json").exists());

    // A wrong password is refused, and audited.
    let bad = d
        .mongo(
            &d.get_cluster("cmksrc").await,
            "clusteradmin",
            "Wr0ng!Password",
        )
        .await;
    assert!(
        bad.database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .is_err()
    );

    // The audit trail saw the restores and the key going away and back.
    let (ok, text) = cli(&d, &["audit", "show"]);
    assert!(ok, "{text}");
    for kind in [
        "cluster_created",
        "backup_restored",
        "export_created",
        "auth_succeeded",
    ] {
        assert!(text.contains(kind), "audit lacks {kind}:\n{text}");
    }
}
