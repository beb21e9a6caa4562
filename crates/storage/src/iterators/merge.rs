//! Merges sources by user key with a binary heap of the sources' current keys. A read
//! merges a handful (memtables, L0 tables, one per level), but an L0 -> L1 compaction
//! behind a write burst merges twenty or more: a linear scan for the smallest key cost
//! every entry a comparison per source, the heap costs two per level of its depth.

use std::cmp::Ordering;

use super::{Direction, Entry, Source};
use crate::error::Result;

pub(crate) struct Merger {
    sources: Vec<Box<dyn Source>>,
    /// Indices of the sources that are not exhausted, a heap with the source whose key
    /// comes first (in `dir`) at the root.
    heap: Vec<usize>,
    dir: Direction,
    /// The current group's key, reused across groups.
    key: Vec<u8>,
}

impl Merger {
    pub(crate) fn new(sources: Vec<Box<dyn Source>>, dir: Direction) -> Merger {
        let heap = (0..sources.len())
            .filter(|&i| sources[i].peek_key().is_some())
            .collect();
        let mut m = Merger {
            sources,
            heap,
            dir,
            key: Vec::new(),
        };
        for i in (0..m.heap.len() / 2).rev() {
            m.sift_down(i);
        }
        m
    }

    /// Whether the source at heap slot `a` comes before the one at slot `b`.
    fn before(&self, a: usize, b: usize) -> bool {
        let ka = self.sources[self.heap[a]].peek_key().unwrap_or_default();
        let kb = self.sources[self.heap[b]].peek_key().unwrap_or_default();
        match self.dir {
            Direction::Forward => ka.cmp(kb) == Ordering::Less,
            Direction::Reverse => ka.cmp(kb) == Ordering::Greater,
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut first = i;
            if l < self.heap.len() && self.before(l, first) {
                first = l;
            }
            if r < self.heap.len() && self.before(r, first) {
                first = r;
            }
            if first == i {
                return;
            }
            self.heap.swap(i, first);
            i = first;
        }
    }

    /// Moves every version of the next user key (from all sources) into `out`.
    /// Returns false when all sources are exhausted.
    pub(crate) fn next_group(&mut self, out: &mut Vec<Entry>) -> Result<bool> {
        let Some(&top) = self.heap.first() else {
            return Ok(false);
        };
        self.key.clear();
        self.key
            .extend_from_slice(self.sources[top].peek_key().unwrap_or_default());
        // Sources holding the key surface at the root one after another: each, drained
        // of the key, sinks below the rest (or leaves the heap when exhausted).
        while let Some(&i) = self.heap.first() {
            let s = &mut self.sources[i];
            if s.peek_key() != Some(self.key.as_slice()) {
                break;
            }
            let mut ended = false;
            while s.peek_key() == Some(self.key.as_slice()) {
                match s.take()? {
                    Some(e) => out.push(e),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            // A source that has nothing more to give leaves the heap, whatever it peeks:
            // otherwise it would stay at the root with the same key forever.
            if ended || s.peek_key().is_none() {
                self.heap.swap_remove(0);
            }
            self.sift_down(0);
        }
        Ok(true)
    }
}

/// Newest version in `group` with seq <= `snap`.
pub(crate) fn visible(group: &[Entry], snap: u64) -> Option<&Entry> {
    group.iter().filter(|e| e.seq <= snap).max_by_key(|e| e.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries in the order a source yields them.
    struct VecSource(std::collections::VecDeque<Entry>);

    impl Source for VecSource {
        fn peek_key(&self) -> Option<&[u8]> {
            self.0.front().map(|e| e.key.as_slice())
        }
        fn take(&mut self) -> Result<Option<Entry>> {
            Ok(self.0.pop_front())
        }
    }

    fn source(keys: &[(u8, u64)], dir: Direction) -> Box<dyn Source> {
        let mut v: Vec<Entry> = keys
            .iter()
            .map(|&(k, seq)| Entry {
                key: vec![k],
                seq,
                value: Some(vec![k]),
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key).then(b.seq.cmp(&a.seq)));
        if dir == Direction::Reverse {
            v.reverse();
        }
        Box::new(VecSource(v.into()))
    }

    /// Peeks a key it never yields.
    struct Stuck;

    impl Source for Stuck {
        fn peek_key(&self) -> Option<&[u8]> {
            Some(b"k")
        }
        fn take(&mut self) -> Result<Option<Entry>> {
            Ok(None)
        }
    }

    #[test]
    fn a_source_that_yields_nothing_leaves_the_merge_instead_of_looping() {
        let sources = vec![
            Box::new(Stuck) as Box<dyn Source>,
            source(&[(b'k', 1), (b'z', 2)], Direction::Forward),
        ];
        let mut m = Merger::new(sources, Direction::Forward);
        let mut keys = Vec::new();
        let mut group = Vec::new();
        while m.next_group(&mut group).expect("merge") {
            keys.extend(group.drain(..).map(|e| e.key[0]));
        }
        assert_eq!(keys, b"kz");
    }

    #[test]
    fn groups_every_version_of_each_key_across_many_sources_in_both_directions() {
        // 25 sources, more than a read ever merges; keys repeat within and across them.
        let inputs: Vec<Vec<(u8, u64)>> = (0..25u64)
            .map(|s| {
                (0..40u64)
                    .map(|i| (((s * 7 + i * 13) % 97) as u8, s * 100 + i))
                    .collect()
            })
            .chain([vec![], vec![(200, 1), (200, 2)]])
            .collect();
        for dir in [Direction::Forward, Direction::Reverse] {
            let mut expected: std::collections::BTreeMap<u8, Vec<u64>> = Default::default();
            for &(k, seq) in inputs.iter().flatten() {
                expected.entry(k).or_default().push(seq);
            }
            let mut m = Merger::new(inputs.iter().map(|s| source(s, dir)).collect(), dir);
            let mut got = Vec::new();
            let mut group = Vec::new();
            while m.next_group(&mut group).expect("merge") {
                let k = group[0].key[0];
                assert!(group.iter().all(|e| e.key == [k]), "a group holds one key");
                let mut seqs: Vec<u64> = group.iter().map(|e| e.seq).collect();
                seqs.sort_unstable();
                got.push((k, seqs));
                group.clear();
            }
            let mut want: Vec<(u8, Vec<u64>)> = expected
                .into_iter()
                .map(|(k, mut s)| {
                    s.sort_unstable();
                    (k, s)
                })
                .collect();
            if dir == Direction::Reverse {
                want.reverse();
            }
            assert_eq!(got, want, "{dir:?}");
        }
    }
}
