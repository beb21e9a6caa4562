//! The `ycsb-server` child process: a Strongroom server in a process of its own.
//!
//! Protocol between the two: the parent creates the development CA in `<dir>/ca` (so it
//! knows which certificate to trust), passes the admin password in the environment
//! variable [`PASSWORD_ENV`] (never on the command line, where `ps` would show it), and
//! reads the child's stdout until `READY <port>`. Closing the child's stdin asks it to
//! shut down cleanly; it is killed if it does not exit in time (or if the parent drops
//! the handle without stopping it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::workload::{Resources, Transport};

/// Environment variable carrying the admin password to `ycsb-server`.
pub const PASSWORD_ENV: &str = "YCSB_SERVER_PASSWORD";
/// The admin user the benchmark authenticates as.
pub const USER: &str = "ycsb";

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `ycsb-server`.
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    ca_path: PathBuf,
    password: Zeroizing<String>,
    transport: Transport,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `server_bin` on a fresh data directory under `parent` (the system temp dir
    /// when `None`) and waits until it listens.
    pub async fn spawn(
        server_bin: &Path,
        parent: Option<&Path>,
        transport: Transport,
        resources: &Resources,
    ) -> Result<ServerProcess> {
        let dir = match parent {
            Some(p) => tempfile::Builder::new()
                .prefix("ycsb-strongroom-")
                .tempdir_in(p)?,
            None => tempfile::Builder::new()
                .prefix("ycsb-strongroom-")
                .tempdir()?,
        };
        let ca = pki::DevCa::load_or_create(&dir.path().join("ca"))?;
        let mut raw = [0u8; 24];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| Error::Server("random password".into()))?;
        let password = Zeroizing::new(hex::encode(raw));
        raw.fill(0);

        let mut command = match &resources.cpus {
            Some(cpus) => cpus.command(server_bin),
            None => Command::new(server_bin),
        };
        if transport == Transport::Plain {
            command.arg("--insecure-plaintext");
        }
        let mut child = command
            .arg("--block-cache-mb")
            .arg(resources.cache_mb.to_string())
            .arg("--dir")
            .arg(dir.path())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--user")
            .arg(USER)
            .env(PASSWORD_ENV, password.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Server(format!("spawn {}: {e}", server_bin.display())))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Server("no stdout pipe".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix("READY ") {
                    return rest
                        .trim()
                        .parse::<u16>()
                        .map_err(|_| Error::Server(format!("bad READY line {line:?}")));
                }
            }
            Err(Error::Server("exited before printing READY".into()))
        })
        .await
        .map_err(|_| Error::Server("not ready in time".into()))??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ServerProcess {
            child,
            stdin,
            port,
            ca_path: ca.ca_path(),
            password,
            transport,
            _dir: dir,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The driver connection string (TLS with the dev CA unless the server runs in plain
    /// TCP, SCRAM-SHA-256, direct). It contains the password: never log it.
    pub fn uri(&self) -> String {
        let tls = match self.transport {
            Transport::Tls => format!("tls=true&tlsCAFile={}&", self.ca_path.display()),
            Transport::Plain => String::new(),
        };
        format!(
            "mongodb://{USER}:{}@127.0.0.1:{}/?{tls}authSource=admin\
             &authMechanism=SCRAM-SHA-256&directConnection=true&serverSelectionTimeoutMS=10000",
            self.password.as_str(),
            self.port,
        )
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Closes stdin (the shutdown request) and waits for a clean exit; kills the child
    /// if it takes longer than two minutes.
    pub async fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(Error::Server(format!("exited with {status}"))),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                self.child.kill().await?;
                Err(Error::Server("did not stop in time; killed".into()))
            }
        }
    }
}
