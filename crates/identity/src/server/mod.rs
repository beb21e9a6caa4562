//! The HTTPS server: the shared accept loop (`platform`: TLS, HTTP/1.1 and HTTP/2) and an
//! axum router over the [`Service`].

mod admin;
mod msi;
mod oidc;
mod principals;
mod reply;
mod token_endpoint;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::Error;
use crate::service::{Bootstrap, Service};

/// Default access-token lifetime.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// How to run the identity service.
#[derive(Clone)]
pub struct Config {
    /// Durable state (state.json, master.key).
    pub data_dir: PathBuf,
    /// Address to bind; port 0 picks an ephemeral port.
    pub listen: SocketAddr,
    /// TLS server configuration (e.g. from `pki::server_config`).
    pub tls: Arc<rustls::ServerConfig>,
    /// Base URL clients use; token issuers derive from it. Default `https://127.0.0.1:{port}`.
    /// Tokens stay verifiable across restarts only if this stays the same.
    pub public_url: Option<String>,
    pub token_lifetime: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("token_lifetime", &self.token_lifetime)
            .finish_non_exhaustive()
    }
}

/// A running identity service.
pub struct Server {
    addr: SocketAddr,
    service: Arc<Service>,
    http: platform::Server,
}

impl Server {
    /// Opens the data dir, binds, and returns once the listener accepts connections.
    pub async fn start(cfg: Config) -> Result<Server, Error> {
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| Error::io(format!("listen {}", cfg.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(format!("listen {}", cfg.listen), e))?;
        let base = cfg
            .public_url
            .clone()
            .unwrap_or_else(|| format!("https://127.0.0.1:{}", addr.port()));
        let data_dir = cfg.data_dir.clone();
        let lifetime = cfg.token_lifetime;
        let service =
            tokio::task::spawn_blocking(move || Service::open(&data_dir, &base, lifetime))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
        let service = Arc::new(service);
        let http = platform::Server::serve(listener, cfg.tls, router(service.clone()))
            .map_err(|e| Error::io(format!("listen {}", cfg.listen), e))?;
        tracing::info!(%addr, base = service.issuer_base(), "identity service listening");
        Ok(Server {
            addr,
            service,
            http,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL (issuer base): `public_url` if configured, else `https://127.0.0.1:{port}`.
    pub fn base_url(&self) -> String {
        self.service.issuer_base().to_string()
    }

    /// The in-process service core.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Idempotent bootstrap; credentials only on the first call for a data dir.
    pub fn bootstrap(&self) -> Result<Bootstrap, Error> {
        self.service.bootstrap()
    }

    /// Stops accepting, lets in-flight requests finish (bounded), and returns.
    pub async fn shutdown(self) {
        self.http.shutdown().await;
    }
}

/// All routes. Literal segments win over `{tenant}` captures.
fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(oidc::jwks))
        .route("/common/discovery/instance", get(oidc::instance_discovery))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(oidc::openid_configuration),
        )
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(oidc::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(oidc::jwks))
        .route("/{tenant}/discovery/keys", get(oidc::jwks))
        .route("/{tenant}/oauth2/v2.0/token", post(token_endpoint::token))
        .route("/{tenant}/oauth2/token", post(token_endpoint::token))
        .route("/msi/token", get(msi::app_service))
        .route("/metadata/identity/oauth2/token", get(msi::imds))
        .route("/principals/{object_id}", get(principals::get))
        .merge(admin::routes())
        .fallback(reply::not_found)
        .layer(axum::middleware::from_fn(log_request))
        .with_state(service)
}

/// Logs method, path (never the query or headers: they may carry secrets), status and
/// latency of every request at debug level.
async fn log_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    resp
}
