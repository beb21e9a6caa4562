//! The node process on a full disk: `strongroom node` (driven over its stdin as the control
//! plane drives it) keeps its data on a size-limited tmpfs. Inserts through the `mongodb`
//! driver fill it until a write fails with `OutOfDiskSpace` (14031); the node sends a
//! `readOnly` notice naming the cause; reads still work. Deleting a ballast file frees
//! space; the node reopens its engine by itself, sends `writable`, and writes work again
//! within a deadline, with every acknowledged insert there — the same process throughout.
//!
//! Needs root (to mount the tmpfs); CI runs tests as root. If the mount is refused the test
//! fails saying so rather than skipping.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use cluster::protocol::{Event, Init, OpenParams};
use cluster::supervisor::NodeProcess;
use futures::TryStreamExt;
use mongodb::error::{ErrorKind, WriteFailure};
use zeroize::Zeroizing;

const USER: &str = "admin";
const PASSWORD: &str = "node-diskfull-password";

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "this test must mount a {size} tmpfs at {} (run it as root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

fn code_of(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

fn document(i: i64) -> Document {
    let filler: String = (0..16 * 1024usize)
        .map(|j| char::from(b'a' + ((i as usize * 11 + j * 17) % 26) as u8))
        .collect();
    doc! {"_id": i, "filler": filler}
}

/// Waits for a notice matching `want`, skipping others (backup, audit).
async fn notice(
    notices: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    want: impl Fn(&Event) -> bool,
    what: &str,
) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, notices.recv()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the node went away waiting for {what}"),
            Err(_) => panic!("no {what} notice within 30 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_reports_a_full_disk_and_recovers_without_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("fs");
    let _tmpfs = Tmpfs::mount(&mnt, "48m");
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![0xA5u8; 24 << 20]).expect("ballast");

    let ca = pki::DevCa::load_or_create(&tmp.path().join("ca")).expect("dev CA");
    let identity = ca.issue_server(&["localhost"]).expect("server cert");
    let (notices_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let args: Vec<OsString> = vec![
        "node".into(),
        "--data-dir".into(),
        mnt.join("data").into(),
        "--memtable-bytes".into(),
        "1048576".into(),
    ];
    let mut node = NodeProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_strongroom")),
        &args,
        Init {
            cluster: "diskfull".into(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            cert_pem: identity.cert_pem.clone(),
            key_pem: identity.key_pem.clone(),
            initial_reason: "Pending".into(),
        },
        notices_tx,
    )
    .await
    .expect("spawn the node");
    let pid = node.pid();
    node.open(
        &[7u8; 32],
        OpenParams {
            admin_user: Some(USER.into()),
            admin_password: Some(Zeroizing::new(PASSWORD.into())),
            backup: None,
        },
    )
    .await
    .expect("open");

    let uri = format!(
        "mongodb://{USER}:{PASSWORD}@127.0.0.1:{}/?tls=true&tlsCAFile={}&authSource=admin&directConnection=true&serverSelectionTimeoutMS=5000",
        node.port(),
        ca.ca_path().display()
    );
    let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
    let coll = client.database("app").collection::<Document>("docs");

    let mut acked: Vec<i64> = Vec::new();
    let mut next = 0i64;
    let full = loop {
        assert!(next < 10_000, "48 MiB never filled up");
        match coll.insert_one(document(next)).await {
            Ok(_) => acked.push(next),
            Err(e) => break e,
        }
        next += 1;
    };
    next += 1;
    assert_eq!(code_of(&full), Some(14031), "{full}");

    let read_only = notice(
        &mut notices,
        |e| matches!(e, Event::ReadOnly { .. }),
        "readOnly",
    )
    .await;
    let Event::ReadOnly { cause, reason } = read_only else {
        unreachable!()
    };
    assert_eq!(cause, "noSpace", "{reason}");
    assert!(reason.contains("out of disk space"), "{reason}");

    let sample = acked[acked.len() / 3];
    let found = coll
        .find_one(doc! {"_id": sample})
        .await
        .expect("a read on a full disk")
        .expect("an acknowledged document");
    assert_eq!(found.get_i64("_id").ok(), Some(sample));

    std::fs::remove_file(&ballast).expect("remove the ballast");
    let freed = Instant::now();
    notice(&mut notices, |e| matches!(e, Event::Writable), "writable").await;
    loop {
        match coll.insert_one(document(next)).await {
            Ok(_) => {
                acked.push(next);
                break;
            }
            Err(e) if matches!(code_of(&e), Some(14031) | Some(11600)) => {}
            Err(e) => panic!("unexpected error after the reopen: {e}"),
        }
        next += 1;
        assert!(
            freed.elapsed() < Duration::from_secs(30),
            "writes did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{} acknowledged inserts; node writable {:?} after the space was freed",
        acked.len(),
        freed.elapsed()
    );
    assert_eq!(node.pid(), pid, "the same process throughout");
    assert!(!node.has_exited(), "the node is still running");

    let ids: BTreeSet<i64> = coll
        .find(doc! {})
        .projection(doc! {"_id": 1})
        .await
        .expect("find")
        .try_collect::<Vec<Document>>()
        .await
        .expect("cursor")
        .iter()
        .filter_map(|d| d.get_i64("_id").ok())
        .collect();
    let missing: Vec<i64> = acked.iter().copied().filter(|i| !ids.contains(i)).collect();
    assert!(missing.is_empty(), "acknowledged inserts lost: {missing:?}");

    drop(client);
    node.shutdown().await;
}
