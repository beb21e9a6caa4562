//! Stopping a running operation: `maxTimeMS` deadlines (and, later, `killOp`).
//!
//! An [`Interrupt`] travels with an operation into the engine (in [`crate::FindOptions`],
//! [`crate::AggregateOptions`], the write paths and [`crate::spill::SpillConfig`]) and is
//! polled by the loops that can run long: the collection and index scans and the
//! blocking stages (sort, group, the merges of their spilled runs). Polling costs one
//! `Instant::now()` every [`CHECK_EVERY`] items (see [`Ticker`]), so an operation stops
//! within a few milliseconds of its deadline without slowing the common case.
//!
//! A cursor's limit is cumulative over its `find`/`aggregate` and every `getMore`, as in
//! MongoDB: the time a cursor sits idle between batches does not count. The wire layer
//! [`Interrupt::resume`]s the clock before a batch and [`Interrupt::pause`]s it after;
//! the remaining budget lives here, shared by every clone.
//!
//! Beside the deadline sits a kill flag ([`Interrupt::kill`]) so a future `killOp` can
//! stop the same loops with `Interrupted` (11601).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, code};

/// Items (documents, keys, comparisons) between two clock reads.
pub const CHECK_EVERY: u32 = 64;

/// No deadline / no budget left to track.
const NONE: u64 = u64::MAX;

/// MongoDB's message for an expired `maxTimeMS`.
pub const EXPIRED_MESSAGE: &str = "operation exceeded time limit";

struct State {
    /// Reference point of the nanosecond counters below.
    origin: Instant,
    /// When the operation expires, in nanoseconds after `origin` (`NONE`: paused).
    deadline: AtomicU64,
    /// Budget left while paused, in nanoseconds.
    remaining: AtomicU64,
    killed: AtomicBool,
}

/// The stop signal of one operation; clones share it. The default never fires.
#[derive(Clone, Default)]
pub struct Interrupt(Option<Arc<State>>);

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Interrupt(none)"),
            Some(s) => f
                .debug_struct("Interrupt")
                .field("deadline_ns", &s.deadline.load(Ordering::Relaxed))
                .field("remaining_ns", &s.remaining.load(Ordering::Relaxed))
                .field("killed", &s.killed.load(Ordering::Relaxed))
                .finish(),
        }
    }
}

impl Interrupt {
    /// Never fires.
    pub fn none() -> Interrupt {
        Interrupt(None)
    }

    /// Running, expiring `limit` from now (`maxTimeMS`).
    pub fn after(limit: Duration) -> Interrupt {
        let limit = u64::try_from(limit.as_nanos()).unwrap_or(NONE - 1);
        Interrupt(Some(Arc::new(State {
            origin: Instant::now(),
            deadline: AtomicU64::new(limit),
            remaining: AtomicU64::new(limit),
            killed: AtomicBool::new(false),
        })))
    }

    /// Only a kill flag, no deadline (for an operation `killOp` may stop).
    pub fn killable() -> Interrupt {
        Interrupt(Some(Arc::new(State {
            origin: Instant::now(),
            deadline: AtomicU64::new(NONE),
            remaining: AtomicU64::new(NONE),
            killed: AtomicBool::new(false),
        })))
    }

    /// `maxTimeMS` as a client sends it: 0 means no limit.
    pub fn from_max_time_ms(ms: u64) -> Interrupt {
        if ms == 0 {
            Interrupt::none()
        } else {
            Interrupt::after(Duration::from_millis(ms))
        }
    }

    fn now_ns(s: &State) -> u64 {
        u64::try_from(s.origin.elapsed().as_nanos()).unwrap_or(NONE - 1)
    }

    /// Stops the clock (a cursor between batches), keeping the budget left.
    pub fn pause(&self) {
        let Some(s) = &self.0 else { return };
        let deadline = s.deadline.swap(NONE, Ordering::Relaxed);
        if deadline != NONE {
            let left = deadline.saturating_sub(Self::now_ns(s));
            s.remaining.store(left, Ordering::Relaxed);
        }
    }

    /// Restarts the clock with the budget left (a cursor's next batch).
    pub fn resume(&self) {
        let Some(s) = &self.0 else { return };
        let left = s.remaining.load(Ordering::Relaxed);
        if left != NONE && s.deadline.load(Ordering::Relaxed) == NONE {
            let deadline = Self::now_ns(s).saturating_add(left).min(NONE - 1);
            s.deadline.store(deadline, Ordering::Relaxed);
        }
    }

    /// Makes every later [`Interrupt::check`] fail with `Interrupted`.
    pub fn kill(&self) {
        if let Some(s) = &self.0 {
            s.killed.store(true, Ordering::Relaxed);
        }
    }

    /// `Err` once the operation was killed or its time is up.
    pub fn check(&self) -> Result<()> {
        let Some(s) = &self.0 else { return Ok(()) };
        if s.killed.load(Ordering::Relaxed) {
            return Err(Error::new(code::INTERRUPTED, "operation was interrupted"));
        }
        let deadline = s.deadline.load(Ordering::Relaxed);
        if deadline != NONE && Self::now_ns(s) >= deadline {
            return Err(expired());
        }
        Ok(())
    }

    /// A counter that checks this interrupt every [`CHECK_EVERY`] ticks.
    pub fn ticker(&self) -> Ticker {
        Ticker {
            interrupt: self.clone(),
            count: 0,
        }
    }

    /// True when this can ever fire (lets hot loops skip the ticker entirely).
    pub fn is_armed(&self) -> bool {
        self.0.is_some()
    }
}

