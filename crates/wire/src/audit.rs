//! Security events for the audit log: authentication outcomes and user management.
//!
//! The wire server does not own the audit log (the control plane does, one per
//! deployment); it reports events to a process-wide sink, which the node forwards to its
//! supervisor. One node process serves one cluster, so a process-wide sink is exactly
//! per-cluster. Without a sink (tests, embedded use) events are dropped.

use std::net::SocketAddr;
use std::sync::OnceLock;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEventKind {
    AuthSucceeded,
    AuthFailed,
    UserCreated,
    UserUpdated,
    UserDropped,
}

impl SecurityEventKind {
    /// The audit log's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityEventKind::AuthSucceeded => "auth_succeeded",
            SecurityEventKind::AuthFailed => "auth_failed",
            SecurityEventKind::UserCreated => "user_created",
            SecurityEventKind::UserUpdated => "user_updated",
            SecurityEventKind::UserDropped => "user_dropped",
        }
    }
}

/// One event: security metadata only — user names and addresses, never documents,
/// queries or secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    pub kind: SecurityEventKind,
    /// The user acting (or attempting to).
    pub principal: Option<String>,
    pub remote: Option<SocketAddr>,
    pub success: bool,
    pub detail: String,
}

type Sink = Box<dyn Fn(SecurityEvent) + Send + Sync>;

static SINK: OnceLock<Sink> = OnceLock::new();

/// Installs the process's sink (first call wins; later calls are ignored).
pub fn set_sink(sink: impl Fn(SecurityEvent) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

pub(crate) fn record(event: SecurityEvent) {
    if let Some(sink) = SINK.get() {
        sink(event);
    }
}

/// Bounded copy of a user-supplied name for the audit record.
pub(crate) fn name(text: &str) -> String {
    crate::server::truncate(text, 128).to_string()
}
