//! `strongroom up`: every service on loopback, a default SMK cluster, one connection string.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use zeroize::Zeroizing;

use crate::layout::{Endpoints, Layout};

#[derive(clap::Args)]
pub struct Args {
    /// Where everything is kept (CA, identity, vault, control plane, clusters).
    #[arg(long, env = "STRONGROOM_DATA_DIR", default_value = "strongroom-data")]
    pub data_dir: PathBuf,
    /// How often each cluster revalidates its key (production default: 60m).
    #[arg(long, default_value = "60m", value_parser = super::parse_duration)]
    pub revalidation_interval: Duration,
    /// How long a key vault may be unreachable before a Ready cluster turns Inaccessible.
    #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
    pub grace_period: Duration,
    /// Enable the key vault's test controls (clock shift, simulated outages).
    #[arg(long)]
    pub dev: bool,
    /// Do not create the default cluster.
    #[arg(long)]
    pub no_default_cluster: bool,
    /// Bytes a cluster's blocking sort may hold in memory before spilling to encrypted
    /// temporary files (default: the database's own, 100 MiB).
    #[arg(long)]
    pub sort_memory_limit: Option<usize>,
    /// Bytes a cluster's operations may hold in spill files at once; a sort or group
    /// that would spill more fails with OutOfDiskSpace (default 4 GiB).
    #[arg(long)]
    pub temp_disk_quota: Option<u64>,
    /// Rotation period of service-managed keys (ISO 8601 duration).
    #[arg(long, default_value = "P90D")]
    pub smk_rotate_after: String,
    /// Where clusters' continuous backups go (default: <data-dir>/backups).
    #[arg(long)]
    pub backup_dir: Option<PathBuf>,
    /// How often each cluster archives its write-ahead log (the recovery point).
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    pub backup_interval: Duration,
    /// How often each cluster takes a physical snapshot.
    #[arg(long, default_value = "1h", value_parser = super::parse_duration)]
    pub snapshot_interval: Duration,
    /// How long restore points are kept (default 35 days, Azure's default).
    #[arg(long, default_value = "840h", value_parser = super::parse_duration)]
    pub backup_retention: Duration,
    /// Log cluster operations slower than this (redacted, like MongoDB's slowms; 0 logs
    /// every operation).
    #[arg(long, default_value = "100ms", value_parser = super::parse_duration_or_zero)]
    pub slow_op_threshold: Duration,
    /// After answering a connection that has its cluster to itself, how long the node
    /// polls for that connection's next request before its thread sleeps: a wake-up
    /// costs more than a point read on a virtual machine. Up to this much CPU per
    /// request; 0 turns polling off.
    #[arg(long, default_value = "150us", value_parser = super::parse_duration_or_zero)]
    pub idle_poll: Duration,
    /// Where the services write their (redacted) logs (default: <data-dir>/logs).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
}

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";
const LOCATION: &str = "local";
const DEFAULT_CLUSTER: &str = "default";
const DEFAULT_ADMIN: &str = "strongroom";

/// The port a service had last time (so issuers, vault URIs and connection strings stay
/// stable across restarts), or 0 for a fresh one.
fn previous_port(previous: Option<&Endpoints>, pick: impl Fn(&Endpoints) -> &str) -> u16 {
    previous.and_then(|e| url_port(pick(e))).unwrap_or(0)
}

fn url_port(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Writes a file only its owner may read (atomically, 0600 from its first byte).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    sealed::write_atomic(path, bytes, 0o600).with_context(|| path.display().to_string())
}

/// A random password that meets the cluster password rules.
fn generate_password() -> anyhow::Result<Zeroizing<String>> {
    use base64::Engine as _;
    let mut bytes = Zeroizing::new([0u8; 18]);
    aws_lc_rs::rand::fill(bytes.as_mut())
        .map_err(|_| anyhow::anyhow!("random generator failed"))?;
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref());
    Ok(Zeroizing::new(format!("Sr9!{body}")))
}

/// A tokio runtime of its own for a service that stands in for an Azure one (identity,
/// key vault): its threads are named `{prefix}-rt`, so CPU can be attributed per service
/// from `/proc/<pid>/task/<tid>/{comm,stat}` (the revalidation bench does), and the
/// control plane's work is not interleaved with theirs on the same workers.
struct ServiceRuntime(Option<tokio::runtime::Runtime>);

