//! Vault and key lifecycles over time: soft delete / recover / purge (with purge
//! protection), backup / restore, rotation policies driven by the vault clock, restart
//! persistence, torn-write recovery, plaintext scan of the data dir, and the audit log.

mod common;

use common::*;
use keyvault::authz::{ROLE_KV_ADMINISTRATOR, ROLE_KV_CRYPTO_OFFICER};
use keyvault::client::{ClientError, CreateKeyOptions, ForbiddenKind};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_protection_backup_restore_and_vault_soft_delete() {
    let env = Env::start().await;
    let admin = env.admin_kv();
    let mgmt = env.mgmt();
    let mut spec = env.spec();
    spec.purge_protection = true;
    spec.soft_delete_retention_days = 7;
    let a = env.create_vault("kv-protected", &spec).await;
    let b = env.create_vault("kv-second", &env.spec()).await;
    for v in [&a, &b] {
        env.assign(v, ROLE_KV_ADMINISTRATOR, &env.admin_creds.object_id)
            .await;
    }
    assert_eq!(a.raw["properties"]["softDeleteRetentionInDays"], 7);
    // Retention is fixed at creation; purge protection is irreversible; soft delete always on.
    for props in [
        json!({"softDeleteRetentionInDays": 30}),
        json!({"enablePurgeProtection": false}),
        json!({"enableSoftDelete": false}),
    ] {
        let e = admin
            .update_vault(&mgmt, SUB, RG, "kv-protected", &props)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ClientError::BadRequest { .. }),
            "{props} -> {e:?}"
        );
    }

    let k = admin
        .create_key(a.base(), "precious", &CreateKeyOptions::default())
        .await
        .unwrap();
    assert_eq!(k.recovery_level, "CustomizedRecoverable");
    let (_, wrapped) = admin
        .wrap_key(&k.kid, "RSA-OAEP-256", &[9u8; 32])
        .await
        .unwrap();
    let blob = admin.backup_key(a.base(), "precious").await.unwrap();
    let del = admin.delete_key(a.base(), "precious").await.unwrap();
    assert_eq!(
        del["scheduledPurgeDate"].as_i64().unwrap() - del["deletedDate"].as_i64().unwrap(),
        7 * 86_400
    );
    let e = admin
        .purge_deleted_key(a.base(), "precious")
        .await
        .unwrap_err();
    match e {
        ClientError::Forbidden {
            kind: ForbiddenKind::PurgeProtection,
            message,
        } => {
            assert!(message.starts_with("Operation \"purge\" is not allowed because purge protection is enabled for this vault."), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Restore into the same vault while the name is soft-deleted: 409.
    let e = admin.restore_key(a.base(), &blob).await.unwrap_err();
    assert!(matches!(e, ClientError::Conflict { .. }), "{e:?}");
    // Restore into another vault of the same tenant: same versions, same material.
    let restored = admin.restore_key(b.base(), &blob).await.unwrap();
    assert_eq!(restored.version, k.version);
    assert_eq!(restored.n, k.n);
    let rk = format!("{}/keys/precious/{}", b.base(), k.version);
    assert_eq!(
        &admin
            .unwrap_key(&rk, "RSA-OAEP-256", &wrapped)
            .await
            .unwrap()
            .1[..],
        &[9u8; 32]
    );
    // Restoring again: the name exists -> 409; garbage -> 400.
    assert!(matches!(
        admin.restore_key(b.base(), &blob).await.unwrap_err(),
        ClientError::Conflict { .. }
    ));
    assert!(matches!(
        admin.restore_key(b.base(), b"garbage").await.unwrap_err(),
        ClientError::BadRequest { .. }
    ));
    // A vault of another tenant cannot open the backup.
    let (_, other_admin) = env
        .identity
        .as_ref()
        .unwrap()
        .service()
        .create_tenant("other")
        .unwrap();
    let oc = env.client(&other_admin);
    let mut ospec = keyvault::client::VaultSpec::new(&other_admin.tenant_id);
    ospec.location = LOCATION.into();
    let ov = oc
        .create_vault(&mgmt, SUB, RG, "kv-other-tenant", &ospec)
        .await
        .unwrap();
    oc.assign_role(&mgmt, &ov.id, ROLE_KV_ADMINISTRATOR, &other_admin.object_id)
        .await
        .unwrap();
    assert!(matches!(
        oc.restore_key(ov.base(), &blob).await.unwrap_err(),
        ClientError::BadRequest { .. }
    ));

    // Key purge happens by itself once the retention passes (vault clock).
    admin
        .dev_shift_clock(&mgmt, Some("kv-protected"), 8 * 86_400)
        .await
        .unwrap();
    let e = admin
        .get_deleted_key(a.base(), "precious")
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::KeyNotFound { .. }), "{e:?}");

    // Vault soft delete: listener stops; deleted vault visible; name reserved; recover.
    admin
        .create_key(b.base(), "live", &CreateKeyOptions::default())
        .await
        .unwrap();
    admin
        .delete_vault(&mgmt, SUB, RG, "kv-second")
        .await
        .unwrap();
    let e = admin
        .get_key(&format!("{}/keys/live", b.base()))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unreachable(_)), "{e:?}");
    let dv = admin
        .get_deleted_vault(&mgmt, SUB, LOCATION, "kv-second")
        .await
        .unwrap();
    assert_eq!(dv["properties"]["vaultId"], b.id);
    let e = admin
        .create_vault(&mgmt, SUB, RG, "kv-second", &env.spec())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Conflict { .. }), "{e:?}");
    let rv = admin
        .recover_vault(&mgmt, SUB, RG, "kv-second", LOCATION)
        .await
        .unwrap();
    assert_eq!(rv.vault_uri, b.vault_uri);
    admin
        .get_key(&format!("{}/keys/live", b.base()))
        .await
        .unwrap();
    // Purge of a vault without protection; of one with protection: refused.
    admin
        .delete_vault(&mgmt, SUB, RG, "kv-second")
        .await
        .unwrap();
    admin
        .purge_deleted_vault(&mgmt, SUB, LOCATION, "kv-second")
        .await
        .unwrap();
    assert!(
        admin
            .get_deleted_vault(&mgmt, SUB, LOCATION, "kv-second")
            .await
            .is_err()
    );
    admin
        .create_vault(&mgmt, SUB, RG, "kv-second", &env.spec())
        .await
        .unwrap();
    admin
        .delete_vault(&mgmt, SUB, RG, "kv-protected")
        .await
        .unwrap();
    let e = admin
        .purge_deleted_vault(&mgmt, SUB, LOCATION, "kv-protected")
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Conflict { .. }), "{e:?}");
    // ... until its retention ends (global clock), then the scheduler purges it.
    admin
        .dev_shift_clock(&mgmt, None, 8 * 86_400)
        .await
        .unwrap();
    assert!(
        admin
            .get_deleted_vault(&mgmt, SUB, LOCATION, "kv-protected")
            .await
            .is_err()
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_policy_and_scheduled_rotation() {
    let env = Env::start().await;
    let admin = env.admin_kv();
    let mgmt = env.mgmt();
    let v = env.create_vault("kv-rotate", &env.spec()).await;
    let officer = env.principal("officer").await;
    env.assign(&v, ROLE_KV_CRYPTO_OFFICER, &officer.object_id)
        .await;
    let c = env.client(&officer);
    let base = v.base();
    let k0 = c
        .create_key(
            base,
            "rot",
            &CreateKeyOptions {
                key_ops: Some(vec!["wrapKey".into(), "unwrapKey".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Default policy (Notify 30 days before expiry) before one is set.
    let p = c.get_rotation_policy(base, "rot").await.unwrap();
    assert_eq!(p["id"], format!("{base}/keys/rot/rotationpolicy"));
    assert_eq!(p["lifetimeActions"][0]["action"]["type"], "Notify");
    // Invalid policies are refused.
    for bad in [
        json!({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P1D"}, "action": {"type": "Rotate"}}]}),
        json!({"lifetimeActions": [], "attributes": {"expiryTime": "P7D"}}),
        json!({"lifetimeActions": [{"trigger": {"timeAfterCreate": "banana"}, "action": {"type": "Rotate"}}]}),
    ] {
        assert!(matches!(
            c.set_rotation_policy(base, "rot", &bad).await.unwrap_err(),
            ClientError::BadRequest { .. }
        ));
    }
    let set = c
        .set_rotation_policy(base, "rot", &json!({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P7D"}, "action": {"type": "rotate"}}], "attributes": {"expiryTime": "P30D"}}))
        .await
        .unwrap();
    assert_eq!(set["lifetimeActions"][0]["action"]["type"], "Rotate");
    assert_eq!(
        set["lifetimeActions"][1]["trigger"]["timeBeforeExpiry"],
        "P30D"
    );
    assert_eq!(set["attributes"]["expiryTime"], "P30D");
    assert!(set["attributes"]["created"].as_i64().unwrap() > 0);
    assert_eq!(c.get_rotation_policy(base, "rot").await.unwrap(), set);

    // On-demand rotation: a new version like the old one, expiring per the policy.
    let k1 = c.rotate_key(base, "rot").await.unwrap();
    assert_ne!(k1.version, k0.version);
    assert_eq!(k1.key_ops, k0.key_ops);
    assert_eq!(k1.exp.unwrap() - k1.created, 30 * 86_400);
    // Old version still unwraps.
    let (_, w) = c
        .wrap_key(&k0.kid, "RSA-OAEP-256", &[5u8; 32])
        .await
        .unwrap();

    // Scheduled rotation: nothing is due yet; 8 days later on this vault's clock it is.
    admin.dev_run_scheduler(&mgmt).await.unwrap();
    assert_eq!(
        c.get_key(&format!("{base}/keys/rot"))
            .await
            .unwrap()
            .version,
        k1.version
    );
    admin
        .dev_shift_clock(&mgmt, Some("kv-rotate"), 8 * 86_400)
        .await
        .unwrap();
    let k2 = c.get_key(&format!("{base}/keys/rot")).await.unwrap();
    assert_ne!(k2.version, k1.version);
    assert!(k2.created >= k1.created + 8 * 86_400);
    assert_eq!(
        &c.unwrap_key(&k0.kid, "RSA-OAEP-256", &w).await.unwrap().1[..],
        &[5u8; 32]
    );
    // The background task also triggers on its own (no explicit run).
    admin
        .dev_shift_clock(&mgmt, Some("kv-rotate"), 0)
        .await
        .unwrap();
    let before = c
        .get_key(&format!("{base}/keys/rot"))
        .await
        .unwrap()
        .version;
    let tok = env
        .token(&env.admin_creds, "https://management.azure.com/")
        .await;
    let r = env
        .http
        .post(format!("{mgmt}/dev/vaults/kv-rotate/clock"))
        .bearer_auth(&tok)
        .json(&json!({"seconds": 8 * 86_400}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until(10, || async {
        c.get_key(&format!("{base}/keys/rot"))
            .await
            .unwrap()
            .version
            != before
    })
    .await;
    // Other vaults' clocks are not affected.
    env.shutdown().await;
}

/// Durations and instants that overflow the schedule's arithmetic (or land past the year
/// 9999) are a 400 BadParameter in Azure's error shape, at the REST API, never a panic or a
/// wrapped instant that makes the scheduler rotate (or never rotate) a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_rotation_durations_are_bad_parameter() {
    let env = Env::start().await;
    let v = env.create_vault("kv-overflow", &env.spec()).await;
    env.assign(&v, ROLE_KV_ADMINISTRATOR, &env.admin_creds.object_id)
        .await;
    let base = v.base().to_string();
    let tok = env.token(&env.admin_creds, "https://vault.azure.net").await;
    let send = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        let req = env
            .http
            .request(method, format!("{base}/{path}?api-version=7.5"))
            .bearer_auth(&tok)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, _) = send(
        reqwest::Method::POST,
        "keys/ovf/create",
        json!({"kty": "RSA", "key_size": 2048}),
    )
    .await;
    assert_eq!(status, 200);
    let rotate = |trigger: serde_json::Value, expiry: Option<&str>| {
        let mut p =
            json!({"lifetimeActions": [{"trigger": trigger, "action": {"type": "Rotate"}}]});
        if let Some(e) = expiry {
            p["attributes"] = json!({"expiryTime": e});
        }
        p
    };
    let cases = [
        // expiry = now + P9999999Y: about year 10 million.
        rotate(json!({"timeAfterCreate": "P7D"}), Some("P9999999Y")),
        // created + P9999999Y.
        rotate(json!({"timeAfterCreate": "P9999999Y"}), None),
        // expiry - timeBeforeExpiry far before the year 1.
        rotate(json!({"timeBeforeExpiry": "P9999999Y"}), Some("P30D")),
        // Too large for 64-bit seconds at all.
        rotate(json!({"timeAfterCreate": "P99999999999999999999Y"}), None),
        rotate(
            json!({"timeAfterCreate": "P7D"}),
            Some("P9223372036854775807D"),
        ),
    ];
    for policy in cases {
        let (status, body) = send(
            reqwest::Method::PUT,
            "keys/ovf/rotationpolicy",
            policy.clone(),
        )
        .await;
        assert_eq!(status, 400, "{policy} -> {body}");
        assert_eq!(body["error"]["code"], "BadParameter", "{policy} -> {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Key attributes the scheduler subtracts from are bounded the same way.
    for exp in [i64::MIN, i64::MAX, 253_402_300_800] {
        let (status, body) = send(
            reqwest::Method::POST,
            "keys/ovf2/create",
            json!({"kty": "RSA", "key_size": 2048, "attributes": {"exp": exp}}),
        )
        .await;
        assert_eq!(status, 400, "exp {exp} -> {body}");
        assert_eq!(body["error"]["code"], "BadParameter", "exp {exp} -> {body}");
    }
    // The service is still up and a sane long policy is accepted.
    let (status, body) = send(
        reqwest::Method::PUT,
        "keys/ovf/rotationpolicy",
        rotate(json!({"timeAfterCreate": "P100Y"}), Some("P200Y")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(reqwest::Method::POST, "keys/ovf/rotate", json!({})).await;
    assert_eq!(status, 200, "{body}");
    env.shutdown().await;
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn all_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_persistence_torn_write_plaintext_scan_and_audit() {
    let mut env = Env::start().await;
    let admin = env.admin_kv();
    let v = env.create_vault("vaultzebraname", &env.spec()).await;
    env.assign(&v, ROLE_KV_ADMINISTRATOR, &env.admin_creds.object_id)
        .await;
    let base = v.base().to_string();
    // Import a key whose private components we know, so we can look for them on disk.
    let local = keyvault::crypto::generate_rsa(2048).unwrap();
    let comp = keyvault::crypto::rsa_components(&local).unwrap();
    let b64 = keyvault::jwk::b64u;
    let tok = env.token(&env.admin_creds, "https://vault.azure.net").await;
    let r = env
        .http
        .put(format!("{base}/keys/keygiraffename?api-version=7.5"))
        .bearer_auth(&tok)
        .json(&json!({"key": {"kty": "RSA", "n": b64(&comp.n), "e": b64(&comp.e), "d": b64(&comp.d), "p": b64(&comp.p),
            "q": b64(&comp.q), "dp": b64(&comp.dp), "dq": b64(&comp.dq), "qi": b64(&comp.qi)}, "tags": {"tagkoalaname": "tagvalueotter"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let generated = admin
        .create_key(&base, "keygenerated", &CreateKeyOptions::default())
        .await
        .unwrap();
    let cek = [0x5au8; 32];
    let (kid, wrapped) = admin
        .wrap_key(&format!("{base}/keys/keygiraffename"), "RSA-OAEP-256", &cek)
        .await
        .unwrap();
    admin
        .unwrap_key(&kid, "RSA-OAEP-256", &wrapped)
        .await
        .unwrap();
    admin.delete_key(&base, "keygenerated").await.unwrap();

    // Restart: same vault URI (port), keys, versions, deleted state.
    env.restart_kv().await;
    let admin = env.admin_kv();
    let again = admin
        .get_vault(&env.mgmt(), SUB, RG, "vaultzebraname")
        .await
        .unwrap();
    assert_eq!(again.vault_uri, v.vault_uri);
    assert_eq!(
        &admin
            .unwrap_key(&kid, "RSA-OAEP-256", &wrapped)
            .await
            .unwrap()
            .1[..],
        &cek
    );
    assert_eq!(
        admin.get_deleted_key(&base, "keygenerated").await.unwrap()["key"]["kid"],
        generated.kid
    );
    let recovered = admin
        .recover_deleted_key(&base, "keygenerated")
        .await
        .unwrap();
    assert_eq!(recovered.n, generated.n);

    // Plaintext scan of everything in the data dir.
    env.kv().ctx().state.compact().unwrap();
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("vault name".into(), b"vaultzebraname".to_vec()),
        ("key name".into(), b"keygiraffename".to_vec()),
        ("tag".into(), b"tagkoalaname".to_vec()),
        ("tag value".into(), b"tagvalueotter".to_vec()),
        ("d".into(), comp.d.to_vec()),
        ("p".into(), comp.p.to_vec()),
        ("q".into(), comp.q.to_vec()),
        ("d b64url".into(), b64(&comp.d).into_bytes()),
        ("d prefix".into(), comp.d[..16].to_vec()),
        ("pkcs8".into(), local[..64].to_vec()),
    ];
    use base64::Engine;
    needles.push((
        "pkcs8 b64".into(),
        base64::engine::general_purpose::STANDARD
            .encode(&local[40..100])
            .into_bytes()[..40]
            .to_vec(),
    ));
    for f in all_files(&env.data_dir()) {
        let data = std::fs::read(&f).unwrap();
        for (what, n) in &needles {
            assert!(
                !contains(&data, n),
                "{what} found in plaintext in {}",
                f.display()
            );
        }
    }

    // Torn write: a crash mid-append leaves a partial frame; restart recovers everything
    // acknowledged before it.
    let mgmt_addr = env.stop_kv().await;
    let log = env.data_dir().join("state.log");
    let len = std::fs::metadata(&log).unwrap().len();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[200, 1, 0, 0, 9, 9, 9, 9, 1, 2, 3]).unwrap();
    }
    let mut cfg = env.kv_cfg.clone();
    cfg.mgmt_listen = mgmt_addr;
    env.kv = Some(start_with_retry(cfg).await);
    assert_eq!(std::fs::metadata(&log).unwrap().len(), len);
    let admin = env.admin_kv();
    assert_eq!(
        &admin
            .unwrap_key(&kid, "RSA-OAEP-256", &wrapped)
            .await
            .unwrap()
            .1[..],
        &cek
    );
    admin.get_key(&recovered.kid).await.unwrap();
    // A flipped byte inside an old record is tampering, not a torn write: refuse to start.
    let mgmt_addr = env.stop_kv().await;
    let mut data = std::fs::read(&log).unwrap();
    data[20] ^= 0xff;
    std::fs::write(&log, &data).unwrap();
    let mut cfg = env.kv_cfg.clone();
    cfg.mgmt_listen = mgmt_addr;
    // The refusal must be the corruption error naming the log and the damaged record's
    // offset (0: the flipped byte is inside the first record) — not, say, a port in use.
    match keyvault::Server::start(cfg).await {
        Err(keyvault::Error::CorruptLog { path, offset, .. }) => {
            assert_eq!(path, log);
            assert_eq!(offset, 0);
        }
        Err(e) => panic!("expected the state log corruption error, got: {e}"),
        Ok(_) => panic!("a vault with a tampered state log started"),
    }

    // Audit: in the audit dir (not the data dir), one JSON line per request, no material.
    let audit = std::fs::read_to_string(env.audit_dir().join(keyvault::audit::AUDIT_FILE)).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let unwrap = lines
        .iter()
        .find(|l| l["operationName"] == "KeyUnwrap" && l["httpStatus"] == 200)
        .expect("KeyUnwrap line");
    assert_eq!(unwrap["callerOid"], env.admin_creds.object_id);
    assert_eq!(unwrap["callerTid"], env.tenant);
    assert_eq!(unwrap["keyId"], kid);
    assert_eq!(unwrap["clientAddress"], "127.0.0.1");
    assert!(unwrap["durationMs"].as_f64().is_some());
    assert!(unwrap["time"].as_str().unwrap().contains('T'));
    for op in [
        "VaultPut",
        "RoleAssignmentPut",
        "KeyImport",
        "KeyCreate",
        "KeyWrap",
        "KeyDelete",
        "KeyRecover",
        "KeyGetDeleted",
    ] {
        assert!(
            lines.iter().any(|l| l["operationName"] == op),
            "no {op} audit line"
        );
    }
    for n in [b64(&cek), b64(&wrapped), b64(&comp.d)] {
        assert!(!audit.contains(&n), "audit log contains key material");
    }
    assert!(
        all_files(&env.data_dir())
            .iter()
            .all(|f| !f.to_string_lossy().contains("audit"))
    );
    let id = env.identity.take().unwrap();
    id.shutdown().await;
}
