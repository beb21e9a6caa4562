//! Durable state on disk after `strongroom up`: every file that holds a secret is private
//! (0600) however it was written, and a security audit log whose tail was cut off while the
//! service was down is reported by `strongroom audit show` as tampering, naming what is
//! missing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Files that hold a secret, or state sealed under one: keys, credentials, the connection
/// string, sealed state files and logs.
fn is_secrets_file(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name.ends_with(".key")
        || name.ends_with(".sealed")
        || matches!(
            name.as_ref(),
            "endpoints.json"
                | "admin-credentials.json"
                | "default-cluster-password"
                | "state.json"
                | "state.log"
                | "wrapped-dek.json"
        )
        || (name.starts_with("audit-") && name.ends_with(".log"))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Record frames of an audit segment: (offset, length with prefix).
fn frames(path: &Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = audit::format::HEADER_LEN;
    while pos + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((pos, 4 + len));
        pos += 4 + len;
    }
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("audit-")
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_files_are_private_and_a_cut_audit_log_is_tampering() {
    let mut d = Deployment::start("1s", &[]).await;
    let data = d.dir.path().to_path_buf();

    // `up` still hands out the default cluster's connection string.
    assert!(
        d.endpoints["connectionString"]
            .as_str()
            .is_some_and(|s| s.starts_with("mongodb://")),
        "{}",
        d.endpoints
    );

    // Every secrets file is 0600; the ones we know must exist do.
    let files = all_files(&data);
    let listing: Vec<String> = files
        .iter()
        .map(|f| format!("{:o} {}", mode(f), f.display()))
        .collect();
    let secrets: Vec<&PathBuf> = files.iter().filter(|f| is_secrets_file(f)).collect();
    for f in &secrets {
        assert_eq!(
            mode(f),
            0o600,
            "{} is not private:\n{}",
            f.display(),
            listing.join("\n")
        );
    }
    for name in [
        "master.key",
        "root.key",
        "ca.key",
        "endpoints.json",
        "admin-credentials.json",
        "default-cluster-password",
        "audit-head.sealed",
        "wrapped-dek.json",
    ] {
        assert!(
            secrets
                .iter()
                .any(|f| f.file_name().unwrap().to_string_lossy() == name),
            "no {name} in:\n{}",
            listing.join("\n")
        );
    }
    // No temporary file of an atomic write is left behind.
    assert!(
        !files
            .iter()
            .any(|f| f.file_name().unwrap().to_string_lossy().ends_with(".tmp")),
        "{}",
        listing.join("\n")
    );

    // The default cluster's creation is in the security audit log.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, text) = cli(&d, &["audit", "show"]);
        assert!(ok, "{text}");
        if text.contains("cluster_created") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no cluster_created event:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A restart starts a new audit segment and moves the recorded chain head onto it; the
    // log is intact.
    d.stop();
    d.restart().await;
    let (ok, text) = cli(&d, &["audit", "show"]);
    assert!(ok, "{text}");
    assert!(!text.contains("TAMPERING"), "{text}");
    d.stop();

    // While the service is down, cut the tail: remove the newest segment and the last
    // record of the one before it.
    let audit_dir = data.join("security-audit");
    let segs = segments(&audit_dir);
    assert!(segs.len() >= 2, "{segs:?}");
    let newest = segs.last().unwrap();
    std::fs::remove_file(newest).unwrap();
    let previous = &segs[segs.len() - 2];
    let records = frames(previous);
    let (last_at, _) = *records.last().expect("records in the previous segment");
    std::fs::OpenOptions::new()
        .write(true)
        .open(previous)
        .unwrap()
        .set_len(last_at as u64)
        .unwrap();

    d.restart().await;
    let (ok, text) = cli(&d, &["audit", "show"]);
    assert!(!ok, "a cut audit log must fail `audit show`:\n{text}");
    assert!(text.contains("TAMPERING"), "{text}");
    let missing_segment = newest.file_name().unwrap().to_string_lossy().to_string();
    assert!(text.contains(&missing_segment), "{text}");
    assert!(text.contains("missing"), "{text}");
    assert!(text.contains("record seq"), "{text}");
    // The records that are left are still shown.
    assert!(text.contains("cluster_created"), "{text}");

    // The finding is kept: another restart does not forget it.
    d.stop();
    d.restart().await;
    let (ok, text) = cli(&d, &["audit", "show"]);
    assert!(!ok && text.contains("TAMPERING"), "{text}");
}
