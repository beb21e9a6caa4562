//! Recovery from a read-only storage engine without restarting the process.
//!
//! A failed durable write (a full disk, an fsync error) makes `storage::Engine` read-only:
//! writes get MongoDB's error (`OutOfDiskSpace` for a full disk), reads keep working. The
//! only safe way back is to close the engine and open the directory again — the open
//! replays the WAL from disk, so it keeps every acknowledged write (each was fsynced
//! before its acknowledgement) and trusts nothing the failed write may have left in the
//! page cache (PostgreSQL's "fsyncgate" lesson: never retry a failed fsync and carry on).
//!
//! [`Recovery::step`], called periodically by the node, notices the engine went
//! read-only, waits until a reopen can work (for a full disk: `statvfs` shows the space
//! [`storage::Engine::reopen_space_needed`] asks for; otherwise after a back-off), then
//! takes the database out of the wire server (`Server::begin_reopen`: connections stay
//! open, commands get a retryable error, commands in flight finish first), closes the
//! engine, opens it again and swaps the new database in (`Server::make_ready`). A failed
//! reopen leaves the directory as it was and is retried with a doubling back-off.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

/// Back-off after a failed reopen (and before the first reopen after an I/O error).
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long commands in flight may keep the old database before the engine closes
/// under them (they then get a retryable error).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node needs to open its database again.
#[derive(Clone)]
pub struct Reopener {
    pub dir: PathBuf,
    pub root: storage::RootKey,
    pub storage: storage::Options,
    pub db: docdb::DbConfig,
}

impl std::fmt::Debug for Reopener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reopener")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Reopener {
    /// Opens the engine and the document database on it (blocking: run it off the
    /// async workers).
    pub fn open(&self) -> Result<(docdb::Db, storage::Engine), String> {
        let engine = storage::Engine::open(&self.dir, self.root.clone(), self.storage.clone())
            .map_err(|e| e.to_string())?;
        let db =
            docdb::Db::open_with(engine.clone(), self.db.clone()).map_err(|e| e.to_string())?;
        Ok((db, engine))
    }
}

/// What one [`Recovery::step`] did.
#[derive(Debug)]
pub enum Step {
    /// The engine takes writes.
    Writable,
    /// The engine just turned read-only for this reason (report it).
    TurnedReadOnly(storage::Poison),
    /// Still read-only; waiting for space or for the back-off.
    Waiting,
    /// A reopen failed (the directory is as it was); another comes after the back-off.
    ReopenFailed(String),
    /// The engine was reopened and the new database serves; writes work again.
    Reopened(storage::Engine),
}

/// Watches one engine and brings it back after a storage failure.
pub struct Recovery {
    engine: storage::Engine,
    reopener: Reopener,
    /// The failure being recovered from, once noticed.
    failure: Option<storage::Poison>,
    /// Free bytes a reopen needs (measured when the failure was noticed).
    space_needed: u64,
    next_attempt: Instant,
    backoff: Duration,
}

impl Recovery {
    pub fn new(engine: storage::Engine, reopener: Reopener) -> Recovery {
        Recovery {
            engine,
            reopener,
            failure: None,
            space_needed: 0,
            next_attempt: Instant::now(),
            backoff: MIN_BACKOFF,
        }
    }

    /// The engine in service (the newest one after a reopen).
    pub fn engine(&self) -> &storage::Engine {
        &self.engine
    }

    /// The failure being recovered from, if any.
    pub fn failure(&self) -> Option<&storage::Poison> {
        self.failure.as_ref()
    }

    /// Looks at the engine once and moves recovery along; cheap while the engine is
    /// writable (an atomic load). A reopen happens inside this call.
    pub async fn step(&mut self, server: &wire::Server) -> Step {
        let Some(poison) = self.engine.read_only() else {
            return Step::Writable;
        };
        let now = Instant::now();
        if self.failure.is_none() {
            tracing::error!(cause = poison.cause.as_str(), reason = %poison, "storage engine is read-only; recovering");
            self.space_needed = self.engine.reopen_space_needed();
            self.backoff = MIN_BACKOFF;
            self.next_attempt = match poison.cause {
                // Nothing to wait for but space, which is checked below.
                storage::Cause::NoSpace => now,
                storage::Cause::Io | storage::Cause::Other => now + MIN_BACKOFF,
            };
            self.failure = Some(poison.clone());
            return Step::TurnedReadOnly(poison);
        }
        if now < self.next_attempt {
            return Step::Waiting;
        }
        if poison.cause == storage::Cause::NoSpace {
            match storage::fs::available_bytes(&self.reopener.dir) {
                Ok(free) if free >= self.space_needed => {}
                Ok(_) => return Step::Waiting,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the free space of the data directory")
                }
            }
        }
        match self.reopen(server, &poison).await {
            Ok(engine) => {
                tracing::info!(recovered_from = %poison, "storage engine reopened; writes resume");
                self.engine = engine.clone();
                self.failure = None;
                Step::Reopened(engine)
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?self.backoff, "reopening the storage engine failed");
                self.next_attempt = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Step::ReopenFailed(e)
            }
        }
    }

    async fn reopen(
        &self,
        server: &wire::Server,
        poison: &storage::Poison,
    ) -> Result<storage::Engine, String> {
        // Commands in flight finish on the old engine (writes fail, reads answer); new
        // ones get a retryable error until the new database is in.
        server.begin_reopen(poison.to_string(), DRAIN_TIMEOUT).await;
        let old = self.engine.clone();
        let reopener = self.reopener.clone();
        let (db, engine) = tokio::task::spawn_blocking(move || {
            // Closing a read-only engine only stops its threads and releases the
            // directory lock; it syncs nothing (the failed state is never trusted).
            if let Err(e) = old.close() {
                tracing::warn!(error = %e, "closing the read-only engine");
            }
            reopener.open()
        })
        .await
        .map_err(|e| format!("reopening the database panicked: {e}"))??;
        server.make_ready(db);
        Ok(engine)
    }
}
