//! Typed errors of the audit log. None of them carries key material: the key is only ever
//! reported as "wrong", and corruption is reported by position (segment, record, seq).

use std::path::PathBuf;

/// Everything that can go wrong opening, appending to, reading or verifying an audit log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed.
    #[error("audit log I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The key does not match the one the log was written with. Detected from the key check
    /// value in the first segment header, so no record is ever decrypted into garbage.
    #[error("wrong audit log key: the log at {dir} was written with a different key")]
    WrongKey { dir: PathBuf },

    /// The log was damaged or tampered with. `segment` is the segment number (its file is
    /// `audit-NNNNNN.log`), `record` the record's index inside that segment (`None` when the
    /// header or the segment list is at fault), `seq` the global sequence number the record
    /// was expected to carry, `offset` the record's byte offset in the segment file.
    #[error(
        "audit log corrupt in segment {segment} ({}){}{}{}: {reason}",
        crate::format::segment_file_name(*segment),
        record.map(|r| format!(" record {r}")).unwrap_or_default(),
        seq.map(|s| format!(" (seq {s})")).unwrap_or_default(),
        offset.map(|o| format!(" at byte offset {o}")).unwrap_or_default()
    )]
    Corrupt {
        segment: u64,
        record: Option<u64>,
        seq: Option<u64>,
        offset: Option<u64>,
        reason: &'static str,
    },

    /// The log ends before the record or segment the caller anchored: records or segments
    /// were cut off its tail (or a newer segment was replaced by an older copy).
    #[error(
        "audit log truncated: {}",
        truncation(*expected_seq, *expected_segment, *last_seq, *last_segment)
    )]
    Truncated {
        expected_seq: u64,
        expected_segment: u64,
        last_seq: u64,
        last_segment: u64,
    },

    /// The record at the anchored sequence number is not the one the caller anchored.
    #[error("audit log does not match its anchor at seq {seq}")]
    AnchorMismatch { seq: u64 },

    /// The anchor's tag is not 32 hexadecimal digits.
    #[error("invalid audit anchor: the tag must be 32 hexadecimal digits")]
    InvalidAnchor,

    /// Another `AuditLog` (in this or another process) holds the directory's writer lock.
    #[error("audit log at {dir} is already open for appending by another writer")]
    Locked { dir: PathBuf },

    /// An event serialises to more than [`crate::MAX_EVENT_LEN`] bytes.
    #[error("audit event too large: {len} bytes (limit {limit})")]
    EventTooLarge { len: usize, limit: usize },

    /// A previous write or fsync failed, so the on-disk tail is unknown. The log refuses
    /// further appends; reopening it truncates any torn tail and continues the chain.
    #[error("audit log writer failed earlier and refuses appends; reopen the log")]
    Poisoned,

    /// An event could not be encoded.
    #[error("audit event encoding failed: {0}")]
    Encode(#[from] serde_json::Error),

    /// The crypto library failed where it should not (key setup, random salt).
    #[error("audit log crypto failure: {0}")]
    Crypto(&'static str),
}

/// Names what a truncation removed, for [`Error::Truncated`]'s message.
fn truncation(
    expected_seq: u64,
    expected_segment: u64,
    last_seq: u64,
    last_segment: u64,
) -> String {
    let mut missing = Vec::new();
    if expected_seq > last_seq {
        missing.push(if expected_seq == last_seq + 1 {
            format!("record seq {expected_seq}")
        } else {
            format!("records seq {}..={expected_seq}", last_seq + 1)
        });
    }
    if expected_segment > last_segment {
        missing.push(if expected_segment == last_segment + 1 {
            format!(
                "segment {}",
                crate::format::segment_file_name(expected_segment)
            )
        } else {
            format!(
                "segments {}..={}",
                crate::format::segment_file_name(last_segment + 1),
                crate::format::segment_file_name(expected_segment)
            )
        });
    }
    format!(
        "{} missing from the end (the recorded chain head is seq {expected_seq} in segment \
         {expected_segment}; the log ends at seq {last_seq} in segment {last_segment})",
        missing.join(" and ")
    )
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
