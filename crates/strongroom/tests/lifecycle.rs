//! Create/update validation against the real services (each rule rejected with its own
//! message, nothing half-created), the default SMK cluster, crypto-shredding on delete,
//! and the promise that a revoked cluster's process holds no key material.

mod common;

use std::time::Duration;

use bson::doc;
use common::*;
use keyvault::client::{CreateKeyOptions, UpdateKeyOptions};
use serde_json::json;

/// Asserts the create is refused with `code` and leaves nothing behind; returns the
/// error message.
async fn rejected(d: &Deployment, name: &str, body: serde_json::Value, code: &str) -> String {
    let (status, resp) = d.put_cluster(name, body).await;
    assert_eq!(status, 400, "{resp:#}");
    assert_eq!(resp["error"]["code"], code, "{resp:#}");
    let message = resp["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!message.is_empty(), "{resp:#}");
    let (status, _) = d
        .control(reqwest::Method::GET, &d.cluster_url(name), None)
        .await;
    assert_eq!(status, 404, "a rejected create must leave nothing behind");
    let dir = d.dir.path().join("control").join("clusters").join(name);
    assert!(
        !dir.exists(),
        "a rejected create must leave no directory: {}",
        dir.display()
    );
    message
}

#[tokio::test(flavor = "multi_thread")]
async fn every_create_rule_is_checked_before_anything_is_created() {
    let d = Deployment::start("1s", &["--no-default-cluster"]).await;
    let vault = d.create_vault("valvault").await;
    d.grant_admin(&vault).await;
    let good = d
        .vault
        .create_key(vault.base(), "good", &CreateKeyOptions::default())
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let disabled = d
        .vault
        .create_key(
            vault.base(),
            "disabled",
            &CreateKeyOptions {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let future = d
        .vault
        .create_key(
            vault.base(),
            "future",
            &CreateKeyOptions {
                nbf: Some(now + 3600),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let expired = d
        .vault
        .create_key(vault.base(), "expired", &CreateKeyOptions::default())
        .await
        .unwrap();
    d.vault
        .update_key(
            &expired.kid,
            &UpdateKeyOptions {
                exp: Some(now - 60),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // A key the vault creates but the service cannot wrap with: its key_ops leave out
    // wrapKey and unwrapKey.
    let no_wrap = d
        .vault
        .create_key(
            vault.base(),
            "nowrap",
            &CreateKeyOptions {
                key_ops: Some(vec!["encrypt".into(), "decrypt".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(no_wrap.key_ops, ["encrypt", "decrypt"]);
    let granted = d.create_identity("granted").await;
    let stranger = d.create_identity("stranger").await;
    d.vault
        .assign_role(d.mgmt_url(), &vault.id, CSEU, &granted.principal_id)
        .await
        .unwrap();

    rejected(
        &d,
        "case1",
        cmk_cluster(&disabled.kid, &granted.id),
        "AzureKeyVaultKeyDisabled",
    )
    .await;
    rejected(
        &d,
        "case2",
        cmk_cluster(&future.kid, &granted.id),
        "AzureKeyVaultKeyNotYetActive",
    )
    .await;
    rejected(
        &d,
        "case3",
        cmk_cluster(&expired.kid, &granted.id),
        "AzureKeyVaultKeyExpired",
    )
    .await;
    rejected(
        &d,
        "case4",
        cmk_cluster(&format!("{}/keys/missing", vault.base()), &granted.id),
        "AzureKeyVaultKeyNameNotFound",
    )
    .await;
    rejected(
        &d,
        "case5",
        cmk_cluster(&good.kid, &stranger.id),
        "AzureKeyVaultAccessDenied",
    )
    .await;
    let message = rejected(
        &d,
        "case6",
        cmk_cluster(&no_wrap.kid, &granted.id),
        "InvalidKeyEncryptionKey",
    )
    .await;
    assert!(message.contains("wrapKey"), "{message}");
    let ghost = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ghost"
    );
    rejected(
        &d,
        "case7",
        cmk_cluster(&good.kid, &ghost),
        "UserAssignedIdentityNotFound",
    )
    .await;
    let mut unlisted = cmk_cluster(&good.kid, &granted.id);
    unlisted["identity"]["userAssignedIdentities"] = json!({ stranger.id.clone(): {} });
    rejected(&d, "case8", unlisted, "KeyEncryptionKeyIdentityNotAssigned").await;
    let mut system = cmk_cluster(&good.kid, &granted.id);
    system["identity"]["type"] = json!("SystemAssigned");
    system["identity"]["userAssignedIdentities"] = json!({});
    rejected(&d, "case9", system, "UserAssignedIdentityRequired").await;

    // The same request with a good key and a granted identity succeeds.
    let (status, body) = d
        .put_cluster("case10", cmk_cluster(&good.kid, &granted.id))
        .await;
    assert_eq!(status, 201, "{body:#}");
    assert_eq!(
        body["identity"]["userAssignedIdentities"][&granted.id]["principalId"],
        granted.principal_id.as_str()
    );

    // Lifecycle rules on update.
    let (status, body) = d
        .control(
            reqwest::Method::PATCH,
            &d.cluster_url("case10"),
            Some(json!({"properties": {"encryption": {}}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("EncryptionModeCannotBeChanged")),
        "{body:#}"
    );
    let only_key = json!({"properties": {"encryption": {"customerManagedKeyEncryption": {"keyEncryptionKeyUrl": good.kid}}}});
    let (status, body) = d
        .control(
            reqwest::Method::PATCH,
            &d.cluster_url("case10"),
            Some(only_key),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("KeyAndIdentityRequiredTogether")),
        "{body:#}"
    );
    let (status, _) = d.put_cluster("smk1", smk_cluster()).await;
    assert_eq!(status, 201);
    let (status, body) = d
        .control(
            reqwest::Method::PATCH,
            &d.cluster_url("smk1"),
            Some(cmk_cluster(&good.kid, &granted.id)),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("EncryptionModeCannotBeChanged")),
        "{body:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_cluster_is_service_managed_and_serves_clients() {
    let d = Deployment::start("1s", &[]).await;
    let cs = d.endpoints["connectionString"]
        .as_str()
        .expect("up prints a connection string")
        .to_string();
    let mut options = mongodb::options::ClientOptions::parse(&cs).await.unwrap();
    options.server_selection_timeout = Some(Duration::from_secs(5));
    let client = mongodb::Client::with_options(options).unwrap();
    let coll = client.database("app").collection::<bson::Document>("notes");
    coll.insert_one(doc! {"note": "hello"}).await.unwrap();
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 1);
    let view = d.get_cluster_in("default", "default").await;
    assert_eq!(view["properties"]["clusterStatus"], "Ready");
    assert_eq!(view["properties"]["keyStatus"]["mode"], "ServiceManaged");
    assert!(
        view["properties"].get("encryption").is_none(),
        "SMK shows no CMK block: {view:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_cluster_destroys_its_wrapped_root_key() {
    let d = Deployment::start("1s", &["--no-default-cluster"]).await;
    let (status, body) = d.put_cluster("gone", smk_cluster()).await;
    assert_eq!(status, 201, "{body:#}");
    let dir = d.dir.path().join("control").join("clusters").join("gone");
    assert!(dir.join("wrapped-dek.json").exists());
    let (status, _) = d
        .control(reqwest::Method::DELETE, &d.cluster_url("gone"), None)
        .await;
    assert_eq!(status, 200);
    assert!(
        !dir.exists(),
        "the cluster's directory, wrapped key included, is gone"
    );
    let (status, _) = d
        .control(reqwest::Method::GET, &d.cluster_url("gone"), None)
        .await;
    assert_eq!(status, 404);
}

/// Whether `needle` occurs anywhere in the readable memory of `pid`.
fn memory_contains(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !perms.starts_with('r') {
            continue;
        }
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).unwrap(),
            u64::from_str_radix(hi, 16).unwrap(),
        );
        if hi - lo > 1 << 30 {
            continue;
        }
        let mut buf = vec![0u8; (hi - lo) as usize];
        if mem.seek(SeekFrom::Start(lo)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        if buf.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_cluster_process_holds_no_root_key() {
    let d = Deployment::start("1s", &["--no-default-cluster", "--grace-period", "1s"]).await;
    let vault = d.create_vault("memvault").await;
    d.grant_admin(&vault).await;
    let key = d
        .vault
        .create_key(vault.base(), "cmk", &CreateKeyOptions::default())
        .await
        .unwrap();
    let id = d.create_identity("mem-id").await;
    d.vault
        .assign_role(d.mgmt_url(), &vault.id, CSEU, &id.principal_id)
        .await
        .unwrap();
    let (status, body) = d.put_cluster("mem", cmk_cluster(&key.kid, &id.id)).await;
    assert_eq!(status, 201, "{body:#}");
    let client = d.mongo(&body, "clusteradmin", ADMIN_PASSWORD).await;
    client
        .database("x")
        .collection::<bson::Document>("y")
        .insert_one(doc! {"a": 1})
        .await
        .unwrap();

    // The test learns the root DEK the way only a key holder can: by unwrapping the
    // stored wrapped key with the vault (the administrator holds Key Vault Administrator).
    let wrapped: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.dir.path().join("control/clusters/mem/wrapped-dek.json")).unwrap(),
    )
    .unwrap();
    use base64::Engine as _;
    let ciphertext = base64::engine::general_purpose::STANDARD
        .decode(wrapped["current"]["ciphertext"].as_str().unwrap())
        .unwrap();
    let (_, dek) = d
        .vault
        .unwrap_key(
            wrapped["current"]["kid"].as_str().unwrap(),
            "RSA-OAEP-256",
            &ciphertext,
        )
        .await
        .unwrap();
    assert_eq!(dek.len(), 32);
    let nodes = children(d.pid());
    assert_eq!(nodes.len(), 1, "one cluster, one node process");
    let node = nodes[0];
    assert!(
        memory_contains(node, &dek),
        "sanity: a Ready node holds its root key"
    );

    d.vault
        .update_key(
            &key.kid,
            &UpdateKeyOptions {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    d.wait_status("mem", "Inaccessible", Duration::from_secs(20))
        .await;
    // The node that held the key is gone; the one serving refusals never received it.
    assert!(
        !std::path::Path::new(&format!("/proc/{node}")).exists(),
        "the keyed node process must be gone"
    );
    let nodes = children(d.pid());
    assert_eq!(nodes.len(), 1, "a locked node answers clients: {nodes:?}");
    assert!(
        !memory_contains(nodes[0], &dek),
        "an Inaccessible cluster's process must hold no copy of its root key"
    );
    let err = d
        .mongo(&d.get_cluster("mem").await, "clusteradmin", ADMIN_PASSWORD)
        .await
        .list_database_names()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("KeyDisabled"), "{err}");
}
