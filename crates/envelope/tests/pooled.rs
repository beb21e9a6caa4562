//! Revalidation against a real identity service and a real key vault, with the one
//! pooled HTTP client the control plane uses: connections stay open between passes (no
//! TLS handshake per revalidation), yet every pass is authorised by the vault on its
//! own — a removed role, a disabled key and a deleted principal each take effect on the
//! very next pass even though the client reuses the connection and caches its token.

use std::sync::Arc;
use std::time::Duration;

use envelope::{AzureKeyVault, Envelope, KeyUrl, Reason, WrappedKeyStore};
use keyvault::client::{
    ClientError, CreateKeyOptions, KeyVaultClient, TokenProvider, UpdateKeyOptions, VaultSpec,
};
use platform::token::ClientSecretTokens;

const SUB: &str = "00000000-0000-0000-0000-0000000000ee";
/// Built-in role "Key Vault Crypto Service Encryption User" (get, wrapKey, unwrapKey).
const CSEU: &str = "e147488a-f6f5-4113-8e2d-b22465e65bf6";
/// Built-in role "Key Vault Administrator" (for the test's own key management).
const KV_ADMINISTRATOR: &str = "00482a5a-887f-4fb3-b363-3b7fe8e74483";

/// The administrator's tokens for the vault's management and data planes.
struct AdminTokens {
    http: reqwest::Client,
    base: String,
    creds: identity::Credentials,
}

#[async_trait::async_trait]
impl TokenProvider for AdminTokens {
    async fn token(&self, resource: &str) -> Result<String, ClientError> {
        let scope = format!("{}/.default", resource.trim_end_matches('/'));
        identity::client::client_credentials_token(
            &self.http,
            &self.base,
            &self.creds.tenant_id,
            &self.creds.client_id,
            &self.creds.client_secret,
            &scope,
        )
        .await
        .map(|t| t.token.to_string())
        .map_err(|e| ClientError::Token(e.to_string()))
    }
}

/// Client-side TCP connections from this process to `port` (from /proc/net/tcp: the
/// remote port of an established socket).
fn connections_to(port: u16) -> usize {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 3
                && f[3] == "01"
                && f[2]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
        .count()
}

