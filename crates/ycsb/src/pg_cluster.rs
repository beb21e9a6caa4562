//! A throw-away PostgreSQL cluster in a temp dir, created and started by the harness
//! with Debian's binaries (`initdb`, `pg_ctl`).
//!
//! PostgreSQL refuses to run as root, so when the harness runs as root the cluster
//! directory is handed to the `postgres` system user (created by Debian's `postgresql`
//! package) and both tools run under `runuser -u postgres`. The server listens on a free
//! port of 127.0.0.1 only, trusts local connections (a benchmark-only cluster), and keeps
//! PostgreSQL's default durability (`fsync=on`, `synchronous_commit=on`, written
//! explicitly so nobody wonders).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::cpus::CpuList;
use crate::error::{Error, Result};
use crate::workload::Resources;

/// Where Debian installs each PostgreSQL major version: `<ROOT>/<major>/bin`.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The role the benchmark connects as.
pub const ROLE: &str = "ycsb";

/// The directory holding `initdb` and `pg_ctl`: `explicit` if given, otherwise
/// `/usr/lib/postgresql/<major>/bin` of the newest major version installed that has both
/// (whichever version the distribution ships). `None` when PostgreSQL is not installed.
pub fn find_bin_dir(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(d) => has_tools(d).then(|| d.to_path_buf()),
        None => newest_bin_dir(Path::new(DEBIAN_ROOT)),
    }
}

fn has_tools(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// `<root>/<major>/bin` with both tools, for the highest numeric `<major>`.
fn newest_bin_dir(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
}

/// Effective uid of this process (the owner of `/proc/self`).
fn euid() -> Result<u32> {
    Ok(std::fs::metadata("/proc/self")?.uid())
}

/// uid and gid of `user` from `/etc/passwd`.
fn lookup_user(user: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let mut parts = line.split(':');
        if parts.next() != Some(user) {
            continue;
        }
        let uid = parts.nth(1).and_then(|s| s.parse().ok());
        let gid = parts.next().and_then(|s| s.parse().ok());
        if let (Some(uid), Some(gid)) = (uid, gid) {
            return Ok((uid, gid));
        }
    }
    Err(Error::Cluster(format!(
        "running as root needs the `{user}` system user (apt-get install postgresql creates it)"
    )))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// A running cluster; stopped by [`PgCluster::stop`] (or, as a last resort, on drop).
pub struct PgCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres_user: bool,
    running: bool,
    /// The CA that issued the server certificate, when started with TLS.
    tls_ca_pem: Option<String>,
    /// CPUs `pg_ctl`, and so the postmaster and every backend it forks, run on.
    cpus: Option<CpuList>,
    dir: tempfile::TempDir,
}

impl PgCluster {
    /// `initdb` + `pg_ctl start` in a new temp dir under `parent` (system temp when None).
    /// `resources` gives `shared_buffers` and the CPUs every server process runs on.
    pub async fn start(
        bin: &Path,
        parent: Option<&Path>,
        resources: &Resources,
    ) -> Result<PgCluster> {
        Self::start_with(bin, parent, resources, false).await
    }

    /// [`PgCluster::start`] with `ssl = on`: a server certificate for `localhost` and
    /// `127.0.0.1` from a development CA of its own ([`PgCluster::tls_ca_pem`]), and a
    /// [`PgCluster::conninfo`] with `sslmode=require`.
    pub async fn start_tls(
        bin: &Path,
        parent: Option<&Path>,
        resources: &Resources,
    ) -> Result<PgCluster> {
        Self::start_with(bin, parent, resources, true).await
    }

