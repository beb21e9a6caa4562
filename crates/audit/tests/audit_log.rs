//! End-to-end tests of the audit log on real files: round trips, crash recovery (torn tails,
//! a real `kill -9`), tampering of every kind, wrong keys, concurrency, and plaintext leaks.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use audit::format::{FRAME_PREFIX_LEN, HEADER_LEN};
use audit::{Anchor, AuditEvent, AuditLog, AuditOptions, Error, EventKind, Outcome, ReadFilter};
use time::macros::datetime;
use zeroize::Zeroizing;

const KEY: [u8; 32] = [0x42; 32];

fn key() -> Zeroizing<[u8; 32]> {
    Zeroizing::new(KEY)
}

/// Small segments so a few dozen events span several of them.
fn small() -> AuditOptions {
    AuditOptions {
        segment_bytes: 2048,
    }
}

fn ev(i: usize) -> AuditEvent {
    let kind = EventKind::ALL[i % EventKind::ALL.len()];
    let outcome = if i.is_multiple_of(2) {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    AuditEvent::now(kind, outcome, format!("event {i}"))
        .cluster(format!("c{}", i % 3))
        .principal("alice")
        .remote("127.0.0.1:40000")
}

fn write_events(dir: &Path, range: std::ops::Range<usize>, opts: AuditOptions) -> Vec<AuditEvent> {
    let log = AuditLog::open_with(dir, key(), opts).unwrap();
    range
        .map(|i| {
            let e = ev(i);
            log.append(&e).unwrap();
            e
        })
        .collect()
}

fn read_all(dir: &Path) -> audit::Result<Vec<audit::AuditRecord>> {
    AuditLog::read(dir, &KEY, &ReadFilter::default())
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-"))
        })
        .collect();
    v.sort();
    v
}

/// Splits a segment file into its header and its record frames (length prefix included).
fn split(path: &Path) -> (Vec<u8>, Vec<Vec<u8>>) {
    let bytes = fs::read(path).unwrap();
    let header = bytes[..HEADER_LEN].to_vec();
    let mut frames = Vec::new();
    let mut pos = HEADER_LEN;
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let end = pos + FRAME_PREFIX_LEN + len;
        frames.push(bytes[pos..end].to_vec());
        pos = end;
    }
    (header, frames)
}

/// Rewrites a segment with its frames edited by `f` (what an attacker with write access can do).
fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let (header, mut frames) = split(path);
    f(&mut frames);
    let mut out = header;
    for fr in frames {
        out.extend_from_slice(&fr);
    }
    fs::write(path, out).unwrap();
}

#[track_caller]
fn assert_corrupt<T: std::fmt::Debug>(r: audit::Result<T>, segment: u64, record: Option<u64>) {
    match r {
        Err(Error::Corrupt {
            segment: s,
            record: rec,
            ..
        }) if s == segment && rec == record => {}
        other => {
            panic!("expected corruption at segment {segment} record {record:?}, got {other:?}")
        }
    }
}

/// A tampered log fails `verify`, `read` and `open` alike, at the same position.
#[track_caller]
fn assert_detected(dir: &Path, segment: u64, record: Option<u64>) {
    assert_corrupt(AuditLog::verify(dir, &KEY, None), segment, record);
    assert_corrupt(read_all(dir), segment, record);
    assert_corrupt(AuditLog::open(dir, key()), segment, record);
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    segments(dir)
        .into_iter()
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn round_trip_many_events_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let written = write_events(&dir, 0..300, small());
    assert!(segments(&dir).len() > 5, "expected several segments");

    let records = read_all(&dir).unwrap();
    assert_eq!(records.len(), 300);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.event, written[i]);
    }

    let log = AuditLog::open_with(&dir, key(), small()).unwrap();
    let report = AuditLog::verify(&dir, &KEY, Some(&log.head())).unwrap();
    assert_eq!(report.records, 300);
    assert_eq!(report.segments, segments(&dir).len() as u64);
    assert_eq!(report.head, log.head());
    assert_eq!(report.torn_tail_bytes, 0);
    assert!(report.anchor_checked);
}

