//! The node process: reads supervisor commands on stdin, serves MongoDB clients.
//!
//! Memory discipline: the root DEK arrives in a zeroizing buffer, becomes a
//! `storage::RootKey` (zeroizing) and the buffer is dropped at once. On `Lock`, the wire
//! gate drops the database handle and every cursor; the engine, its data keys and the
//! root key go with the last reference, then the node reports `Locked`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::backups::BackupThread;
use crate::events;
use crate::recovery::{Recovery, Reopener, Step};
use cluster::protocol::{BackupSettings, Command, Event, Init, OpenParams, read_command};

/// How often the node looks at its engine for a storage failure (an atomic load) and,
/// while recovering from one, at the free space.
const STORAGE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum NodeRunError {
    #[error(transparent)]
    Protocol(#[from] cluster::protocol::ProtocolError),
    #[error("the first command must be Init")]
    NoInit,
    #[error("the first command of a job process must be Job")]
    NoJob,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen: {0}")]
    Listen(String),
    #[error("stdout: {0}")]
    Io(#[from] std::io::Error),
}

/// How a node runs its database.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    pub data_dir: PathBuf,
    /// Memory a blocking sort may use before it spills to encrypted temporary files.
    pub sort_memory_limit: Option<usize>,
    /// Most bytes all operations may hold in spill files at once (`OutOfDiskSpace`
    /// beyond it); `None` keeps docdb's default, 4 GiB.
    pub temp_disk_quota: Option<u64>,
    /// Operations slower than this are logged (redacted); MongoDB's `slowms`.
    pub slow_op_threshold: Option<std::time::Duration>,
    /// How long a lone connection polls for its next request before sleeping
    /// (`wire::ServerConfig::idle_poll`); `None` keeps the wire server's default.
    pub idle_poll: Option<std::time::Duration>,
    /// Memtable size of the storage engine (`storage::Options::memtable_bytes`); `None`
    /// keeps the engine's default.
    pub memtable_bytes: Option<usize>,
}

/// The database a node has open, with what it needs to recover it and to restart its
/// backups after a reopen.
struct Opened {
    recovery: Recovery,
    backups: Option<(BackupThread, BackupSettings, backup::BackupKeys)>,
}

/// Runs a node over this process's stdin/stdout until `Shutdown` or end of input.
pub async fn run(options: NodeOptions) -> Result<(), NodeRunError> {
    let mut input = tokio::io::stdin();
    let (events, writer) = events::spawn_writer();
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
        let _ = events.send(Event::Audit(cluster::protocol::AuditNotice {
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
            events::close(events, writer).await;
            return Err(e);
        }
    };
    emit(Event::Listening {
        port: server.local_addr().port(),
    });
    // Commands are read on their own task: reading a frame is not cancel-safe, and the
    // loop below also wakes up to watch the storage engine.
    let (command_tx, mut commands) = mpsc::channel(1);
    let reader = tokio::spawn(async move {
        loop {
            let command = read_command(&mut input).await;
            let last = !matches!(command, Ok(Some(_)));
            if command_tx.send(command).await.is_err() || last {
                break;
            }
        }
    });
    let mut opened: Option<Opened> = None;
    let mut storage_check = tokio::time::interval(STORAGE_CHECK_INTERVAL);
    storage_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let command = tokio::select! {
            command = commands.recv() => command.unwrap_or(Ok(None))?,
            _ = storage_check.tick(), if opened.is_some() => {
                if let Some(o) = opened.as_mut() {
                    watch_storage(o, &init.cluster, &server, &events).await;
                }
                continue;
            }
        };
        match command {
            Some(Command::Open { dek, params }) => {
                let event =
                    match open(&options, &init.cluster, dek, &params, &server, &events).await {
                        Ok(new) => {
                            if let Some(old) = opened.replace(new) {
                                stop_backups(old, false).await;
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
                // Recovery holds the root key and the engine: it goes too.
                if let Some(old) = opened.take() {
                    stop_backups(old, false).await;
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
            Some(Command::Job { .. }) => emit(Event::Failed {
                message: "a serving node runs no jobs (they run in a process of their own)".into(),
            }),
            Some(Command::Shutdown) | None => break,
        }
    }
    reader.abort();
    if let Some(old) = opened.take() {
        // A last cycle, so a clean stop archives every acknowledged write.
        stop_backups(old, true).await;
    }
    server.shutdown().await;
    events::close(events, writer).await;
    Ok(())
}

async fn stop_backups(opened: Opened, last_cycle: bool) {
    if let Some((thread, _, _)) = opened.backups {
        thread.stop(last_cycle).await;
    }
}

/// One look at the storage engine: reports a storage failure, and the recovery from it
/// (the backup thread is restarted on the reopened engine).
async fn watch_storage(
    opened: &mut Opened,
    cluster: &str,
    server: &wire::Server,
    events: &mpsc::UnboundedSender<Event>,
) {
    match opened.recovery.step(server).await {
        Step::Writable | Step::Waiting => {}
        Step::TurnedReadOnly(poison) => {
            let _ = events.send(Event::ReadOnly {
                cause: poison.cause.as_str().to_string(),
                reason: poison.to_string(),
            });
        }
        Step::ReopenFailed(error) => {
            tracing::warn!(%error, "storage engine still read-only");
        }
        Step::Reopened(engine) => {
            if let Some((thread, settings, keys)) = opened.backups.take() {
                // Its engine handle is the closed one.
                thread.stop(false).await;
                match BackupThread::start(
                    cluster,
                    engine,
                    keys.clone(),
                    settings.clone(),
                    events.clone(),
                )
                .await
                {
                    Ok(thread) => opened.backups = Some((thread, settings, keys)),
                    Err(e) => tracing::error!(error = %e, "restarting backups after the reopen"),
                }
            }
            let _ = events.send(Event::Writable);
        }
    }
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
) -> Result<Opened, String> {
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
    if let Some(quota) = options.temp_disk_quota {
        config.temp_disk_quota = quota;
    }
    let mut storage_opts = storage::Options {
        archive_wal: params.backup.is_some(),
        ..storage::Options::default()
    };
    if let Some(bytes) = options.memtable_bytes {
        storage_opts.memtable_bytes = bytes;
    }
    let reopener = Reopener {
        dir,
        root,
        storage: storage_opts,
        db: config,
    };
    let opener = reopener.clone();
    let (db, engine) = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&opener.dir)
            .map_err(|e| format!("{}: {e}", opener.dir.display()))?;
        opener.open()
    })
    .await
    .map_err(|e| format!("opening the database panicked: {e}"))??;
    let backups = match (&params.backup, backup_keys) {
        (Some(settings), Some(keys)) => Some((
            BackupThread::start(
                cluster,
                engine.clone(),
                keys.clone(),
                settings.clone(),
                events.clone(),
            )
            .await
            .map_err(|e| format!("starting backups: {e}"))?,
            settings.clone(),
            keys,
        )),
        _ => None,
    };
    let recovery = Recovery::new(engine, reopener);
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
    Ok(Opened { recovery, backups })
}
