//! Kill -9 during writes: every acknowledged mutation survives and the state file loads.
//!
//! The test re-runs its own binary as a child (`CRASH_CHILD_DIR` set) that creates
//! identities in a loop, printing each name once `put_identity` has returned (i.e. once it
//! was durably saved). The parent SIGKILLs the child mid-stream and reopens the data dir.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use identity::Service;
use identity::service::identity_resource_id;

const ENV: &str = "CRASH_CHILD_DIR";

#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(ENV) else {
        return; // only meaningful as the child of the test below
    };
    let svc = Service::open(
        std::path::Path::new(&dir),
        "https://127.0.0.1:1",
        Duration::from_secs(60),
    )
    .unwrap();
    let tenant = svc.bootstrap().unwrap().tenant_id;
    let mut out = std::io::stdout().lock();
    writeln!(out, "tenant {tenant}").unwrap();
    for i in 0.. {
        let name = format!("id-{i}");
        svc.put_identity(&tenant, "s", "rg", &name, "l", BTreeMap::new())
            .unwrap();
        writeln!(out, "ack {name}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_identity() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        let target = 10 + round * 15;
        let mut tenant = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            // libtest may print "test crash_child_writer ... " on the same line first.
            if let Some((_, t)) = line.split_once("tenant ") {
                tenant = t.trim().to_string();
            } else if let Some(name) = line.strip_prefix("ack ") {
                acked.push(name.to_string());
                if acked.len() >= target {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(acked.len() >= target, "child stopped early");
        let svc =
            Service::open(dir.path(), "https://127.0.0.1:1", Duration::from_secs(60)).unwrap();
        assert_eq!(svc.bootstrap().unwrap().tenant_id, tenant);
        for name in &acked {
            let mi = svc.get_identity(&identity_resource_id("s", "rg", name));
            assert!(mi.is_some(), "acknowledged {name} lost in round {round}");
        }
    }
}
