//! Strongroom through the official Rust `mongodb` driver (TLS with the development CA,
//! SCRAM-SHA-256), against a `ycsb-server` child process.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bson::{Document, doc};
use futures::TryStreamExt;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};

use super::{Session, Store};
use crate::error::Result;
use crate::record::Record;
use crate::server_proc::ServerProcess;
use crate::workload::Transport;

pub const DATABASE: &str = "ycsb";
pub const COLLECTION: &str = "usertable";

/// How long `after_load` waits for the server's background work to finish.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(900);

/// The target: one driver `Client` whose pool holds a connection per benchmark client.
pub struct Strongroom {
    options: ClientOptions,
    transport: Transport,
    client: Client,
    collection: Collection<Document>,
}

impl Strongroom {
    /// Connects to `server` with a pool of `pool_size` connections (one per concurrent
    /// client, so no client ever waits for a connection) and checks it answers.
    pub async fn connect(server: &ServerProcess, pool_size: usize) -> Result<Strongroom> {
        let pool_size = u32::try_from(pool_size.max(1)).unwrap_or(u32::MAX);
        let mut options = ClientOptions::parse(server.uri()).await?;
        options.max_pool_size = Some(pool_size);
        options.app_name = Some("ycsb".into());
        let client = Client::with_options(options.clone())?;
        client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await?;
        let collection = client.database(DATABASE).collection(COLLECTION);
        Ok(Strongroom {
            options,
            transport: server.transport(),
            client,
            collection,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl Store for Strongroom {
    fn name(&self) -> &'static str {
        "Strongroom"
    }

    fn describe(&self) -> String {
        let transport = match self.transport {
            Transport::Tls => "TLS 1.3",
            Transport::Plain => "plain TCP (--insecure-plaintext)",
        };
        format!(
            "Strongroom via mongodb driver 3.x over {transport} on 127.0.0.1 (SCRAM-SHA-256), \
             writes acknowledged after a synced WAL (group commit, the default)"
        )
    }

    async fn prepare(&self) -> Result<()> {
        self.collection.drop().await?;
        self.client
            .database(DATABASE)
            .create_collection(COLLECTION)
            .await?;
        let index = IndexModel::builder()
            .keys(doc! {"rank": 1})
            .options(IndexOptions::builder().name("rank_1".to_string()).build())
            .build();
        self.collection.create_index(index).await?;
        Ok(())
    }

    async fn after_load(&self) -> Result<()> {
        // An LSM engine owes compactions after a bulk load, as PostgreSQL owes a vacuum
        // and a checkpoint: wait until the server reports none is queued or running, so
        // the first measured cell does not pay for the load.
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let status = self
                .client
                .database("admin")
                .run_command(doc! {"serverStatus": 1})
                .await?;
            let pending = status
                .get_document("storageEngine")
                .ok()
                .and_then(|e| e.get_bool("backgroundWorkPending").ok());
            match pending {
                Some(true) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Some(true) => {
                    return Err(crate::Error::Workload(format!(
                        "background work still pending {SETTLE_TIMEOUT:?} after the load"
                    )));
                }
                Some(false) => return Ok(()),
                None => {
                    return Err(crate::Error::Workload(
                        "serverStatus has no storageEngine.backgroundWorkPending".into(),
                    ));
                }
            }
        }
    }

    async fn session(&self) -> Result<Box<dyn Session>> {
        Ok(Box::new(MongoSession {
            collection: self.collection.clone(),
        }))
    }

    async fn own_session(&self) -> Result<Box<dyn Session>> {
        // A driver `Client` of its own, created on the calling runtime so that its
        // connection's I/O and background tasks stay on the client's thread; its one
        // connection is opened (TLS + SCRAM) here, before any timing starts.
        let mut options = self.options.clone();
        options.max_pool_size = Some(1);
        options.min_pool_size = Some(1);
        let client = Client::with_options(options)?;
        client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await?;
        Ok(Box::new(MongoSession {
            collection: client.database(DATABASE).collection(COLLECTION),
        }))
    }

    async fn count(&self) -> Result<u64> {
        Ok(self.collection.count_documents(doc! {}).await?)
    }
}

struct MongoSession {
    collection: Collection<Document>,
}

#[async_trait]
impl Session for MongoSession {
    async fn insert_batch(&mut self, records: &[Record]) -> Result<()> {
        let docs: Vec<Document> = records.iter().map(Record::to_bson).collect();
        self.collection.insert_many(docs).await?;
        Ok(())
    }

    async fn read(&mut self, key: &str) -> Result<bool> {
        Ok(self.collection.find_one(doc! {"_id": key}).await?.is_some())
    }

    async fn update(&mut self, key: &str, field: &str, value: &str) -> Result<bool> {
        let r = self
            .collection
            .update_one(doc! {"_id": key}, doc! {"$set": {field: value}})
            .await?;
        Ok(r.matched_count == 1)
    }

    async fn range(&mut self, lo: i64, hi: i64, limit: i64) -> Result<u64> {
        let docs: Vec<Document> = self
            .collection
            .find(doc! {"rank": {"$gte": lo, "$lte": hi}})
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok(docs.len() as u64)
    }
}