/// The `MaxTimeMSExpired` error.
pub fn expired() -> Error {
    Error::new(code::MAX_TIME_MS_EXPIRED, EXPIRED_MESSAGE)
}

/// Amortised polling of an [`Interrupt`] inside a loop.
pub struct Ticker {
    interrupt: Interrupt,
    count: u32,
}

impl Ticker {
    /// Counts one item; every [`CHECK_EVERY`]th reads the clock.
    #[inline]
    pub fn tick(&mut self) -> Result<()> {
        if !self.interrupt.is_armed() {
            return Ok(());
        }
        self.count += 1;
        if self.count >= CHECK_EVERY {
            self.count = 0;
            self.interrupt.check()
        } else {
            Ok(())
        }
    }
}

/// Wraps a fallible stream so it ends with the interrupt's error once that fires.
pub struct Checked<I> {
    inner: I,
    ticker: Ticker,
    failed: bool,
}

impl<I> Checked<I> {
    pub fn new(inner: I, interrupt: &Interrupt) -> Self {
        Checked {
            inner,
            ticker: interrupt.ticker(),
            failed: false,
        }
    }
}

impl<T, I: Iterator<Item = Result<T>>> Iterator for Checked<I> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Err(e) = self.ticker.tick() {
            self.failed = true;
            return Some(Err(e));
        }
        self.inner.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_never_fires() {
        let i = Interrupt::none();
        assert!(i.check().is_ok());
        i.kill();
        assert!(i.check().is_ok());
    }

    #[test]
    fn deadline_expires_with_code_50() {
        let i = Interrupt::after(Duration::from_millis(1));
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(5) {
            std::hint::spin_loop();
        }
        let e = i.check().unwrap_err();
        assert_eq!(e.code, 50);
        assert_eq!(e.code_name, "MaxTimeMSExpired");
        assert_eq!(e.errmsg, EXPIRED_MESSAGE);
    }

    #[test]
    fn paused_time_does_not_count() {
        let i = Interrupt::after(Duration::from_millis(50));
        i.pause();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(80) {
            std::hint::spin_loop();
        }
        assert!(i.check().is_ok(), "paused clock must not expire");
        i.resume();
        assert!(i.check().is_ok(), "budget left after resume");
    }

    #[test]
    fn kill_fires_interrupted() {
        let i = Interrupt::killable();
        assert!(i.check().is_ok());
        i.kill();
        assert_eq!(i.check().unwrap_err().code, 11601);
    }

    /// The blocking stages poll the interrupt themselves, in memory and while spilling,
    /// and while merging spilled runs.
    #[test]
    fn blocking_stages_stop() {
        use crate::aggregate::Pipeline;
        use crate::spill::SpillConfig;
        use bson::doc;
        let docs: Vec<bson::Document> = (0..5000)
            .map(|i| doc! {"a": (i * 31) % 997, "g": i % 300})
            .collect();
        for (memory_limit, temp) in [
            (usize::MAX, None),
            (
                4 * 1024,
                Some(Arc::new(crate::memkv::MemKv::new()) as Arc<dyn crate::kv::TempStore>),
            ),
        ] {
            for stage in [
                doc! {"$sort": {"a": 1}},
                doc! {"$group": {"_id": "$g", "n": {"$sum": 1}}},
            ] {
                let p = Pipeline::parse(std::slice::from_ref(&stage)).unwrap();
                let interrupt = Interrupt::killable();
                let cfg = SpillConfig {
                    memory_limit,
                    temp: temp.clone(),
                    interrupt: interrupt.clone(),
                    ..SpillConfig::default()
                };
                interrupt.kill();
                let out: Vec<Result<bson::Document>> = p
                    .run(Box::new(docs.clone().into_iter().map(Ok)), &cfg)
                    .collect();
                let err = out.into_iter().find_map(Result::err).expect("stopped");
                assert_eq!(err.code, 11601, "{stage}");
            }
        }
    }

    /// With an armed interrupt a big in-memory sort runs as sorted runs merged pairwise:
    /// the same (stable) order as the plain sort.
    #[test]
    fn interruptible_sort_orders_like_the_plain_sort() {
        use crate::aggregate::Pipeline;
        use crate::spill::SpillConfig;
        use bson::doc;
        let docs: Vec<bson::Document> = (0..10_000)
            .map(|i| doc! {"i": i, "a": (i * 7919) % 101})
            .collect();
        let p = Pipeline::parse(&[doc! {"$sort": {"a": -1}}]).unwrap();
        let run = |interrupt: Interrupt| -> Vec<bson::Document> {
            let cfg = SpillConfig {
                interrupt,
                ..SpillConfig::default()
            };
            p.run(Box::new(docs.clone().into_iter().map(Ok)), &cfg)
                .collect::<Result<_>>()
                .unwrap()
        };
        let plain = run(Interrupt::none());
        assert_eq!(plain.len(), 10_000);
        assert_eq!(run(Interrupt::killable()), plain);
        assert_eq!(run(Interrupt::after(Duration::from_secs(3600))), plain);
    }

    #[test]
    fn checked_stream_stops() {
        let i = Interrupt::killable();
        i.kill();
        let out: Vec<Result<u32>> = Checked::new((0..1000).map(Ok), &i).collect();
        assert!(out.len() <= CHECK_EVERY as usize);
        assert_eq!(out.last().unwrap().as_ref().unwrap_err().code, 11601);
    }
}
