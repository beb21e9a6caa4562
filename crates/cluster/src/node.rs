//! The node process: reads supervisor commands on stdin, serves MongoDB clients.
//!
//! Memory discipline: the root DEK arrives in a zeroizing buffer, becomes a
//! `storage::RootKey` (zeroizing) and the buffer is dropped at once. On `Lock`, the wire
//! gate drops the database handle and every cursor; the engine, its data keys and the
//! root key go with the last reference, then the node reports `Locked`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

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

async fn emit<W: AsyncWrite + Unpin>(out: &mut W, event: Event) -> std::io::Result<()> {
    out.write_all(event.to_line().as_bytes()).await?;
    out.flush().await
}

/// How a node runs its database.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    pub data_dir: PathBuf,
    /// Memory a blocking sort may use before it spills to encrypted temporary files.
    pub sort_memory_limit: Option<usize>,
}

/// Runs a node over this process's stdin/stdout until `Shutdown` or end of input.
pub async fn run(options: NodeOptions) -> Result<(), NodeRunError> {
    let mut input = tokio::io::stdin();
    let mut output = tokio::io::stdout();
    let init = match read_command(&mut input).await? {
        Some(Command::Init(init)) => init,
        _ => return Err(NodeRunError::NoInit),
    };
    let server = match start_server(&init).await {
        Ok(s) => s,
        Err(e) => {
            emit(
                &mut output,
                Event::Failed {
                    message: e.to_string(),
                },
            )
            .await?;
            return Err(e);
        }
    };
    emit(
        &mut output,
        Event::Listening {
            port: server.local_addr().port(),
        },
    )
    .await?;
    loop {
        match read_command(&mut input).await? {
            Some(Command::Open { dek, params }) => {
                let event = match open(&options, dek, &params, &server).await {
                    Ok(()) => Event::Ready,
                    Err(message) => Event::Failed { message },
                };
                emit(&mut output, event).await?;
            }
            Some(Command::Lock { reason }) => {
                server.make_inaccessible(reason.clone());
                emit(&mut output, Event::Locked { reason }).await?;
            }
            Some(Command::Init(_)) => {
                emit(
                    &mut output,
                    Event::Failed {
                        message: "already initialised".into(),
                    },
                )
                .await?;
            }
            Some(Command::Shutdown) | None => break,
        }
    }
    server.shutdown().await;
    Ok(())
}

async fn start_server(init: &Init) -> Result<wire::Server, NodeRunError> {
    let identity = pki::CertifiedKey {
        cert_pem: init.cert_pem.clone(),
        key_pem: init.key_pem.clone(),
    };
    let tls = pki::server_config(&identity, None).map_err(|e| NodeRunError::Tls(e.to_string()))?;
    let mut tls = Arc::unwrap_or_clone(tls);
    // MongoDB clients do not negotiate ALPN; offering HTTP protocols would only confuse.
    tls.alpn_protocols.clear();
    let config =
        wire::ServerConfig::inaccessible(init.listen, Arc::new(tls), init.initial_reason.clone());
    wire::Server::start(config)
        .await
        .map_err(|e| NodeRunError::Listen(e.to_string()))
}

async fn open(
    options: &NodeOptions,
    dek: Zeroizing<[u8; 32]>,
    params: &OpenParams,
    server: &wire::Server,
) -> Result<(), String> {
    let root = storage::RootKey::from_slice(dek.as_ref()).map_err(|e| e.to_string())?;
    drop(dek);
    let dir = options.data_dir.clone();
    let mut config = docdb::DbConfig::default();
    if let Some(limit) = options.sort_memory_limit {
        config.sort_memory_limit = limit;
    }
    let db = tokio::task::spawn_blocking(move || -> Result<docdb::Db, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let engine = storage::Engine::open(&dir, root, storage::Options::default())
            .map_err(|e| e.to_string())?;
        docdb::Db::open_with(engine, config).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("opening the database panicked: {e}"))??;
    server.make_ready(db);
    if let (Some(user), Some(password)) = (&params.admin_user, &params.admin_password) {
        server
            .ensure_admin_user(user, password)
            .await
            .map_err(|e| format!("creating the administrator: {e}"))?;
    }
    Ok(())
}
