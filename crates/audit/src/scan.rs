//! Walking the chain: list the segments, authenticate every header and record in order, and
//! tell a torn tail (an unacknowledged append cut short by a crash) from corruption.
//!
//! Only the *last* segment may end torn: a segment is fsynced before the next one is
//! created, so any short or damaged frame in an earlier segment is damage, not a crash.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io};
use crate::event::AuditEvent;
use crate::format::{
    FRAME_PREFIX_LEN, GENESIS_TAG, HEADER_LEN, Header, HeaderFault, MAX_EVENT_LEN, SegmentKey,
    TAG_LEN, Tag, decode_header, parse_segment_file_name,
};

/// Where the chain stands after the records walked so far.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Sequence number the next record must carry (the first record is seq 1).
    pub next_seq: u64,
    /// Tag of the last record walked, [`GENESIS_TAG`] before the first.
    pub prev_tag: Tag,
}

impl Chain {
    pub fn genesis() -> Self {
        Chain {
            next_seq: 1,
            prev_tag: GENESIS_TAG,
        }
    }
}

/// What walking one segment found.
#[derive(Debug)]
pub struct SegmentScan {
    pub number: u64,
    pub path: PathBuf,
    /// `None` when the header itself was torn (crash while rolling to this segment).
    pub key: Option<SegmentKey>,
    /// Bytes of the segment that hold its header and whole, authentic records.
    pub valid_len: u64,
    /// Bytes after `valid_len` that belong to a torn, never-acknowledged append.
    pub torn_bytes: u64,
}

/// Everything walking the whole log found.
#[derive(Debug)]
pub struct Walk {
    pub segments: u64,
    /// The last segment, if there is any segment at all.
    pub last: Option<SegmentScan>,
    pub chain: Chain,
}

/// Lists `audit-NNNNNN.log` files, sorted; they must be numbered 1, 2, 3… without a gap.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        if let Some(n) = name.to_str().and_then(parse_segment_file_name) {
            found.push((n, entry.path()));
        }
    }
    found.sort_by_key(|(n, _)| *n);
    for (i, (n, _)) in found.iter().enumerate() {
        let expected = i as u64 + 1;
        if *n != expected {
            return Err(Error::Corrupt {
                segment: expected,
                record: None,
                seq: None,
                offset: None,
                reason: if *n > expected {
                    "segment file missing"
                } else {
                    "duplicate segment number"
                },
            });
        }
    }
    Ok(found)
}

/// Walks every record of the log at `dir`, calling `visit(seq, tag, event)` for each.
pub fn walk(
    dir: &Path,
    master: &[u8; 32],
    visit: &mut dyn FnMut(u64, &Tag, AuditEvent) -> Result<()>,
) -> Result<Walk> {
    let segments = list_segments(dir)?;
    let count = segments.len();
    let mut chain = Chain::genesis();
    let mut last = None;
    for (i, (number, path)) in segments.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let scan = scan_segment(dir, master, number, path, is_last, &mut chain, visit)?;
        if is_last {
            last = Some(scan);
        }
    }
    Ok(Walk {
        segments: count as u64,
        last,
        chain,
    })
}

fn corrupt(segment: u64, record: Option<u64>, seq: Option<u64>, reason: &'static str) -> Error {
    Error::Corrupt {
        segment,
        record,
        seq,
        offset: None,
        reason,
    }
}

/// [`corrupt`] for a record, naming its byte offset in the segment file.
fn corrupt_at(segment: u64, record: u64, seq: u64, offset: usize, reason: &'static str) -> Error {
    Error::Corrupt {
        segment,
        record: Some(record),
        seq: Some(seq),
        offset: Some(offset as u64),
        reason,
    }
}

/// The shortest possible frame: length prefix, the tag, and a two-byte JSON event.
const MIN_FRAME_LEN: usize = FRAME_PREFIX_LEN + 2 + TAG_LEN;

/// Trial decryptions [`authentic_record_after`] may spend before it gives up (and the damage
/// is treated as corruption, the safe side). A real torn tail is less than one frame, which
/// takes a few thousand trials at most.
const SCAN_AHEAD_TRIALS: usize = 1 << 20;

/// What searching past a frame that looks torn found.
enum Ahead {
    /// Nothing after it authenticates: it really is the torn end of the log.
    Nothing,
    /// An authentic record follows (or the search ran out of budget): not a torn tail.
    Something,
}

/// Looks for any authentic record after the frame at `pos` (record `index`, seq
/// `chain.next_seq`) that claims to run past the end of the segment.
///
/// Following the stored lengths is not enough: a flipped length can make a middle record
/// "run past the end" and hide every record after it as a torn tail. So every later offset
/// is tried as a frame start: its AAD's previous tag is the 16 bytes just before it (frames
/// are contiguous), and its index is one of the few that fit between `pos` and it.
fn authentic_record_after(
    key: &SegmentKey,
    bytes: &[u8],
    pos: usize,
    index: u64,
    chain: &Chain,
) -> Ahead {
    let mut trials = 0usize;
    let mut body = Vec::new();
    for q in pos + MIN_FRAME_LEN..bytes.len().saturating_sub(MIN_FRAME_LEN - 1) {
        let mut len_bytes = [0u8; FRAME_PREFIX_LEN];
        len_bytes.copy_from_slice(&bytes[q..q + FRAME_PREFIX_LEN]);
        let len = u32::from_le_bytes(len_bytes) as usize;
        if !(TAG_LEN..=MAX_EVENT_LEN + TAG_LEN).contains(&len)
            || q + FRAME_PREFIX_LEN + len > bytes.len()
        {
            continue;
        }
        let mut prev = [0u8; TAG_LEN];
        prev.copy_from_slice(&bytes[q - TAG_LEN..q]);
        let frame = &bytes[q + FRAME_PREFIX_LEN..q + FRAME_PREFIX_LEN + len];
        // Records between `pos` and `q`, the damaged one included: at least 1.
        let most = ((q - pos) / MIN_FRAME_LEN) as u64;
        for k in 1..=most {
            trials += 1;
            if trials > SCAN_AHEAD_TRIALS {
                return Ahead::Something;
            }
            body.clear();
            body.extend_from_slice(frame);
            if key
                .open_record(index + k, chain.next_seq + k, &prev, &mut body)
                .is_some()
            {
                return Ahead::Something;
            }
        }
    }
    Ahead::Nothing
}

