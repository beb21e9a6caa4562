//! A real full disk: a size-limited tmpfs holds the database of a real wire server (TLS,
//! SCRAM, the `mongodb` driver), with the node's storage recovery ([`node::Recovery`])
//! running as it does in the node. Inserts fill the file system until a write fails with
//! `OutOfDiskSpace` (14031); reads still work and `serverStatus` says why writes stop;
//! deleting a ballast file placed there first frees space, and writes must work again
//! within a deadline without restarting anything, with every acknowledged insert there.
//!
//! Needs root (to mount the tmpfs); CI runs tests as root. If the mount is refused the test
//! fails saying so rather than skipping.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use futures::TryStreamExt;
use mongodb::error::{ErrorKind, WriteFailure};
use node::{Recovery, Reopener, Step};
use zeroize::Zeroizing;

const USER: &str = "root";
const PASSWORD: &str = "diskfull-test-password";

/// A tmpfs mounted for the test's lifetime; unmounted (lazily if still busy) on drop.
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

fn message_of(e: &mongodb::error::Error) -> String {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.message.clone(),
        ErrorKind::Command(c) => c.message.clone(),
        _ => e.to_string(),
    }
}

fn document(i: i64) -> Document {
    // 16 KiB that differ per document.
    let filler: String = (0..16 * 1024usize)
        .map(|j| char::from(b'a' + ((i as usize * 7 + j * 13) % 26) as u8))
        .collect();
    doc! {"_id": i, "filler": filler}
}

async fn storage_status(client: &mongodb::Client) -> Document {
    let status = client
        .database("admin")
        .run_command(doc! {"serverStatus": 1})
        .await
        .expect("serverStatus");
    status
        .get_document("storageEngine")
        .expect("storageEngine")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_file_system_refuses_writes_with_out_of_disk_space_until_space_is_freed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("fs");
    let _tmpfs = Tmpfs::mount(&mnt, "48m");
    // The ballast takes half the file system; deleting it is how space comes back. After
    // that, more is free than the data takes, so compactions fit too.
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![0x5Au8; 24 << 20]).expect("ballast");

    let reopener = Reopener {
        dir: mnt.join("data"),
        root: storage::RootKey::from_bytes([9u8; 32]),
        storage: storage::Options {
            memtable_bytes: 1 << 20,
            block_cache_bytes: 8 << 20,
            ..storage::Options::default()
        },
        db: docdb::DbConfig::default(),
    };
    let (db, engine) = reopener.open().expect("open on the tmpfs");
    let ca = pki::DevCa::load_or_create(&tmp.path().join("ca")).expect("dev CA");
    let identity = ca.issue_server(&["localhost"]).expect("server cert");
    let tls = wire::tls::server_config(&identity).expect("tls config");
    let mut config = wire::ServerConfig::new("127.0.0.1:0".parse().expect("addr"), db, tls);
    config.admin_user = Some((USER.into(), Zeroizing::new(PASSWORD.into())));
    let server = Arc::new(wire::Server::start(config).await.expect("start"));

    // The node's recovery loop, as the node runs it.
    let steps: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = {
        let steps = steps.clone();
        move |prefix: &str| {
            steps
                .lock()
                .expect("steps")
                .iter()
                .any(|s| s.starts_with(prefix))
        }
    };
    let watcher = {
        let server = server.clone();
        let steps = steps.clone();
        let mut recovery = Recovery::new(engine, reopener);
        tokio::spawn(async move {
            loop {
                match recovery.step(&server).await {
                    Step::Writable | Step::Waiting => {}
                    step => steps.lock().expect("steps").push(format!("{step:?}")),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let uri = format!(
        "mongodb://{USER}:{PASSWORD}@127.0.0.1:{}/?tls=true&tlsCAFile={}&authSource=admin&directConnection=true&serverSelectionTimeoutMS=5000",
        server.local_addr().port(),
        ca.ca_path().display()
    );
    let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
    let coll = client.database("app").collection::<Document>("docs");

    // Fill the file system.
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
    assert!(
        message_of(&full).contains("out of disk space"),
        "{}",
        message_of(&full)
    );
    assert!(acked.len() > 100, "only {} inserts fitted", acked.len());

    // Recovery notices (it polls); writes keep failing the same way.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen("TurnedReadOnly") {
        assert!(Instant::now() < deadline, "recovery never noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = coll
        .insert_one(document(next))
        .await
        .expect_err("still full");
    next += 1;
    assert_eq!(code_of(&refused), Some(14031), "{refused}");

    // Reads work while writes are refused, and serverStatus says why.
    let sample = acked[acked.len() / 2];
    let found = coll
        .find_one(doc! {"_id": sample})
        .await
        .expect("a read on a full disk")
        .expect("an acknowledged document");
    assert_eq!(found.get_i64("_id").ok(), Some(sample));
    let status = storage_status(&client).await;
    assert_eq!(status.get_bool("readOnly").ok(), Some(true), "{status}");
    let reason = status.get_str("readOnlyReason").expect("a reason");
    assert!(reason.contains("out of disk space"), "{reason}");

    // Free the space: writes come back without a restart.
    std::fs::remove_file(&ballast).expect("remove the ballast");
    let freed = Instant::now();
    loop {
        match coll.insert_one(document(next)).await {
            Ok(_) => {
                acked.push(next);
                break;
            }
            // Refused until the reopen, or retried by the driver during it.
            Err(e) if matches!(code_of(&e), Some(14031) | Some(11600)) => {}
            Err(e) => panic!("unexpected error while recovering: {e}"),
        }
        next += 1;
        assert!(
            freed.elapsed() < Duration::from_secs(30),
            "writes did not come back within 30 s: {:?}",
            steps.lock().expect("steps")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_in = freed.elapsed();
    assert!(seen("Reopened"), "{:?}", steps.lock().expect("steps"));
    for i in next + 1..next + 20 {
        coll.insert_one(document(i))
            .await
            .expect("writes work again");
        acked.push(i);
    }

    // Every acknowledged insert is there.
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
    let status = storage_status(&client).await;
    assert_eq!(status.get_bool("readOnly").ok(), Some(false), "{status}");
    eprintln!(
        "{} acknowledged inserts; writes back {recovered_in:?} after the space was freed; steps {:?}",
        acked.len(),
        steps.lock().expect("steps")
    );

    watcher.abort();
    let _ = watcher.await;
    drop(client);
    if let Ok(server) = Arc::try_unwrap(server) {
        server.shutdown().await;
    }
}
