//! Durability: restart keeps identities, principals and the signing key; secrets and key
//! material never appear in plaintext under the data dir; torn and damaged state files
//! are handled without silently starting over.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Harness, RG, SUB, VAULT, config, tls};
use identity::client::{client_credentials_token, msi_token};
use identity::{IdentitySelector, Server};

fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn restart_keeps_identities_principals_and_signing_key() {
    let h = Harness::start().await;
    let mi = h
        .admin
        .create_managed_identity(SUB, RG, "durable", "westeurope")
        .await
        .unwrap();
    h.admin.attach("cluster-1", &mi.id).await.unwrap();
    let secret = h.admin.issue_resource_secret("cluster-1").await.unwrap();
    let sp = h
        .admin
        .create_service_principal("tool", false, false)
        .await
        .unwrap();
    let before_msi = msi_token(&h.http, &h.base(), &secret, &IdentitySelector::Only, VAULT)
        .await
        .unwrap();
    let before_sp = client_credentials_token(
        &h.http,
        &h.base(),
        &sp.tenant_id,
        &sp.client_id,
        &sp.client_secret,
        "https://vault.azure.net/.default",
    )
    .await
    .unwrap();
    let jwks_before: serde_json::Value = h
        .http
        .get(format!("{}/.well-known/jwks.json", h.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let h = h.restart().await;
    // Same key, same kid.
    let jwks_after: serde_json::Value = h
        .http
        .get(format!("{}/.well-known/jwks.json", h.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks_before, jwks_after);
    // Tokens minted before the restart verify after it (fresh verifier, fresh JWKS fetch).
    let v = h.verifier(&[VAULT]);
    assert_eq!(
        v.verify(&before_msi.token).await.unwrap().oid,
        mi.principal_id
    );
    assert_eq!(v.verify(&before_sp.token).await.unwrap().oid, sp.object_id);
    // Objects and secrets survived.
    assert_eq!(
        h.admin
            .get_managed_identity(SUB, RG, "durable")
            .await
            .unwrap(),
        Some(mi.clone())
    );
    msi_token(&h.http, &h.base(), &secret, &IdentitySelector::Only, VAULT)
        .await
        .unwrap();
    client_credentials_token(
        &h.http,
        &h.base(),
        &sp.tenant_id,
        &sp.client_id,
        &sp.client_secret,
        "https://vault.azure.net/.default",
    )
    .await
    .unwrap();
    // Bootstrap is idempotent: no new credentials, same tenant.
    let again = h.server.bootstrap().unwrap();
    assert_eq!(again.tenant_id, h.boot.tenant_id);
    assert!(again.admin.is_none() && again.control_plane.is_none());
    h.server.shutdown().await;
}

#[tokio::test]
async fn no_client_or_resource_secret_in_plaintext_under_the_data_dir() {
    let h = Harness::start().await;
    let sp = h
        .admin
        .create_service_principal("tool", true, false)
        .await
        .unwrap();
    let mi = h
        .admin
        .create_managed_identity(SUB, RG, "xid", "westeurope")
        .await
        .unwrap();
    h.admin.attach("cluster-1", &mi.id).await.unwrap();
    let resource_secret = h.admin.issue_resource_secret("cluster-1").await.unwrap();
    let files = all_files(h.data.path());
    assert!(files.iter().any(|(p, _)| p.ends_with("state.json")));
    let secrets: Vec<&str> = vec![
        &h.admin_creds.client_secret,
        &h.control_creds.client_secret,
        &sp.client_secret,
        &resource_secret,
    ];
    for (path, bytes) in &files {
        for s in &secrets {
            assert!(
                !contains(bytes, s.as_bytes()),
                "secret in plaintext in {path}"
            );
        }
    }
    // (The signing key's private bytes are checked by the unit test
    // `service::tests::signing_key_is_never_written_in_plaintext`, which can see them.)
    let mode = std::fs::metadata(h.data.path().join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mode = std::fs::metadata(h.data.path().join("state.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
    h.server.shutdown().await;
}

#[tokio::test]
async fn torn_write_is_ignored_and_damaged_state_refuses_to_start() {
    let tls = tls();
    let data = tempfile::tempdir().unwrap();
    let addr = "127.0.0.1:0".parse().unwrap();
    let server = Server::start(config(&tls, data.path(), addr))
        .await
        .unwrap();
    let boot = server.bootstrap().unwrap();
    let port = server.local_addr();
    server.shutdown().await;

    // A crash mid-save leaves a partial tmp file: ignored, removed, state intact.
    // (`sealed::write_atomic_io` names its temporary file `.state.json.<pid>.<n>.tmp`.)
    let tmp = data.path().join(".state.json.99999.0.tmp");
    std::fs::write(&tmp, b"{\"version\":1,\"signing").unwrap();
    let server = Server::start(config(&tls, data.path(), port))
        .await
        .unwrap();
    assert!(!tmp.exists());
    assert_eq!(server.bootstrap().unwrap().tenant_id, boot.tenant_id);
    server.shutdown().await;

    // A truncated state file is an error, not a fresh start.
    let state_path = data.path().join("state.json");
    let good = std::fs::read(&state_path).unwrap();
    std::fs::write(&state_path, &good[..good.len() / 2]).unwrap();
    let err = Server::start(config(&tls, data.path(), "127.0.0.1:0".parse().unwrap()))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, identity::Error::CorruptState { .. }), "{err}");
    std::fs::write(&state_path, &good).unwrap();

    // A tampered sealed key does not open.
    let mut state: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let sealed = state["signingKey"]["sealed"].as_str().unwrap().to_string();
    let mut raw =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &sealed).unwrap();
    raw[20] ^= 1;
    state["signingKey"]["sealed"] =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw).into();
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let err = Server::start(config(&tls, data.path(), "127.0.0.1:0".parse().unwrap()))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, identity::Error::Crypto(_)), "{err}");
    std::fs::write(&state_path, &good).unwrap();

    // A world-readable master key is refused; a missing one too.
    let key_path = data.path().join("master.key");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Server::start(config(&tls, data.path(), "127.0.0.1:0".parse().unwrap()))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, identity::Error::MasterKey { .. }), "{err}");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = std::fs::read(&key_path).unwrap();
    std::fs::remove_file(&key_path).unwrap();
    let err = Server::start(config(&tls, data.path(), "127.0.0.1:0".parse().unwrap()))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, identity::Error::MasterKey { .. }), "{err}");
    assert!(state_path.exists(), "the state file must not be replaced");

    // Restored, everything works again.
    std::fs::write(&key_path, &key).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = Server::start(config(&tls, data.path(), "127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(server.bootstrap().unwrap().tenant_id, boot.tenant_id);
    server.shutdown().await;
}

#[tokio::test]
async fn a_data_dir_is_used_by_one_service_at_a_time() {
    let tls = tls();
    let data = tempfile::tempdir().unwrap();
    let any = || "127.0.0.1:0".parse().unwrap();
    let first = Server::start(config(&tls, data.path(), any()))
        .await
        .unwrap();
    let err = Server::start(config(&tls, data.path(), any()))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, identity::Error::Locked { .. }), "{err}");
    first.shutdown().await;
    // Released on shutdown.
    let second = Server::start(config(&tls, data.path(), any()))
        .await
        .unwrap();
    second.shutdown().await;
}
