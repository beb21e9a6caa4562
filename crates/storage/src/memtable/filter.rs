//! A whole-key Bloom filter beside each memtable.
//!
//! Nearly every point read asks the memtables for a key they do not hold; without a filter
//! each such read walks the skiplist, about log2(entries) dependent cache misses, and the
//! walk grows with the memtable. The filter answers "absent" from one cache line: all of a
//! key's probes fall in the same 64-byte block (a blocked Bloom filter, as in RocksDB's
//! memtable prefix bloom and its "fast local" filters), laid out as the tables' filters
//! are (`table::bloom`).
//!
//! Writers set bits under the engine's writer lock but readers never lock, so bits are
//! atomics. A key's bits are set before its entry enters the skiplist, and a reader only
//! looks for sequence numbers that were published after that, so a key a reader may see is
//! never reported absent.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::table::bloom::{line_of, probes};

/// Probes per key, all inside one block.
const PROBES: u32 = 6;
/// Bytes of memtable capacity per filter bit: the filter takes 1/32 of the memtable's
/// size. A memtable entry costs at least ~64 bytes (key, value, 48 bytes of bookkeeping),
/// so even the smallest entries get 16 bits each (about 1 % false positives for a blocked
/// filter); 1 KiB documents get hundreds.
const CAPACITY_BYTES_PER_BIT: usize = 4;

#[repr(align(64))]
struct Line([AtomicU64; 8]);

pub(crate) struct MemFilter {
    lines: Box<[Line]>,
}

impl MemFilter {
    /// A filter for a memtable that flushes at about `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> MemFilter {
        let lines = (capacity / CAPACITY_BYTES_PER_BIT / 512).max(1);
        MemFilter {
            lines: (0..lines)
                .map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    /// Adds a key by its [`bloom::hash`](crate::table::bloom::hash).
    pub(crate) fn insert(&self, hash: u64) {
        let line = self.line(hash);
        for bit in probes(hash, PROBES) {
            line.0[bit / 64].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
    }

    /// False when no key with this hash was inserted.
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        let line = self.line(hash);
        probes(hash, PROBES)
            .all(|bit| line.0[bit / 64].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0)
    }

    fn line(&self, hash: u64) -> &Line {
        &self.lines[line_of(hash, self.lines.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::bloom::hash;

    #[test]
    fn every_inserted_key_is_found_and_few_absent_keys_are() {
        // 1 MiB of capacity at the smallest entries the memtable holds (~64 bytes each).
        let f = MemFilter::with_capacity(1 << 20);
        let n = (1 << 20) / 64;
        for i in 0..n {
            f.insert(hash(format!("present-{i}").as_bytes()));
        }
        for i in 0..n {
            assert!(
                f.may_contain(hash(format!("present-{i}").as_bytes())),
                "{i}"
            );
        }
        let false_positives = (0..100_000)
            .filter(|i| f.may_contain(hash(format!("absent-{i}").as_bytes())))
            .count();
        // 16 bits per key, 6 probes in a 512-bit block: about 0.1 % measured.
        assert!(false_positives < 1_000, "{false_positives} of 100000");
    }

    #[test]
    fn an_empty_filter_contains_nothing() {
        let f = MemFilter::with_capacity(0);
        assert!(!f.may_contain(hash(b"anything")));
        f.insert(hash(b"anything"));
        assert!(f.may_contain(hash(b"anything")));
    }
}