#[test]
fn reopen_continues_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..40, small());
    {
        let log = AuditLog::open_with(dir, key(), small()).unwrap();
        assert_eq!(log.head().seq, 40);
        assert_eq!(log.append(&ev(40)).unwrap(), 41);
    }
    write_events(dir, 41..80, small());
    let records = read_all(dir).unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>());
    assert_eq!(records[79].event.detail, "event 79");
    AuditLog::verify(dir, &KEY, None).unwrap();
}

#[test]
fn empty_log_reads_empty_and_has_a_genesis_head() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(tmp.path(), key()).unwrap();
    let head = log.head();
    assert_eq!(head.seq, 0);
    assert!(read_all(tmp.path()).unwrap().is_empty());
    let report = AuditLog::verify(tmp.path(), &KEY, Some(&head)).unwrap();
    assert_eq!((report.records, report.segments), (0, 1));
}

#[test]
fn torn_tail_is_cut_on_open_and_the_chain_continues() {
    // Cut inside the record body, inside the length prefix, and leave zeros where the data
    // never reached the disk.
    for case in 0..3 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_events(dir, 0..20, small());
        let last = segments(dir).pop().unwrap();
        let (_, frames) = split(&last);
        assert!(!frames.is_empty());
        let len = fs::metadata(&last).unwrap().len();
        let last_frame = frames.last().unwrap().len() as u64;
        match case {
            0 => fs::OpenOptions::new()
                .write(true)
                .open(&last)
                .unwrap()
                .set_len(len - last_frame / 2)
                .unwrap(),
            1 => fs::OpenOptions::new()
                .write(true)
                .open(&last)
                .unwrap()
                .set_len(len - last_frame + 2)
                .unwrap(),
            _ => {
                let mut b = fs::read(&last).unwrap();
                let start = b.len() - last_frame as usize;
                b[start..].fill(0);
                fs::write(&last, b).unwrap();
            }
        }

        let report = AuditLog::verify(dir, &KEY, None).unwrap();
        assert_eq!(report.records, 19, "case {case}");
        assert!(report.torn_tail_bytes > 0);
        assert_eq!(read_all(dir).unwrap().len(), 19);

        let log = AuditLog::open_with(dir, key(), small()).unwrap();
        assert_eq!(log.head().seq, 19);
        assert_eq!(log.append(&ev(100)).unwrap(), 20);
        drop(log);
        let report = AuditLog::verify(dir, &KEY, None).unwrap();
        assert_eq!((report.records, report.torn_tail_bytes), (20, 0));
        assert_eq!(read_all(dir).unwrap()[19].event.detail, "event 100");
    }
}

#[test]
fn torn_segment_header_is_replaced_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..30, small());
    let segs = segments(dir);
    let n = segs.len();
    // A crash while rolling left the next segment with half a header.
    let header = fs::read(&segs[n - 1]).unwrap()[..HEADER_LEN / 2].to_vec();
    let next = dir.join(format!("audit-{:06}.log", n + 1));
    fs::write(&next, header).unwrap();

    let report = AuditLog::verify(dir, &KEY, None).unwrap();
    assert_eq!(report.records, 30);
    let log = AuditLog::open_with(dir, key(), small()).unwrap();
    assert_eq!(log.append(&ev(30)).unwrap(), 31);
    drop(log);
    assert_eq!(read_all(dir).unwrap().len(), 31);
    assert_eq!(
        AuditLog::verify(dir, &KEY, None).unwrap().torn_tail_bytes,
        0
    );
}

#[test]
fn flipped_byte_in_a_record_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..60, small());
    let seg = &segments(dir)[1];
    let mut b = fs::read(seg).unwrap();
    let (_, frames) = split(seg);
    // Inside record 2's ciphertext.
    let off = HEADER_LEN + frames[0].len() + frames[1].len() + FRAME_PREFIX_LEN + 5;
    b[off] ^= 0x01;
    fs::write(seg, b).unwrap();
    assert_detected(dir, 2, Some(2));
}

#[test]
fn flipped_byte_in_the_last_record_is_corruption_not_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..10, small());
    let seg = segments(dir).pop().unwrap();
    let mut b = fs::read(&seg).unwrap();
    let n = b.len();
    b[n - 1] ^= 0x80;
    fs::write(&seg, b).unwrap();
    let frames = split(&seg).1.len() as u64;
    let segment = segments(dir).len() as u64;
    assert_detected(dir, segment, Some(frames - 1));
}