fn port_of(url: &str) -> u16 {
    url.trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("URL with a port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pass_is_authorised_on_a_pooled_connection() {
    let root = tempfile::tempdir().unwrap();
    let ca = pki::DevCa::load_or_create(&root.path().join("ca")).unwrap();
    let ca_pem = ca.ca_pem().to_string();
    let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    let identity = identity::Server::start(identity::Config {
        data_dir: root.path().join("identity"),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: pki::server_config(&server, None).unwrap(),
        public_url: None,
        token_lifetime: Duration::from_secs(3600),
    })
    .await
    .unwrap();
    let boot = identity.bootstrap().unwrap();
    let admin_creds = boot.admin.clone().unwrap();
    let id_base = identity.base_url();
    let mut kv_cfg = keyvault::Config::new(
        root.path().join("kv"),
        root.path().join("kv-audit"),
        pki::server_config(&server, Some(&ca_pem)).unwrap(),
        id_base.clone(),
        ca_pem.clone(),
    );
    kv_cfg.admin_object_ids = vec![admin_creds.object_id.clone()];
    let vault_server = keyvault::Server::start(kv_cfg).await.unwrap();
    let mgmt = vault_server.mgmt_url();

    let admin_http =
        platform::https_client(&ca_pem, None, platform::ClientOptions::default()).unwrap();
    let admin_kv = KeyVaultClient::new(
        &ca_pem,
        Arc::new(AdminTokens {
            http: admin_http,
            base: id_base.clone(),
            creds: admin_creds.clone(),
        }),
    )
    .unwrap();
    let mut spec = VaultSpec::new(&boot.tenant_id);
    spec.location = "local".into();
    let vault = admin_kv
        .create_vault(&mgmt, SUB, "rg", "pooled", &spec)
        .await
        .unwrap();
    admin_kv
        .assign_role(&mgmt, &vault.id, KV_ADMINISTRATOR, &admin_creds.object_id)
        .await
        .unwrap();
    admin_kv
        .create_key(vault.base(), "cmk", &CreateKeyOptions::default())
        .await
        .unwrap();
    let key_url = format!("{}/keys/cmk", vault.base());
    let id_admin = identity::client::AdminClient::new(&id_base, &ca_pem, &admin_creds).unwrap();
    let sp = id_admin
        .create_service_principal("cluster", false, false)
        .await
        .unwrap();
    let assignment = admin_kv
        .assign_role(&mgmt, &vault.id, CSEU, &sp.object_id)
        .await
        .unwrap();

    // The control plane's shape: one HTTP client, one token source per identity.
    let http = platform::https_client(
        &ca_pem,
        None,
        platform::ClientOptions::timeout(Duration::from_secs(10)),
    )
    .unwrap();
    let tokens = Arc::new(ClientSecretTokens::new(
        http.clone(),
        id_base.clone(),
        sp.tenant_id.clone(),
        sp.client_id.clone(),
        sp.client_secret.clone(),
    ));
    let kek = AzureKeyVault::new(http, KeyUrl::parse(&key_url).unwrap(), tokens);
    let cluster_dir = root.path().join("cluster");
    std::fs::create_dir_all(&cluster_dir).unwrap();
    let envelope = Envelope::new(Arc::new(kek), WrappedKeyStore::new(&cluster_dir));
    let created = envelope.create().await.unwrap();

    // Passes reuse the connection that creation opened: none is added per pass.
    let vault_port = port_of(vault.base());
    let open = connections_to(vault_port);
    assert!(open >= 1);
    for _ in 0..5 {
        let pass = envelope.revalidate().await.unwrap();
        assert_eq!(pass.dek, created.dek);
    }
    // hyper hands a connection back to the pool from its connection task, after the
    // response: on a loaded machine the next request can start first and open one more.
    // What must not happen is a connection per pass.
    let after = connections_to(vault_port);
    assert!(
        after <= open + 1,
        "revalidation should reuse its pooled connections to the vault ({open} before 5 passes, {after} after)"
    );

    // A removed role takes effect on the next pass, on the same pooled connection.
    admin_kv
        .delete_role_assignment(&mgmt, &vault.id, &assignment)
        .await
        .unwrap();
    let err = envelope.revalidate().await.unwrap_err();
    assert_eq!(err.reason(), Reason::AccessDenied, "{err}");
    admin_kv
        .assign_role(&mgmt, &vault.id, CSEU, &sp.object_id)
        .await
        .unwrap();
    envelope.revalidate().await.unwrap();

    // A disabled key takes effect on the next pass.
    let disable = |enabled| UpdateKeyOptions {
        enabled: Some(enabled),
        ..Default::default()
    };
    admin_kv
        .update_key(&key_url, &disable(false))
        .await
        .unwrap();
    let err = envelope.revalidate().await.unwrap_err();
    assert_eq!(err.reason(), Reason::KeyDisabled, "{err}");
    admin_kv.update_key(&key_url, &disable(true)).await.unwrap();
    envelope.revalidate().await.unwrap();

    // A deleted principal: the client still holds an unexpired cached token, but the
    // vault refuses it (it checks the principal, cached for at most a second), and the
    // client's retry with a fresh token fails at the identity service.
    assert!(
        id_admin
            .delete_service_principal(&sp.client_id)
            .await
            .unwrap()
    );
    let deleted = std::time::Instant::now();
    let err = loop {
        match envelope.revalidate().await {
            Err(e) => break e,
            Ok(_) => {
                assert!(
                    deleted.elapsed() < identity::verify::MAX_LIVENESS_TTL * 3,
                    "a deleted principal's cached token kept working"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    println!("deleted principal: {err}");
    assert!(matches!(err, envelope::KekError::Token(_)), "{err}");
    vault_server.shutdown().await;
    identity.shutdown().await;
}
