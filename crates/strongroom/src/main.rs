//! `strongroom`: one binary for every Strongroom service and tool.

mod cmd;
mod layout;

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
    /// Run one cluster node (started by the control plane; reads commands on stdin).
    #[command(hide = true)]
    Node(cmd::node::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Node(_)));
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain on one line; a backtrace is for bugs, not for user errors.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Up(args) => cmd::up::run(args).await,
            Command::Cluster(command) => cmd::cluster::run(command).await,
            Command::Node(args) => cmd::node::run(args).await,
        }
    })
}

/// Logs go to stderr (stdout of a node carries its protocol); `RUST_LOG` overrides the level.
fn init_logging(node: bool) {
    let default = if node { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
