//! Data-plane key lifecycle and crypto rules against real identity + vault servers.

mod common;

use common::*;
use keyvault::authz::{ROLE_KV_CRYPTO_OFFICER, ROLE_KV_CRYPTO_USER};
use keyvault::client::{ClientError, CreateKeyOptions, ForbiddenKind, UpdateKeyOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_crypto_and_state_rules() {
    let env = Env::start().await;
    let vault = env.create_vault("kv-life", &env.spec()).await;
    let officer = env.principal("officer").await;
    env.assign(&vault, ROLE_KV_CRYPTO_OFFICER, &officer.object_id)
        .await;
    let c = env.client(&officer);
    let base = vault.base();
    assert!(vault.vault_uri.starts_with("https://127.0.0.1:"));

    // Create each RSA size; HSM flavour too.
    for (name, kty, bits) in [
        ("k2048", "RSA", 2048),
        ("k3072", "RSA-HSM", 3072),
        ("k4096", "RSA", 4096),
    ] {
        let k = c
            .create_key(
                base,
                name,
                &CreateKeyOptions {
                    kty: kty.into(),
                    key_size: bits,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(k.key_size(), bits as usize);
        assert_eq!(k.kty, kty);
        assert_eq!(k.e, vec![1, 0, 1]);
        assert_eq!(k.version.len(), 32);
        assert_eq!(k.key_ops.len(), 6);
        assert_eq!(k.recovery_level, "Recoverable+Purgeable");
        assert!(k.kid.starts_with(&format!("{base}/keys/{name}/")));
    }
    // Bad size -> 400.
    let e = c
        .create_key(
            base,
            "bad",
            &CreateKeyOptions {
                key_size: 1024,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::BadRequest { .. }), "{e:?}");

    // New version on re-create; get latest and by version.
    let v1 = c.get_key(&format!("{base}/keys/k2048")).await.unwrap();
    let v2 = c
        .create_key(base, "k2048", &CreateKeyOptions::default())
        .await
        .unwrap();
    assert_ne!(v1.version, v2.version);
    assert_eq!(
        c.get_key(&format!("{base}/keys/k2048"))
            .await
            .unwrap()
            .version,
        v2.version
    );
    assert_eq!(c.get_key(&v1.kid).await.unwrap().n, v1.n);
    let e = c
        .get_key(&format!("{base}/keys/k2048/{}", "0".repeat(32)))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::KeyNotFound { .. }));
    let e = c
        .get_key(&format!("{base}/keys/nosuchkey"))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::KeyNotFound { .. }));

    // Paging: list with maxresults=1 follows nextLink.
    let all = c.list_keys(base).await.unwrap();
    assert_eq!(all.len(), 3);
    let tok = env.token(&officer, "https://vault.azure.net").await;
    let page: serde_json::Value = env
        .http
        .get(format!("{base}/keys?api-version=7.4&maxresults=1"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["value"].as_array().unwrap().len(), 1);
    let next = page["nextLink"].as_str().unwrap().to_string();
    assert!(next.contains("$skiptoken="));
    let page2: serde_json::Value = env
        .http
        .get(&next)
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(page2["value"][0]["kid"], page["value"][0]["kid"]);
    let versions: serde_json::Value = env
        .http
        .get(format!("{base}/keys/k2048/versions?api-version=7.5"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(versions["value"].as_array().unwrap().len(), 2);

    // Wrap/unwrap with each algorithm, against latest and a pinned version.
    let cek = [7u8; 32];
    for alg in ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"] {
        let (kid, wrapped) = c
            .wrap_key(&format!("{base}/keys/k2048"), alg, &cek)
            .await
            .unwrap();
        assert_eq!(kid, v2.kid);
        assert_eq!(wrapped.len(), 256);
        let (_, plain) = c.unwrap_key(&kid, alg, &wrapped).await.unwrap();
        assert_eq!(&plain[..], &cek);
    }
    let (_, w_old) = c.wrap_key(&v1.kid, "RSA-OAEP-256", &cek).await.unwrap();
    assert_eq!(
        &c.unwrap_key(&v1.kid, "RSA-OAEP-256", &w_old)
            .await
            .unwrap()
            .1[..],
        &cek
    );
    let e = c
        .unwrap_key(&v2.kid, "RSA-OAEP-256", &w_old)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::BadRequest { .. }), "{e:?}");
    // Sign / verify (digest in), encrypt / decrypt.
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"hello");
    let b64 = |b: &[u8]| keyvault::jwk::b64u(b);
    for alg in ["RS256", "PS256"] {
        let sig = c
            .key_operation(
                &v2.kid,
                "sign",
                &json!({"alg": alg, "value": b64(digest.as_ref())}),
            )
            .await
            .unwrap();
        let ok = c
            .key_operation(
                &v2.kid,
                "verify",
                &json!({"alg": alg, "digest": b64(digest.as_ref()), "value": sig["value"]}),
            )
            .await
            .unwrap();
        assert_eq!(ok["value"], true);
    }
    let ct = c
        .key_operation(
            &v2.kid,
            "encrypt",
            &json!({"alg": "RSA-OAEP-256", "value": b64(b"msg")}),
        )
        .await
        .unwrap();
    let pt = c
        .key_operation(
            &v2.kid,
            "decrypt",
            &json!({"alg": "RSA-OAEP-256", "value": ct["value"]}),
        )
        .await
        .unwrap();
    assert_eq!(pt["value"], b64(b"msg"));

    // key_ops enforcement.
    c.update_key(
        &v2.kid,
        &UpdateKeyOptions {
            key_ops: Some(vec!["unwrapKey".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let e = c.wrap_key(&v2.kid, "RSA-OAEP-256", &cek).await.unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Forbidden {
                kind: ForbiddenKind::KeyOperation,
                ..
            }
        ),
        "{e:?}"
    );
    c.update_key(
        &v2.kid,
        &UpdateKeyOptions {
            key_ops: Some(vec!["wrapKey".into(), "unwrapKey".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Disabled: everything is 403 KeyDisabled, re-enable restores.
    let (_, wrapped) = c.wrap_key(&v2.kid, "RSA-OAEP-256", &cek).await.unwrap();
    let upd = c
        .update_key(
            &v2.kid,
            &UpdateKeyOptions {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!upd.enabled);
    assert!(upd.updated >= upd.created);
    for e in [
        c.get_key(&v2.kid).await.unwrap_err(),
        c.wrap_key(&v2.kid, "RSA-OAEP-256", &cek).await.unwrap_err(),
        c.unwrap_key(&v2.kid, "RSA-OAEP-256", &wrapped)
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        match e {
            ClientError::KeyDisabled { message } => assert!(
                message.contains("is not allowed on a disabled key."),
                "{message}"
            ),
            other => panic!("expected KeyDisabled, got {other:?}"),
        }
    }
    c.update_key(
        &v2.kid,
        &UpdateKeyOptions {
            enabled: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // nbf in the future / exp in the past: wrap refused, unwrap still works.
    let now = keyvault::clock::Clock::wall();
    for opts in [
        UpdateKeyOptions {
            nbf: Some(now + 3600),
            ..Default::default()
        },
        UpdateKeyOptions {
            nbf: Some(now - 7200),
            exp: Some(now - 3600),
            ..Default::default()
        },
    ] {
        c.update_key(&v2.kid, &opts).await.unwrap();
        let e = c.wrap_key(&v2.kid, "RSA-OAEP-256", &cek).await.unwrap_err();
        assert!(
            matches!(
                e,
                ClientError::Forbidden {
                    kind: ForbiddenKind::KeyNotYetValid | ForbiddenKind::KeyExpired,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            &c.unwrap_key(&v2.kid, "RSA-OAEP-256", &wrapped)
                .await
                .unwrap()
                .1[..],
            &cek
        );
    }

    // Soft delete -> deleted bundle -> name conflict -> recover -> delete -> purge.
    let del = c.delete_key(base, "k3072").await.unwrap();
    assert_eq!(del["recoveryId"], format!("{base}/deletedkeys/k3072"));
    let (dd, sp) = (
        del["deletedDate"].as_i64().unwrap(),
        del["scheduledPurgeDate"].as_i64().unwrap(),
    );
    assert_eq!(sp - dd, 90 * 86_400);
    let e = c.get_key(&format!("{base}/keys/k3072")).await.unwrap_err();
    assert!(matches!(e, ClientError::KeyNotFound { .. }));
    assert_eq!(
        c.get_deleted_key(base, "k3072").await.unwrap()["key"]["kty"],
        "RSA-HSM"
    );
    let e = c
        .create_key(base, "k3072", &CreateKeyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Conflict { code, .. } if code == "ObjectIsDeletedButRecoverable"),
        "{e:?}"
    );
    let rec = c.recover_deleted_key(base, "k3072").await.unwrap();
    assert_eq!(rec.key_size(), 3072);
    let e = c.recover_deleted_key(base, "k3072").await.unwrap_err();
    assert!(matches!(e, ClientError::KeyNotFound { .. }));
    c.delete_key(base, "k3072").await.unwrap();
    c.purge_deleted_key(base, "k3072").await.unwrap();
    let e = c.get_deleted_key(base, "k3072").await.unwrap_err();
    assert!(matches!(e, ClientError::KeyNotFound { .. }));
    c.create_key(base, "k3072", &CreateKeyOptions::default())
        .await
        .unwrap();

    // A Crypto User cannot create or delete, but can wrap.
    let user = env.principal("crypto-user").await;
    env.assign(&vault, ROLE_KV_CRYPTO_USER, &user.object_id)
        .await;
    let u = env.client(&user);
    u.wrap_key(&format!("{base}/keys/k4096"), "RSA-OAEP-256", &cek)
        .await
        .unwrap();
    let e = u
        .create_key(base, "nope", &CreateKeyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Forbidden {
                kind: ForbiddenKind::Rbac,
                ..
            }
        ),
        "{e:?}"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_jwk_and_byok() {
    let env = Env::start().await;
    let mut spec = env.spec();
    spec.sku = "premium".into();
    let vault = env.create_vault("kv-import", &spec).await;
    let officer = env.principal("officer").await;
    env.assign(&vault, ROLE_KV_CRYPTO_OFFICER, &officer.object_id)
        .await;
    let c = env.client(&officer);
    let base = vault.base();
    let tok = env.token(&officer, "https://vault.azure.net").await;
    let b64 = keyvault::jwk::b64u;

    // Plain JWK import.
    let local = keyvault::crypto::generate_rsa(2048).unwrap();
    let comp = keyvault::crypto::rsa_components(&local).unwrap();
    let body = json!({"key": {"kty": "RSA", "n": b64(&comp.n), "e": b64(&comp.e), "d": b64(&comp.d),
        "p": b64(&comp.p), "q": b64(&comp.q), "dp": b64(&comp.dp), "dq": b64(&comp.dq), "qi": b64(&comp.qi)},
        "tags": {"purpose": "import"}});
    let resp = env
        .http
        .put(format!("{base}/keys/imported?api-version=7.4"))
        .bearer_auth(&tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["key"]["n"], b64(&comp.n));
    assert!(v["key"].get("d").is_none());
    assert_eq!(v["tags"]["purpose"], "import");
    assert_eq!(v["key"]["key_ops"].as_array().unwrap().len(), 6);
    // The vault unwraps what we wrap locally with the public key.
    let local_key = keyvault::crypto::LoadedKey::from_pkcs8(&local).unwrap();
    let ct = local_key
        .encrypt(keyvault::crypto::EncAlg::RsaOaep256, b"abc")
        .unwrap();
    let (_, pt) = c
        .unwrap_key(&format!("{base}/keys/imported"), "RSA-OAEP-256", &ct)
        .await
        .unwrap();
    assert_eq!(&pt[..], b"abc");

    // BYOK: key-exchange key (RSA-HSM, key_ops import), transfer blob in key_hsm.
    let kek = c
        .create_key(
            base,
            "kek",
            &keyvault::client::CreateKeyOptions {
                kty: "RSA-HSM".into(),
                key_ops: Some(vec!["import".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let e = c
        .wrap_key(&kek.kid, "RSA-OAEP-256", b"x")
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Forbidden { .. }));
    let target = keyvault::crypto::generate_rsa(3072).unwrap();
    let ciphertext = keyvault::crypto::byok_wrap(&kek.n, &kek.e, &target).unwrap();
    let blob = json!({"schema_version": "1.0.0", "header": {"kid": kek.kid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
        "ciphertext": b64(&ciphertext), "generator": "strongroom test"});
    let body = json!({"key": {"kty": "RSA-HSM", "key_ops": ["wrapKey", "unwrapKey"], "key_hsm": b64(blob.to_string().as_bytes())}});
    let resp = env
        .http
        .put(format!("{base}/keys/byok?api-version=7.5"))
        .bearer_auth(&tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let target_key = keyvault::crypto::LoadedKey::from_pkcs8(&target).unwrap();
    let ct = target_key
        .encrypt(keyvault::crypto::EncAlg::RsaOaep256, b"byok")
        .unwrap();
    let (kid, pt) = c
        .unwrap_key(&format!("{base}/keys/byok"), "RSA-OAEP-256", &ct)
        .await
        .unwrap();
    assert_eq!(&pt[..], b"byok");
    assert_eq!(c.get_key(&kid).await.unwrap().kty, "RSA-HSM");
    // A tampered blob is refused.
    let mut bad = ciphertext.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let blob = json!({"schema_version": "1.0.0", "header": {"kid": kek.kid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"}, "ciphertext": b64(&bad)});
    let body = json!({"key": {"kty": "RSA-HSM", "key_hsm": b64(blob.to_string().as_bytes())}});
    let resp = env
        .http
        .put(format!("{base}/keys/byok2?api-version=7.5"))
        .bearer_auth(&tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    env.shutdown().await;
}
