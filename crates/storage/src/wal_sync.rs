//! Durability without a blocked caller: a writer that must not block (an async task, say)
//! appends with [`Durability::Buffered`](crate::Durability), takes a ticket, and hands a
//! callback to the `storage-wal-sync` thread, which group-commits every pending ticket with
//! one fsync and then calls the callbacks.
//!
//! Blocking writers keep using the leader/follower group commit in `Inner::sync_upto`;
//! the sync thread goes through the same function, so both kinds of waiter share fsyncs.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::engine::Inner;
use crate::error::{Error, Result};

/// Called once everything up to a ticket is durable, or with the reason it never will be.
pub type DurableCallback = Box<dyn FnOnce(Result<()>) + Send>;

#[derive(Default)]
struct Queue {
    waiters: Vec<(u64, DurableCallback)>,
    shutdown: bool,
}

/// The pending callbacks, shared by the engine and its sync thread.
#[derive(Default)]
pub(crate) struct SyncQueue {
    queue: Mutex<Queue>,
    cv: Condvar,
}

impl SyncQueue {
    /// Queues `done` for `ticket`; after shutdown it is answered at once with `Closed`.
    pub(crate) fn push(&self, ticket: u64, done: DurableCallback) {
        let mut q = self.queue.lock();
        if q.shutdown {
            drop(q);
            done(Err(Error::Closed));
            return;
        }
        q.waiters.push((ticket, done));
        drop(q);
        self.cv.notify_one();
    }

    /// Asks the sync thread to answer what is queued and stop.
    pub(crate) fn shut_down(&self) {
        self.queue.lock().shutdown = true;
        self.cv.notify_all();
    }
}

/// The sync thread: waits for callbacks, syncs up to the newest ticket among them (which
/// covers every other), answers them all, repeats. Callbacks queued while an fsync runs
/// form the next group.
pub(crate) fn sync_loop(inner: Arc<Inner>) {
    let queue = inner.sync_queue();
    loop {
        let batch = {
            let mut q = queue.queue.lock();
            while q.waiters.is_empty() && !q.shutdown {
                queue.cv.wait(&mut q);
            }
            if q.waiters.is_empty() {
                return;
            }
            std::mem::take(&mut q.waiters)
        };
        let newest = batch.iter().map(|(t, _)| *t).max().unwrap_or(0);
        match inner.sync_upto(newest) {
            Ok(()) => batch.into_iter().for_each(|(_, done)| done(Ok(()))),
            Err(e) => {
                // The engine is poisoned by the failed fsync; every waiter learns why.
                let why = inner
                    .poison_state()
                    .unwrap_or_else(|| crate::error::Poison::from_error("WAL fsync", &e));
                for (_, done) in batch {
                    done(Err(Error::Poisoned(why.clone())));
                }
            }
        }
    }
}