#[test]
fn flipped_byte_in_a_header_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..60, small());
    for offset in [12, 20, 30, 50] {
        let seg = &segments(dir)[1];
        let orig = fs::read(seg).unwrap();
        let mut b = orig.clone();
        b[offset] ^= 0x10;
        fs::write(seg, &b).unwrap();
        assert_detected(dir, 2, None);
        fs::write(seg, orig).unwrap();
    }
    AuditLog::verify(dir, &KEY, None).unwrap();
}

#[test]
fn deleted_record_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..60, small());
    rewrite(&segments(dir)[1], |f| {
        f.remove(3);
    });
    assert_detected(dir, 2, Some(3));
}

#[test]
fn deleted_last_record_of_a_middle_segment_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..60, small());
    rewrite(&segments(dir)[1], |f| {
        f.pop();
    });
    // The next segment's header no longer continues the chain.
    assert_detected(dir, 3, None);
}

#[test]
fn swapped_records_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..60, small());
    rewrite(&segments(dir)[2], |f| f.swap(1, 4));
    assert_detected(dir, 3, Some(1));
}

#[test]
fn duplicated_record_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..60, small());
    rewrite(&segments(dir)[0], |f| {
        let copy = f[2].clone();
        f.insert(3, copy);
    });
    assert_detected(dir, 1, Some(3));

    // Duplicating the very last record of the log is caught as well.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..60, small());
    let last = segments(dir).pop().unwrap();
    let n = split(&last).1.len() as u64;
    rewrite(&last, |f| {
        let copy = f[f.len() - 1].clone();
        f.push(copy);
    });
    assert_detected(dir, segments(dir).len() as u64, Some(n));
}

#[test]
fn record_moved_from_another_segment_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..60, small());
    let segs = segments(dir);
    let foreign = split(&segs[0]).1[2].clone();
    rewrite(&segs[1], |f| f[2] = foreign);
    assert_detected(dir, 2, Some(2));
}

#[test]
fn removed_middle_segment_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..60, small());
    let segs = segments(dir);
    assert!(segs.len() >= 4);
    fs::remove_file(&segs[1]).unwrap();
    assert_detected(dir, 2, None);

    // Renaming the later segments down to close the gap does not help.
    for (i, s) in segs.iter().enumerate().skip(2) {
        fs::rename(s, dir.join(format!("audit-{:06}.log", i))).unwrap();
    }
    assert_detected(dir, 2, None);
}

#[test]
fn removed_first_segment_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..60, small());
    fs::remove_file(&segments(dir)[0]).unwrap();
    assert_detected(dir, 1, None);
}

#[test]
fn older_copy_of_the_newest_segment_is_caught_by_the_anchor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let big = AuditOptions {
        segment_bytes: 1 << 20,
    };
    // One writer: every open starts a new segment, so the copy must be taken while the
    // same process is still appending to it.
    let log = AuditLog::open_with(dir, key(), big).unwrap();
    for i in 0..20 {
        log.append(&ev(i)).unwrap();
    }
    let seg = segments(dir).pop().unwrap();
    let old_copy = fs::read(&seg).unwrap();
    for i in 20..25 {
        log.append(&ev(i)).unwrap();
    }
    let anchor = log.head();
    drop(log);
    assert_eq!(anchor.seq, 25);
    fs::write(&seg, old_copy).unwrap();

    // Without an anchor a clean prefix is indistinguishable from a shorter log.
    assert_eq!(AuditLog::verify(dir, &KEY, None).unwrap().records, 20);
    let truncated = |r: audit::Result<_>| {
        assert!(
            matches!(
                r,
                Err(Error::Truncated {
                    expected_seq: 25,
                    last_seq: 20,
                    ..
                })
            ),
            "{r:?}"
        )
    };
    truncated(AuditLog::verify(dir, &KEY, Some(&anchor)).map(|_| ()));
    let filter = ReadFilter {
        anchor: Some(anchor.clone()),
        ..ReadFilter::default()
    };
    truncated(AuditLog::read(dir, &KEY, &filter).map(|_| ()));
}

