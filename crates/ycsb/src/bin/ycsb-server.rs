//! `ycsb-server`: a Strongroom database (encrypted storage engine + docdb + the MongoDB
//! wire server over TLS with SCRAM-SHA-256) in a process of its own, for the benchmark.
//!
//! Usage: `YCSB_SERVER_PASSWORD=... ycsb-server --dir DIR [--listen 127.0.0.1:0] [--user ycsb]`
//!
//! The development CA is loaded from (or created in) `DIR/ca`, the data lives in
//! `DIR/data` under a random root key (the data is throw-away: it cannot be reopened by
//! another process). Prints `READY <port>` on stdout once listening and runs until its
//! stdin closes, then shuts down cleanly. Logs go to stderr (`RUST_LOG`, default `warn`).
//! `--insecure-plaintext` serves plain TCP (the wire server's explicit insecure mode), for
//! comparisons against a database on plain TCP.

// The allocator Strongroom's own binary uses (see crates/strongroom/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use tokio::io::AsyncReadExt;
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(about = "Strongroom server for the YCSB benchmark")]
struct Args {
    /// Directory for the CA (`ca/`) and the database (`data/`).
    #[arg(long)]
    dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Admin user created at start (its password comes from YCSB_SERVER_PASSWORD).
    #[arg(long, default_value = ycsb::server_proc::USER)]
    user: String,
    /// Serve plain TCP instead of TLS.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Decrypted-block cache size in MiB (default: the engine's default).
    #[arg(long)]
    block_cache_mb: Option<usize>,
    /// Memtable size in MiB (default: the engine's default). For experiments.
    #[arg(long)]
    memtable_mb: Option<usize>,
    /// Nice value of the compaction thread (default: the engine's). For experiments.
    #[arg(long)]
    compaction_nice: Option<i32>,
    /// Microseconds a lone connection polls for its next request before sleeping
    /// (default: the wire server's; 0 turns polling off). For experiments.
    #[arg(long)]
    idle_poll_us: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    // SAFETY: first thing in `main`, before any other thread exists.
    unsafe { storage::allocator::keep_freed_memory() };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let password = Zeroizing::new(
        std::env::var(ycsb::server_proc::PASSWORD_ENV)
            .map_err(|_| anyhow::anyhow!("{} is not set", ycsb::server_proc::PASSWORD_ENV))?,
    );
    // The variable itself stays in this process's environment (removing it needs
    // `unsafe` in edition 2024); this process spawns nothing, so it goes no further.

    let ca = pki::DevCa::load_or_create(&args.dir.join("ca"))?;
    let identity = ca.issue_server(&["localhost", "127.0.0.1"])?;
    let tls = wire::tls::server_config(&identity)?;

    let mut key = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(key.as_mut()).map_err(|_| anyhow::anyhow!("random root key"))?;
    let data = args.dir.join("data");
    let mut options = storage::Options::default();
    if let Some(mb) = args.block_cache_mb {
        options.block_cache_bytes = mb << 20;
    }
    if let Some(mb) = args.memtable_mb {
        options.memtable_bytes = mb << 20;
    }
    if let Some(nice) = args.compaction_nice {
        options.compaction_nice = nice;
    }
    let db = tokio::task::spawn_blocking(move || -> anyhow::Result<docdb::Db> {
        let engine = storage::Engine::open(&data, storage::RootKey::from_bytes(*key), options)?;
        Ok(docdb::Db::open(engine)?)
    })
    .await??;

    let mut config = wire::ServerConfig::new(args.listen, db, tls);
    config.admin_user = Some((args.user, password));
    if let Some(us) = args.idle_poll_us {
        config.idle_poll = std::time::Duration::from_micros(us);
    }
    if args.insecure_plaintext {
        config.tls = None;
        config.insecure_plaintext = true;
    }
    let server = wire::Server::start(config).await?;
    println!("READY {}", server.local_addr().port());

    // Run until stdin closes (the parent exited or asked us to stop).
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    server.shutdown().await;
    Ok(())
}
