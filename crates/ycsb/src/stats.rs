//! Latency histograms (HDR, microsecond resolution) per operation type.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The operations a client performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// One insert batch of the load phase.
    InsertBatch,
    Read,
    Update,
    Range,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::InsertBatch, Op::Read, Op::Update, Op::Range];

    pub fn label(self) -> &'static str {
        match self {
            Op::InsertBatch => "insert batch",
            Op::Read => "read",
            Op::Update => "update",
            Op::Range => "range",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Longest latency a histogram tracks exactly (longer ones are clamped): 10 minutes.
const MAX_MICROS: u64 = 600_000_000;

fn new_histogram() -> Histogram<u64> {
    // Constant bounds that satisfy hdrhistogram's rules (low >= 1, high >= 2 * low,
    // sigfig <= 5): creation cannot fail at run time.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds are valid")
}

/// Latencies and error counts of one client (or, merged, of a whole run).
#[derive(Debug, Clone)]
pub struct Recorder {
    histograms: [Histogram<u64>; 4],
    errors: [u64; 4],
    /// Documents returned by range queries (to check they really return data).
    pub range_docs: u64,
    /// Point reads that found no document (should stay 0).
    pub misses: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            histograms: std::array::from_fn(|_| new_histogram()),
            errors: [0; 4],
            range_docs: 0,
            misses: 0,
        }
    }
}

impl Recorder {
    pub fn record(&mut self, op: Op, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histograms[op.index()].saturating_record(micros.clamp(1, MAX_MICROS));
    }

    pub fn error(&mut self, op: Op) {
        self.errors[op.index()] += 1;
    }

    pub fn count(&self, op: Op) -> u64 {
        self.histograms[op.index()].len()
    }

    pub fn errors(&self, op: Op) -> u64 {
        self.errors[op.index()]
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Successful operations of every type.
    pub fn total_ops(&self) -> u64 {
        self.histograms.iter().map(Histogram::len).sum()
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            // Same bounds on both sides: addition cannot overflow the value range.
            if mine.add(theirs).is_err() {
                for v in theirs.iter_recorded() {
                    mine.saturating_record_n(v.value_iterated_to(), v.count_at_value());
                }
            }
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        self.range_docs += other.range_docs;
        self.misses += other.misses;
    }

    /// Mean, percentiles and max of `op`, or `None` when it never ran.
    pub fn summary(&self, op: Op) -> Option<Latency> {
        let h = &self.histograms[op.index()];
        if h.is_empty() {
            return None;
        }
        let at = |q| Duration::from_micros(h.value_at_quantile(q));
        Some(Latency {
            count: h.len(),
            mean: Duration::from_secs_f64(h.mean() / 1e6),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: Duration::from_micros(h.max()),
        })
    }
}

/// Latency percentiles of one operation type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub count: u64,
    /// What one client's throughput is the inverse of: with one client, a mean 10 µs
    /// longer costs as much as a p50 10 µs longer, however few operations carry it.
    pub mean: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let mut r = Recorder::default();
        for us in 1..=1000u64 {
            r.record(Op::Read, Duration::from_micros(us));
        }
        let s = r.summary(Op::Read).expect("reads recorded");
        assert_eq!(s.count, 1000);
        assert!((499..=501).contains(&(s.p50.as_micros() as u64)), "{s:?}");
        assert!((989..=991).contains(&(s.p99.as_micros() as u64)), "{s:?}");
        assert!((899..=901).contains(&(s.p90.as_micros() as u64)), "{s:?}");
        assert!((998..=1000).contains(&(s.p999.as_micros() as u64)), "{s:?}");
        assert!((500..=501).contains(&(s.mean.as_micros() as u64)), "{s:?}");
        assert_eq!(s.max.as_micros(), 1000);
        assert!(r.summary(Op::Update).is_none());
    }

    #[test]
    fn merging_adds_counts_errors_and_docs() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.record(Op::Update, Duration::from_millis(2));
        b.record(Op::Update, Duration::from_millis(4));
        b.error(Op::Range);
        b.range_docs = 100;
        a.merge(&b);
        assert_eq!(a.count(Op::Update), 2);
        assert_eq!(a.errors(Op::Range), 1);
        assert_eq!(a.total_errors(), 1);
        assert_eq!(a.range_docs, 100);
        assert_eq!(a.total_ops(), 2);
    }

    #[test]
    fn huge_latencies_are_clamped_not_lost() {
        let mut r = Recorder::default();
        r.record(Op::Range, Duration::from_secs(3600));
        assert_eq!(r.count(Op::Range), 1);
    }
}