#[test]
fn deleted_newest_segment_is_caught_by_the_anchor_and_a_wrong_anchor_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..60, small());
    let anchor = AuditLog::open_with(dir, key(), small()).unwrap().head();
    assert_eq!(anchor.seq, 60);
    // An older anchor still matches a log that has grown since.
    let early = AuditLog::read(
        dir,
        &KEY,
        &ReadFilter {
            limit: Some(1),
            ..ReadFilter::default()
        },
    )
    .unwrap();
    assert_eq!(early[0].seq, 1);

    let forged = Anchor {
        seq: 30,
        tag: "00".repeat(16),
        segment: 0,
    };
    assert!(matches!(
        AuditLog::verify(dir, &KEY, Some(&forged)),
        Err(Error::AnchorMismatch { seq: 30 })
    ));
    let bad_hex = Anchor {
        seq: 30,
        tag: "zz".into(),
        segment: 0,
    };
    assert!(matches!(
        AuditLog::verify(dir, &KEY, Some(&bad_hex)),
        Err(Error::InvalidAnchor)
    ));

    fs::remove_file(segments(dir).pop().unwrap()).unwrap();
    assert!(matches!(
        AuditLog::verify(dir, &KEY, Some(&anchor)),
        Err(Error::Truncated {
            expected_seq: 60,
            ..
        })
    ));
}

#[test]
fn wrong_key_is_a_typed_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..30, small());
    let before = snapshot(dir);
    // Distinct bytes, so every rendering of the key is a recognisable string.
    let wrong: [u8; 32] = std::array::from_fn(|i| 0xC0 + i as u8);
    assert!(matches!(
        AuditLog::verify(dir, &wrong, None),
        Err(Error::WrongKey { .. })
    ));
    assert!(matches!(
        AuditLog::read(dir, &wrong, &ReadFilter::default()),
        Err(Error::WrongKey { .. })
    ));
    let err = AuditLog::open(dir, Zeroizing::new(wrong)).unwrap_err();
    assert!(matches!(err, Error::WrongKey { .. }));
    assert_no_key_rendering(&format!("{err} {err:?}"), &wrong);
    assert_no_key_rendering(&format!("{err} {err:?}"), &KEY);
    assert_eq!(snapshot(dir), before);
}

/// Fails if `text` holds `key` in any rendering a formatter or an encoder would produce:
/// `{:?}` of an array or slice (`[192, 193, …]`), a decimal list without spaces, hex (either
/// case), base64 (standard and URL-safe). A prefix of 6 bytes is enough to be a leak.
#[track_caller]
fn assert_no_key_rendering(text: &str, key: &[u8; 32]) {
    use base64::Engine as _;
    let part = &key[..6];
    let decimal: Vec<String> = part.iter().map(|b| b.to_string()).collect();
    let renderings = [
        decimal.join(", "),
        decimal.join(","),
        hex::encode(part),
        hex::encode_upper(part),
        // Base64 of a 6-byte prefix is a prefix of the base64 of the whole key.
        base64::engine::general_purpose::STANDARD.encode(part),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(part),
    ];
    for r in renderings {
        assert!(!text.contains(&r), "key bytes rendered as {r:?} in: {text}");
    }
}

#[test]
fn the_key_rendering_check_catches_every_rendering() {
    // The check itself must not pass for the wrong reason.
    let key: [u8; 32] = std::array::from_fn(|i| 0xC0 + i as u8);
    use base64::Engine as _;
    for leak in [
        format!("{key:?}"),
        format!("{:?}", &key[..]),
        format!("{:?}", key.to_vec()),
        hex::encode(key),
        hex::encode_upper(key),
        base64::engine::general_purpose::STANDARD.encode(key),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key),
    ] {
        let caught = std::panic::catch_unwind(|| assert_no_key_rendering(&leak, &key));
        assert!(caught.is_err(), "not caught: {leak}");
    }
    assert_no_key_rendering(
        "wrong audit log key: the log at /x was written with a different key",
        &key,
    );
}

/// Frame start offsets of a segment file's records.
fn frame_offsets(path: &Path) -> Vec<usize> {
    let (_, frames) = split(path);
    let mut at = HEADER_LEN;
    frames
        .iter()
        .map(|f| {
            let o = at;
            at += f.len();
            o
        })
        .collect()
}

