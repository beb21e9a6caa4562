//! One cluster at run time: its envelope, its node process, and its Ready/Inaccessible
//! state machine, driven by the revalidation loop.
//!
//! ```text
//!            revalidate ok                     revalidate failed (decided cause,
//!   Provisioning ──────────► Ready ◄───────┐   or transient beyond the grace period)
//!                            │  ▲  │           │
//!                node crashed│  │  └──────────►Inaccessible{reason}
//!                            ▼  │ restarted, lock: node wipes keys,     next good revalidation:
//!                          Starting  opened  closes connections         Open with the unwrapped DEK
//! ```
//!
//! The loop also watches the node process: the moment it exits on its own (a crash, an
//! OOM kill, `kill -9`) the crash is recorded ([`NodeHealth`], the audit log) and, after
//! the [`crate::restart`] backoff, a pass starts a new node and hands it the key — the
//! same path as a first start. Deliberate stops take the node out of its slot before
//! stopping it, so they are never mistaken for crashes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster::protocol::{BackupReport, BackupSettings, Event, Init, OpenParams};
use cluster::supervisor::{NodeExit, NodeProcess};
use envelope::{Envelope, KekError, Reason};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use zeroize::Zeroizing;

use crate::audit_trail::notice;
use crate::restart::{Backoff, RestartPolicy};
use audit::EventKind;

/// What the cluster is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Provisioning,
    Ready,
    /// A Ready cluster's node crashed; a new one is being started and handed the key.
    Starting,
    Inaccessible {
        reason: Reason,
        message: String,
    },
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Provisioning => "Provisioning",
            Status::Ready => "Ready",
            Status::Starting => "Starting",
            Status::Inaccessible { .. } => "Inaccessible",
        }
    }
}

/// Why an administrator password reset was not applied. Never carries the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminPasswordRefused {
    /// The cluster is not serving (its state is given): nothing was changed.
    #[error("the cluster is {0}")]
    NotReady(String),
    /// The node could not apply it.
    #[error("the cluster node could not reset the password: {0}")]
    Node(String),
}

/// Why a node is gone without being stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashCause {
    /// The process exited on its own or was killed.
    Exited(NodeExit),
    /// A new node could not be started (its program failed to run or to listen).
    StartFailed(String),
}

impl std::fmt::Display for CrashCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrashCause::Exited(exit) => write!(f, "the node process {exit}"),
            CrashCause::StartFailed(error) => {
                write!(f, "the node process could not start: {error}")
            }
        }
    }
}

/// One crash of a cluster's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    pub time: time::OffsetDateTime,
    pub cause: CrashCause,
}

/// Whether the cluster's node process runs as it should, and its crashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeHealth {
    /// From a crash until the new node is in the state the control plane wants (open,
    /// or locked when the key is not usable).
    pub restarting: bool,
    /// Crashes since the control plane started.
    pub crash_count: u64,
    pub last_crash: Option<Crash>,
    /// When the next restart starts, while it waits out its backoff.
    pub next_restart: Option<time::OffsetDateTime>,
}

/// The last revalidation's view of the key.
#[derive(Debug, Clone, Default)]
pub struct KeyView {
    pub active_kid: Option<String>,
    pub last_validated: Option<time::OffsetDateTime>,
    /// A transient failure being ridden out (the cluster stays Ready meanwhile).
    pub warning: Option<String>,
}

/// How nodes are started and how revalidation behaves.
#[derive(Clone)]
pub struct NodeSettings {
    pub program: PathBuf,
    pub args: Vec<std::ffi::OsString>,
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
    pub revalidation_interval: Duration,
    /// How long a vault outage may last before a Ready cluster turns Inaccessible.
    pub grace_period: Duration,
    /// How soon a crashed node is started again.
    pub restart: RestartPolicy,
}

