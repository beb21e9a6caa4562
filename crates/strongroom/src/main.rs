//! `strongroom`: one binary for every Strongroom service and tool.

mod cmd;
mod layout;

// Every node serves each command with many short-lived allocations (request and reply
// buffers, decoded documents, index keys); with mimalloc's thread-local free lists the
// server alone served a third more of the read-mostly benchmark mix than with glibc's
// malloc (docs/benchmarks.md, Run 6).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strongroom",
    version,
    about = "An encrypted, MongoDB-compatible document database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start identity, key vault, control plane and a default SMK cluster on loopback.
    Up(cmd::up::Args),
    /// Manage clusters through the control plane (like `az cosmosdb mongocluster`).
    #[command(subcommand)]
    Cluster(cmd::cluster::Command),
    /// Inspect and verify clusters' continuous backups.
    #[command(subcommand)]
    Backup(cmd::backup::Command),
    /// Read the security audit log (administrators only).
    #[command(subcommand)]
    Audit(cmd::audit::Command),
    /// Run one cluster node (started by the control plane; reads commands on stdin).
    #[command(hide = true)]
    Node(cmd::node::Args),
}

fn main() -> std::process::ExitCode {
    // SAFETY: first thing in `main`, before any other thread exists.
    unsafe { storage::allocator::keep_freed_memory() };
    let cli = Cli::parse();
    let log_file = match &cli.command {
        Command::Up(args) => Some(
            args.log_dir
                .clone()
                .unwrap_or_else(|| args.data_dir.join("logs"))
                .join("strongroom.log"),
        ),
        Command::Node(args) => args.log_file.clone(),
        _ => None,
    };
    init_logging(matches!(cli.command, Command::Node(_)), log_file.as_deref());
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain on one line; a backtrace is for bugs, not for user errors.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Stack of every runtime thread (workers and the blocking pool, where commands run).
/// Input cannot make a walker recurse without bound (docdb caps paths at 200 parts,
/// stored documents at 100 levels, expressions at 100), but a bounded walk still costs
/// stack: a 100-level expression took 256-512 KiB in a release build and 3.8 MiB in a
/// debug one (docs/docdb.md, "Limits"), against tokio's 2 MiB default. 16 MiB is address
/// space, not memory: only the pages a thread touches are ever resident.
const THREAD_STACK: usize = 16 << 20;

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(THREAD_STACK)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Up(args) => cmd::up::run(args).await,
            Command::Cluster(command) => cmd::cluster::run(command).await,
            Command::Backup(command) => cmd::backup::run(command).await,
            Command::Audit(command) => cmd::audit::run(command).await,
            Command::Node(args) => cmd::node::run(args).await,
        }
    })
}

/// Logs go to stderr (stdout of a node carries its protocol); `RUST_LOG` overrides the level.
///
/// Services also append to a log file in the log directory (`up --log-dir`, default
/// `<data-dir>/logs`; nodes write `node-<cluster>.log` there). What reaches a log is
/// redacted at the source: no document value, field name or query ever appears.
fn init_logging(node: bool, file: Option<&std::path::Path>) {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let _ = node;
    let default = "info";
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let file = file.and_then(|path| {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
        {
            Ok(f) => Some(std::sync::Mutex::new(f)),
            Err(e) => {
                eprintln!("warning: cannot open log file {}: {e}", path.display());
                None
            }
        }
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match file {
        Some(file) => builder
            .with_writer(std::io::stderr.and(file))
            .with_ansi(false)
            .init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}