#[test]
fn a_flipped_length_cannot_hide_the_records_after_it_as_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let big = AuditOptions {
        segment_bytes: 1 << 20,
    };
    write_events(dir, 0..10, big);
    let seg = segments(dir).pop().unwrap();
    let good = fs::read(&seg).unwrap();
    let offsets = frame_offsets(&seg);
    // Record 3 claims a length that runs past the end of the file: following lengths alone,
    // records 3..9 would look like one torn append and be cut.
    let rest = good.len() - offsets[3] - FRAME_PREFIX_LEN;
    for len in [rest + 1, rest + 4000] {
        let mut b = good.clone();
        b[offsets[3]..offsets[3] + 4].copy_from_slice(&(len as u32).to_le_bytes());
        fs::write(&seg, &b).unwrap();
        let before = snapshot(dir);
        assert_detected(dir, 1, Some(3));
        match AuditLog::verify(dir, &KEY, None) {
            Err(
                e @ Error::Corrupt {
                    offset: Some(o), ..
                },
            ) => {
                assert_eq!(o, offsets[3] as u64);
                let msg = e.to_string();
                assert!(msg.contains("audit-000001.log"), "{msg}");
                assert!(
                    msg.contains(&format!("byte offset {}", offsets[3])),
                    "{msg}"
                );
            }
            other => panic!("expected corruption naming the offset, got {other:?}"),
        }
        // Nothing was cut.
        assert_eq!(snapshot(dir), before);
    }
    // The same length on the genuinely last record is a torn tail.
    let mut b = good.clone();
    let last = offsets[9];
    let rest = good.len() - last - FRAME_PREFIX_LEN;
    b[last..last + 4].copy_from_slice(&(rest as u32 + 10).to_le_bytes());
    fs::write(&seg, &b).unwrap();
    let report = AuditLog::verify(dir, &KEY, None).unwrap();
    assert_eq!(report.records, 9);
    assert!(report.torn_tail_bytes > 0);
}

#[test]
fn every_open_starts_a_new_segment_so_no_key_and_nonce_pair_repeats() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let big = AuditOptions {
        segment_bytes: 1 << 20,
    };
    write_events(dir, 0..5, big.clone());
    let cut_last_record_in_half = |seg: &Path| {
        let (_, frames) = split(seg);
        let len = fs::metadata(seg).unwrap().len();
        let half = frames.last().unwrap().len() as u64 / 2;
        fs::OpenOptions::new()
            .write(true)
            .open(seg)
            .unwrap()
            .set_len(len - half)
            .unwrap();
    };
    // Two rounds: tear the newest record, reopen, append.
    for round in 0..2u64 {
        let torn = segments(dir).pop().unwrap();
        let records_before = split(&torn).1.len();
        cut_last_record_in_half(&torn);
        let log = AuditLog::open_with(dir, key(), big.clone()).unwrap();
        log.append(&ev(100 + round as usize)).unwrap();
        drop(log);
        // The torn segment got nothing new: its cut record's index (its nonce) was not
        // used again under its key. The new record went into a new segment.
        let (_, frames) = split(&torn);
        assert_eq!(frames.len(), records_before - 1, "round {round}");
        let newest = segments(dir).pop().unwrap();
        assert_ne!(newest, torn, "round {round}");
        assert_eq!(split(&newest).1.len(), 1, "round {round}");
    }
    // Every segment has its own salt, so its own key.
    let salts: Vec<Vec<u8>> = segments(dir)
        .iter()
        .map(|p| fs::read(p).unwrap()[44..76].to_vec())
        .collect();
    let mut unique = salts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), salts.len());
    assert_eq!(salts.len(), 3);
    // An open with no append still never reuses the newest segment.
    let n = segments(dir).len();
    drop(AuditLog::open_with(dir, key(), big.clone()).unwrap());
    assert_eq!(segments(dir).len(), n + 1);
    let records = read_all(dir).unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    // Round 0 cut "event 4" (seq 5) and wrote "event 100" as seq 5 in segment 2; round 1
    // cut that one and wrote "event 101" as seq 5 in segment 3.
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(records[3].event.detail, "event 3");
    assert_eq!(records[4].event.detail, "event 101");
}

