//! The node process: reads supervisor commands on stdin, serves MongoDB clients.
//!
//! Memory discipline: the root DEK arrives in a zeroizing buffer, becomes a
//! `storage::RootKey` (zeroizing) and the buffer is dropped at once. On `Lock`, the wire
//! gate drops the database handle and every cursor; the engine, its data keys and the
//! root key go with the last reference, then the node reports `Locked`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::backups::BackupThread;
use crate::protocol::{Command, Event, Init, OpenParams, read_command};

#[derive(Debug, thiserror::Error)]
pub enum NodeRunError {
    #[error(transparent)]
    Protocol(#[from] crate::protocol::ProtocolError),
    #[error("the first command must be Init")]
    NoInit,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen: {0}")]
    Listen(String),
    #[error("stdout: {0}")]
    Io(#[from] std::io::Error),
}

/// Everything the node writes to stdout goes through one task, so answers and notices
/// (sent from the backup thread) never interleave mid-line.
fn spawn_writer() -> (
    mpsc::UnboundedSender<Event>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let task = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(event) = rx.recv().await {
            out.write_all(event.to_line().as_bytes()).await?;
            out.flush().await?;
        }
        Ok(())
    });
    (tx, task)
}

/// How a node runs its database.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    pub data_dir: PathBuf,
    /// Memory a blocking sort may use before it spills to encrypted temporary files.
    pub sort_memory_limit: Option<usize>,
    /// Operations slower than this are logged (redacted); MongoDB's `slowms`.
    pub slow_op_threshold: Option<std::time::Duration>,
    /// How long a lone connection polls for its next request before sleeping
    /// (`wire::ServerConfig::idle_poll`); `None` keeps the wire server's default.
    pub idle_poll: Option<std::time::Duration>,
}

/// Runs a node over this process's stdin/stdout until `Shutdown` or end of input.
pub async fn run(options: NodeOptions) -> Result<(), NodeRunError> {
    let mut input = tokio::io::stdin();
    let (events, writer) = spawn_writer();
    let emit = |event: Event| {
        let _ = events.send(event);
    };
    // Authentication and user-management events go to the supervisor's audit log. The
    // sink is process-wide and lives forever: it holds a weak sender, so the writer
    // still sees the channel close at shutdown.
    let audit_events = events.downgrade();
    wire::audit::set_sink(move |e: wire::audit::SecurityEvent| {
        let Some(events) = audit_events.upgrade() else {
            return;
        };
        let _ = events.send(Event::Audit(crate::protocol::AuditNotice {
            kind: e.kind.as_str().to_string(),
            principal: e.principal,
            remote: e.remote.map(|r| r.to_string()),
            success: e.success,
            detail: e.detail,
        }));
    });
    let init = match read_command(&mut input).await? {
        Some(Command::Init(init)) => init,
        _ => return Err(NodeRunError::NoInit),
    };
    let server = match start_server(&init, &options).await {
        Ok(s) => s,
        Err(e) => {
            emit(Event::Failed {
                message: e.to_string(),
            });
            drop(events);
            // Bounded: a stuck stdout must not keep an orphaned node alive.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
            return Err(e);
        }
    };
    emit(Event::Listening {
        port: server.local_addr().port(),
    });
    let mut backups: Option<BackupThread> = None;
    loop {
        match read_command(&mut input).await? {
            Some(Command::Open { dek, params }) => {
                let event =
                    match open(&options, &init.cluster, dek, &params, &server, &events).await {
                        Ok(thread) => {
                            if let Some(old) = std::mem::replace(&mut backups, thread) {
                                old.stop(false).await;
                            }
                            Event::Ready
                        }
                        Err(message) => Event::Failed { message },
                    };
                emit(event);
            }
            Some(Command::Lock { reason }) => {
                // The backup thread holds an engine handle and the catalog key: stop it
                // before the gate drops the database, so the last handle goes with it.
                if let Some(thread) = backups.take() {
                    thread.stop(false).await;
                }
                server.make_inaccessible(reason.clone());
                emit(Event::Locked { reason });
            }
            Some(Command::ResetAdminPassword(admin)) => {
                let event = match server
                    .reset_admin_password(&admin.user, &admin.password)
                    .await
                {
                    Ok(()) => Event::AdminPasswordReset,
                    Err(e) => Event::Failed {
                        message: e.to_string(),
                    },
                };
                drop(admin);
                emit(event);
            }
            Some(Command::Init(_)) => emit(Event::Failed {
                message: "already initialised".into(),
            }),
            Some(Command::Shutdown) | None => break,
        }
    }
    if let Some(thread) = backups.take() {
        // A last cycle, so a clean stop archives every acknowledged write.
        thread.stop(true).await;
    }
    server.shutdown().await;
    drop(events);
    // Bounded: a stuck stdout must not keep an orphaned node alive.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
    Ok(())
}

