//! Process wiring: the management listener, one data-plane listener per vault (its own
//! loopback port, persisted and re-bound at restart), the scheduler, and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::audit::AuditLog;
use crate::auth::{IdentityVerifier, TokenVerifier};
use crate::config::Config;
use crate::error::Error;
use crate::state::{State, VaultEntry};
use crate::store::Store;
use sealed::MasterKey;

/// Shared service context.
pub struct Ctx {
    pub cfg: Config,
    pub state: State,
    pub verifier: Arc<dyn TokenVerifier>,
    pub audit: AuditLog,
    pub root: MasterKey,
    scheduler: Notify,
    mgmt_url: parking_lot::RwLock<String>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// Wakes the scheduler (rotation policies, purge dates) right away.
    pub fn kick_scheduler(&self) {
        self.scheduler.notify_one();
    }

    /// `https://{data_host}:{port}` for a vault port.
    pub fn vault_base(&self, port: u16) -> String {
        format!("https://{}:{}", self.cfg.data_host, port)
    }

    pub fn mgmt_url(&self) -> String {
        self.mgmt_url.read().clone()
    }

    /// Resolves when [`Ctx::kick_scheduler`] is called.
    pub async fn scheduler_notified(&self) {
        self.scheduler.notified().await
    }

    /// Binds a vault's data listener (port 0 = allocate) and starts serving. Returns the port.
    pub async fn start_vault_listener(
        self: &Arc<Self>,
        v: &Arc<VaultEntry>,
        port: u16,
    ) -> Result<u16, Error> {
        self.stop_vault_listener(v).await;
        let listener = TcpListener::bind(SocketAddr::new(self.cfg.data_bind_ip, port)).await?;
        let routes = crate::data_plane::service(self.clone(), v.name());
        let server = platform::Server::serve(listener, self.cfg.tls.clone(), routes)?;
        let port = server.local_addr().port();
        // A concurrent start (two dev controls racing) may have bound one meanwhile.
        let replaced = v.listener.lock().replace(server);
        if let Some(old) = replaced {
            old.shutdown().await;
        }
        Ok(port)
    }

    /// Closes a vault's data listener and its open connections, and returns once they are
    /// closed: a caller told that a vault is gone must not reach it afterwards.
    pub async fn stop_vault_listener(&self, v: &VaultEntry) {
        let running = v.listener.lock().take();
        if let Some(server) = running {
            server.shutdown().await;
        }
    }
}

/// A running vault service.
pub struct Server {
    ctx: Arc<Ctx>,
    mgmt_addr: SocketAddr,
    mgmt: platform::Server,
    scheduler: JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("mgmt_addr", &self.mgmt_addr)
            .finish()
    }
}

impl Server {
    /// Starts the service with the JWKS verifier pointed at `cfg.identity_url`.
    pub async fn start(cfg: Config) -> Result<Server, Error> {
        let verifier = Arc::new(IdentityVerifier::new(&cfg.identity_url, &cfg.ca_pem)?);
        Self::start_with_verifier(cfg, verifier).await
    }

    /// Starts the service with a caller-provided token verifier.
    pub async fn start_with_verifier(
        cfg: Config,
        verifier: Arc<dyn TokenVerifier>,
    ) -> Result<Server, Error> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let root = MasterKey::load_or_create(&cfg.data_dir.join(crate::root_key::ROOT_KEY_FILE))?;
        let (store, report) = Store::open(&cfg.data_dir, &root)?;
        if report.truncated_bytes > 0 {
            tracing::warn!(?report, "recovered vault state after an interrupted write");
        }
        let state = State::load(store)?;
        let audit = AuditLog::open(&cfg.audit_dir)?;
        let ctx = Arc::new(Ctx {
            cfg: cfg.clone(),
            state,
            verifier,
            audit,
            root,
            scheduler: Notify::new(),
            mgmt_url: parking_lot::RwLock::new(String::new()),
        });
        // Re-bind every live vault on its persisted port.
        for v in ctx.state.vaults() {
            if v.is_deleted() {
                continue;
            }
            let port = v.record.read().port;
            // The previous process (or a just-stopped server in this one) may still be
            // letting go of the port: retry for a moment before giving up on the vault.
            let mut attempt = 0;
            loop {
                match ctx.start_vault_listener(&v, port).await {
                    Ok(_) => break,
                    Err(e) if attempt < 40 => {
                        attempt += 1;
                        tracing::debug!(vault = %v.name(), port, error = %e, "vault port busy; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    Err(e) => {
                        tracing::error!(vault = %v.name(), port, error = %e, "cannot re-bind vault listener");
                        break;
                    }
                }
            }
        }
        let listener = TcpListener::bind(cfg.mgmt_listen).await?;
        let mgmt_addr = listener.local_addr()?;
        *ctx.mgmt_url.write() = format!("https://{}:{}", cfg.data_host, mgmt_addr.port());
        let mgmt =
            platform::Server::serve(listener, cfg.tls.clone(), crate::mgmt::service(ctx.clone()))?;
        let scheduler = tokio::spawn(crate::rotation::run(ctx.clone()));
        tracing::info!(%mgmt_addr, "key vault service started");
        Ok(Server {
            ctx,
            mgmt_addr,
            mgmt,
            scheduler,
        })
    }

    /// Base URL of the management plane (`https://127.0.0.1:{port}`).
    pub fn mgmt_url(&self) -> String {
        self.ctx.mgmt_url()
    }

    pub fn mgmt_addr(&self) -> SocketAddr {
        self.mgmt_addr
    }

    /// `vaultUri` of a live vault.
    pub fn vault_uri(&self, name: &str) -> Option<String> {
        let v = self.ctx.state.vault(name)?;
        let port = v.record.read().port;
        Some(format!("{}/", self.ctx.vault_base(port)))
    }

    /// The shared context (for in-process integrations and tests).
    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// Stops every listener and the scheduler, flushes the audit log.
    pub async fn shutdown(self) {
        self.mgmt.shutdown().await;
        for v in self.ctx.state.vaults() {
            self.ctx.stop_vault_listener(&v).await;
        }
        self.scheduler.abort();
        let _ = self.scheduler.await;
        self.ctx.audit.flush();
    }
}
