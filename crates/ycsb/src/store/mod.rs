//! The two targets behind one interface: a [`Store`] prepares the schema and hands out
//! one [`Session`] per benchmark client.

pub mod postgres;
pub mod strongroom;

use async_trait::async_trait;

use crate::error::Result;
use crate::record::Record;

/// A database under test.
#[async_trait]
pub trait Store: Send + Sync {
    /// Name used in the tables ("Strongroom", "PostgreSQL").
    fn name(&self) -> &'static str;

    /// One-line description of how the target is configured (durability, transport).
    fn describe(&self) -> String;

    /// Drops and recreates the collection/table with its `_id`/primary key and the
    /// secondary index on `rank`, so the load phase maintains both indexes.
    async fn prepare(&self) -> Result<()>;

    /// Called once after the load phase, before the timed runs.
    async fn after_load(&self) -> Result<()> {
        Ok(())
    }

    /// A client of its own (a connection, or a handle on a pooled client).
    async fn session(&self) -> Result<Box<dyn Session>>;

    /// A client that shares nothing with other sessions: its connection is opened on,
    /// and all its I/O runs on, the calling task's runtime. The thread-per-client model
    /// opens these, one per client thread (see `runner::ClientModel`).
    async fn own_session(&self) -> Result<Box<dyn Session>> {
        self.session().await
    }

    /// Number of stored records (checked after the load phase).
    async fn count(&self) -> Result<u64>;
}

/// One benchmark client. Every method returns once the server acknowledged the
/// operation with the target's durable write semantics.
#[async_trait]
pub trait Session: Send {
    /// Inserts a batch of records in one request/statement.
    async fn insert_batch(&mut self, records: &[Record]) -> Result<()>;

    /// Reads the full document with key `key`; `false` if it does not exist.
    async fn read(&mut self, key: &str) -> Result<bool>;

    /// Sets field `field` of document `key` to `value`; `false` if nothing matched.
    async fn update(&mut self, key: &str, field: &str, value: &str) -> Result<bool>;

    /// Reads at most `limit` full documents with `lo <= rank <= hi`; returns how many.
    async fn range(&mut self, lo: i64, hi: i64, limit: i64) -> Result<u64>;
}
