//! `strongroom node`: one cluster node, driven by the control plane over stdin; with
//! `--job`, one job over a cluster's data (restore, export, verify), then exit.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The cluster's data directory (the storage engine's files).
    #[arg(long, required_unless_present = "job")]
    pub data_dir: Option<PathBuf>,
    /// Run the one job the control plane sends on stdin (a restore, an export, a backup
    /// verification; the keys it needs come with it) instead of serving a cluster.
    #[arg(long)]
    pub job: bool,
    /// Bytes a blocking sort may hold in memory before spilling to encrypted temp files.
    #[arg(long)]
    pub sort_memory_limit: Option<usize>,
    /// Most bytes all operations may hold in spill files at once (default 4 GiB).
    #[arg(long)]
    pub temp_disk_quota: Option<u64>,
    /// Log operations slower than this (redacted), like MongoDB's slowms.
    #[arg(long, value_parser = super::parse_duration_or_zero)]
    pub slow_op_threshold: Option<std::time::Duration>,
    /// How long a lone connection polls for its next request after a reply before its
    /// thread sleeps (0 turns polling off; default: the wire server's, 150us).
    #[arg(long, value_parser = super::parse_duration_or_zero)]
    pub idle_poll: Option<std::time::Duration>,
    /// Memtable size of the storage engine in bytes (default: the engine's, 64 MiB). A
    /// node needs about 2.25 times this free to reopen its engine after a full disk.
    #[arg(long)]
    pub memtable_bytes: Option<usize>,
    /// Append logs (redacted) to this file as well as stderr.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.job {
        node::run_job().await?;
        return Ok(());
    }
    node::run(node::NodeOptions {
        data_dir: args.data_dir.unwrap_or_default(),
        sort_memory_limit: args.sort_memory_limit,
        temp_disk_quota: args.temp_disk_quota,
        slow_op_threshold: args.slow_op_threshold,
        idle_poll: args.idle_poll,
        memtable_bytes: args.memtable_bytes,
    })
    .await?;
    Ok(())
}
