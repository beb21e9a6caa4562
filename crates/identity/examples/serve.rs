//! Runs an identity service for manual and cross-language testing (e.g. azure-identity).
//!
//! `cargo run -p identity --example serve -- <dir>` creates `<dir>/ca` (dev CA) and
//! `<dir>/data`, bootstraps, writes `<dir>/env.json` (base URL, CA path, admin and control
//! plane credentials; 0600), and serves until Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: serve <dir>")?);
    let ca = pki::DevCa::load_or_create(&dir.join("ca"))?;
    let tls = pki::server_config(&ca.issue_server(&["localhost", "127.0.0.1"])?, None)?;
    let server = identity::Server::start(identity::Config {
        data_dir: dir.join("data"),
        listen: "127.0.0.1:0".parse()?,
        tls,
        public_url: None,
        token_lifetime: Duration::from_secs(3600),
    })
    .await?;
    let boot = server.bootstrap()?;
    if let (Some(admin), Some(control)) = (boot.admin, boot.control_plane) {
        let env = serde_json::json!({
            "base_url": server.base_url(),
            "ca_path": ca.ca_path(),
            "tenant_id": boot.tenant_id,
            "admin": admin,
            "control_plane": control,
        });
        sealed::write_atomic_io(
            &dir.join("env.json"),
            serde_json::to_string_pretty(&env)?.as_bytes(),
            0o600,
        )?;
    }
    println!("{}", server.base_url());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