pub struct Runtime {
    pub name: String,
    pub dir: PathBuf,
    port: u16,
    settings: NodeSettings,
    envelope: RwLock<Arc<Envelope>>,
    node: tokio::sync::Mutex<Option<NodeProcess>>,
    /// Whether the node currently holds an open engine (false right after a (re)spawn).
    node_open: Mutex<bool>,
    status: Mutex<Status>,
    key: Mutex<KeyView>,
    failing_since: Mutex<Option<Instant>>,
    /// Admin credentials to create on the first open of a new cluster.
    pending_admin: Mutex<Option<OpenParams>>,
    wake: Notify,
    /// Serialises revalidation passes (the loop and "revalidate now").
    pass: tokio::sync::Mutex<()>,
    /// Continuous backup settings handed to the node at every open (none: no backups).
    backup: Mutex<Option<BackupSettings>>,
    backup_report: Mutex<Option<BackupReport>>,
    /// The node's last `readOnly` notice, until its `writable` notice.
    read_only_reason: Mutex<Option<String>>,
    /// Unsolicited node events (backup progress, audit notices), read by the plane.
    notices: tokio::sync::mpsc::UnboundedSender<Event>,
    health: Mutex<NodeHealth>,
    backoff: Mutex<Backoff>,
    /// Set while the node is down: when the loop starts the next one.
    restart_at: Mutex<Option<tokio::time::Instant>>,
    /// Set by [`Runtime::stop`]: no node is started again.
    stopped: AtomicBool,
}

/// Time until the next multiple of `interval` on the wall clock. Every cluster's loop
/// wakes on the same ticks, so a deployment revalidates in one burst per interval rather
/// than waking the process once per cluster (most of the residual cost of revalidation
/// is per-wake-up overhead, not per-request work).
fn until_next_tick(interval: Duration) -> Duration {
    let period = interval.as_nanos().max(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let left = period - now % period;
    Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX))
}

