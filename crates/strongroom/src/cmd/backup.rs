//! `strongroom backup …`: look into and check a cluster's continuous backup. Both
//! commands work from the sealed catalog and files in the backup location, unlocked
//! with the cluster's own key; `verify` authenticates every block and writes no
//! plaintext anywhere.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::cluster::{Client, Common};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Show a cluster's snapshots and its restorable window.
    List {
        cluster: String,
        #[command(flatten)]
        common: Common,
    },
    /// Check every file of a cluster's backup (hashes, then every block's authentication).
    Verify {
        cluster: String,
        #[command(flatten)]
        common: Common,
    },
    /// Export a cluster, as of a restore point, to a mongodump-layout directory —
    /// encrypted under a key wrapped by the cluster's KEK unless --plaintext.
    Export {
        cluster: String,
        /// An empty or new directory.
        #[arg(long)]
        out: PathBuf,
        /// RFC 3339 UTC instant (default: the newest restorable one).
        #[arg(long)]
        point_in_time: Option<String>,
        /// Write plaintext BSON files. Anyone who can read them reads your data.
        #[arg(long)]
        plaintext: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Decrypt an encrypted export into a plain dump (for mongorestore).
    DecryptExport {
        cluster: String,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::List { cluster, common } => {
            let client = Client::connect(&common).await?;
            let url = client.action_url(&common.resource_group, &cluster, "backups");
            let info = client.send(client.http.get(url)).await?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        Command::Verify { cluster, common } => {
            let client = Client::connect(&common).await?;
            let url = client.action_url(&common.resource_group, &cluster, "backups/verify");
            let report = client.send(client.http.post(url)).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            let problems = report["problems"].as_array().map(Vec::len).unwrap_or(0);
            if problems > 0 {
                anyhow::bail!("the backup of {cluster} is damaged: {problems} problem(s)");
            }
            if report["problems"] == Value::Null {
                anyhow::bail!("unexpected answer from the control plane");
            }
        }
        Command::Export {
            cluster,
            out,
            point_in_time,
            plaintext,
            common,
        } => {
            let client = Client::connect(&common).await?;
            let url = client.action_url(&common.resource_group, &cluster, "backups/export");
            let mut body = json!({
                "outputDirectory": std::path::absolute(&out)?,
                "plaintext": plaintext,
            });
            if let Some(t) = point_in_time {
                body["pointInTimeUTC"] = json!(t);
            }
            let manifest = client.send(client.http.post(url).json(&body)).await?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
        }
        Command::DecryptExport {
            cluster,
            input,
            out,
            common,
        } => {
            let client = Client::connect(&common).await?;
            let url = client.action_url(&common.resource_group, &cluster, "backups/decryptExport");
            let body = json!({
                "inputDirectory": std::path::absolute(&input)?,
                "outputDirectory": std::path::absolute(&out)?,
            });
            let result = client.send(client.http.post(url).json(&body)).await?;
            println!("{}", serde_json::to_string_pretty(&result)?);
        }
    }
    Ok(())
}
