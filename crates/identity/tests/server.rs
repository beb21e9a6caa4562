//! Server lifecycle and verifier edge cases: graceful shutdown, concurrent writers,
//! foreign tokens, an unreachable identity service.

mod common;

use std::time::Duration;

use common::{Harness, RG, SUB, VAULT};
use identity::TokenError;
use identity::client::{AdminClient, client_credentials_token};

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_promptly_and_stops_listening() {
    let h = Harness::start().await;
    let base = h.base();
    // Leaves a pooled keep-alive connection open.
    let resp = h
        .http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(4), h.server.shutdown())
        .await
        .expect("shutdown must not wait for idle connections");
    assert!(started.elapsed() < Duration::from_secs(4));
    let fresh =
        platform::https_client(&h.tls.ca_pem, None, platform::ClientOptions::default()).unwrap();
    assert!(
        fresh
            .get(format!("{base}/.well-known/jwks.json"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn concurrent_writers_all_persist() {
    let h = Harness::start().await;
    let admin = std::sync::Arc::new(h.admin);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let admin = admin.clone();
        tasks.push(tokio::spawn(async move {
            admin
                .create_managed_identity(SUB, RG, &format!("id-{i}"), "westeurope")
                .await
                .unwrap()
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        created.push(t.await.unwrap());
    }
    let admin = std::sync::Arc::try_unwrap(admin).unwrap();
    let h = Harness { admin, ..h }.restart().await;
    for mi in created {
        let got = h
            .admin
            .get_managed_identity(SUB, RG, &mi.name)
            .await
            .unwrap();
        assert_eq!(got, Some(mi));
    }
    h.server.shutdown().await;
}

#[tokio::test]
async fn tokens_from_another_identity_service_are_rejected() {
    let ours = Harness::start().await;
    let theirs = Harness::start().await;
    let c = &theirs.admin_creds;
    let foreign = client_credentials_token(
        &theirs.http,
        &theirs.base(),
        &c.tenant_id,
        &c.client_id,
        &c.client_secret,
        "https://vault.azure.net/.default",
    )
    .await
    .unwrap();
    let err = ours
        .verifier(&[VAULT])
        .verify(&foreign.token)
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::UnknownKey(_)), "{err:?}");
    // Their own verifier accepts it.
    theirs
        .verifier(&[VAULT])
        .verify(&foreign.token)
        .await
        .unwrap();
    ours.server.shutdown().await;
    theirs.server.shutdown().await;
}

#[tokio::test]
async fn verifier_fails_closed_when_the_identity_service_is_unreachable() {
    let h = Harness::start().await;
    let c = &h.admin_creds;
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
    let verifier = h.verifier(&[VAULT]).with_liveness_ttl(Duration::ZERO);
    verifier.verify(&t.token).await.unwrap();
    h.server.shutdown().await;
    // Keys are cached, but liveness cannot be confirmed: refuse.
    let err = verifier.verify(&t.token).await.unwrap_err();
    assert!(matches!(err, TokenError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn public_url_sets_the_issuer_and_token_lifetime_is_configurable() {
    let tls = common::tls();
    let data = tempfile::tempdir().unwrap();
    // Bind first to learn a free port, then advertise it under the name "localhost".
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let mut cfg = common::config(&tls, data.path(), addr);
    cfg.public_url = Some(format!("https://localhost:{}/", addr.port()));
    cfg.token_lifetime = Duration::from_secs(600);
    let server = identity::Server::start(cfg).await.unwrap();
    let base = format!("https://localhost:{}", addr.port());
    assert_eq!(server.base_url(), base);
    let creds = server.bootstrap().unwrap().admin.unwrap();
    let admin = AdminClient::new(&base, &tls.ca_pem, &creds).unwrap();
    let t = admin
        .token("https://vault.azure.net/.default")
        .await
        .unwrap();
    let v = identity::verify::Verifier::new(&base, &tls.ca_pem, vec![VAULT.into()]).unwrap();
    let claims = v.verify(&t.token).await.unwrap();
    assert_eq!(claims.iss, format!("{base}/{}/v2.0", creds.tenant_id));
    assert_eq!(claims.exp - claims.iat, 600);
    server.shutdown().await;
}

#[tokio::test]
async fn http2_is_negotiated_via_alpn() {
    let h = Harness::start().await;
    let mut cfg = (*pki::client_config(&h.tls.ca_pem).unwrap()).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let client =
        platform::https_client_with(std::sync::Arc::new(cfg), platform::ClientOptions::default())
            .unwrap();
    let c = &h.admin_creds;
    let t = client_credentials_token(
        &client,
        &h.base(),
        &c.tenant_id,
        &c.client_id,
        &c.client_secret,
        "https://vault.azure.net/.default",
    )
    .await
    .unwrap();
    let resp = client
        .get(format!("{}/.well-known/jwks.json", h.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    h.verifier(&[VAULT]).verify(&t.token).await.unwrap();
    h.server.shutdown().await;
}
