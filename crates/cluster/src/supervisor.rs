//! The supervisor's handle on one node process, and [`run_job`] for one-shot jobs.
//!
//! A watcher task owns the child and waits on it, so the supervisor learns that a node
//! exited the moment it does (through [`NodeProcess::exit_watch`]) instead of finding out
//! at its next command or revalidation.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command as Process};
use tokio::sync::{mpsc, oneshot, watch};
use zeroize::Zeroizing;

use crate::protocol::{
    Command, Event, Init, JobFailure, JobKeys, JobSpec, OpenParams, ProtocolError, write_command,
};

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
    /// A job reported failure; `message` is its error's text.
    #[error("{message}")]
    JobFailed {
        failure: JobFailure,
        message: String,
    },
}

/// How a node process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeExit {
    /// It exited with this status code.
    Code(i32),
    /// This signal ended it (`kill -9`, the OOM killer, a stack overflow's SIGSEGV, an
    /// abort).
    Signal(i32),
    /// Its status could not be read (the wait itself failed).
    Unknown,
}

impl NodeExit {
    pub fn from_status(status: ExitStatus) -> NodeExit {
        match (status.code(), status.signal()) {
            (Some(code), _) => NodeExit::Code(code),
            (None, Some(signal)) => NodeExit::Signal(signal),
            (None, None) => NodeExit::Unknown,
        }
    }

    /// The conventional name of the signal that ended the process (`SIGKILL`), if a
    /// signal did and it is one Linux defines.
    pub fn signal_name(self) -> Option<&'static str> {
        let NodeExit::Signal(signal) = self else {
            return None;
        };
        Some(match signal {
            1 => "SIGHUP",
            2 => "SIGINT",
            3 => "SIGQUIT",
            4 => "SIGILL",
            5 => "SIGTRAP",
            6 => "SIGABRT",
            7 => "SIGBUS",
            8 => "SIGFPE",
            9 => "SIGKILL",
            10 => "SIGUSR1",
            11 => "SIGSEGV",
            12 => "SIGUSR2",
            13 => "SIGPIPE",
            14 => "SIGALRM",
            15 => "SIGTERM",
            16 => "SIGSTKFLT",
            24 => "SIGXCPU",
            25 => "SIGXFSZ",
            31 => "SIGSYS",
            _ => return None,
        })
    }
}

impl fmt::Display for NodeExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.signal_name()) {
            (NodeExit::Code(code), _) => write!(f, "exited with code {code}"),
            (NodeExit::Signal(n), Some(name)) => write!(f, "was killed by signal {name} ({n})"),
            (NodeExit::Signal(n), None) => write!(f, "was killed by signal {n}"),
            (NodeExit::Unknown, _) => f.write_str("exited with an unknown status"),
        }
    }
}

