//! Shared harness: a dev CA, a real identity server on an ephemeral loopback port, and
//! a bootstrapped admin client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use identity::client::AdminClient;
use identity::{Bootstrap, Config, Credentials, Server};
use tempfile::TempDir;

pub const SUB: &str = "00000000-0000-0000-0000-000000000001";
pub const RG: &str = "rg1";
pub const VAULT: &str = "https://vault.azure.net";

pub struct Tls {
    pub _ca_dir: TempDir,
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn tls() -> Tls {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = pki::DevCa::load_or_create(ca_dir.path()).unwrap();
    let server =
        pki::server_config(&ca.issue_server(&["localhost", "127.0.0.1"]).unwrap(), None).unwrap();
    Tls {
        ca_pem: ca.ca_pem().to_string(),
        server,
        _ca_dir: ca_dir,
    }
}

pub fn config(tls: &Tls, data_dir: &Path, listen: SocketAddr) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        listen,
        tls: tls.server.clone(),
        public_url: None,
        token_lifetime: Duration::from_secs(3600),
    }
}

pub struct Harness {
    pub tls: Tls,
    pub data: TempDir,
    pub server: Server,
    pub boot: Bootstrap,
    pub admin_creds: Credentials,
    pub control_creds: Credentials,
    pub admin: AdminClient,
    pub http: reqwest::Client,
}

impl Harness {
    pub async fn start() -> Harness {
        let tls = tls();
        let data = tempfile::tempdir().unwrap();
        let server = Server::start(config(&tls, data.path(), "127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let boot = server.bootstrap().unwrap();
        let admin_creds = boot.admin.clone().unwrap();
        let control_creds = boot.control_plane.clone().unwrap();
        let admin = AdminClient::new(&server.base_url(), &tls.ca_pem, &admin_creds).unwrap();
        let http =
            platform::https_client(&tls.ca_pem, None, platform::ClientOptions::default()).unwrap();
        Harness {
            tls,
            data,
            server,
            boot,
            admin_creds,
            control_creds,
            admin,
            http,
        }
    }

    pub fn base(&self) -> String {
        self.server.base_url()
    }

    pub fn verifier(&self, audiences: &[&str]) -> identity::verify::Verifier {
        identity::verify::Verifier::new(
            &self.base(),
            &self.tls.ca_pem,
            audiences.iter().map(|s| s.to_string()).collect(),
        )
        .unwrap()
    }

    /// Stops the server and starts a new one on the same port and data dir.
    pub async fn restart(self) -> Harness {
        let Harness {
            tls,
            data,
            server,
            boot,
            admin_creds,
            control_creds,
            http,
            ..
        } = self;
        let addr = server.local_addr();
        server.shutdown().await;
        let server = Server::start(config(&tls, data.path(), addr))
            .await
            .unwrap();
        let admin = AdminClient::new(&server.base_url(), &tls.ca_pem, &admin_creds).unwrap();
        Harness {
            tls,
            data,
            server,
            boot,
            admin_creds,
            control_creds,
            admin,
            http,
        }
    }
}

/// Decodes a JWT payload without verifying (tests only).
pub fn payload(token: &str) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
