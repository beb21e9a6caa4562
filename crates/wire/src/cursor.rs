//! The server's cursor registry.
//!
//! A query whose results do not fit its first batch leaves a cursor here, keyed by a
//! random non-zero Int64 id (drivers require Int64; 0 means "exhausted"). A cursor
//! belongs to the user who opened it and to the session (`lsid`) it was opened in:
//! `getMore`/`killCursors` by anyone else fail, and `endSessions` closes a session's
//! cursors. Cursors idle longer than the configured timeout (10 minutes by default)
//! are reaped by a background task. One user may hold at most a configured number of
//! cursors at once (a cursor keeps its results, or an engine snapshot, in memory), so a
//! flood of half-read queries cannot exhaust the server's memory.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bson::{Bson, Document, RawDocumentBuf};
use parking_lot::Mutex;

use crate::error::{CmdResult, CommandError, code};

/// Largest total size of documents in one batch (as MongoDB: 16 MiB).
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Default size of a `find`/`aggregate` first batch when the client gave none.
pub const DEFAULT_FIRST_BATCH: usize = 101;

/// Where a cursor's documents come from.
pub trait CursorSource: Send {
    /// The next document, `None` when exhausted.
    fn next_doc(&mut self) -> CmdResult<Option<Document>>;

    /// The next document as BSON, which is what replies carry (encoded once, here).
    fn next_raw(&mut self) -> CmdResult<Option<RawDocumentBuf>> {
        self.next_doc()?.as_ref().map(to_raw).transpose()
    }
}

/// Encodes a document for a reply.
pub fn to_raw(d: &Document) -> CmdResult<RawDocumentBuf> {
    d.to_vec()
        .ok()
        .and_then(|b| RawDocumentBuf::from_bytes(b).ok())
        .ok_or_else(|| CommandError::internal("a result document could not be encoded"))
}

/// Results already materialised (the common case: the query engine returns a vector).
pub struct Buffered(pub VecDeque<Document>);

impl CursorSource for Buffered {
    fn next_doc(&mut self) -> CmdResult<Option<Document>> {
        Ok(self.0.pop_front())
    }
}

/// Who opened a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `(user, authentication db)`, `None` when authentication is off for this server.
    pub user: Option<(String, String)>,
    /// The session id (`lsid.id`) the cursor was opened in, if any.
    pub lsid: Option<Bson>,
}

/// An open cursor.
pub struct Cursor {
    pub ns: String,
    pub owner: Owner,
    source: Box<dyn CursorSource>,
    /// A document read ahead to learn whether the source is exhausted.
    peeked: Option<RawDocumentBuf>,
    last_used: Instant,
    /// The query's `maxTimeMS` budget, shared with the engine's stream: running while
    /// a batch is produced, paused in between, so the limit is cumulative over the
    /// query and its `getMore`s (MongoDB's semantics).
    interrupt: docdb::Interrupt,
    /// An error met while looking ahead after a full batch: that batch is still
    /// returned, and the next one fails with this (as mongod reports it).
    failed: Option<CommandError>,
}

/// One batch of a cursor (as BSON, ready for the reply) and whether anything remains.
pub struct Batch {
    pub docs: Vec<RawDocumentBuf>,
    pub exhausted: bool,
}

impl Cursor {
    pub fn new(ns: String, owner: Owner, source: Box<dyn CursorSource>) -> Cursor {
        Cursor {
            ns,
            owner,
            source,
            peeked: None,
            last_used: Instant::now(),
            interrupt: docdb::Interrupt::none(),
            failed: None,
        }
    }

    /// Attaches the query's interrupt (see the field).
    pub fn with_interrupt(mut self, interrupt: docdb::Interrupt) -> Cursor {
        self.interrupt = interrupt;
        self
    }

    /// [`Cursor::next_batch_inner`] with the cursor's clock running; an expired budget
    /// fails at once, before any document is read.
    pub fn next_batch(&mut self, limit: Option<usize>) -> CmdResult<Batch> {
        self.interrupt.resume();
        let batch = self
            .interrupt
            .check()
            .and_then(|()| self.next_batch_inner(limit));
        self.interrupt.pause();
        batch
    }

