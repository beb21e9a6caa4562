//! `strongroom cluster …`: the management API from the command line, in the style of
//! `az cosmosdb mongocluster`. It authenticates as the administrator `up` created.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::layout::{Endpoints, Layout};

#[derive(clap::Args, Clone)]
pub struct Common {
    /// The data directory of a running `strongroom up`.
    #[arg(
        long,
        env = "STRONGROOM_DATA_DIR",
        default_value = "strongroom-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Resource group of the cluster.
    #[arg(long, short = 'g', default_value = "default", global = true)]
    pub resource_group: String,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a cluster (SMK unless a customer-managed key is given), or restore one
    /// from another cluster's backups (`--restore-from` and `--point-in-time`).
    Create {
        name: String,
        /// The administrator (a restored cluster keeps its source's when omitted).
        #[arg(long)]
        admin_user: Option<String>,
        #[arg(long, env = "STRONGROOM_ADMIN_PASSWORD")]
        admin_password: Option<String>,
        /// Restore from this cluster's backups (its name or resource id).
        #[arg(long, requires = "point_in_time")]
        restore_from: Option<String>,
        /// The instant to restore to (RFC 3339 UTC, e.g. 2026-11-28T20:15:00Z).
        #[arg(long, requires = "restore_from")]
        point_in_time: Option<String>,
        /// Customer-managed key URL (versioned, or version-less to follow rotation).
        #[arg(long, requires = "identity")]
        key_url: Option<String>,
        /// Resource id of the user-assigned identity that reaches the key.
        #[arg(long, requires = "key_url")]
        identity: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Show one cluster, its status and its key status.
    Show {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// List clusters.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Point a CMK cluster at another key and/or identity (both are required), and/or
    /// reset the administrator's password (the cluster must be Ready).
    Update {
        name: String,
        #[arg(long, requires = "identity")]
        key_url: Option<String>,
        #[arg(long, requires = "key_url")]
        identity: Option<String>,
        /// The administrator's new password (same rules as at creation). Prefer the
        /// environment variable: command lines are visible to other local users.
        #[arg(long, env = "STRONGROOM_NEW_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a cluster; its root key is destroyed (crypto-shredding).
    Delete {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Revalidate the cluster's key now instead of at the next interval.
    Revalidate {
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    token: zeroize::Zeroizing<String>,
    pub(crate) subscription: String,
}

impl Client {
    pub(crate) async fn connect(common: &Common) -> anyhow::Result<Client> {
        let layout = Layout::new(&common.data_dir);
        let endpoints = Endpoints::load(&layout.endpoints())?;
        let ca =
            std::fs::read_to_string(&endpoints.ca_path).context("reading the CA certificate")?;
        let creds = identity::Credentials::load(&endpoints.admin_credentials_path)?;
        let http = platform::https_client(&ca, None, platform::ClientOptions::default())?;
        let token = identity::client::client_credentials_token(
            &http,
            &endpoints.identity_url,
            &creds.tenant_id,
            &creds.client_id,
            &creds.client_secret,
            "https://management.azure.com/.default",
        )
        .await?;
        Ok(Client {
            http,
            base: endpoints.control_url,
            token: token.token,
            subscription: endpoints.subscription_id,
        })
    }

    pub(crate) fn cluster_url(&self, rg: &str, name: &str) -> String {
        format!(
            "{}/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.DocumentDB/mongoClusters/{name}?api-version=2025-07-01-preview",
            self.base, self.subscription
        )
    }

    /// A cluster action URL: `…/mongoClusters/{name}/{action}?api-version=…`.
    pub(crate) fn action_url(&self, rg: &str, name: &str, action: &str) -> String {
        self.cluster_url(rg, name)
            .replace("?api-version", &format!("/{action}?api-version"))
    }

    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req.bearer_auth(self.token.as_str()).send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        };
        if !status.is_success() {
            let code = body
                .pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or("Error");
            let message = body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or(&text);
            bail!("({code}) {message}");
        }
        Ok(body)
    }
}

fn cmk_body(key_url: &str, identity: &str) -> Value {
    json!({
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {identity: {}}},
        "properties": {"encryption": {"customerManagedKeyEncryption": {
            "keyEncryptionKeyIdentity": {"identityType": "UserAssignedIdentity", "userAssignedIdentityResourceId": identity},
            "keyEncryptionKeyUrl": key_url,
        }}}
    })
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    let output = match command {
        Command::Create {
            name,
            admin_user,
            admin_password,
            restore_from,
            point_in_time,
            key_url,
            identity,
            common,
        } => {
            let client = Client::connect(&common).await?;
            let mut body = match (&key_url, &identity) {
                (Some(k), Some(i)) => cmk_body(k, i),
                _ => json!({"properties": {}}),
            };
            body["location"] = json!("local");
            let restoring = restore_from.is_some();
            if restoring || admin_user.is_some() || admin_password.is_some() {
                let user = admin_user.or((!restoring).then(|| "clusteradmin".to_string()));
                body["properties"]["administrator"] =
                    json!({"userName": user, "password": admin_password});
            }
            if let (Some(source), Some(at)) = (restore_from, point_in_time) {
                body["properties"]["createMode"] = json!("PointInTimeRestore");
                body["properties"]["restoreParameters"] =
                    json!({"sourceResourceId": source, "pointInTimeUTC": at});
            }
            let put = client.send(
                client
                    .http
                    .put(client.cluster_url(&common.resource_group, &name))
                    .json(&body),
            );
            if restoring {
                // A restore can take a while: show where it is until the PUT answers.
                let status_url = client.action_url(&common.resource_group, &name, "restoreStatus");
                let progress = async {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        if let Ok(s) = client.send(client.http.get(&status_url)).await {
                            eprintln!(
                                "restoring {name}: {} {}% ({} of {} bytes)",
                                s["phase"].as_str().unwrap_or(""),
                                s["percent"],
                                s["doneBytes"],
                                s["totalBytes"]
                            );
                        }
                    }
                };
                tokio::select! {
                    result = put => result?,
                    _ = progress => unreachable!("the progress loop never ends"),
                }
            } else {
                put.await?
            }
        }
        Command::Show { name, common } => {
            let client = Client::connect(&common).await?;
            client
                .send(
                    client
                        .http
                        .get(client.cluster_url(&common.resource_group, &name)),
                )
                .await?
        }
        Command::List { common } => {
            let client = Client::connect(&common).await?;
            let url = format!(
                "{}/subscriptions/{}/providers/Microsoft.DocumentDB/mongoClusters?api-version=2025-07-01-preview",
                client.base, client.subscription
            );
            client.send(client.http.get(url)).await?
        }
        Command::Update {
            name,
            key_url,
            identity,
            admin_password,
            common,
        } => {
            let mut body = match (&key_url, &identity) {
                (Some(k), Some(i)) => cmk_body(k, i),
                _ if admin_password.is_some() => json!({"properties": {}}),
                _ => bail!("nothing to update: give --key-url and --identity, or --admin-password"),
            };
            if let Some(password) = admin_password.map(zeroize::Zeroizing::new) {
                body["properties"]["administrator"] = json!({"password": password.as_str()});
            }
            let client = Client::connect(&common).await?;
            client
                .send(
                    client
                        .http
                        .patch(client.cluster_url(&common.resource_group, &name))
                        .json(&body),
                )
                .await?
        }
        Command::Delete { name, common } => {
            let client = Client::connect(&common).await?;
            client
                .send(
                    client
                        .http
                        .delete(client.cluster_url(&common.resource_group, &name)),
                )
                .await?;
            json!({"deleted": name})
        }
        Command::Revalidate { name, common } => {
            let client = Client::connect(&common).await?;
            let url = client
                .cluster_url(&common.resource_group, &name)
                .replace("?api-version", "/revalidate?api-version");
            client.send(client.http.post(url)).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}
