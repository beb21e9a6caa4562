//! Interop with real clients nobody here wrote: pymongo's pytest suite in
//! `tests/interop/mongo/`, mongosh, and pymongo against the availability gate.
//!
//! Missing clients fail the test with the command that installs them (never skip):
//! `pip install -r tests/interop/requirements.txt` and
//! `npm install --prefix tests/interop/mongo/node`.

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::{ADMIN_PASSWORD, ADMIN_USER, TestServer};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_pymongo() {
    let status = std::process::Command::new("python3")
        .args(["-c", "import pymongo, pytest"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "python3 with pymongo and pytest is required: pip install -r tests/interop/requirements.txt"
    );
}

fn mongosh() -> PathBuf {
    let bin = repo_root().join("tests/interop/mongo/node/node_modules/.bin/mongosh");
    assert!(
        bin.exists(),
        "mongosh is not installed: npm install --prefix tests/interop/mongo/node (needs node 18+)"
    );
    bin
}

/// pytest's verdict: `Ok(number of tests passed)` only when the run succeeded, at least one
/// test ran and passed, and none was skipped; otherwise why not. A run in which every test
/// was skipped exits 0, and one that collected nothing exits 5: neither proves anything.
fn pytest_verdict(code: Option<i32>, output: &str) -> Result<u32, String> {
    // The last line of `-q` output: "12 passed, 1 skipped in 0.40s", "no tests ran in ...".
    let summary = output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            l.contains(" in ")
                && (l.contains("passed")
                    || l.contains("no tests ran")
                    || l.contains("skipped")
                    || l.contains("failed")
                    || l.contains("error"))
        })
        .unwrap_or("");
    let count = |what: &str| -> u32 {
        summary
            .split(',')
            .filter_map(|part| {
                let mut words = part.split_whitespace();
                let n: u32 = words.next()?.parse().ok()?;
                (words.next()? == what).then_some(n)
            })
            .sum()
    };
    match code {
        Some(0) => {}
        Some(5) => return Err("pytest collected no tests (exit 5)".into()),
        other => return Err(format!("pytest exited with {other:?}: {summary}")),
    }
    let (passed, skipped) = (count("passed"), count("skipped"));
    if skipped > 0 {
        return Err(format!("{skipped} test(s) skipped: {summary}"));
    }
    if passed == 0 {
        return Err(format!("no test passed: {summary:?}"));
    }
    Ok(passed)
}

#[test]
fn pytest_verdict_refuses_runs_that_prove_nothing() {
    assert_eq!(pytest_verdict(Some(0), "...\n12 passed in 0.40s\n"), Ok(12));
    assert!(pytest_verdict(Some(0), "3 skipped in 0.01s").is_err());
    assert!(pytest_verdict(Some(0), "11 passed, 1 skipped in 0.40s").is_err());
    assert!(pytest_verdict(Some(5), "no tests ran in 0.01s").is_err());
    assert!(pytest_verdict(Some(1), "1 failed, 11 passed in 0.40s").is_err());
    assert!(pytest_verdict(Some(0), "").is_err());
}

async fn pytest(
    ts: &TestServer,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> (Result<u32, String>, String) {
    let mut cmd = tokio::process::Command::new("python3");
    cmd.current_dir(repo_root())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .args(args)
        .env("STRONGROOM_MONGO_HOST", "127.0.0.1")
        .env("STRONGROOM_MONGO_PORT", ts.addr.port().to_string())
        .env("STRONGROOM_MONGO_CA", &ts.ca_path)
        .env("STRONGROOM_MONGO_USER", ADMIN_USER)
        .env("STRONGROOM_MONGO_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run python3 -m pytest");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (pytest_verdict(out.status.code(), &text), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_suite_passes() {
    require_pymongo();
    let ts = TestServer::start().await;
    let (verdict, out) = pytest(
        &ts,
        &["tests/interop/mongo", "--ignore=tests/interop/mongo/gate"],
        &[],
    )
    .await;
    println!("{out}");
    if let Err(why) = verdict {
        panic!("pymongo suite: {why}\n{out}");
    }
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongosh_connects_inserts_and_queries() {
    let bin = mongosh();
    let ts = TestServer::start().await;
    let script = std::fs::read_to_string(repo_root().join("tests/interop/mongo/mongosh_smoke.js"))
        .expect("mongosh script");
    let uri = format!(
        "mongodb://{ADMIN_USER}:{}@127.0.0.1:{}/?authSource=admin&directConnection=true",
        ADMIN_PASSWORD.replace(' ', "%20"),
        ts.addr.port()
    );
    let out = tokio::process::Command::new(&bin)
        .arg(&uri)
        .args(["--tls", "--tlsCAFile"])
        .arg(&ts.ca_path)
        .args(["--quiet", "--norc", "--eval", &script])
        .env("MONGOSH_NO_UPDATE_CHECK", "1")
        .env("DO_NOT_TRACK", "1")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run mongosh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mongosh failed:\n{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("MONGOSH_RESULT "))
        .unwrap_or_else(|| panic!("no result line in mongosh output:\n{stdout}\n{stderr}"));
    assert_eq!(
        line.trim(),
        r#"{"found":["three","two"],"total":6,"uno":"uno","count":3}"#
    );
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_sees_why_the_cluster_is_inaccessible() {
    require_pymongo();
    let ts = TestServer::start().await;
    let reason = "KeyDisabled: key 'https://vault.local/keys/cmk' is disabled";
    ts.server.make_inaccessible(reason.to_string());
    let (verdict, out) = pytest(
        &ts,
        &["tests/interop/mongo/gate"],
        &[("STRONGROOM_EXPECT_REASON", reason)],
    )
    .await;
    println!("{out}");
    if let Err(why) = verdict {
        panic!("gate test: {why}\n{out}");
    }
    ts.stop().await;
}