impl ServiceRuntime {
    fn new(prefix: &str) -> anyhow::Result<ServiceRuntime> {
        // One worker: these services are light here, and a second idle worker only adds
        // wake-ups (work-stealing notifications); CPU-heavy work (RSA) runs on the
        // runtime's blocking threads anyway.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("{prefix}-rt"))
            .enable_all()
            .build()
            .with_context(|| format!("starting the {prefix} runtime"))?;
        Ok(ServiceRuntime(Some(runtime)))
    }

    /// Runs `task` on this runtime and waits for it from the caller's.
    async fn run<T: Send + 'static>(
        &self,
        task: impl std::future::Future<Output = T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let runtime = self.0.as_ref().context("service runtime already stopped")?;
        runtime.spawn(task).await.context("service task failed")
    }
}

impl Drop for ServiceRuntime {
    /// Dropping a runtime blocks, which is not allowed inside another runtime.
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let id_runtime = ServiceRuntime::new("id")?;
    let kv_runtime = ServiceRuntime::new("kv")?;
    let layout = Layout::new(&args.data_dir);
    std::fs::create_dir_all(&layout.root).with_context(|| layout.root.display().to_string())?;
    let previous = Endpoints::load(&layout.endpoints()).ok();

    let ca = pki::DevCa::load_or_create(&layout.ca())?;
    let server_cert = ca.issue_server(&["localhost"])?;
    let plain_tls = pki::server_config(&server_cert, None)?;
    let mutual_tls = pki::server_config(&server_cert, Some(ca.ca_pem()))?;

    // Identity.
    let identity = id_runtime
        .run(identity::Server::start(identity::Config {
            data_dir: layout.identity(),
            listen: loopback(previous_port(previous.as_ref(), |e| &e.identity_url)),
            tls: plain_tls.clone(),
            public_url: None,
            token_lifetime: Duration::from_secs(3600),
        }))
        .await?
        .context("starting the identity service")?;
    let identity_url = identity.base_url();
    // The identity service holds the data directory's lock now: no other `up` runs here,
    // and a stale endpoints file must not be mistaken for this run's readiness signal.
    let _ = std::fs::remove_file(layout.endpoints());
    let admin = match identity.bootstrap()?.admin {
        Some(creds) => {
            creds.save(&layout.admin_credentials())?;
            creds
        }
        None => identity::Credentials::load(&layout.admin_credentials()).context(
            "the identity service was bootstrapped before but admin-credentials.json is missing",
        )?,
    };

    // Key vault.
    let mut vault_cfg = keyvault::Config::new(
        layout.keyvault(),
        layout.audit(),
        mutual_tls,
        identity_url.clone(),
        ca.ca_pem().to_string(),
    );
    vault_cfg.mgmt_listen = loopback(previous_port(previous.as_ref(), |e| {
        &e.keyvault_management_url
    }));
    vault_cfg.dev_mode = args.dev;
    vault_cfg.admin_object_ids = vec![admin.object_id.clone()];
    let vault = kv_runtime
        .run(keyvault::Server::start(vault_cfg))
        .await?
        .context("starting the key vault")?;

    // Control plane.
    let control_listener =
        tokio::net::TcpListener::bind(loopback(previous_port(previous.as_ref(), |e| {
            &e.control_url
        })))
        .await
        .context("binding the control plane")?;
    let control_url = format!(
        "https://127.0.0.1:{}",
        control_listener.local_addr()?.port()
    );
    let node_cert = ca.issue_server(&["localhost"])?;
    let plane = control::Plane::start(control::Config {
        data_dir: layout.control(),
        listen: control_listener.local_addr()?,
        tls: plain_tls.clone(),
        ca_pem: ca.ca_pem().to_string(),
        ca_path: std::fs::canonicalize(ca.ca_path())?,
        identity_url: identity_url.clone(),
        admin: admin.clone(),
        admin_object_ids: vec![admin.object_id.clone()],
        trusted_service: ca.issue_client("strongroom-control", Some(pki::TRUSTED_SERVICE_URI))?,
        keyvault_mgmt_url: vault.mgmt_url(),
        subscription: SUBSCRIPTION.into(),
        location: LOCATION.into(),
        node: control::runtime::NodeSettings {
            program: std::env::current_exe()?,
            args: node_args(&args),
            cert_pem: node_cert.cert_pem.clone(),
            key_pem: node_cert.key_pem.clone(),
            revalidation_interval: args.revalidation_interval,
            grace_period: args.grace_period,
            restart: control::restart::RestartPolicy::default(),
        },
        smk_rotate_after: args.smk_rotate_after.clone(),
        vault_timeout: Duration::from_secs(10),
        backup: control::BackupConfig {
            root: args
                .backup_dir
                .clone()
                .unwrap_or_else(|| args.data_dir.join("backups")),
            archive_interval: args.backup_interval,
            snapshot_interval: args.snapshot_interval,
            retention: args.backup_retention,
        },
        audit_dir: Some(layout.security_audit()),
    })
    .await
    .context("starting the control plane")?;
    let verifier = Arc::new(identity::verify::Verifier::new(
        &identity_url,
        ca.ca_pem(),
        control::api::MANAGEMENT_AUDIENCES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )?);
    let router = control::api::router(
        plane.clone(),
        verifier,
        vec![admin.object_id.clone()],
        format!("{identity_url}/{}", admin.tenant_id),
    );
    let control_server = platform::Server::serve(control_listener, plain_tls, router)?;

