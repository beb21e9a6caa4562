//! The audit event: security metadata only (who, what, where, when, outcome). Documents and
//! secrets never go in; `detail` is a short human-readable note.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    AuthFailed,
    AuthSucceeded,
    UserCreated,
    UserUpdated,
    UserDropped,
    RoleChanged,
    ClusterCreated,
    ClusterUpdated,
    ClusterDeleted,
    KeyStateChanged,
    KeyRewrapped,
    ClusterInaccessible,
    ClusterReady,
    BackupRestored,
    BackupVerified,
    ExportCreated,
    /// A cluster's node process died without being stopped (crash, kill, OOM).
    NodeCrashed,
    /// The node of a cluster that crashed runs again as it should.
    NodeRecovered,
    /// The cluster administrator's password was reset through the management API (who
    /// asked; never the password).
    AdminPasswordReset,
    /// Anything else; also what an older reader makes of a kind added later.
    #[serde(other)]
    Other,
}

impl EventKind {
    /// Every kind, in declaration order (for CLI help and argument parsing).
    pub const ALL: [EventKind; 20] = [
        EventKind::AuthFailed,
        EventKind::AuthSucceeded,
        EventKind::UserCreated,
        EventKind::UserUpdated,
        EventKind::UserDropped,
        EventKind::RoleChanged,
        EventKind::ClusterCreated,
        EventKind::ClusterUpdated,
        EventKind::ClusterDeleted,
        EventKind::KeyStateChanged,
        EventKind::KeyRewrapped,
        EventKind::ClusterInaccessible,
        EventKind::ClusterReady,
        EventKind::BackupRestored,
        EventKind::BackupVerified,
        EventKind::ExportCreated,
        EventKind::NodeCrashed,
        EventKind::NodeRecovered,
        EventKind::AdminPasswordReset,
        EventKind::Other,
    ];

    /// The snake_case name used on disk and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AuthFailed => "auth_failed",
            EventKind::AuthSucceeded => "auth_succeeded",
            EventKind::UserCreated => "user_created",
            EventKind::UserUpdated => "user_updated",
            EventKind::UserDropped => "user_dropped",
            EventKind::RoleChanged => "role_changed",
            EventKind::ClusterCreated => "cluster_created",
            EventKind::ClusterUpdated => "cluster_updated",
            EventKind::ClusterDeleted => "cluster_deleted",
            EventKind::KeyStateChanged => "key_state_changed",
            EventKind::KeyRewrapped => "key_rewrapped",
            EventKind::ClusterInaccessible => "cluster_inaccessible",
            EventKind::ClusterReady => "cluster_ready",
            EventKind::BackupRestored => "backup_restored",
            EventKind::BackupVerified => "backup_verified",
            EventKind::ExportCreated => "export_created",
            EventKind::NodeCrashed => "node_crashed",
            EventKind::NodeRecovered => "node_recovered",
            EventKind::AdminPasswordReset => "admin_password_reset",
            EventKind::Other => "other",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given is not an event kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit event kind {0:?}")]
pub struct UnknownKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// Whether the audited action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        })
    }
}

/// One security event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened, UTC, microsecond precision; serialised as RFC 3339
    /// (`2026-05-01T12:00:00.123456Z`).
    #[serde(with = "rfc3339_micros")]
    pub time: OffsetDateTime,
    pub kind: EventKind,
    /// The cluster concerned, if any.
    pub cluster: Option<String>,
    /// Who acted: user name or object id.
    pub principal: Option<String>,
    /// Where from: the peer address.
    pub remote: Option<String>,
    pub outcome: Outcome,
    /// A short human-readable note. Never documents, keys or passwords.
    pub detail: String,
}

impl AuditEvent {
    /// An event stamped with the current time (truncated to microseconds, so what is read
    /// back compares equal to what was written).
    pub fn now(kind: EventKind, outcome: Outcome, detail: impl Into<String>) -> Self {
        AuditEvent {
            time: truncate_to_micros(OffsetDateTime::now_utc()),
            kind,
            cluster: None,
            principal: None,
            remote: None,
            outcome,
            detail: detail.into(),
        }
    }

    /// Sets the cluster.
    pub fn cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = Some(cluster.into());
        self
    }

    /// Sets the principal.
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// Sets the remote address.
    pub fn remote(mut self, remote: impl Into<String>) -> Self {
        self.remote = Some(remote.into());
        self
    }
}

/// Drops sub-microsecond precision and converts to UTC.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    // A nanosecond value rounded down stays within 0..1_000_000_000, so this cannot fail.
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

/// RFC 3339, UTC, exactly six fractional digits on output; any RFC 3339 offset on input.
mod rfc3339_micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::BorrowedFormatItem;
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;

    const OUT: &[BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = t
            .to_offset(time::UtcOffset::UTC)
            .format(OUT)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339)
            .map(|t| t.to_offset(time::UtcOffset::UTC))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn event_serialises_with_snake_case_kind_and_microsecond_utc_time() {
        let mut e = AuditEvent::now(EventKind::KeyStateChanged, Outcome::Failure, "disabled")
            .cluster("c1")
            .principal("alice")
            .remote("10.0.0.1:5000");
        e.time = datetime!(2026-05-01 12:00:00.1234567 +02:00);
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains(r#""time":"2026-05-01T10:00:00.123456Z""#),
            "{json}"
        );
        assert!(json.contains(r#""kind":"key_state_changed""#), "{json}");
        assert!(json.contains(r#""outcome":"failure""#), "{json}");
        let back: AuditEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back.time, datetime!(2026-05-01 10:00:00.123456 UTC));
        assert_eq!(back.kind, EventKind::KeyStateChanged);
        assert_eq!(back.cluster.as_deref(), Some("c1"));
    }

    #[test]
    fn unknown_kind_reads_as_other() {
        let json = r#"{"time":"2026-05-01T10:00:00.000001Z","kind":"brand_new_kind","cluster":null,"principal":null,"remote":null,"outcome":"success","detail":""}"#;
        let e: AuditEvent = serde_json::from_str(json).unwrap();
        assert_eq!(e.kind, EventKind::Other);
    }

    #[test]
    fn kind_names_round_trip_through_from_str_and_serde() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert!("nope".parse::<EventKind>().is_err());
    }
}