/// Authenticates one segment and its records, advancing `chain`.
fn scan_segment(
    dir: &Path,
    master: &[u8; 32],
    number: u64,
    path: PathBuf,
    is_last: bool,
    chain: &mut Chain,
    visit: &mut dyn FnMut(u64, &Tag, AuditEvent) -> Result<()>,
) -> Result<SegmentScan> {
    let mut bytes = std::fs::read(&path).map_err(io(&path))?;
    let file_len = bytes.len() as u64;

    // A header shorter than its size, or all zeros, in the newest segment is a crash while
    // rolling: the previous segment was complete and synced, nothing here was acknowledged.
    let header_torn = bytes.len() < HEADER_LEN || bytes[..HEADER_LEN].iter().all(|b| *b == 0);
    if header_torn {
        if is_last {
            return Ok(SegmentScan {
                number,
                path,
                key: None,
                valid_len: 0,
                torn_bytes: file_len,
            });
        }
        return Err(corrupt(number, None, None, "segment header truncated"));
    }

    let mut raw = [0u8; HEADER_LEN];
    raw.copy_from_slice(&bytes[..HEADER_LEN]);
    let (header, key) = match decode_header(master, &raw)? {
        Ok(ok) => ok,
        Err(HeaderFault::WrongKey) if number == 1 => {
            return Err(Error::WrongKey {
                dir: dir.to_path_buf(),
            });
        }
        Err(fault) => {
            let reason = match fault {
                HeaderFault::BadMagic => "not an audit segment (bad magic)",
                HeaderFault::BadVersion => "unsupported segment version",
                HeaderFault::WrongKey => "segment header written with a different key",
                HeaderFault::BadTag => "segment header authentication failed",
            };
            return Err(corrupt(number, None, None, reason));
        }
    };
    check_header_continues_chain(&header, number, chain)?;

    let mut pos = HEADER_LEN;
    let mut index = 0u64;
    let mut torn_bytes = 0u64;
    while pos < bytes.len() {
        let seq = chain.next_seq;
        let rest = &bytes[pos..];
        // Zeros after the last record: the file grew but the data never reached the disk.
        if is_last && rest.iter().all(|b| *b == 0) {
            torn_bytes = rest.len() as u64;
            break;
        }
        if rest.len() < FRAME_PREFIX_LEN {
            if is_last {
                torn_bytes = rest.len() as u64;
                break;
            }
            return Err(corrupt_at(
                number,
                index,
                seq,
                pos,
                "record frame truncated",
            ));
        }
        let mut len_bytes = [0u8; FRAME_PREFIX_LEN];
        len_bytes.copy_from_slice(&rest[..FRAME_PREFIX_LEN]);
        let len = u32::from_le_bytes(len_bytes) as usize;
        if !(TAG_LEN..=MAX_EVENT_LEN + TAG_LEN).contains(&len) {
            return Err(corrupt_at(number, index, seq, pos, "record length invalid"));
        }
        if rest.len() < FRAME_PREFIX_LEN + len {
            // Only the final record of the newest segment may be incomplete, and only if
            // nothing authentic follows the point where it starts.
            if is_last {
                if let Ahead::Nothing = authentic_record_after(&key, &bytes, pos, index, chain) {
                    torn_bytes = rest.len() as u64;
                    break;
                }
                return Err(corrupt_at(
                    number,
                    index,
                    seq,
                    pos,
                    "record length runs past the end of the segment, but authentic records follow it (not a torn final write)",
                ));
            }
            return Err(corrupt_at(
                number,
                index,
                seq,
                pos,
                "record frame truncated",
            ));
        }
        let body_start = pos + FRAME_PREFIX_LEN;
        let body = &mut bytes[body_start..body_start + len];
        let Some((plain, tag)) = key.open_record(index, seq, &chain.prev_tag, body) else {
            return Err(corrupt_at(
                number,
                index,
                seq,
                pos,
                "record authentication failed (edited, moved, duplicated, or a record before it is missing)",
            ));
        };
        let event: AuditEvent = serde_json::from_slice(plain)
            .map_err(|_| corrupt_at(number, index, seq, pos, "authentic record does not decode"))?;
        visit(seq, &tag, event)?;
        chain.prev_tag = tag;
        chain.next_seq += 1;
        index += 1;
        pos = body_start + len;
    }

    Ok(SegmentScan {
        number,
        path,
        key: Some(key),
        valid_len: file_len - torn_bytes,
        torn_bytes,
    })
}

/// A header must name its own file's segment and pick up exactly where the previous
/// segment ended; otherwise a segment was dropped, renamed or replaced.
fn check_header_continues_chain(header: &Header, number: u64, chain: &Chain) -> Result<()> {
    if header.segment != number {
        return Err(corrupt(
            number,
            None,
            None,
            "segment header names another segment (renamed file)",
        ));
    }
    if header.first_seq != chain.next_seq || header.prev_tag != chain.prev_tag {
        return Err(corrupt(
            number,
            None,
            Some(chain.next_seq),
            "segment does not continue the chain of the previous segment",
        ));
    }
    Ok(())
}