#[test]
fn the_anchor_names_missing_records_and_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let big = AuditOptions {
        segment_bytes: 1 << 20,
    };
    write_events(dir, 0..8, big.clone());
    // A fresh open: segment 2 exists, empty; the head names it.
    let anchor = AuditLog::open_with(dir, key(), big).unwrap().head();
    assert_eq!((anchor.seq, anchor.segment), (8, 2));
    AuditLog::verify(dir, &KEY, Some(&anchor)).unwrap();

    // Deleting the newest (empty) segment loses no record, but is still a cut.
    let saved = snapshot(dir);
    fs::remove_file(segments(dir).pop().unwrap()).unwrap();
    let err = AuditLog::verify(dir, &KEY, Some(&anchor)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                expected_seq: 8,
                expected_segment: 2,
                last_seq: 8,
                last_segment: 1
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("segment audit-000002.log missing"),
        "{err}"
    );

    // Removing whole trailing records (a clean cut at a frame boundary) too.
    let seg1 = &segments(dir)[0];
    let offsets = frame_offsets(seg1);
    fs::OpenOptions::new()
        .write(true)
        .open(seg1)
        .unwrap()
        .set_len(offsets[6] as u64)
        .unwrap();
    let err = AuditLog::verify(dir, &KEY, Some(&anchor)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                expected_seq: 8,
                last_seq: 6,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("records seq 7..=8"), "{msg}");
    assert!(msg.contains("segment audit-000002.log"), "{msg}");
    for (p, b) in saved {
        fs::write(p, b).unwrap();
    }
    AuditLog::verify(dir, &KEY, Some(&anchor)).unwrap();
}

#[test]
fn open_refuses_to_append_after_corruption_and_leaves_files_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_events(dir, 0..60, small());
    rewrite(&segments(dir)[0], |f| f.swap(0, 1));
    let before = snapshot(dir);
    assert_corrupt(AuditLog::open_with(dir, key(), small()), 1, Some(0));
    assert_eq!(snapshot(dir), before);
}

#[test]
fn concurrent_appends_are_all_present_once_in_seq_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = Arc::new(AuditLog::open_with(dir, key(), small()).unwrap());
    let threads = 8;
    let per = 40;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..per {
                    let detail = format!("t{t}-{i}");
                    let seq = log
                        .append(&AuditEvent::now(
                            EventKind::AuthFailed,
                            Outcome::Failure,
                            &detail,
                        ))
                        .unwrap();
                    got.push((seq, detail));
                }
                got
            })
        })
        .collect();
    let mut all: Vec<(u64, String)> = handles
        .into_iter()
        .flat_map(|h| {
            let got = h.join().unwrap();
            assert!(
                got.windows(2).all(|w| w[0].0 < w[1].0),
                "seqs grow per thread"
            );
            got
        })
        .collect();
    all.sort();
    let n = threads * per;
    assert_eq!(
        all.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=n as u64).collect::<Vec<_>>()
    );
    assert_eq!(log.head().seq, n as u64);
    let records = read_all(dir).unwrap();
    assert_eq!(records.len(), n);
    for (r, (seq, detail)) in records.iter().zip(&all) {
        assert_eq!((r.seq, &r.event.detail), (*seq, detail));
    }
}

#[test]
fn no_plaintext_reaches_the_disk_and_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let marker = "CANARY-5d1e9b7a";
    {
        let log = AuditLog::open_with(&dir, key(), small()).unwrap();
        for i in 0..50 {
            log.append(
                &AuditEvent::now(
                    EventKind::UserCreated,
                    Outcome::Success,
                    format!("{marker} {i}"),
                )
                .principal(format!("{marker}-user"))
                .cluster("canary-cluster"),
            )
            .unwrap();
        }
    }
    let needles: [&[u8]; 4] = [
        marker.as_bytes(),
        b"canary-cluster",
        b"user_created",
        b"detail",
    ];
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n),
                "{} leaks {:?}",
                path.display(),
                String::from_utf8_lossy(n)
            );
        }
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(
        read_all(&dir).unwrap()[7].event.detail,
        format!("{marker} 7")
    );
}

