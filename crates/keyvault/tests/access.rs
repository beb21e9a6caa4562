//! Authentication (401 challenge, audience, tenant), RBAC and access policies, network rules
//! with the trusted-service bypass, and the dev controls — over real HTTPS.

mod common;

use common::*;
use keyvault::authz::{ROLE_KV_CRYPTO_OFFICER, ROLE_KV_CRYPTO_SERVICE_ENCRYPTION_USER};
use keyvault::client::{
    ClientError, CreateKeyOptions, ForbiddenKind, KeyVaultClient, NetworkRules, StaticToken,
};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenge_audience_tenant_and_api_version() {
    let env = Env::start().await;
    let vault = env.create_vault("kv-auth", &env.spec()).await;
    let base = vault.base();

    // Bodiless unauthenticated POST -> 401 with the challenge, before any body validation.
    let r = env
        .http
        .post(format!("{base}/keys/k/create?api-version=7.5"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let ch = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ch,
        format!(
            "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
            env.id_base, env.tenant
        )
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Unauthorized");
    assert_eq!(
        body["error"]["message"],
        "AKV10000: Request is missing a Bearer or PoP token."
    );

    // Management-audience token on the data plane -> 401 AKV10022.
    let mgmt_tok = env
        .token(&env.admin_creds, "https://management.azure.com/")
        .await;
    let r = env
        .http
        .get(format!("{base}/keys?api-version=7.5"))
        .bearer_auth(&mgmt_tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("AKV10022"),
        "{body}"
    );

    // A token from another tenant -> 401 AKV10032 with the vault tenant's challenge.
    let (_, other_admin) = env
        .identity
        .as_ref()
        .unwrap()
        .service()
        .create_tenant("other")
        .unwrap();
    let other_tok = env.token(&other_admin, "https://vault.azure.net").await;
    let r = env
        .http
        .get(format!("{base}/keys?api-version=7.5"))
        .bearer_auth(&other_tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(&env.tenant)
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("AKV10032"),
        "{body}"
    );

    // Garbage token -> 401; unsupported/missing api-version -> 400 BadParameter.
    let r = env
        .http
        .get(format!("{base}/keys?api-version=7.5"))
        .bearer_auth("abc.def.ghi")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let tok = env.token(&env.admin_creds, "https://vault.azure.net").await;
    let r = env
        .http
        .get(format!("{base}/keys?api-version=1.0"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BadParameter");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("The specified version (1.0) is not recognized")
    );
    let r = env
        .http
        .get(format!("{base}/keys"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Management plane: vault token refused, no token refused.
    let r = env.http.get(format!("{}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-auth?api-version=2025-05-01", env.mgmt())).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = env.http.get(format!("{}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-auth", env.mgmt())).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A non-admin principal cannot manage a vault it did not create, nor use dev controls.
    let stranger = env.principal("stranger").await;
    let sc = env.client(&stranger);
    let e = sc
        .get_vault(&env.mgmt(), SUB, RG, "kv-auth")
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Forbidden { .. }), "{e:?}");
    let e = sc.dev_shift_clock(&env.mgmt(), None, 10).await.unwrap_err();
    assert!(matches!(e, ClientError::Forbidden { .. }), "{e:?}");
    // ... but can create its own vault and manage that one.
    let own = sc
        .create_vault(&env.mgmt(), SUB, RG, "kv-own", &env.spec())
        .await
        .unwrap();
    sc.get_vault(&env.mgmt(), SUB, RG, "kv-own").await.unwrap();
    assert_ne!(own.vault_uri, vault.vault_uri);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_roles_access_policies_and_deleted_principals() {
    let env = Env::start().await;
    let vault = env.create_vault("kv-rbac", &env.spec()).await;
    let base = vault.base();
    let officer = env.principal("officer").await;
    env.assign(&vault, ROLE_KV_CRYPTO_OFFICER, &officer.object_id)
        .await;
    let oc = env.client(&officer);
    let key = oc
        .create_key(base, "cmk", &CreateKeyOptions::default())
        .await
        .unwrap();

    // No role -> 403 ForbiddenByRbac naming action and resource.
    let nobody = env.principal("nobody").await;
    let e = env.client(&nobody).get_key(&key.kid).await.unwrap_err();
    match &e {
        ClientError::Forbidden {
            kind: ForbiddenKind::Rbac,
            message,
        } => {
            assert!(
                message.contains("Microsoft.KeyVault/vaults/keys/read"),
                "{message}"
            );
            assert!(message.contains(&nobody.object_id));
        }
        other => panic!("{other:?}"),
    }

    // Crypto Service Encryption User: get/wrap/unwrap (and list), nothing else.
    let svc = env.principal("cmk-user").await;
    env.assign(
        &vault,
        ROLE_KV_CRYPTO_SERVICE_ENCRYPTION_USER,
        &svc.object_id,
    )
    .await;
    let sc = env.client(&svc);
    sc.get_key(&format!("{base}/keys/cmk")).await.unwrap();
    let (kid, w) = sc
        .wrap_key(&format!("{base}/keys/cmk"), "RSA-OAEP-256", &[1u8; 32])
        .await
        .unwrap();
    assert_eq!(
        &sc.unwrap_key(&kid, "RSA-OAEP-256", &w).await.unwrap().1[..],
        &[1u8; 32]
    );
    sc.list_keys(base).await.unwrap();
    for e in [
        sc.create_key(base, "x", &CreateKeyOptions::default())
            .await
            .map(|_| ())
            .unwrap_err(),
        sc.delete_key(base, "cmk").await.map(|_| ()).unwrap_err(),
        sc.rotate_key(base, "cmk").await.map(|_| ()).unwrap_err(),
        sc.get_rotation_policy(base, "cmk")
            .await
            .map(|_| ())
            .unwrap_err(),
        sc.backup_key(base, "cmk").await.map(|_| ()).unwrap_err(),
        sc.key_operation(
            &kid,
            "sign",
            &serde_json::json!({"alg": "RS256", "value": keyvault::jwk::b64u(&[0u8; 32])}),
        )
        .await
        .map(|_| ())
        .unwrap_err(),
    ] {
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
    }

    // Removing the role assignment revokes access.
    let ra = env
        .admin_kv()
        .assign_role(
            &env.mgmt(),
            &vault.id,
            ROLE_KV_CRYPTO_SERVICE_ENCRYPTION_USER,
            &nobody.object_id,
        )
        .await
        .unwrap();
    env.client(&nobody).get_key(&key.kid).await.unwrap();
    env.admin_kv()
        .delete_role_assignment(&env.mgmt(), &vault.id, &ra)
        .await
        .unwrap();
    assert!(
        env.client(&nobody)
            .get_key(&key.kid)
            .await
            .unwrap_err()
            .is_access_denied()
    );

    // A deleted principal's still-unexpired token stops working (liveness).
    let doomed = env.principal("doomed").await;
    env.assign(
        &vault,
        ROLE_KV_CRYPTO_SERVICE_ENCRYPTION_USER,
        &doomed.object_id,
    )
    .await;
    let dc = env.client(&doomed);
    dc.get_key(&key.kid).await.unwrap();
    assert!(
        env.admin
            .delete_service_principal(&doomed.client_id)
            .await
            .unwrap()
    );
    wait_until(5, || async { dc.get_key(&key.kid).await.is_err() }).await;
    let e = dc.get_key(&key.kid).await.unwrap_err();
    assert!(e.is_access_denied(), "{e:?}");

    // Access-policy vault: permissions are per principal, per operation.
    let mut spec = env.spec();
    spec.rbac = false;
    spec.access_policies = vec![(
        officer.object_id.clone(),
        vec!["create".into(), "get".into(), "wrapKey".into()],
    )];
    let ap_vault = env.create_vault("kv-policy", &spec).await;
    let ab = ap_vault.base();
    let k = oc
        .create_key(ab, "k", &CreateKeyOptions::default())
        .await
        .unwrap();
    let (_, w) = oc
        .wrap_key(&k.kid, "RSA-OAEP-256", &[2u8; 32])
        .await
        .unwrap();
    let e = oc
        .unwrap_key(&k.kid, "RSA-OAEP-256", &w)
        .await
        .map(|_| ())
        .unwrap_err();
    match &e {
        ClientError::Forbidden {
            kind: ForbiddenKind::Policy,
            message,
        } => {
            assert!(message.contains("does not have keys unwrapKey permission on key vault 'kv-policy;location=local'"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    env.admin_kv()
        .add_access_policy(
            &env.mgmt(),
            SUB,
            RG,
            "kv-policy",
            &keyvault::client::AccessPolicyEntry {
                tenant_id: env.tenant.clone(),
                object_id: officer.object_id.clone(),
                keys: vec!["unwrapKey".into()],
            },
        )
        .await
        .unwrap();
    oc.unwrap_key(&k.kid, "RSA-OAEP-256", &w).await.unwrap();
    // RBAC assignments do not apply to an access-policy vault.
    env.assign(&ap_vault, ROLE_KV_CRYPTO_OFFICER, &nobody.object_id)
        .await;
    assert!(matches!(
        env.client(&nobody).get_key(&k.kid).await.unwrap_err(),
        ClientError::Forbidden {
            kind: ForbiddenKind::Policy,
            ..
        }
    ));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_rules_trusted_services_and_dev_controls() {
    let env = Env::start().await;
    let vault = env.create_vault("kv-net", &env.spec()).await;
    let base = vault.base().to_string();
    let admin = env.admin_kv();
    let mgmt = env.mgmt();
    // The bootstrap admin is Key Vault Administrator of this vault; the control plane too.
    env.assign(
        &vault,
        keyvault::authz::ROLE_KV_ADMINISTRATOR,
        &env.admin_creds.object_id,
    )
    .await;
    env.assign(
        &vault,
        ROLE_KV_CRYPTO_SERVICE_ENCRYPTION_USER,
        &env.control_creds.object_id,
    )
    .await;
    let key = admin
        .create_key(&base, "k", &CreateKeyOptions::default())
        .await
        .unwrap();

    // Trusted service by mTLS certificate (URI SAN) with a plain (non-trusted) principal.
    let plain = env.principal("plain").await;
    env.assign(
        &vault,
        ROLE_KV_CRYPTO_SERVICE_ENCRYPTION_USER,
        &plain.object_id,
    )
    .await;
    let cert = env
        .ca
        .issue_client("control-plane", Some(pki::TRUSTED_SERVICE_URI))
        .unwrap();
    let mtls = KeyVaultClient::with_client_cert(
        &env.ca_pem,
        &cert.cert_pem,
        &cert.key_pem,
        env.tokens(&plain),
    )
    .unwrap();
    let untrusted_cert = env.ca.issue_client("someone", None).unwrap();
    let mtls_plain = KeyVaultClient::with_client_cert(
        &env.ca_pem,
        &untrusted_cert.cert_pem,
        &untrusted_cert.key_pem,
        env.tokens(&plain),
    )
    .unwrap();
    let plain_c = env.client(&plain);
    // A token that claims trusted-service status (`xms_trusted_svc`), without the
    // certificate: the claim must not open the firewall.
    let control = env.client(&env.control_creds);

    // Deny by default, no rules: firewall.
    let deny = NetworkRules {
        default_action: "Deny".into(),
        ..Default::default()
    };
    admin
        .set_network_rules(&mgmt, SUB, RG, "kv-net", &deny)
        .await
        .unwrap();
    let e = plain_c.get_key(&key.kid).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Forbidden { kind: ForbiddenKind::Firewall, message } if message.contains("Client address is not authorized and caller is not a trusted service")),
        "{e:?}"
    );
    assert!(
        mtls_plain
            .get_key(&key.kid)
            .await
            .unwrap_err()
            .is_firewall()
    );
    mtls.get_key(&key.kid).await.unwrap();
    let e = control.get_key(&key.kid).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Forbidden { kind: ForbiddenKind::Firewall, message } if message.contains("caller is not a trusted service")),
        "a trusted-service token claim without the client certificate must be denied: {e:?}"
    );
    // Bypass None: even trusted services are refused.
    let deny_none = NetworkRules {
        default_action: "Deny".into(),
        bypass: "None".into(),
        ..Default::default()
    };
    admin
        .set_network_rules(&mgmt, SUB, RG, "kv-net", &deny_none)
        .await
        .unwrap();
    assert!(mtls.get_key(&key.kid).await.unwrap_err().is_firewall());
    assert!(control.get_key(&key.kid).await.unwrap_err().is_firewall());
    // An ip rule for loopback lets everyone through.
    let allow_ip = NetworkRules {
        default_action: "Deny".into(),
        bypass: "None".into(),
        ip_rules: vec!["127.0.0.0/8".into()],
        ..Default::default()
    };
    let v = admin
        .set_network_rules(&mgmt, SUB, RG, "kv-net", &allow_ip)
        .await
        .unwrap();
    assert_eq!(
        v.raw["properties"]["networkAcls"]["ipRules"][0]["value"],
        "127.0.0.0/8"
    );
    plain_c.get_key(&key.kid).await.unwrap();
    // Public network access disabled: only trusted services (bypass AzureServices).
    let private = NetworkRules {
        public_network_access: "Disabled".into(),
        ..Default::default()
    };
    admin
        .set_network_rules(&mgmt, SUB, RG, "kv-net", &private)
        .await
        .unwrap();
    let e = plain_c.get_key(&key.kid).await.unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Forbidden {
                kind: ForbiddenKind::Connection,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_firewall());
    let e = control.get_key(&key.kid).await.unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Forbidden {
                kind: ForbiddenKind::Connection,
                ..
            }
        ),
        "{e:?}"
    );
    mtls.get_key(&key.kid).await.unwrap();
    admin
        .set_network_rules(&mgmt, SUB, RG, "kv-net", &NetworkRules::default())
        .await
        .unwrap();
    plain_c.get_key(&key.kid).await.unwrap();

    // Dev control: forced firewall deny, regardless of rules and trust.
    admin
        .dev_set_firewall_deny(&mgmt, "kv-net", true)
        .await
        .unwrap();
    assert!(control.get_key(&key.kid).await.unwrap_err().is_firewall());
    admin
        .dev_set_firewall_deny(&mgmt, "kv-net", false)
        .await
        .unwrap();
    control.get_key(&key.kid).await.unwrap();

    // Dev control: unreachable closes the listener (also for kept-alive connections).
    admin
        .dev_set_unreachable(&mgmt, "kv-net", true)
        .await
        .unwrap();
    wait_until(5, || async {
        matches!(
            plain_c.get_key(&key.kid).await,
            Err(ClientError::Unreachable(_))
        )
    })
    .await;
    let fresh = env.client(&plain);
    assert!(matches!(
        fresh.get_key(&key.kid).await.unwrap_err(),
        ClientError::Unreachable(_)
    ));
    admin
        .dev_set_unreachable(&mgmt, "kv-net", false)
        .await
        .unwrap();
    plain_c.get_key(&key.kid).await.unwrap();

    // A client with a bogus static token gets 401, classified.
    let bogus = KeyVaultClient::new(&env.ca_pem, Arc::new(StaticToken("x.y.z".into()))).unwrap();
    assert!(matches!(
        bogus.get_key(&key.kid).await.unwrap_err(),
        ClientError::Unauthorized { .. }
    ));
    env.shutdown().await;
}
