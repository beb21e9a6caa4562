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
    /// Create a cluster (SMK unless a customer-managed key is given).
    Create {
        name: String,
        #[arg(long, default_value = "clusteradmin")]
        admin_user: String,
        #[arg(long, env = "STRONGROOM_ADMIN_PASSWORD")]
        admin_password: String,
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
    /// Point a CMK cluster at another key and/or identity (both are required).
    Update {
        name: String,
        #[arg(long)]
        key_url: String,
        #[arg(long)]
        identity: String,
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

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    subscription: String,
}

impl Client {
    async fn connect(common: &Common) -> anyhow::Result<Client> {
        let layout = Layout::new(&common.data_dir);
        let endpoints = Endpoints::load(&layout.endpoints())?;
        let ca =
            std::fs::read_to_string(&endpoints.ca_path).context("reading the CA certificate")?;
        let creds = identity::Credentials::load(&endpoints.admin_credentials_path)?;
        let http = identity::client::http_client_for_ca(&ca)?;
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

    fn cluster_url(&self, rg: &str, name: &str) -> String {
        format!(
            "{}/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.DocumentDB/mongoClusters/{name}?api-version=2025-07-01-preview",
            self.base, self.subscription
        )
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req.bearer_auth(&self.token).send().await?;
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
            body["properties"]["administrator"] =
                json!({"userName": admin_user, "password": admin_password});
            client
                .send(
                    client
                        .http
                        .put(client.cluster_url(&common.resource_group, &name))
                        .json(&body),
                )
                .await?
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
            common,
        } => {
            let client = Client::connect(&common).await?;
            let body = cmk_body(&key_url, &identity);
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
