//! PostgreSQL storing the same documents as JSONB, through `tokio-postgres`.
//!
//! Equivalence with the MongoDB side:
//! - `_id` (the implicit unique `_id` index) ↔ `id text PRIMARY KEY` (a unique btree);
//! - the `{rank: 1}` index ↔ a btree expression index on `((doc->>'rank')::bigint)`;
//! - a read returns the whole document (`SELECT doc ... WHERE id = $1`), decoded by the
//!   client into a generic JSON value as the driver decodes BSON into a `Document`;
//! - an update rewrites one field (`jsonb_set(doc, '{fieldN}', ...)`), like `$set`;
//! - the range query is `(doc->>'rank')::bigint BETWEEN $1 AND $2 LIMIT $3` — the same
//!   predicate shape as `{rank: {$gte, $lte}}` with a limit, no sort on either side;
//! - every statement is prepared once per connection (the driver re-sends its commands,
//!   PostgreSQL gets the advantage of parse-once plans);
//! - durability: `fsync=on`, `synchronous_commit=on` (the defaults), autocommit.
//!
//! Transport: the same as Strongroom's (`--transport`): TLS 1.3 through rustls/aws-lc-rs
//! ([`Postgres::connect_tls`]; the cluster then runs with `ssl = on`), the default, or
//! plain TCP on 127.0.0.1 when Strongroom also runs without TLS.

use async_trait::async_trait;
use tokio_postgres::{Client, NoTls, Statement};

use crate::pg_tls::RustlsConnect;

use super::{Session, Store};
use crate::error::{Error, Result};
use crate::record::Record;

pub const TABLE: &str = "usertable";

const INSERT: &str =
    "INSERT INTO usertable (id, doc) SELECT * FROM unnest($1::text[], $2::jsonb[])";
const READ: &str = "SELECT doc FROM usertable WHERE id = $1";
const UPDATE: &str =
    "UPDATE usertable SET doc = jsonb_set(doc, $2::text[], to_jsonb($3::text)) WHERE id = $1";
const RANGE: &str =
    "SELECT doc FROM usertable WHERE (doc->>'rank')::bigint BETWEEN $1 AND $2 LIMIT $3";

/// The target: a connection string; every session opens its own connection.
pub struct Postgres {
    conninfo: String,
    tls: Option<RustlsConnect>,
    admin: Client,
    version: String,
}

async fn connect(conninfo: &str, tls: Option<&RustlsConnect>) -> Result<Client> {
    let client = match tls {
        None => {
            let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "postgres connection ended with an error");
                }
            });
            client
        }
        Some(tls) => {
            let (client, connection) = tokio_postgres::connect(conninfo, tls.clone()).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "postgres connection ended with an error");
                }
            });
            client
        }
    };
    Ok(client)
}

impl Postgres {
    /// Plain TCP.
    pub async fn connect(conninfo: &str) -> Result<Postgres> {
        Self::connect_with(conninfo, None).await
    }

    /// TLS 1.3 (the cluster must run with `ssl = on`, see `PgCluster::start_tls`);
    /// checked on the server side with `pg_stat_ssl` so the run cannot silently fall back.
    pub async fn connect_tls(conninfo: &str, tls: RustlsConnect) -> Result<Postgres> {
        let pg = Self::connect_with(conninfo, Some(tls)).await?;
        let row = pg
            .admin
            .query_one(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await?;
        let (ssl, version): (bool, Option<String>) = (row.try_get(0)?, row.try_get(1)?);
        if !ssl || version.as_deref() != Some("TLSv1.3") {
            return Err(Error::Cluster(format!(
                "expected a TLS 1.3 connection, got ssl={ssl} version={version:?}"
            )));
        }
        Ok(pg)
    }

    async fn connect_with(conninfo: &str, tls: Option<RustlsConnect>) -> Result<Postgres> {
        let admin = connect(conninfo, tls.as_ref()).await?;
        let row = admin.query_one("SHOW server_version", &[]).await?;
        let version: String = row.try_get(0)?;
        for (setting, expected) in [("fsync", "on"), ("synchronous_commit", "on")] {
            let row = admin.query_one(&format!("SHOW {setting}"), &[]).await?;
            let value: String = row.try_get(0)?;
            if value != expected {
                return Err(Error::Cluster(format!(
                    "{setting} is {value}; the comparison needs {expected}"
                )));
            }
        }
        Ok(Postgres {
            conninfo: conninfo.to_string(),
            tls,
            admin,
            version,
        })
    }
}

#[async_trait]
impl Store for Postgres {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    fn describe(&self) -> String {
        let transport = if self.tls.is_some() {
            "TLS 1.3 (rustls, aws-lc-rs)"
        } else {
            "plain TCP (no TLS)"
        };
        format!(
            "PostgreSQL {} JSONB via tokio-postgres over {transport} on 127.0.0.1, \
             one connection per client, prepared statements, fsync=on, synchronous_commit=on",
            self.version
        )
    }

    async fn prepare(&self) -> Result<()> {
        self.admin
            .batch_execute(
                "DROP TABLE IF EXISTS usertable;
                 CREATE TABLE usertable (id text PRIMARY KEY, doc jsonb NOT NULL);
                 CREATE INDEX usertable_rank ON usertable (((doc->>'rank')::bigint));",
            )
            .await?;
        Ok(())
    }

    async fn after_load(&self) -> Result<()> {
        // What autovacuum (an insert-triggered vacuum and analyze) and the checkpointer do
        // on their own after a bulk load; done here so neither lands in a measured run and
        // the planner statistics stay put. Separate statements: VACUUM cannot run inside
        // the implicit transaction of a multi-statement query.
        self.admin.batch_execute("VACUUM ANALYZE usertable").await?;
        self.admin.batch_execute("CHECKPOINT").await?;
        Ok(())
    }

    async fn session(&self) -> Result<Box<dyn Session>> {
        let client = connect(&self.conninfo, self.tls.as_ref()).await?;
        let insert = client.prepare(INSERT).await?;
        let read = client.prepare(READ).await?;
        let update = client.prepare(UPDATE).await?;
        let range = client.prepare(RANGE).await?;
        Ok(Box::new(PgSession {
            client,
            insert,
            read,
            update,
            range,
        }))
    }

    async fn count(&self) -> Result<u64> {
        let row = self
            .admin
            .query_one("SELECT count(*) FROM usertable", &[])
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

struct PgSession {
    client: Client,
    insert: Statement,
    read: Statement,
    update: Statement,
    range: Statement,
}

#[async_trait]
impl Session for PgSession {
    async fn insert_batch(&mut self, records: &[Record]) -> Result<()> {
        let ids: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
        let docs: Vec<serde_json::Value> = records.iter().map(Record::to_json).collect();
        self.client.execute(&self.insert, &[&ids, &docs]).await?;
        Ok(())
    }

    async fn read(&mut self, key: &str) -> Result<bool> {
        match self.client.query_opt(&self.read, &[&key]).await? {
            Some(row) => {
                let _doc: serde_json::Value = row.try_get(0)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn update(&mut self, key: &str, field: &str, value: &str) -> Result<bool> {
        let path = [field];
        let n = self
            .client
            .execute(&self.update, &[&key, &&path[..], &value])
            .await?;
        Ok(n == 1)
    }

    async fn range(&mut self, lo: i64, hi: i64, limit: i64) -> Result<u64> {
        let rows = self.client.query(&self.range, &[&lo, &hi, &limit]).await?;
        for row in &rows {
            let _doc: serde_json::Value = row.try_get(0)?;
        }
        Ok(rows.len() as u64)
    }
}