/// A running node process.
pub struct NodeProcess {
    pid: Option<u32>,
    stdin: ChildStdin,
    events: mpsc::Receiver<Event>,
    port: u16,
    /// Set once, by the watcher task, when the process has exited.
    exit: watch::Receiver<Option<NodeExit>>,
    /// Sending (or dropping) this makes the watcher kill the process.
    kill: Option<oneshot::Sender<()>>,
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
        let mut child = start(program, args)?;
        let stdin = child.stdin.take().ok_or(NodeError::Exited)?;
        let stdout = child.stdout.take().ok_or(NodeError::Exited)?;
        let pid = child.id();
        let (exit_tx, exit) = watch::channel(None);
        let (kill, kill_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                // An explicit kill, or the handle was dropped: the node must not outlive it.
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let exit = match status {
                Ok(status) => NodeExit::from_status(status),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the node's exit status");
                    NodeExit::Unknown
                }
            };
            let _ = exit_tx.send(Some(exit));
        });
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
            pid,
            stdin,
            events,
            port: 0,
            exit,
            kill: Some(kill),
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

    /// The process id while the process runs.
    pub fn pid(&self) -> Option<u32> {
        if self.has_exited() { None } else { self.pid }
    }

    /// True once the process has exited (crashed or killed).
    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// How the process ended, once it has.
    pub fn exit_status(&self) -> Option<NodeExit> {
        *self.exit.borrow()
    }

    /// A receiver that changes to `Some` the moment the process exits; receivers of two
    /// handles can be told apart with `same_channel`.
    pub fn exit_watch(&self) -> watch::Receiver<Option<NodeExit>> {
        self.exit.clone()
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

    /// Gives the open cluster's administrator a new password.
    pub async fn reset_admin_password(
        &mut self,
        admin: crate::protocol::AdminPassword,
    ) -> Result<(), NodeError> {
        let command = Command::ResetAdminPassword(admin);
        write_command(&mut self.stdin, &command).await?;
        drop(command);
        match self.next_event().await? {
            Event::AdminPasswordReset => Ok(()),
            Event::Failed { message } => Err(NodeError::Failed(message)),
            other => Err(NodeError::Unexpected(other)),
        }
    }

    /// Asks the node to stop, and kills it if it does not within a few seconds.
    pub async fn shutdown(self) {
        let NodeProcess {
            mut stdin,
            mut exit,
            mut kill,
            ..
        } = self;
        let _ = write_command(&mut stdin, &Command::Shutdown).await;
        // End of input as well: the node's runtime cannot finish (so the process cannot
        // exit) while its blocking read of stdin still waits for the next frame.
        drop(stdin);
        if tokio::time::timeout(Duration::from_secs(10), exit.wait_for(Option::is_some))
            .await
            .is_err()
        {
            if let Some(kill) = kill.take() {
                let _ = kill.send(());
            }
            let _ = exit.wait_for(Option::is_some).await;
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

/// Starts `program args…` with piped stdin and stdout.
fn start(program: &Path, args: &[OsString]) -> Result<Child, NodeError> {
    Process::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // A group of its own: a terminal's Ctrl-C reaches the supervisor only, which
        // stops its nodes cleanly (a last backup cycle) instead of them dying of
        // SIGINT and being taken for crashes. A node never outlives the supervisor:
        // it stops when its stdin closes.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| NodeError::Spawn {
            program: program.display().to_string(),
            source,
        })
}

/// Runs one job in a process of its own (`program args…`, i.e. `strongroom node --job`):
/// hands it `spec` and `keys`, passes each [`Event::JobProgress`] to `progress` (phase,
/// done, total) and returns the job's result (JSON text). The keys are dropped (zeroized)
/// once written; the process exits after its answer and is killed if this future is
/// dropped first.
pub async fn run_job(
    program: &Path,
    args: &[OsString],
    spec: JobSpec,
    keys: JobKeys,
    progress: &mut (dyn FnMut(&str, u64, u64) + Send),
) -> Result<String, NodeError> {
    let mut child = start(program, args)?;
    let mut stdin = child.stdin.take().ok_or(NodeError::Exited)?;
    let stdout = child.stdout.take().ok_or(NodeError::Exited)?;
    let command = Command::Job { spec, keys };
    let written = write_command(&mut stdin, &command).await;
    drop(command);
    written?;
    let mut lines = BufReader::new(stdout).lines();
    let answer = loop {
        let Some(line) = lines.next_line().await.map_err(ProtocolError::from)? else {
            break Err(NodeError::Exited);
        };
        match serde_json::from_str::<Event>(&line) {
            Ok(Event::JobProgress { phase, done, total }) => progress(&phase, done, total),
            Ok(Event::JobDone { result }) => break Ok(result),
            Ok(Event::JobFailed { failure, message }) => {
                break Err(NodeError::JobFailed { failure, message });
            }
            Ok(Event::Failed { message }) => break Err(NodeError::Failed(message)),
            Ok(other) => break Err(NodeError::Unexpected(other)),
            Err(_) => tracing::warn!("job printed a line that is not an event"),
        }
    };
    // Its stdin closing tells the job to exit; it has nothing left to do.
    drop(stdin);
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::NodeExit;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    #[test]
    fn exit_statuses_name_their_cause() {
        let killed = NodeExit::from_status(ExitStatus::from_raw(9));
        assert_eq!(killed, NodeExit::Signal(9));
        assert_eq!(killed.signal_name(), Some("SIGKILL"));
        assert_eq!(killed.to_string(), "was killed by signal SIGKILL (9)");
        let segv = NodeExit::from_status(ExitStatus::from_raw(11));
        assert_eq!(segv.signal_name(), Some("SIGSEGV"));
        let exited = NodeExit::from_status(ExitStatus::from_raw(101 << 8));
        assert_eq!(exited, NodeExit::Code(101));
        assert_eq!(exited.signal_name(), None);
        assert_eq!(exited.to_string(), "exited with code 101");
        assert_eq!(NodeExit::Signal(40).to_string(), "was killed by signal 40");
    }
}
