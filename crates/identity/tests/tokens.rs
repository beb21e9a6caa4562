//! Client credentials, OIDC discovery and JWKS against the real server over HTTPS.

mod common;

use std::collections::HashMap;

use common::{Harness, VAULT, payload};
use identity::client::client_credentials_token;
use identity::crypto::signing::{Jwks, jwk_public_point};
use identity::token::{Expectations, validate};
use serde_json::Value;

#[tokio::test]
async fn client_credentials_token_verifies_against_published_jwks_with_correct_claims() {
    let h = Harness::start().await;
    let base = h.base();
    let tenant = &h.admin_creds.tenant_id;

    // OIDC discovery as MSAL fetches it.
    let oidc: Value = h
        .http
        .get(format!(
            "{base}/{tenant}/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oidc["issuer"], format!("{base}/{tenant}/v2.0"));
    assert_eq!(
        oidc["token_endpoint"],
        format!("{base}/{tenant}/oauth2/v2.0/token")
    );
    assert!(
        oidc["authorization_endpoint"]
            .as_str()
            .unwrap()
            .starts_with(&base)
    );
    let jwks_uri = oidc["jwks_uri"].as_str().unwrap().to_string();

    let t = client_credentials_token(
        &h.http,
        &base,
        tenant,
        &h.admin_creds.client_id,
        &h.admin_creds.client_secret,
        "https://vault.azure.net/.default",
    )
    .await
    .unwrap();

    // Both JWKS locations serve the same key; the token verifies with it.
    for url in [jwks_uri, format!("{base}/.well-known/jwks.json")] {
        let jwks: Jwks = h.http.get(&url).send().await.unwrap().json().await.unwrap();
        let keys: HashMap<String, Vec<u8>> = jwks
            .keys
            .iter()
            .map(|k| (k.kid.clone(), jwk_public_point(k).unwrap()))
            .collect();
        let auds = vec![VAULT.to_string()];
        let expect = Expectations {
            issuer_base: &base,
            audiences: &auds,
            now: identity::token::unix_now(),
        };
        let claims = validate(&t.token, &keys, &expect).unwrap();
        assert_eq!(claims.aud, VAULT);
        assert_eq!(claims.tid, *tenant);
        assert_eq!(claims.oid, h.admin_creds.object_id);
        assert_eq!(claims.sub, claims.oid);
        assert_eq!(claims.appid, h.admin_creds.client_id);
        assert_eq!(claims.azp, claims.appid);
        assert_eq!(claims.idtyp, "app");
        assert_eq!(claims.ver, "2.0");
        assert_eq!(claims.iss, format!("{base}/{tenant}/v2.0"));
        assert_eq!(claims.exp - claims.iat, 3600);
        assert!(claims.nbf <= identity::token::unix_now());
        assert!(claims.xms_mirid.is_none());
        assert!(!claims.xms_trusted_svc);
    }
    let raw = payload(&t.token);
    assert!(
        raw.get("xms_trusted_svc").is_none(),
        "absent for ordinary principals"
    );
    assert!(!raw["uti"].as_str().unwrap().is_empty());

    // The HTTP verifier accepts it too.
    let claims = h.verifier(&[VAULT]).verify(&t.token).await.unwrap();
    assert_eq!(claims.oid, h.admin_creds.object_id);
    // ... but not for another audience.
    let other = h.verifier(&["https://storage.azure.com"]);
    assert!(matches!(
        other.verify(&t.token).await,
        Err(identity::TokenError::Audience(_))
    ));
    h.server.shutdown().await;
}

#[tokio::test]
async fn trusted_service_principal_tokens_carry_the_trusted_claim() {
    let h = Harness::start().await;
    let c = &h.control_creds;
    let t = client_credentials_token(
        &h.http,
        &h.base(),
        &c.tenant_id,
        &c.client_id,
        &c.client_secret,
        "https://vault.azure.net/.default",
    )
    .await
    .unwrap();
    let claims = h.verifier(&[VAULT]).verify(&t.token).await.unwrap();
    assert!(claims.xms_trusted_svc);
    assert_eq!(payload(&t.token)["xms_trusted_svc"], Value::Bool(true));
    h.server.shutdown().await;
}

async fn post_form(h: &Harness, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = h
        .http
        .post(format!("{}/{tenant}/oauth2/v2.0/token", h.base()))
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn token_endpoint_errors_use_entra_shapes() {
    let h = Harness::start().await;
    let c = &h.admin_creds;
    let tenant = c.tenant_id.as_str();
    let good = [
        ("grant_type", "client_credentials"),
        ("client_id", c.client_id.as_str()),
        ("client_secret", c.client_secret.as_str()),
        ("scope", "https://vault.azure.net/.default"),
    ];
    let (status, body) = post_form(&h, tenant, &good).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["ext_expires_in"], 3600);

    // Wrong secret.
    let mut bad = good;
    bad[2].1 = "not-the-secret";
    let (status, body) = post_form(&h, tenant, &bad).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215")
    );
    assert_eq!(body["error_codes"][0], 7000215);

    // Unknown client.
    let mut unknown = good;
    unknown[1].1 = "11111111-1111-1111-1111-111111111111";
    let (status, body) = post_form(&h, tenant, &unknown).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unauthorized_client");

    // Unknown tenant.
    let (status, body) = post_form(&h, "22222222-2222-2222-2222-222222222222", &good).await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS90002")
    );

    // Scope without /.default.
    let mut scope = good;
    scope[3].1 = "https://vault.azure.net";
    let (status, body) = post_form(&h, tenant, &scope).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_scope");

    // Unsupported grant.
    let mut grant = good;
    grant[0].1 = "password";
    let (status, body) = post_form(&h, tenant, &grant).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unsupported_grant_type");

    // v1 style resource= parameter: aud is the resource verbatim.
    let v1 = [
        good[0],
        good[1],
        good[2],
        ("resource", "https://management.azure.com/"),
    ];
    let (status, body) = post_form(&h, tenant, &v1).await;
    assert_eq!(status, 200, "{body}");
    let aud = payload(body["access_token"].as_str().unwrap())["aud"].clone();
    assert_eq!(aud, "https://management.azure.com/");

    // OIDC discovery for an unknown tenant fails like Entra (4xx).
    let resp = h
        .http
        .get(format!(
            "{}/33333333-3333-3333-3333-333333333333/v2.0/.well-known/openid-configuration",
            h.base()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    h.server.shutdown().await;
}

#[tokio::test]
async fn client_secret_basic_authentication_is_accepted() {
    let h = Harness::start().await;
    let c = &h.admin_creds;
    let resp = h
        .http
        .post(format!("{}/{}/oauth2/v2.0/token", h.base(), c.tenant_id))
        .basic_auth(&c.client_id, Some(c.client_secret.as_str()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = h
        .http
        .post(format!("{}/{}/oauth2/v2.0/token", h.base(), c.tenant_id))
        .basic_auth(&c.client_id, Some("wrong"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    h.server.shutdown().await;
}
