//! Supervisor → node commands (binary frames on stdin) and node → supervisor events
//! (JSON lines on stdout).
//!
//! A frame is `u32 little-endian length` (of what follows) `u8 tag` `payload`. The root
//! DEK travels as 32 raw bytes inside an `Open` frame, read straight into a zeroizing
//! buffer; it never becomes text. A `Job` frame carries the keys of a one-shot job the
//! same way: a byte saying which keys follow, the keys (32 raw bytes each), then the job
//! as JSON.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

/// Largest frame accepted (TLS material and small JSON only).
const MAX_FRAME: u32 = 1 << 20;

const TAG_INIT: u8 = 0;
const TAG_OPEN: u8 = 1;
const TAG_LOCK: u8 = 2;
const TAG_SHUTDOWN: u8 = 3;
const TAG_RESET_ADMIN_PASSWORD: u8 = 4;
const TAG_JOB: u8 = 5;

/// Which keys a `Job` frame carries (bits of its first payload byte), in this order.
const JOB_KEY_BACKUP: u8 = 1;
const JOB_KEY_TARGET: u8 = 2;
const JOB_KEY_EXPORT: u8 = 4;

/// What the node needs before it can listen.
#[derive(Clone, Serialize, Deserialize)]
pub struct Init {
    pub cluster: String,
    pub listen: SocketAddr,
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
    /// Reason to report until the first `Open` (the cluster starts Inaccessible when the
    /// control plane cannot unwrap its key at start).
    pub initial_reason: String,
}

impl std::fmt::Debug for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Init")
            .field("cluster", &self.cluster)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// Settings that accompany an `Open`.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct OpenParams {
    /// Created as a `root` user on first open if it does not exist yet.
    pub admin_user: Option<String>,
    pub admin_password: Option<Zeroizing<String>>,
    /// Continuous backup of this cluster (none: not backed up).
    #[serde(default)]
    pub backup: Option<BackupSettings>,
}

/// Where and how often a node backs its cluster up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSettings {
    /// The cluster's backup location (a directory).
    pub location: std::path::PathBuf,
    /// The cluster's wrapped root DEK, mirrored into the location.
    pub wrapped_key: std::path::PathBuf,
    /// How often WAL is archived (the recovery point objective).
    pub archive_interval_ms: u64,
    pub snapshot_interval_secs: u64,
    pub retention_secs: u64,
    /// The newest catalog generation the supervisor has seen: an older catalog in the
    /// location is a rollback.
    pub min_generation: u64,
}

/// A backup cycle's outcome, reported after every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    pub generation: u64,
    pub earliest_micros: Option<u64>,
    pub restorable_until_micros: u64,
    pub snapshots: usize,
    /// Set when the last cycle failed (the node keeps serving and retries).
    #[serde(default)]
    pub error: Option<String>,
}

/// A security event the node saw (sent to the supervisor, which keeps the audit log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditNotice {
    /// `audit::EventKind` in snake_case (`auth_failed`, `user_created`, …).
    pub kind: String,
    pub principal: Option<String>,
    pub remote: Option<String>,
    pub success: bool,
    pub detail: String,
}

/// The administrator's new password (the management API's reset). Travels as JSON inside
/// a zeroizing frame; never logged, never in an error.
#[derive(Clone, Serialize, Deserialize)]
pub struct AdminPassword {
    pub user: String,
    pub password: Zeroizing<String>,
}

/// A one-shot job over a cluster's data, run by a process of its own (`strongroom node
/// --job`) that exits after reporting [`Event::JobDone`] or [`Event::JobFailed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum JobSpec {
    /// What a backup location holds (reads its sealed catalog). Keys: `backup`.
    Describe {
        location: PathBuf,
        min_generation: u64,
    },
    /// Authenticates every byte of a backup location. Keys: `backup`.
    Verify {
        location: PathBuf,
        min_generation: u64,
    },
    /// Restores the backup at `location` as of an instant into `target_dir`, re-sealed
    /// under the target's root DEK, reporting [`Event::JobProgress`]. Keys: `backup`,
    /// `target`.
    Restore {
        location: PathBuf,
        min_generation: u64,
        point_in_time_micros: u64,
        target_dir: PathBuf,
    },
    /// Exports a cluster as of an instant (a restored copy in `scratch_dir`, under a
    /// throwaway key, removed afterwards) into `output_dir`, encrypted under the `export`
    /// key when there is one. Keys: `backup`, `export` (optional).
    Export {
        location: PathBuf,
        min_generation: u64,
        point_in_time_micros: u64,
        scratch_dir: PathBuf,
        output_dir: PathBuf,
    },
    /// Turns an encrypted export back into a plain dump. Keys: `export`.
    DecryptExport {
        input_dir: PathBuf,
        output_dir: PathBuf,
    },
}