impl Runtime {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        dir: PathBuf,
        port: u16,
        settings: NodeSettings,
        envelope: Envelope,
        pending_admin: Option<OpenParams>,
        backup: Option<BackupSettings>,
        notices: tokio::sync::mpsc::UnboundedSender<Event>,
    ) -> Arc<Runtime> {
        let backoff = Backoff::new(settings.restart);
        Arc::new(Runtime {
            name,
            dir,
            port,
            settings,
            envelope: RwLock::new(Arc::new(envelope)),
            node: tokio::sync::Mutex::new(None),
            node_open: Mutex::new(false),
            status: Mutex::new(Status::Provisioning),
            key: Mutex::new(KeyView::default()),
            failing_since: Mutex::new(None),
            pending_admin: Mutex::new(pending_admin),
            wake: Notify::new(),
            pass: tokio::sync::Mutex::new(()),
            backup: Mutex::new(backup),
            backup_report: Mutex::new(None),
            read_only_reason: Mutex::new(None),
            notices,
            health: Mutex::new(NodeHealth::default()),
            backoff: Mutex::new(backoff),
            restart_at: Mutex::new(None),
            stopped: AtomicBool::new(false),
        })
    }

    /// Queues an audit event (the plane writes it with this cluster's name).
    fn audit(&self, notice: cluster::protocol::AuditNotice) {
        let _ = self.notices.send(Event::Audit(notice));
    }

    pub fn backup_settings(&self) -> Option<BackupSettings> {
        self.backup.lock().clone()
    }

    pub fn backup_report(&self) -> Option<BackupReport> {
        self.backup_report.lock().clone()
    }

    /// Records a node's backup report; the generation becomes the rollback floor the
    /// next node is given.
    pub fn set_backup_report(&self, report: BackupReport) {
        if let Some(settings) = self.backup.lock().as_mut() {
            settings.min_generation = settings.min_generation.max(report.generation);
        }
        *self.backup_report.lock() = Some(report);
    }

    /// Why the node refuses writes after a storage failure, if it does.
    pub fn read_only_reason(&self) -> Option<String> {
        self.read_only_reason.lock().clone()
    }

    /// Records the node's `readOnly` (`Some`) or `writable` (`None`) notice.
    pub fn set_read_only_reason(&self, reason: Option<String>) {
        *self.read_only_reason.lock() = reason;
    }

    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }

    pub fn key_view(&self) -> KeyView {
        self.key.lock().clone()
    }

    pub fn node_health(&self) -> NodeHealth {
        self.health.lock().clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn envelope(&self) -> Arc<Envelope> {
        self.envelope.read().clone()
    }

    /// Swaps the KEK (a key or identity update that already re-wrapped the DEK).
    pub fn set_envelope(&self, envelope: Envelope) {
        *self.envelope.write() = Arc::new(envelope);
    }

    /// The node's process id, for tests that inspect or kill it.
    pub async fn node_pid(&self) -> Option<u32> {
        self.node.lock().await.as_ref().and_then(|n| n.pid())
    }

    /// Runs the revalidation loop until the runtime is dropped by its owner (the task is
    /// aborted on delete/shutdown). Between passes it waits for the next tick, a wake-up,
    /// or the node's exit; a node that is down is started again once its backoff is over.
    pub async fn run(self: Arc<Self>) {
        let mut revalidate = true;
        loop {
            if revalidate {
                self.revalidate_once().await;
            }
            revalidate = true;
            let restart_at = *self.restart_at.lock();
            if let Some(at) = restart_at {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = self.wake.notified() => {}
                }
                continue;
            }
            // Read under the pass lock: a pass replacing the node on purpose is finished,
            // so this is the node that serves now.
            let exit = {
                let _pass = self.pass.lock().await;
                self.node.lock().await.as_ref().map(NodeProcess::exit_watch)
            };
            tokio::select! {
                _ = tokio::time::sleep(until_next_tick(self.settings.revalidation_interval)) => {}
                _ = self.wake.notified() => {}
                exit = exited(exit) => {
                    self.node_exited(exit).await;
                    revalidate = false;
                }
            }
        }
    }

    /// The watched node exited: a crash, unless it was stopped or replaced on purpose
    /// (then it is no longer in the slot).
    async fn node_exited(&self, exit: tokio::sync::watch::Receiver<Option<NodeExit>>) {
        let _pass = self.pass.lock().await;
        let mut node = self.node.lock().await;
        let ours = node
            .as_ref()
            .is_some_and(|n| n.exit_watch().same_channel(&exit));
        if ours && !self.stopped.load(Ordering::SeqCst) {
            let status = exit.borrow().unwrap_or(NodeExit::Unknown);
            *node = None;
            self.record_crash(CrashCause::Exited(status));
        }
    }

    /// Books a crash: the node is gone, the cluster is not Ready until a new one is open,
    /// and the loop restarts it after the backoff.
    fn record_crash(&self, cause: CrashCause) {
        let delay = self.schedule_restart();
        *self.node_open.lock() = false;
        let count = {
            let mut health = self.health.lock();
            health.restarting = true;
            health.crash_count += 1;
            health.last_crash = Some(Crash {
                time: time::OffsetDateTime::now_utc(),
                cause: cause.clone(),
            });
            health.crash_count
        };
        {
            let mut status = self.status.lock();
            if *status == Status::Ready {
                *status = Status::Starting;
            }
        }
        tracing::error!(cluster = %self.name, %cause, crashes = count, restart_in = ?delay, "cluster node crashed; restarting it");
        self.audit(notice(
            EventKind::NodeCrashed,
            false,
            format!("{cause}; crash {count}, restarting in {delay:?}"),
        ));
    }

    /// Asks the loop for a pass after the backoff's next delay; returns the delay.
    fn schedule_restart(&self) -> Duration {
        let delay = self.backoff.lock().crashed(Instant::now());
        *self.restart_at.lock() = Some(tokio::time::Instant::now() + delay);
        self.health.lock().next_restart = Some(time::OffsetDateTime::now_utc() + delay);
        delay
    }

    /// The node runs in the state the control plane wants (open, or locked with the
    /// reason): a restart is over.
    fn node_healthy(&self) {
        self.backoff.lock().healthy(Instant::now());
        let recovered = std::mem::replace(&mut self.health.lock().restarting, false);
        if recovered {
            tracing::info!(cluster = %self.name, "cluster node recovered");
            self.audit(notice(
                EventKind::NodeRecovered,
                true,
                "cluster node restarted after a crash",
            ));
        }
    }

    /// Asks the loop for a pass now (the "revalidate" action); returns at once.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// One revalidation pass: make sure the node runs, revalidate the key, and move the
    /// node to match the outcome.
    pub async fn revalidate_once(&self) {
        let _pass = self.pass.lock().await;
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        // This pass is the scheduled restart (or comes before it: it restarts now).
        *self.restart_at.lock() = None;
        self.health.lock().next_restart = None;
        if let Err(e) = self.ensure_node(None).await {
            tracing::error!(cluster = %self.name, error = %e, "cluster node cannot be started");
            self.record_crash(CrashCause::StartFailed(e.to_string()));
            *self.status.lock() = Status::Inaccessible {
                reason: Reason::Internal,
                message: format!("the cluster process cannot start: {e}"),
            };
            return;
        }
        let envelope = self.envelope();
        match envelope.revalidate().await {
            Ok(outcome) => {
                *self.failing_since.lock() = None;
                if let Some(from) = &outcome.rewrapped_from {
                    tracing::info!(cluster = %self.name, %from, to = %outcome.active_kid, "root key re-wrapped");
                    self.audit(notice(
                        EventKind::KeyRewrapped,
                        true,
                        format!("root key re-wrapped from {from} to {}", outcome.active_kid),
                    ));
                }
                {
                    let mut key = self.key.lock();
                    key.active_kid = Some(outcome.active_kid.clone());
                    key.last_validated = Some(time::OffsetDateTime::now_utc());
                    key.warning = None;
                }
                if !*self.node_open.lock() {
                    let mut params = self.pending_admin.lock().clone().unwrap_or_default();
                    params.backup = self.backup_settings();
                    let opened = {
                        let mut node = self.node.lock().await;
                        match node.as_mut() {
                            Some(n) => n.open(outcome.dek.as_bytes(), params).await,
                            None => Err(cluster::supervisor::NodeError::Exited),
                        }
                    };
                    match opened {
                        Ok(()) => {
                            *self.node_open.lock() = true;
                            self.pending_admin.lock().take();
                        }
                        Err(e) => {
                            *self.status.lock() = Status::Inaccessible {
                                reason: Reason::Internal,
                                message: format!("the cluster could not open its data: {e}"),
                            };
                            return;
                        }
                    }
                }
                let previous = std::mem::replace(&mut *self.status.lock(), Status::Ready);
                if previous != Status::Ready {
                    tracing::info!(cluster = %self.name, from = previous.as_str(), "cluster is Ready");
                    // Back from a crash is the node's recovery, audited below; the key's
                    // state did not change.
                    if previous != Status::Starting {
                        self.audit(notice(
                            EventKind::ClusterReady,
                            true,
                            format!("cluster is Ready (was {})", previous.as_str()),
                        ));
                    }
                }
                self.node_healthy();
            }
            Err(error) => self.fail(error).await,
        }
    }

    async fn fail(&self, error: KekError) {
        let reason = error.reason();
        let message = format!("{reason}: {error}");
        let ready = *self.status.lock() == Status::Ready;
        if reason.is_transient() && ready {
            let since = *self.failing_since.lock().get_or_insert_with(Instant::now);
            if since.elapsed() < self.settings.grace_period {
                tracing::warn!(cluster = %self.name, %message, "key vault unreachable; within the grace period");
                self.key.lock().warning = Some(message);
                return;
            }
        }
        if *self.node_open.lock() {
            // The node closes its connections and drops its engine, then the process is
            // replaced: a fresh node that never saw the key answers clients from now on.
            // Replacing the process is what makes "no key material remains" hold for
            // every copy — stack slots, allocator free lists, TLS buffers — not only for
            // the ones a zeroizing type owned.
            let old = self.node.lock().await.take();
            if let Some(mut n) = old {
                if let Err(e) = n.lock(&message).await {
                    tracing::error!(cluster = %self.name, error = %e, "node failed to lock");
                }
                // The status turns as soon as the node refuses clients, not after its
                // replacement has started: the API never says Ready over a locked node.
                self.mark_inaccessible(reason, &message);
                n.shutdown().await;
            }
            *self.node_open.lock() = false;
            // The replacement starts with the reason it will tell clients.
            if let Err(e) = self.ensure_node(Some(message.clone())).await {
                tracing::error!(cluster = %self.name, error = %e, "locked node cannot be started");
            }
        }
        self.mark_inaccessible(reason, &message);
        if self.health.lock().restarting && reason.is_transient() {
            // A restart that could not reach the vault is tried again on the backoff
            // schedule, not an interval later.
            let delay = self.schedule_restart();
            tracing::warn!(cluster = %self.name, retry_in = ?delay, "restarted node cannot be opened yet");
            return;
        }
        // A locked node refusing clients with the reason is where this cluster should be.
        let running = self
            .node
            .lock()
            .await
            .as_ref()
            .is_some_and(|n| !n.has_exited());
        if running {
            self.node_healthy();
        }
    }

    /// Sets the status to Inaccessible for `reason`; logs and audits the transition once.
    fn mark_inaccessible(&self, reason: Reason, message: &str) {
        let changed = {
            let mut status = self.status.lock();
            let next = Status::Inaccessible {
                reason,
                message: message.to_string(),
            };
            let changed = *status != next;
            *status = next;
            changed
        };
        if changed {
            tracing::warn!(cluster = %self.name, %message, "cluster is Inaccessible");
            self.audit(notice(
                EventKind::ClusterInaccessible,
                false,
                message.to_string(),
            ));
        }
    }

    /// Starts the node process if it is not running (first start, or after a crash).
    async fn ensure_node(
        &self,
        reason: Option<String>,
    ) -> Result<(), cluster::supervisor::NodeError> {
        let mut node = self.node.lock().await;
        if self.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(n) = node.as_ref() {
            let Some(exit) = n.exit_status() else {
                return Ok(());
            };
            // Exited before the loop saw it: book the crash, and restart now (this pass
            // was asked for).
            *node = None;
            self.record_crash(CrashCause::Exited(exit));
        }
        let initial_reason = reason.unwrap_or_else(|| match &*self.status.lock() {
            Status::Inaccessible { message, .. } => message.clone(),
            _ => "the cluster is starting; its key has not been validated yet".to_string(),
        });
        let init = Init {
            cluster: self.name.clone(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            cert_pem: self.settings.cert_pem.clone(),
            key_pem: self.settings.key_pem.clone(),
            initial_reason,
        };
        let mut args = self.settings.args.clone();
        args.push("--data-dir".into());
        args.push(self.dir.join("data").into_os_string());
        *node = Some(
            NodeProcess::spawn(&self.settings.program, &args, init, self.notices.clone()).await?,
        );
        *self.node_open.lock() = false;
        // A crash booked just above is restarted by this pass, not after a backoff.
        *self.restart_at.lock() = None;
        self.health.lock().next_restart = None;
        Ok(())
    }

    /// Hands the open node the administrator's new password (the management API's
    /// reset). Only a Ready cluster whose node is open and healthy takes it; otherwise the
    /// refusal says why, and nothing is queued (a later open must not apply a password the
    /// caller was told was refused). The password is dropped (zeroized) on return.
    pub async fn reset_admin_password(
        &self,
        user: &str,
        password: Zeroizing<String>,
    ) -> Result<(), AdminPasswordRefused> {
        let _pass = self.pass.lock().await;
        let status = self.status();
        let restarting = self.health.lock().restarting;
        if self.stopped.load(Ordering::SeqCst) || restarting || status != Status::Ready {
            return Err(AdminPasswordRefused::NotReady(match status {
                Status::Inaccessible { message, .. } => format!("Inaccessible ({message})"),
                Status::Ready if restarting => "Starting".to_string(),
                other => other.as_str().to_string(),
            }));
        }
        if !*self.node_open.lock() {
            return Err(AdminPasswordRefused::NotReady("Starting".into()));
        }
        let mut node = self.node.lock().await;
        let Some(n) = node.as_mut().filter(|n| !n.has_exited()) else {
            return Err(AdminPasswordRefused::NotReady("Starting".into()));
        };
        let admin = cluster::protocol::AdminPassword {
            user: user.to_string(),
            password,
        };
        n.reset_admin_password(admin)
            .await
            .map_err(|e| AdminPasswordRefused::Node(e.to_string()))
    }

    /// Stops the node (delete or shutdown); it is not restarted.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(node) = self.node.lock().await.take() {
            node.shutdown().await;
        }
        *self.node_open.lock() = false;
        *self.restart_at.lock() = None;
    }
}

/// Resolves once the watched node has exited, with its watch (never, without a node).
async fn exited(
    watch: Option<tokio::sync::watch::Receiver<Option<NodeExit>>>,
) -> tokio::sync::watch::Receiver<Option<NodeExit>> {
    if let Some(mut watch) = watch
        && watch.wait_for(Option::is_some).await.is_ok()
    {
        return watch;
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::until_next_tick;
    use std::time::Duration;

    #[test]
    fn ticks_line_up_on_the_wall_clock() {
        for interval in [
            Duration::from_millis(250),
            Duration::from_secs(1),
            Duration::from_secs(3600),
        ] {
            let left = until_next_tick(interval);
            assert!(
                left > Duration::ZERO && left <= interval,
                "{left:?} for {interval:?}"
            );
            // Two clusters asking a moment apart aim at the same instant.
            let a = std::time::Instant::now() + until_next_tick(interval);
            let b = std::time::Instant::now() + until_next_tick(interval);
            let gap = if a > b { a - b } else { b - a };
            assert!(gap < Duration::from_millis(50) || gap > interval - Duration::from_millis(50));
        }
    }
}