async fn start_server(init: &Init, options: &NodeOptions) -> Result<wire::Server, NodeRunError> {
    let identity = pki::CertifiedKey {
        cert_pem: init.cert_pem.clone(),
        key_pem: init.key_pem.clone(),
    };
    let tls = pki::server_config(&identity, None).map_err(|e| NodeRunError::Tls(e.to_string()))?;
    let mut tls = Arc::unwrap_or_clone(tls);
    // MongoDB clients do not negotiate ALPN; offering HTTP protocols would only confuse.
    tls.alpn_protocols.clear();
    let mut config =
        wire::ServerConfig::inaccessible(init.listen, Arc::new(tls), init.initial_reason.clone());
    if let Some(threshold) = options.slow_op_threshold {
        config.slow_op_threshold = threshold;
    }
    if let Some(budget) = options.idle_poll {
        config.idle_poll = budget;
    }
    wire::Server::start(config)
        .await
        .map_err(|e| NodeRunError::Listen(e.to_string()))
}

async fn open(
    options: &NodeOptions,
    cluster: &str,
    dek: Zeroizing<[u8; 32]>,
    params: &OpenParams,
    server: &wire::Server,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<Option<BackupThread>, String> {
    let root = storage::RootKey::from_slice(dek.as_ref()).map_err(|e| e.to_string())?;
    let backup_keys = match &params.backup {
        Some(_) => Some(backup::BackupKeys::from_root_dek(&dek).map_err(|e| e.to_string())?),
        None => None,
    };
    drop(dek);
    let dir = options.data_dir.clone();
    let mut config = docdb::DbConfig::default();
    if let Some(limit) = options.sort_memory_limit {
        config.sort_memory_limit = limit;
    }
    let archive = params.backup.is_some();
    let (db, engine) =
        tokio::task::spawn_blocking(move || -> Result<(docdb::Db, storage::Engine), String> {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let opts = storage::Options {
                archive_wal: archive,
                ..storage::Options::default()
            };
            let engine = storage::Engine::open(&dir, root, opts).map_err(|e| e.to_string())?;
            let db = docdb::Db::open_with(engine.clone(), config).map_err(|e| e.to_string())?;
            Ok((db, engine))
        })
        .await
        .map_err(|e| format!("opening the database panicked: {e}"))??;
    let thread = match (&params.backup, backup_keys) {
        (Some(settings), Some(keys)) => Some(
            BackupThread::start(cluster, engine, keys, settings.clone(), events.clone())
                .await
                .map_err(|e| format!("starting backups: {e}"))?,
        ),
        _ => {
            drop(engine);
            None
        }
    };
    server.make_ready(db);
    // A restored cluster's administrator comes with its data (no password here): it is
    // protected all the same.
    if let Some(user) = &params.admin_user {
        server.set_admin_user(user);
    }
    if let (Some(user), Some(password)) = (&params.admin_user, &params.admin_password) {
        server
            .ensure_admin_user(user, password)
            .await
            .map_err(|e| format!("creating the administrator: {e}"))?;
    }
    Ok(thread)
}
