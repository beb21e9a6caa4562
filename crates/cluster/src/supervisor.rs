//! The supervisor's handle on one node process.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command as Process};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::protocol::{Command, Event, Init, OpenParams, ProtocolError, write_command};

/// How long a node may take to answer a command (opening an engine replays its WAL).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("could not start the node process {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("the node process exited")]
    Exited,
    #[error("the node did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the node refused: {0}")]
    Failed(String),
    #[error("the node answered {0:?} out of turn")]
    Unexpected(Event),
}

/// A running node process.
pub struct NodeProcess {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Event>,
    port: u16,
}

impl NodeProcess {
    /// Starts `program args…`, hands it `init`, and waits until it listens. Unsolicited
    /// events (backup progress, audit notices) go to `notices`.
    pub async fn spawn(
        program: &Path,
        args: &[OsString],
        init: Init,
        notices: mpsc::UnboundedSender<Event>,
    ) -> Result<NodeProcess, NodeError> {
        let mut child = Process::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NodeError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        let stdin = child.stdin.take().ok_or(NodeError::Exited)?;
        let stdout = child.stdout.take().ok_or(NodeError::Exited)?;
        let (tx, events) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Event>(&line) {
                    Ok(event) if event.is_notice() => {
                        let _ = notices.send(event);
                    }
                    Ok(event) => {
                        if tx.send(event).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => tracing::warn!("node printed a line that is not an event"),
                }
            }
        });
        let mut node = NodeProcess {
            child,
            stdin,
            events,
            port: 0,
        };
        write_command(&mut node.stdin, &Command::Init(init)).await?;
        match node.next_event().await? {
            Event::Listening { port } => node.port = port,
            Event::Failed { message } => return Err(NodeError::Failed(message)),
            other => return Err(NodeError::Unexpected(other)),
        }
        Ok(node)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// True once the process has exited (crashed or killed).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Hands the node its root DEK; returns when the cluster serves clients.
    pub async fn open(&mut self, dek: &[u8; 32], params: OpenParams) -> Result<(), NodeError> {
        let command = Command::Open {
            dek: Zeroizing::new(*dek),
            params,
        };
        write_command(&mut self.stdin, &command).await?;
        match self.next_event().await? {
            Event::Ready => Ok(()),
            Event::Failed { message } => Err(NodeError::Failed(message)),
            other => Err(NodeError::Unexpected(other)),
        }
    }

    /// Makes the node wipe its keys and refuse clients with `reason`.
    pub async fn lock(&mut self, reason: &str) -> Result<(), NodeError> {
        let command = Command::Lock {
            reason: reason.to_string(),
        };
        write_command(&mut self.stdin, &command).await?;
        match self.next_event().await? {
            Event::Locked { .. } => Ok(()),
            Event::Failed { message } => Err(NodeError::Failed(message)),
            other => Err(NodeError::Unexpected(other)),
        }
    }

    /// Asks the node to stop, and kills it if it does not within a few seconds.
    pub async fn shutdown(mut self) {
        let _ = write_command(&mut self.stdin, &Command::Shutdown).await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    async fn next_event(&mut self) -> Result<Event, NodeError> {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.events.recv()).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(NodeError::Exited),
            Err(_) => Err(NodeError::Timeout(ANSWER_TIMEOUT)),
        }
    }
}
