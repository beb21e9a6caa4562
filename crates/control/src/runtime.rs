//! One cluster at run time: its envelope, its node process, and its Ready/Inaccessible
//! state machine, driven by the revalidation loop.
//!
//! ```text
//!            revalidate ok                     revalidate failed (decided cause,
//!   Provisioning ──────────► Ready ◄───────┐   or transient beyond the grace period)
//!                              │           │
//!                              └──────────►Inaccessible{reason}
//!                            lock: node wipes keys,     next good revalidation:
//!                            closes connections         Open with the unwrapped DEK
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::protocol::{BackupReport, BackupSettings, Event, Init, OpenParams};
use cluster::supervisor::NodeProcess;
use envelope::{Envelope, KekError, Reason};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use zeroize::Zeroizing;

use crate::audit_trail::notice;
use audit::EventKind;

/// What the cluster is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Provisioning,
    Ready,
    Inaccessible { reason: Reason, message: String },
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Provisioning => "Provisioning",
            Status::Ready => "Ready",
            Status::Inaccessible { .. } => "Inaccessible",
        }
    }
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
    /// aborted on delete/shutdown).
    pub async fn run(self: Arc<Self>) {
        loop {
            self.revalidate_once().await;
            tokio::select! {
                _ = tokio::time::sleep(until_next_tick(self.settings.revalidation_interval)) => {}
                _ = self.wake.notified() => {}
            }
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
        if let Err(e) = self.ensure_node(None).await {
            tracing::error!(cluster = %self.name, error = %e, "cluster node cannot be started");
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
                    self.audit(notice(
                        EventKind::ClusterReady,
                        true,
                        format!("cluster is Ready (was {})", previous.as_str()),
                    ));
                }
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
                n.shutdown().await;
            }
            *self.node_open.lock() = false;
            // The replacement starts with the reason it will tell clients.
            if let Err(e) = self.ensure_node(Some(message.clone())).await {
                tracing::error!(cluster = %self.name, error = %e, "locked node cannot be started");
            }
        }
        let changed = {
            let mut status = self.status.lock();
            let next = Status::Inaccessible {
                reason,
                message: message.clone(),
            };
            let changed = *status != next;
            *status = next;
            changed
        };
        if changed {
            tracing::warn!(cluster = %self.name, %message, "cluster is Inaccessible");
            self.audit(notice(EventKind::ClusterInaccessible, false, message));
        }
    }

    /// Starts the node process if it is not running (first start, or after a crash).
    async fn ensure_node(
        &self,
        reason: Option<String>,
    ) -> Result<(), cluster::supervisor::NodeError> {
        let mut node = self.node.lock().await;
        if let Some(n) = node.as_mut() {
            if !n.has_exited() {
                return Ok(());
            }
            tracing::warn!(cluster = %self.name, "cluster node exited; restarting it");
            *node = None;
            *self.node_open.lock() = false;
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
        Ok(())
    }

    /// Stops the node (delete or shutdown).
    pub async fn stop(&self) {
        if let Some(node) = self.node.lock().await.take() {
            node.shutdown().await;
        }
        *self.node_open.lock() = false;
    }
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