    /// Takes up to `limit` documents (`None`: as many as fit in [`MAX_BATCH_BYTES`]).
    fn next_batch_inner(&mut self, limit: Option<usize>) -> CmdResult<Batch> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.last_used = Instant::now();
        let mut docs = Vec::new();
        let mut bytes = 0usize;
        loop {
            if limit.is_some_and(|l| docs.len() >= l) {
                break;
            }
            let next = match self.peeked.take() {
                Some(d) => Some(d),
                None => self.source.next_raw()?,
            };
            let Some(doc) = next else {
                return Ok(Batch {
                    docs,
                    exhausted: true,
                });
            };
            let size = doc.as_bytes().len();
            if !docs.is_empty() && bytes + size > MAX_BATCH_BYTES {
                self.peeked = Some(doc);
                break;
            }
            bytes += size;
            docs.push(doc);
        }
        // Look one ahead so an exactly-consumed cursor reports id 0 at once, sparing the
        // client a getMore that would return nothing.
        if self.peeked.is_none() {
            match self.source.next_raw() {
                Ok(next) => self.peeked = next,
                Err(e) if !docs.is_empty() => {
                    self.failed = Some(e);
                    return Ok(Batch {
                        docs,
                        exhausted: false,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let exhausted = self.peeked.is_none();
        Ok(Batch { docs, exhausted })
    }
}

/// All open cursors of a server.
pub struct Registry {
    inner: Mutex<Inner>,
    idle_timeout: Duration,
    max_per_user: usize,
}

/// The cursors, and how many each user holds (kept in step on every change).
#[derive(Default)]
struct Inner {
    cursors: HashMap<i64, Cursor>,
    per_user: HashMap<Option<(String, String)>, usize>,
}

impl Inner {
    fn add(&mut self, id: i64, cursor: Cursor) {
        *self.per_user.entry(cursor.owner.user.clone()).or_default() += 1;
        self.cursors.insert(id, cursor);
    }

    fn remove(&mut self, id: i64) -> Option<Cursor> {
        let cursor = self.cursors.remove(&id)?;
        self.forget(&cursor.owner.user);
        Some(cursor)
    }

    fn forget(&mut self, user: &Option<(String, String)>) {
        if let Some(n) = self.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(user);
            }
        }
    }

    /// Removes every cursor `drop_it` selects; returns how many.
    fn remove_where(&mut self, mut drop_it: impl FnMut(&Cursor) -> bool) -> usize {
        let ids: Vec<i64> = self
            .cursors
            .iter()
            .filter(|(_, c)| drop_it(c))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.remove(*id);
        }
        ids.len()
    }
}

impl Registry {
    /// A registry that reaps cursors idle for `idle_timeout` and lets one user hold at
    /// most `max_per_user` (checked-out cursors, being used by a `getMore`, not counted).
    pub fn new(idle_timeout: Duration, max_per_user: usize) -> Registry {
        Registry {
            inner: Mutex::new(Inner::default()),
            idle_timeout,
            max_per_user,
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Stores a cursor opened under gate epoch `epoch` and returns its new id. If the
    /// gate closed since (`current` differs), the cursor is dropped instead and 0 is
    /// returned: it must not keep an engine snapshot alive. A user already holding
    /// `max_per_user` cursors gets `2 BadValue` (MongoDB has no such limit, hence no
    /// code of its own; the message names the limit and how to free cursors).
    pub fn insert(&self, cursor: Cursor, epoch: u64, current: u64) -> CmdResult<i64> {
        if epoch != current {
            return Ok(0);
        }
        let mut inner = self.inner.lock();
        let held = inner.per_user.get(&cursor.owner.user).copied().unwrap_or(0);
        if held >= self.max_per_user {
            return Err(CommandError::new(
                code::BAD_VALUE,
                format!(
                    "too many open cursors: this user already holds {held}, the limit is {}; \
                     exhaust or kill cursors (killCursors) before opening more",
                    self.max_per_user
                ),
            ));
        }
        loop {
            let id = random_id();
            if !inner.cursors.contains_key(&id) {
                inner.add(id, cursor);
                return Ok(id);
            }
        }
    }

    /// Checks a cursor out for a `getMore`: it leaves the registry while in use (a second
    /// concurrent `getMore` on the same id finds nothing) and is put back with
    /// [`Registry::put_back`] unless exhausted.
    pub fn check_out(&self, id: i64, ns: &str, owner: &Owner) -> CmdResult<Cursor> {
        let mut inner = self.inner.lock();
        let Some(cursor) = inner.cursors.get(&id) else {
            return Err(cursor_not_found(id));
        };
        if cursor.ns != ns {
            return Err(CommandError::unauthorized(format!(
                "Requested getMore on namespace '{ns}', but cursor belongs to a different namespace {}",
                cursor.ns
            )));
        }
        if cursor.owner.user != owner.user {
            return Err(CommandError::unauthorized(format!(
                "cursor id {id} was not created by the authenticated user"
            )));
        }
        if cursor.owner.lsid.is_some() && owner.lsid.is_some() && cursor.owner.lsid != owner.lsid {
            return Err(CommandError::new(
                code::location(50738),
                format!(
                    "Cannot run getMore on cursor {id}, which was created in a different session"
                ),
            ));
        }
        inner.remove(id).ok_or_else(|| cursor_not_found(id))
    }

    /// Returns a checked-out cursor, unless the gate closed meanwhile (see [`Registry::insert`]).
    pub fn put_back(&self, id: i64, cursor: Cursor, epoch: u64, current: u64) {
        if epoch == current {
            self.inner.lock().add(id, cursor);
        }
    }

    /// Kills a cursor if `owner` may; returns whether it existed.
    pub fn kill(&self, id: i64, ns: &str, owner: &Owner) -> CmdResult<bool> {
        let mut inner = self.inner.lock();
        match inner.cursors.get(&id) {
            None => Ok(false),
            Some(c) if c.ns != ns => Ok(false),
            Some(c) if c.owner.user != owner.user => Err(CommandError::unauthorized(format!(
                "not authorized to kill cursor {id}"
            ))),
            Some(_) => Ok(inner.remove(id).is_some()),
        }
    }

    /// Closes every cursor opened in session `lsid`.
    pub fn end_session(&self, lsid: &Bson) -> usize {
        self.inner
            .lock()
            .remove_where(|c| c.owner.lsid.as_ref() == Some(lsid))
    }

    /// Closes every cursor of user `db.user` (the user was dropped: a user created later
    /// under the same name must not continue them).
    pub fn close_user(&self, db: &str, user: &str) -> usize {
        self.inner.lock().remove_where(|c| {
            c.owner
                .user
                .as_ref()
                .is_some_and(|(u, d)| u == user && d == db)
        })
    }

    /// Closes cursors idle for longer than the timeout; returns how many.
    pub fn reap_idle(&self) -> usize {
        let now = Instant::now();
        self.inner
            .lock()
            .remove_where(|c| now.duration_since(c.last_used) >= self.idle_timeout)
    }

    /// Closes every cursor (the database handle is going away).
    pub fn clear(&self) {
        // Cursors may hold engine snapshots: drop them outside the lock.
        let cursors = std::mem::take(&mut *self.inner.lock());
        drop(cursors);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().cursors.len()
    }

    /// Open cursors held by `user` (not counting checked-out ones).
    pub fn held_by(&self, user: &Option<(String, String)>) -> usize {
        self.inner.lock().per_user.get(user).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn cursor_not_found(id: i64) -> CommandError {
    CommandError::new(code::CURSOR_NOT_FOUND, format!("cursor id {id} not found"))
}

fn random_id() -> i64 {
    let mut b = [0u8; 8];
    // The RNG failing is not recoverable in any useful way; fall back to the clock so
    // ids stay unique-ish rather than panicking the connection task.
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        b = (Instant::now().elapsed().as_nanos() as u64 ^ 0x9E37_79B9_7F4A_7C15).to_le_bytes();
    }
    let id = i64::from_le_bytes(b) & i64::MAX;
    if id == 0 { 1 } else { id }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn owner(u: &str) -> Owner {
        Owner {
            user: Some((u.into(), "admin".into())),
            lsid: None,
        }
    }

    fn cursor(n: i32) -> Cursor {
        let docs = (0..n).map(|i| doc! {"i": i}).collect();
        Cursor::new("d.c".into(), owner("a"), Box::new(Buffered(docs)))
    }

    #[test]
    fn batches_report_exhaustion_exactly() {
        let mut c = cursor(4);
        let b = c.next_batch(Some(2)).expect("batch");
        assert_eq!(b.docs.len(), 2);
        assert!(!b.exhausted);
        let b = c.next_batch(Some(2)).expect("batch");
        assert_eq!(b.docs.len(), 2);
        assert!(b.exhausted, "the last full batch must report exhaustion");
    }

    #[test]
    fn ownership_and_namespace_are_enforced() {
        let reg = Registry::new(Duration::from_secs(600), 100);
        let id = reg.insert(cursor(3), 0, 0).expect("insert");
        assert_ne!(id, 0);
        assert!(reg.check_out(id, "d.other", &owner("a")).is_err());
        assert!(reg.check_out(id, "d.c", &owner("b")).is_err());
        let c = reg.check_out(id, "d.c", &owner("a")).expect("owner");
        assert_eq!(
            reg.check_out(id, "d.c", &owner("a")).err().map(|e| e.code),
            Some(43)
        );
        reg.put_back(id, c, 0, 0);
        assert!(reg.kill(id, "d.c", &owner("b")).is_err());
        assert!(reg.kill(id, "d.c", &owner("a")).expect("kill"));
        assert!(reg.is_empty());
    }

    #[test]
    fn idle_cursors_are_reaped_and_sessions_close_theirs() {
        let reg = Registry::new(Duration::from_millis(0), 100);
        reg.insert(cursor(3), 0, 0).expect("insert");
        assert_eq!(reg.reap_idle(), 1);
        // A cursor from before the gate closed is never registered.
        assert_eq!(reg.insert(cursor(3), 0, 1).expect("insert"), 0);
        assert!(reg.is_empty());
        let reg = Registry::new(Duration::from_secs(600), 100);
        let lsid = Bson::Int32(7);
        let mut c = cursor(3);
        c.owner.lsid = Some(lsid.clone());
        reg.insert(c, 0, 0).expect("insert");
        reg.insert(cursor(3), 0, 0).expect("insert");
        assert_eq!(reg.end_session(&lsid), 1);
        assert_eq!(reg.len(), 1);
        assert_eq!(reg.held_by(&owner("a").user), 1);
    }

    #[test]
    fn one_user_cannot_hold_more_than_the_limit() {
        let reg = Registry::new(Duration::from_secs(600), 3);
        let ids: Vec<i64> = (0..3)
            .map(|_| reg.insert(cursor(3), 0, 0).expect("under the limit"))
            .collect();
        let err = reg.insert(cursor(3), 0, 0).expect_err("over the limit");
        assert_eq!((err.code, err.code_name.as_str()), (2, "BadValue"));
        // Another user is not affected.
        let mut other = cursor(3);
        other.owner = owner("b");
        reg.insert(other, 0, 0).expect("another user");
        // A checked-out cursor does not count; killing one frees a place.
        let c = reg
            .check_out(ids[0], "d.c", &owner("a"))
            .expect("check out");
        assert_eq!(reg.held_by(&owner("a").user), 2);
        reg.put_back(ids[0], c, 0, 0);
        assert!(reg.kill(ids[1], "d.c", &owner("a")).expect("kill"));
        reg.insert(cursor(3), 0, 0).expect("a place was freed");
        reg.clear();
        assert_eq!(reg.held_by(&owner("a").user), 0);
    }
}