/// The keys a job needs, each 32 raw bytes in a zeroizing buffer.
#[derive(Default)]
pub struct JobKeys {
    /// The root DEK of the cluster whose backups the job reads.
    pub backup: Option<Zeroizing<[u8; 32]>>,
    /// The root DEK of the cluster a restore writes.
    pub target: Option<Zeroizing<[u8; 32]>>,
    /// An export's key.
    pub export: Option<Zeroizing<[u8; 32]>>,
}

impl JobKeys {
    fn slots(&self) -> [(u8, Option<&Zeroizing<[u8; 32]>>); 3] {
        [
            (JOB_KEY_BACKUP, self.backup.as_ref()),
            (JOB_KEY_TARGET, self.target.as_ref()),
            (JOB_KEY_EXPORT, self.export.as_ref()),
        ]
    }
}

/// How a job failed, so the control plane can answer with the right error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobFailure {
    /// The instant is outside the restorable window.
    OutOfRange,
    /// There is no backup (yet).
    Empty,
    /// The backup (or export) failed authentication, or its catalog was rolled back.
    Damaged,
    /// Anything else (an I/O error, a bad request).
    Other,
}

/// A command from the supervisor.
pub enum Command {
    Init(Init),
    Open {
        dek: Zeroizing<[u8; 32]>,
        params: OpenParams,
    },
    Lock {
        reason: String,
    },
    Shutdown,
    /// Give the (open) cluster's administrator a new password; answered by
    /// [`Event::AdminPasswordReset`] or [`Event::Failed`].
    ResetAdminPassword(AdminPassword),
    /// Run one job and exit (the first and only command a job process gets).
    Job {
        spec: JobSpec,
        keys: JobKeys,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Init(init) => f.debug_tuple("Init").field(init).finish(),
            Command::Open { .. } => f.write_str("Open { dek: <redacted> }"),
            Command::Lock { reason } => f.debug_struct("Lock").field("reason", reason).finish(),
            Command::Shutdown => f.write_str("Shutdown"),
            Command::ResetAdminPassword(a) => f
                .debug_struct("ResetAdminPassword")
                .field("user", &a.user)
                .field("password", &"<redacted>")
                .finish(),
            Command::Job { spec, .. } => f
                .debug_struct("Job")
                .field("spec", spec)
                .field("keys", &"<redacted>")
                .finish(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("node channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("node channel: frame of {0} bytes is larger than allowed")]
    TooLarge(u32),
    #[error("node channel: malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

fn malformed(what: &'static str, detail: impl ToString) -> ProtocolError {
    ProtocolError::Malformed {
        what,
        detail: detail.to_string(),
    }
}

/// Writes one command frame.
pub async fn write_command<W: AsyncWrite + Unpin>(
    out: &mut W,
    command: &Command,
) -> Result<(), ProtocolError> {
    // The payload's JSON is serialized first so the frame is allocated once, at its final
    // size: a Vec that grows copies what it holds (keys included) into a new allocation and
    // frees the old one without zeroizing it.
    let json = Zeroizing::new(match command {
        Command::Init(init) => serde_json::to_vec(init).map_err(|e| malformed("init", e))?,
        Command::Open { params, .. } => {
            serde_json::to_vec(params).map_err(|e| malformed("open", e))?
        }
        Command::Lock { reason } => reason.as_bytes().to_vec(),
        Command::Shutdown => Vec::new(),
        // serde_json's errors carry no input, so the password cannot leak through one.
        Command::ResetAdminPassword(admin) => {
            serde_json::to_vec(admin).map_err(|e| malformed("reset admin password", e))?
        }
        Command::Job { spec, .. } => serde_json::to_vec(spec).map_err(|e| malformed("job", e))?,
    });
    // Tag, key bits, up to three 32-byte keys, the payload.
    let mut frame = Zeroizing::new(Vec::with_capacity(2 + 3 * 32 + json.len()));
    match command {
        Command::Init(_) => frame.push(TAG_INIT),
        Command::Open { dek, .. } => {
            frame.push(TAG_OPEN);
            frame.extend_from_slice(dek.as_ref());
        }
        Command::Lock { .. } => frame.push(TAG_LOCK),
        Command::Shutdown => frame.push(TAG_SHUTDOWN),
        Command::ResetAdminPassword(_) => frame.push(TAG_RESET_ADMIN_PASSWORD),
        Command::Job { keys, .. } => {
            frame.push(TAG_JOB);
            let slots = keys.slots();
            frame.push(
                slots
                    .iter()
                    .filter(|(_, k)| k.is_some())
                    .fold(0, |bits, (bit, _)| bits | bit),
            );
            for key in slots.iter().filter_map(|(_, k)| *k) {
                frame.extend_from_slice(key.as_ref());
            }
        }
    }
    frame.extend_from_slice(&json);
    debug_assert!(
        frame.len() <= 2 + 3 * 32 + json.len(),
        "the frame never grew"
    );
    let len = u32::try_from(frame.len()).map_err(|_| ProtocolError::TooLarge(u32::MAX))?;
    out.write_all(&len.to_le_bytes()).await?;
    out.write_all(&frame).await?;
    out.flush().await?;
    Ok(())
}

/// Reads one command frame; `None` at a clean end of input (the supervisor went away).
pub async fn read_command<R: AsyncRead + Unpin>(
    input: &mut R,
) -> Result<Option<Command>, ProtocolError> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len);
    if len == 0 {
        return Err(malformed("frame", "empty"));
    }
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    let mut frame = Zeroizing::new(vec![0u8; len as usize]);
    input.read_exact(&mut frame).await?;
    let (tag, payload) = (frame[0], &frame[1..]);
    let command = match tag {
        TAG_INIT => {
            Command::Init(serde_json::from_slice(payload).map_err(|e| malformed("init", e))?)
        }
        TAG_OPEN => {
            if payload.len() < 32 {
                return Err(malformed("open", "shorter than a key"));
            }
            let mut dek = Zeroizing::new([0u8; 32]);
            dek.copy_from_slice(&payload[..32]);
            let params =
                serde_json::from_slice(&payload[32..]).map_err(|e| malformed("open", e))?;
            Command::Open { dek, params }
        }
        TAG_LOCK => Command::Lock {
            reason: String::from_utf8_lossy(payload).into_owned(),
        },
        TAG_SHUTDOWN => Command::Shutdown,
        TAG_RESET_ADMIN_PASSWORD => Command::ResetAdminPassword(
            serde_json::from_slice(payload)
                .map_err(|_| malformed("reset admin password", "not a {user, password} object"))?,
        ),
        TAG_JOB => read_job(payload)?,
        other => return Err(malformed("frame", format!("unknown tag {other}"))),
    };
    Ok(Some(command))
}

fn read_job(payload: &[u8]) -> Result<Command, ProtocolError> {
    let (&bits, mut rest) = payload
        .split_first()
        .ok_or_else(|| malformed("job", "empty"))?;
    let mut keys = JobKeys::default();
    for (bit, slot) in [
        (JOB_KEY_BACKUP, &mut keys.backup),
        (JOB_KEY_TARGET, &mut keys.target),
        (JOB_KEY_EXPORT, &mut keys.export),
    ] {
        if bits & bit == 0 {
            continue;
        }
        if rest.len() < 32 {
            return Err(malformed("job", "shorter than its keys"));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&rest[..32]);
        *slot = Some(key);
        rest = &rest[32..];
    }
    let spec = serde_json::from_slice(rest).map_err(|e| malformed("job", e))?;
    Ok(Command::Job { spec, keys })
}

/// An event from the node, one JSON object per line on its stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    /// The MongoDB endpoint is accepting connections (Inaccessible until `Open`).
    Listening { port: u16 },
    /// The engine is open and clients are served.
    Ready,
    /// Keys are wiped, connections closed; clients are told `reason`.
    Locked { reason: String },
    /// A command failed; the node keeps its previous state.
    Failed { message: String },
    /// The administrator's password was reset.
    AdminPasswordReset,
    /// Unsolicited: the backup advanced (or failed).
    Backup(BackupReport),
    /// Unsolicited: a security event for the audit log.
    Audit(AuditNotice),
    /// Unsolicited: a storage failure made the engine read-only. `cause` is `noSpace`,
    /// `ioError` or `other`; `reason` names the failed operation and the error. Writes get
    /// MongoDB's error (`OutOfDiskSpace` for a full disk), reads keep working, and the
    /// node reopens the engine once it can.
    ReadOnly { cause: String, reason: String },
    /// Unsolicited: the engine was reopened after a storage failure; writes work again.
    Writable,
    /// A job's progress: a restore's phase (`Snapshot`, `Wal`, …) and bytes, or an
    /// export's documents so far (`phase` `Exporting`, `total` 0).
    JobProgress {
        phase: String,
        done: u64,
        total: u64,
    },
    /// A job's result: its summary or report, as JSON text (the `backup` crate's shape,
    /// which the control plane passes on unchanged).
    JobDone { result: String },
    /// A job failed; `message` is the error's text.
    JobFailed {
        failure: JobFailure,
        message: String,
    },
}

impl Event {
    /// Events the node sends on its own, not as the answer to a command.
    pub fn is_notice(&self) -> bool {
        matches!(
            self,
            Event::Backup(_) | Event::Audit(_) | Event::ReadOnly { .. } | Event::Writable
        )
    }
}

impl Event {
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let init = Init {
            cluster: "orders".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            cert_pem: "CERT".into(),
            key_pem: Zeroizing::new("KEY".into()),
            initial_reason: "Pending".into(),
        };
        write_command(&mut a, &Command::Init(init)).await.unwrap();
        let params = OpenParams {
            admin_user: Some("admin".into()),
            admin_password: Some(Zeroizing::new("pw".into())),
            backup: None,
        };
        write_command(
            &mut a,
            &Command::Open {
                dek: Zeroizing::new([7u8; 32]),
                params,
            },
        )
        .await
        .unwrap();
        write_command(
            &mut a,
            &Command::Lock {
                reason: "KeyDisabled: x".into(),
            },
        )
        .await
        .unwrap();
        write_command(
            &mut a,
            &Command::ResetAdminPassword(AdminPassword {
                user: "admin".into(),
                password: Zeroizing::new("N3w-secret!".into()),
            }),
        )
        .await
        .unwrap();
        write_command(&mut a, &Command::Shutdown).await.unwrap();
        drop(a);
        match read_command(&mut b).await.unwrap() {
            Some(Command::Init(i)) => {
                assert_eq!((i.cluster.as_str(), i.key_pem.as_str()), ("orders", "KEY"))
            }
            other => panic!("{other:?}"),
        }
        match read_command(&mut b).await.unwrap() {
            Some(Command::Open { dek, params }) => {
                assert_eq!(*dek, [7u8; 32]);
                assert_eq!(params.admin_user.as_deref(), Some("admin"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(read_command(&mut b).await.unwrap(), Some(Command::Lock { reason }) if reason == "KeyDisabled: x")
        );
        match read_command(&mut b).await.unwrap() {
            Some(Command::ResetAdminPassword(a)) => {
                assert_eq!(
                    (a.user.as_str(), a.password.as_str()),
                    ("admin", "N3w-secret!")
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_command(&mut b).await.unwrap(),
            Some(Command::Shutdown)
        ));
        assert!(read_command(&mut b).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn job_frames_carry_their_keys_as_bytes() {
        let spec = JobSpec::Restore {
            location: "/b/orders".into(),
            min_generation: 7,
            point_in_time_micros: 1_700_000_000_000_000,
            target_dir: "/d/copy".into(),
        };
        let key: [u8; 32] = std::array::from_fn(|i| 0xA0 + i as u8);
        let (mut a, mut b) = tokio::io::duplex(4096);
        let job = Command::Job {
            spec: spec.clone(),
            keys: JobKeys {
                backup: Some(Zeroizing::new([1u8; 32])),
                target: Some(Zeroizing::new(key)),
                export: None,
            },
        };
        let text = format!("{job:?}");
        for r in &key_renderings(&key) {
            assert!(
                !text.contains(r.as_str()),
                "key rendered as {r:?} in {text}"
            );
        }
        write_command(&mut a, &job).await.unwrap();
        write_command(
            &mut a,
            &Command::Job {
                spec: JobSpec::DecryptExport {
                    input_dir: "/in".into(),
                    output_dir: "/out".into(),
                },
                keys: JobKeys {
                    export: Some(Zeroizing::new([3u8; 32])),
                    ..JobKeys::default()
                },
            },
        )
        .await
        .unwrap();
        drop(a);
        match read_command(&mut b).await.unwrap() {
            Some(Command::Job { spec: got, keys }) => {
                assert_eq!(got, spec);
                assert_eq!(keys.backup.as_deref(), Some(&[1u8; 32]));
                assert_eq!(keys.target.as_deref(), Some(&key));
                assert!(keys.export.is_none());
            }
            other => panic!("{other:?}"),
        }
        match read_command(&mut b).await.unwrap() {
            Some(Command::Job { spec, keys }) => {
                assert!(matches!(spec, JobSpec::DecryptExport { .. }), "{spec:?}");
                assert!(keys.backup.is_none() && keys.target.is_none());
                assert_eq!(keys.export.as_deref(), Some(&[3u8; 32]));
            }
            other => panic!("{other:?}"),
        }
        // A frame that announces a key it does not carry is refused.
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[3, 0, 0, 0, TAG_JOB, JOB_KEY_BACKUP, 0])
            .await
            .unwrap();
        drop(a);
        assert!(read_command(&mut b).await.is_err());
    }

    #[tokio::test]
    async fn malformed_frames_are_errors() {
        for bytes in [
            vec![0, 0, 0, 0],
            vec![9, 0, 0, 0, 1, 2],
            vec![1, 0, 0, 0, 42],
            (u32::MAX).to_le_bytes().to_vec(),
        ] {
            let (mut a, mut b) = tokio::io::duplex(64);
            a.write_all(&bytes).await.unwrap();
            drop(a);
            assert!(read_command(&mut b).await.is_err(), "{bytes:?}");
        }
    }

    /// Every way the key's bytes could be rendered in text: `{:?}` of an array or a slice
    /// (a decimal list), hex in either case, base64 (standard and URL-safe). A prefix of 6
    /// bytes is enough to count as a leak.
    fn key_renderings(key: &[u8; 32]) -> Vec<String> {
        use base64::Engine as _;
        let part = &key[..6];
        let decimal: Vec<String> = part.iter().map(|b| b.to_string()).collect();
        vec![
            decimal.join(", "),
            decimal.join(","),
            hex::encode(part),
            hex::encode_upper(part),
            base64::engine::general_purpose::STANDARD.encode(part),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(part),
        ]
    }

    #[test]
    fn storage_notices_are_notices_and_round_trip_as_json_lines() {
        let read_only = Event::ReadOnly {
            cause: "noSpace".into(),
            reason: "out of disk space during flush: i/o error".into(),
        };
        let line = read_only.to_line();
        assert_eq!(
            line,
            "{\"event\":\"readOnly\",\"cause\":\"noSpace\",\"reason\":\"out of disk space during flush: i/o error\"}\n"
        );
        let back: Event = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(back, read_only);
        assert_eq!(Event::Writable.to_line(), "{\"event\":\"writable\"}\n");
        assert!(read_only.is_notice() && Event::Writable.is_notice());
        assert!(!Event::Ready.is_notice());
    }

    #[test]
    fn debug_output_never_shows_keys() {
        // Distinct bytes, so each rendering is a recognisable string.
        let key: [u8; 32] = std::array::from_fn(|i| 0xA0 + i as u8);
        let renderings = key_renderings(&key);
        // The search finds the key however it is printed (so it cannot pass for the wrong
        // reason)...
        use base64::Engine as _;
        for leak in [
            format!("{key:?}"),
            format!("{:?}", key.to_vec()),
            hex::encode(key),
            hex::encode_upper(key),
            base64::engine::general_purpose::STANDARD.encode(key),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key),
        ] {
            assert!(renderings.iter().any(|r| leak.contains(r)), "{leak}");
        }
        // ...and finds none of it in a command's Debug output.
        let open = Command::Open {
            dek: Zeroizing::new(key),
            params: OpenParams::default(),
        };
        let text = format!("{open:?} {open:#?}");
        for r in &renderings {
            assert!(
                !text.contains(r.as_str()),
                "key rendered as {r:?} in {text}"
            );
        }
        let reset = Command::ResetAdminPassword(AdminPassword {
            user: "admin".into(),
            password: Zeroizing::new("N3w-secret!".into()),
        });
        assert!(!format!("{reset:?}").contains("N3w-secret!"));
    }

    #[tokio::test]
    async fn a_malformed_password_reset_does_not_echo_its_payload() {
        let payload = br#"{"user":"admin","password":"N3w-secret!","#;
        let mut bytes = ((payload.len() + 1) as u32).to_le_bytes().to_vec();
        bytes.push(TAG_RESET_ADMIN_PASSWORD);
        bytes.extend_from_slice(payload);
        let (mut a, mut b) = tokio::io::duplex(256);
        a.write_all(&bytes).await.unwrap();
        drop(a);
        let err = read_command(&mut b).await.expect_err("malformed");
        assert!(matches!(err, ProtocolError::Malformed { .. }), "{err:?}");
        assert!(!err.to_string().contains("N3w-secret!"), "{err}");
    }
}