    async fn start_with(
        bin: &Path,
        parent: Option<&Path>,
        resources: &Resources,
        tls: bool,
    ) -> Result<PgCluster> {
        let dir = match parent {
            Some(p) => tempfile::Builder::new().prefix("ycsb-pg-").tempdir_in(p)?,
            None => tempfile::Builder::new().prefix("ycsb-pg-").tempdir()?,
        };
        let as_postgres_user = euid()? == 0;
        let owner = if as_postgres_user {
            let (uid, gid) = lookup_user("postgres")?;
            chown_tree(dir.path(), uid, gid)?;
            Some((uid, gid))
        } else {
            None
        };
        let data = dir.path().join("data");
        let mut cluster = PgCluster {
            bin: bin.to_path_buf(),
            data,
            port: 0,
            as_postgres_user,
            running: false,
            tls_ca_pem: None,
            cpus: resources.cpus.clone(),
            dir,
        };
        let data_arg = cluster.data.display().to_string();
        cluster
            .tool(
                "initdb",
                &[
                    "-D",
                    &data_arg,
                    "--auth=trust",
                    &format!("--username={ROLE}"),
                    "--encoding=UTF8",
                    "--locale=C",
                    // Only initdb's own files skip fsync; the server below runs with fsync=on.
                    "--no-sync",
                ],
            )
            .await?;
        cluster.port = free_port()?;
        let mut conf = format!(
            "\n# ycsb harness\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nmax_connections = 200\n\
             fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n\
             shared_buffers = {}MB\n",
            cluster.port,
            cluster.dir.path().display(),
            resources.cache_mb
        );
        if tls {
            cluster.tls_ca_pem = Some(cluster.install_certificate(owner)?);
            conf.push_str(
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
                 ssl_min_protocol_version = 'TLSv1.3'\n",
            );
        }
        append(&cluster.data.join("postgresql.conf"), &conf)?;
        let log = cluster
            .dir
            .path()
            .join("postgres.log")
            .display()
            .to_string();
        cluster
            .tool(
                "pg_ctl",
                &["-D", &data_arg, "-l", &log, "-w", "-t", "120", "start"],
            )
            .await
            .map_err(|e| {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                Error::Cluster(format!("{e}; server log:\n{tail}"))
            })?;
        cluster.running = true;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A tokio-postgres connection string (TCP on loopback; `sslmode=require` with TLS).
    pub fn conninfo(&self) -> String {
        let ssl = if self.tls_ca_pem.is_some() {
            " sslmode=require"
        } else {
            ""
        };
        format!(
            "host=127.0.0.1 port={} user={ROLE} dbname=postgres{ssl}",
            self.port
        )
    }

    /// The CA to trust for this cluster's certificate, when started with TLS.
    pub fn tls_ca_pem(&self) -> Option<&str> {
        self.tls_ca_pem.as_deref()
    }

    /// Writes `server.crt` and `server.key` (mode 0600, owned by the server's user, as
    /// PostgreSQL requires) into the data directory; returns the issuing CA's PEM.
    fn install_certificate(&self, owner: Option<(u32, u32)>) -> Result<String> {
        use std::os::unix::fs::PermissionsExt;
        let ca = pki::DevCa::load_or_create(&self.dir.path().join("ca"))?;
        let identity = ca.issue_server(&["localhost", "127.0.0.1"])?;
        let cert = self.data.join("server.crt");
        let key = self.data.join("server.key");
        std::fs::write(&cert, &identity.cert_pem)?;
        std::fs::write(&key, identity.key_pem.as_bytes())?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = owner {
            for f in [&cert, &key] {
                std::os::unix::fs::chown(f, Some(uid), Some(gid))?;
            }
        }
        Ok(ca.ca_pem().to_string())
    }

    /// `pg_ctl stop -m fast` and removal of the temp dir.
    pub async fn stop(mut self) -> Result<()> {
        let data_arg = self.data.display().to_string();
        self.tool("pg_ctl", &["-D", &data_arg, "-m", "fast", "-w", "stop"])
            .await?;
        self.running = false;
        Ok(())
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let program: &std::ffi::OsStr = if self.as_postgres_user {
            "runuser".as_ref()
        } else {
            path.as_os_str()
        };
        let mut c = match &self.cpus {
            Some(cpus) => cpus.command(program),
            None => Command::new(program),
        };
        if self.as_postgres_user {
            c.arg("-u").arg("postgres").arg("--").arg(&path);
        }
        c
    }

    async fn tool(&self, tool: &str, args: &[&str]) -> Result<()> {
        let out = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .current_dir(self.dir.path())
            .output()
            .await
            .map_err(|e| Error::Cluster(format!("run {tool}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Cluster(format!(
                "{tool} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        // Never leave a postmaster behind (a failed run, a panicking test).
        let path = self.bin.join("pg_ctl");
        let mut c = if self.as_postgres_user {
            let mut c = std::process::Command::new("runuser");
            c.arg("-u").arg("postgres").arg("--").arg(path);
            c
        } else {
            std::process::Command::new(path)
        };
        let _ = c
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir(self.dir.path())
            .status();
    }
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_major_version_with_both_tools_is_chosen() {
        let root = tempfile::tempdir().unwrap();
        let install = |major: &str, tools: &[&str]| {
            let bin = root.path().join(major).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for tool in tools {
                std::fs::write(bin.join(tool), b"").unwrap();
            }
        };
        assert_eq!(newest_bin_dir(root.path()), None);
        install("9", &["initdb", "pg_ctl"]);
        install("15", &["initdb", "pg_ctl"]);
        install("16", &["pg_ctl"]); // a client-only install: no initdb
        install("common", &["initdb", "pg_ctl"]);
        assert_eq!(
            newest_bin_dir(root.path()),
            Some(root.path().join("15/bin")),
            "15 beats 9 numerically; 16 lacks initdb; `common` is no version"
        );
    }
}
