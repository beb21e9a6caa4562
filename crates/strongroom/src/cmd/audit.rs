//! `strongroom audit show`: the security audit log, read back (and its hash chain
//! verified) by the control plane for an administrator.

use super::cluster::{Client, Common};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print audit events, oldest first.
    Show {
        /// Only events of this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// Only events of this kind (auth_failed, user_created, cluster_inaccessible, …).
        #[arg(long)]
        kind: Option<String>,
        /// Only events at or after this instant (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only the last N events.
        #[arg(long)]
        tail: Option<usize>,
        /// Print JSON instead of one line per event.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    let Command::Show {
        cluster,
        kind,
        since,
        tail,
        json,
        common,
    } = command;
    let client = Client::connect(&common).await?;
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(c) = cluster {
        query.push(("cluster", c));
    }
    if let Some(k) = kind {
        query.push(("kind", k));
    }
    if let Some(s) = since {
        query.push(("since", s));
    }
    if let Some(t) = tail {
        query.push(("tail", t.to_string()));
    }
    let url = format!("{}/providers/Strongroom.Control/auditEvents", client.base);
    let body = client.send(client.http.get(url).query(&query)).await?;
    let tampering: Vec<String> = body["tampering"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return tampered(&tampering);
    }
    for record in body["value"].as_array().into_iter().flatten() {
        let e = &record["event"];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
        println!(
            "{:>6}  {}  {:<22} {:<8} cluster={} principal={} remote={}  {}",
            record["seq"],
            text(&e["time"]),
            text(&e["kind"]),
            text(&e["outcome"]),
            text(&e["cluster"]),
            text(&e["principal"]),
            text(&e["remote"]),
            text(&e["detail"]),
        );
    }
    tampered(&tampering)
}

/// The log no longer reaches the chain head the control plane recorded: say what is
/// missing, on stderr, and fail, so scripts cannot mistake a shortened log for a quiet one.
fn tampered(findings: &[String]) -> anyhow::Result<()> {
    if findings.is_empty() {
        return Ok(());
    }
    for f in findings {
        eprintln!("TAMPERING: {f}");
    }
    anyhow::bail!(
        "the security audit log has been tampered with: {}",
        findings.join("; ")
    )
}
