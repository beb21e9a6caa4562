//! `strongroom node`: one cluster node, driven by the control plane over stdin.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The cluster's data directory (the storage engine's files).
    #[arg(long)]
    pub data_dir: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    cluster::node::run(args.data_dir).await?;
    Ok(())
}
