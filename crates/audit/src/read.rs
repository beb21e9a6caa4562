//! The read side: `read` (filtered records) and `verify` (chain check). Both authenticate the
//! whole chain on every call, so a reader never shows records from a tampered log; both
//! tolerate a torn tail, which is what a concurrent append in flight looks like.

use std::collections::VecDeque;
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::event::{AuditEvent, EventKind};
use crate::format::{GENESIS_TAG, TAG_LEN, Tag};
use crate::log::AuditLog;
use crate::scan::walk;

/// An external witness of the log's tip: the seq of a record, its tag (hex) and the newest
/// segment at the time. The chain proves nothing was removed *before* a record; only an
/// anchor kept elsewhere (the control plane keeps it in its sealed state) proves nothing
/// was cut off the end — whole records, or whole segments, even one that held no record yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: u64,
    /// The record's AES-GCM tag, 32 lowercase hex digits.
    pub tag: String,
    /// The newest segment the log had when the anchor was taken (0: not checked).
    #[serde(default)]
    pub segment: u64,
}

impl Anchor {
    fn tag_bytes(&self) -> Result<Tag> {
        let bytes = hex::decode(&self.tag).map_err(|_| Error::InvalidAnchor)?;
        <Tag>::try_from(bytes.as_slice()).map_err(|_| Error::InvalidAnchor)
    }
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub event: AuditEvent,
}

/// Which records [`AuditLog::read`] returns. All conditions must hold.
#[derive(Debug, Clone, Default)]
pub struct ReadFilter {
    /// Only events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only events at or before this time.
    pub until: Option<OffsetDateTime>,
    pub kind: Option<EventKind>,
    pub cluster: Option<String>,
    /// At most this many records: the oldest matches, or the newest when `tail` is set.
    pub limit: Option<usize>,
    /// Only the newest N matches.
    pub tail: Option<usize>,
    /// If set, the log must reach this anchor (see [`Anchor`]).
    pub anchor: Option<Anchor>,
}

impl ReadFilter {
    fn matches(&self, e: &AuditEvent) -> bool {
        self.since.is_none_or(|t| e.time >= t)
            && self.until.is_none_or(|t| e.time <= t)
            && self.kind.is_none_or(|k| e.kind == k)
            && self
                .cluster
                .as_deref()
                .is_none_or(|c| e.cluster.as_deref() == Some(c))
    }
}

/// What [`AuditLog::verify`] found in a log that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub segments: u64,
    pub records: u64,
    /// The tip of the chain; seq 0 and an all-zero tag for an empty log.
    pub head: Anchor,
    /// Bytes of a torn, unacknowledged append at the end (the next open removes them).
    pub torn_tail_bytes: u64,
    /// Whether an anchor was given and matched.
    pub anchor_checked: bool,
}

impl AuditLog {
    /// Reads the records matching `filter`, oldest first, after authenticating the whole
    /// chain. Safe to call while a writer appends.
    pub fn read(dir: &Path, key: &[u8; 32], filter: &ReadFilter) -> Result<Vec<AuditRecord>> {
        let keep = match (filter.tail, filter.limit) {
            (Some(t), Some(l)) => Some(t.min(l)),
            (Some(t), None) => Some(t),
            (None, _) => None,
        };
        let head_limit = if filter.tail.is_none() {
            filter.limit
        } else {
            None
        };
        let mut out = VecDeque::new();
        let mut anchor = AnchorCheck::new(filter.anchor.as_ref())?;
        let walked = walk(dir, key, &mut |seq, tag, event| {
            anchor.see(seq, tag)?;
            if !filter.matches(&event) || head_limit.is_some_and(|l| out.len() >= l) {
                return Ok(());
            }
            out.push_back(AuditRecord { seq, event });
            if keep.is_some_and(|k| out.len() > k) {
                out.pop_front();
            }
            Ok(())
        })?;
        anchor.finish(walked.chain.next_seq - 1, walked.segments)?;
        Ok(out.into())
    }

    /// Authenticates every header and record and the links between them; with `anchor`,
    /// also that the log reaches the anchored record unchanged. Errors name the segment and
    /// record at fault.
    pub fn verify(dir: &Path, key: &[u8; 32], anchor: Option<&Anchor>) -> Result<VerifyReport> {
        let mut check = AnchorCheck::new(anchor)?;
        let walked = walk(dir, key, &mut |seq, tag, _| check.see(seq, tag))?;
        let last_seq = walked.chain.next_seq - 1;
        check.finish(last_seq, walked.segments)?;
        Ok(VerifyReport {
            segments: walked.segments,
            records: last_seq,
            head: Anchor {
                seq: last_seq,
                tag: hex::encode(walked.chain.prev_tag),
                segment: walked.segments,
            },
            torn_tail_bytes: walked.last.map_or(0, |l| l.torn_bytes),
            anchor_checked: anchor.is_some(),
        })
    }
}

/// Checks an anchor while the chain is walked.
struct AnchorCheck {
    want: Option<(u64, Tag, u64)>,
}

impl AnchorCheck {
    fn new(anchor: Option<&Anchor>) -> Result<Self> {
        let want = anchor
            .map(|a| a.tag_bytes().map(|t| (a.seq, t, a.segment)))
            .transpose()?;
        if let Some((0, tag, _)) = want
            && tag != GENESIS_TAG
        {
            return Err(Error::AnchorMismatch { seq: 0 });
        }
        Ok(AnchorCheck { want })
    }

    fn see(&mut self, seq: u64, tag: &[u8; TAG_LEN]) -> Result<()> {
        match self.want {
            Some((s, t, _)) if s == seq && t != *tag => Err(Error::AnchorMismatch { seq }),
            _ => Ok(()),
        }
    }

    fn finish(&self, last_seq: u64, last_segment: u64) -> Result<()> {
        match self.want {
            Some((s, _, g)) if s > last_seq || g > last_segment => Err(Error::Truncated {
                expected_seq: s,
                expected_segment: g,
                last_seq,
                last_segment,
            }),
            _ => Ok(()),
        }
    }
}