#[test]
fn filters_select_by_time_kind_cluster_limit_and_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = AuditLog::open_with(dir, key(), small()).unwrap();
    let base = datetime!(2026-05-01 00:00:00 UTC);
    for i in 0..40i64 {
        let mut e = AuditEvent::now(
            if i % 4 == 0 {
                EventKind::ClusterInaccessible
            } else {
                EventKind::AuthFailed
            },
            Outcome::Failure,
            format!("e{i}"),
        )
        .cluster(if i % 2 == 0 { "even" } else { "odd" });
        e.time = base + time::Duration::minutes(i);
        log.append(&e).unwrap();
    }
    let read = |f: ReadFilter| -> Vec<u64> {
        AuditLog::read(dir, &KEY, &f)
            .unwrap()
            .into_iter()
            .map(|r| r.seq)
            .collect()
    };
    assert_eq!(
        read(ReadFilter {
            since: Some(base + time::Duration::minutes(10)),
            until: Some(base + time::Duration::minutes(12)),
            ..Default::default()
        }),
        vec![11, 12, 13]
    );
    assert_eq!(
        read(ReadFilter {
            kind: Some(EventKind::ClusterInaccessible),
            ..Default::default()
        }),
        (0..10).map(|i| i * 4 + 1).collect::<Vec<_>>()
    );
    assert_eq!(
        read(ReadFilter {
            cluster: Some("odd".into()),
            limit: Some(3),
            ..Default::default()
        }),
        vec![2, 4, 6]
    );
    assert_eq!(
        read(ReadFilter {
            cluster: Some("even".into()),
            tail: Some(2),
            ..Default::default()
        }),
        vec![37, 39]
    );
    assert_eq!(
        read(ReadFilter {
            tail: Some(5),
            limit: Some(2),
            ..Default::default()
        }),
        vec![39, 40]
    );
}

#[test]
fn a_second_writer_is_refused_while_the_first_is_open() {
    let tmp = tempfile::tempdir().unwrap();
    let first = AuditLog::open(tmp.path(), key()).unwrap();
    assert!(matches!(
        AuditLog::open(tmp.path(), key()),
        Err(Error::Locked { .. })
    ));
    drop(first);
    AuditLog::open(tmp.path(), key()).unwrap();
}

#[test]
fn oversized_event_is_rejected_and_the_log_stays_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(tmp.path(), key()).unwrap();
    let huge = AuditEvent::now(
        EventKind::Other,
        Outcome::Success,
        "x".repeat(audit::MAX_EVENT_LEN),
    );
    assert!(matches!(
        log.append(&huge),
        Err(Error::EventTooLarge { .. })
    ));
    assert_eq!(log.append(&ev(1)).unwrap(), 1);
}

/// Environment variable that turns [`child_appender`] into the victim of the kill test.
const CHILD_DIR_ENV: &str = "STRONGROOM_AUDIT_TEST_CHILD_DIR";

/// Not a test on its own: the process that `kill_dash_nine_loses_no_acknowledged_record`
/// starts and kills. Without the variable it returns at once.
#[test]
fn child_appender() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let log = AuditLog::open_with(
        Path::new(&dir),
        key(),
        AuditOptions {
            segment_bytes: 8192,
        },
    )
    .unwrap();
    for i in 0.. {
        let seq = log.append(&ev(i)).unwrap();
        // Printed only after append returned, i.e. after the fsync.
        println!("ack {seq} {i}");
    }
}

#[test]
fn kill_dash_nine_loses_no_acknowledged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for round in 0..2 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "child_appender",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut acks = Vec::new();
        let mut line = String::new();
        let mut killed = false;
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            // Only whole lines: a line cut by the kill was not fully acknowledged.
            if let Some(rest) = line.strip_prefix("ack ").and_then(|l| l.strip_suffix('\n')) {
                let mut it = rest.split(' ');
                let seq: u64 = it.next().unwrap().parse().unwrap();
                let i: usize = it.next().unwrap().parse().unwrap();
                acks.push((seq, i));
            }
            if !killed && acks.len() >= 150 {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        child.wait().unwrap();
        assert!(killed, "child stopped before being killed (round {round})");

        let log = AuditLog::open_with(
            dir,
            key(),
            AuditOptions {
                segment_bytes: 8192,
            },
        )
        .unwrap();
        let records = read_all(dir).unwrap();
        assert!(records.len() >= acks.len());
        for (seq, i) in &acks {
            let r = &records[*seq as usize - 1];
            assert_eq!(r.seq, *seq);
            assert_eq!(r.event.detail, format!("event {i}"), "round {round}");
        }
        let next = log.append(&ev(999_999)).unwrap();
        assert_eq!(next, records.len() as u64 + 1);
        drop(log);
        AuditLog::verify(dir, &KEY, None).unwrap();
    }
}