    // The default cluster.
    let mut connection_string = None;
    if !args.no_default_cluster {
        let password = match std::fs::read_to_string(layout.cluster_password()) {
            Ok(p) => Zeroizing::new(p.trim().to_string()),
            Err(_) => {
                let p = generate_password()?;
                write_private(&layout.cluster_password(), p.as_bytes())?;
                p
            }
        };
        let cluster = match plane.get(DEFAULT_CLUSTER).await {
            Ok(c) => c,
            Err(_) => {
                let request: control::model::MongoCluster = serde_json::from_value(
                    serde_json::json!({
                        "location": LOCATION,
                        "properties": {"administrator": {"userName": DEFAULT_ADMIN, "password": password.as_str()}}
                    }),
                )?;
                plane
                    .create(SUBSCRIPTION, "default", DEFAULT_CLUSTER, request)
                    .await
                    .context("creating the default cluster")?
            }
        };
        connection_string = cluster
            .properties
            .connection_string
            .map(|s| s.replace("<password>", password.as_str()));
    }

    let endpoints = Endpoints {
        identity_url,
        keyvault_management_url: vault.mgmt_url(),
        control_url,
        ca_path: std::fs::canonicalize(ca.ca_path())?,
        tenant_id: admin.tenant_id.clone(),
        subscription_id: SUBSCRIPTION.into(),
        admin_credentials_path: std::fs::canonicalize(layout.admin_credentials())?,
        default_cluster: (!args.no_default_cluster).then(|| DEFAULT_CLUSTER.to_string()),
        connection_string: connection_string.clone(),
    };
    write_private(&layout.endpoints(), &serde_json::to_vec_pretty(&endpoints)?)?;

    println!("Strongroom is up.");
    println!("  identity        {}", endpoints.identity_url);
    println!("  key vault       {}", endpoints.keyvault_management_url);
    println!("  control plane   {}", endpoints.control_url);
    println!("  CA certificate  {}", endpoints.ca_path.display());
    println!(
        "  admin creds     {}",
        endpoints.admin_credentials_path.display()
    );
    if let Some(cs) = &connection_string {
        println!("\nConnection string of the default cluster:\n  {cs}");
    }
    println!(
        "\n(endpoints: {}; Ctrl-C stops everything)",
        layout.endpoints().display()
    );

    wait_for_signal().await;
    println!("stopping…");
    control_server.shutdown().await;
    plane.shutdown().await;
    kv_runtime.run(vault.shutdown()).await?;
    id_runtime.run(identity.shutdown()).await?;
    Ok(())
}

fn node_args(args: &Args) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = vec!["node".into()];
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("logs"));
    out.push("--log-file".into());
    out.push(log_dir.join("nodes.log").into_os_string());
    out.push("--slow-op-threshold".into());
    out.push(format!("{}ms", args.slow_op_threshold.as_millis()).into());
    out.push("--idle-poll".into());
    out.push(format!("{}us", args.idle_poll.as_micros()).into());
    if let Some(limit) = args.sort_memory_limit {
        out.push("--sort-memory-limit".into());
        out.push(limit.to_string().into());
    }
    if let Some(quota) = args.temp_disk_quota {
        out.push("--temp-disk-quota".into());
        out.push(quota.to_string().into());
    }
    out
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
