//! A table's data-block index, laid out for binary search.
//!
//! Every point read searches the index of each table whose bloom filter says "maybe". With
//! one heap allocation per block's last key, each of a search's ~12 probes chased a
//! pointer into a different allocation; on a 1 M-document data set that chasing was a
//! fifth of the server's CPU on range queries. Here the last keys sit end to end in one
//! buffer, their end offsets in another, and the block positions in a third, so a search
//! touches a few contiguous arrays.
//!
//! The keys of one table share a long prefix (a collection's keys all start with its id),
//! so most of each comparison re-read bytes that could not decide it. [`finish`] records
//! that common prefix once and, for each key, the 8 bytes after it as a big-endian `u64`
//! (its *head*; shorter keys are padded with zeros, which keeps the heads in key order).
//! A search is a binary search over those integers — 8 bytes per block, whose top levels
//! stay in the CPU cache — and compares whole keys only among blocks whose heads tie.
//!
//! [`finish`]: BlockIndex::finish

/// Where a data block sits in the file, and the last key it holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockRef<'a> {
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) last_key: &'a [u8],
}

#[derive(Default)]
pub(crate) struct BlockIndex {
    /// Every block's last key, concatenated.
    keys: Vec<u8>,
    /// End of block i's last key in `keys` (its start is the previous end).
    key_ends: Vec<u32>,
    /// (file offset, sealed length) of block i.
    blocks: Vec<(u64, u32)>,
    /// Length of the prefix every last key shares.
    prefix_len: usize,
    /// Block i's head: the 8 bytes of its last key after the common prefix.
    heads: Vec<u64>,
}

/// Up to 8 bytes of `s` as a big-endian integer, zero-padded: a < b implies head(a) <= head(b).
fn head(s: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = s.len().min(8);
    b[..n].copy_from_slice(&s[..n]);
    u64::from_be_bytes(b)
}

impl BlockIndex {
    pub(crate) fn with_capacity(blocks: usize) -> BlockIndex {
        BlockIndex {
            keys: Vec::new(),
            key_ends: Vec::with_capacity(blocks),
            blocks: Vec::with_capacity(blocks),
            prefix_len: 0,
            heads: Vec::new(),
        }
    }

    /// Appends the next block. `None` if the keys outgrow 4 GiB (no real table gets near).
    pub(crate) fn push(&mut self, offset: u64, len: u32, last_key: &[u8]) -> Option<()> {
        self.keys.extend_from_slice(last_key);
        self.key_ends.push(u32::try_from(self.keys.len()).ok()?);
        self.blocks.push((offset, len));
        Some(())
    }

    /// Computes the common prefix and the heads; call once every block is pushed (the
    /// keys must be in ascending order, as a table's are).
    pub(crate) fn finish(&mut self) {
        let n = self.len();
        if n == 0 {
            return;
        }
        let (first, last) = (self.last_key(0), self.last_key(n - 1));
        // Sorted keys: what the first and last share, every key between shares.
        self.prefix_len = first.iter().zip(last).take_while(|(a, b)| a == b).count();
        // `get`: an index out of order (never written so) gives wrong heads, not a panic.
        self.heads = (0..n)
            .map(|i| head(self.last_key(i).get(self.prefix_len..).unwrap_or_default()))
            .collect();
    }

    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    pub(crate) fn last_key(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.key_ends[i - 1] as usize
        };
        &self.keys[start..self.key_ends[i] as usize]
    }

    pub(crate) fn get(&self, i: usize) -> Option<BlockRef<'_>> {
        let &(offset, len) = self.blocks.get(i)?;
        Some(BlockRef {
            offset,
            len,
            last_key: self.last_key(i),
        })
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = BlockRef<'_>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// First block whose last key is >= `key` (or > `key` when `exclusive`).
    pub(crate) fn find(&self, key: &[u8], exclusive: bool) -> usize {
        debug_assert_eq!(
            self.heads.len(),
            self.len(),
            "BlockIndex::finish not called"
        );
        let prefix = &self.keys[..self.prefix_len.min(self.keys.len())];
        let shared = &key[..key.len().min(prefix.len())];
        match shared.cmp(prefix) {
            // Below every key (or a proper prefix of them all): block 0 can hold it.
            std::cmp::Ordering::Less => return 0,
            std::cmp::Ordering::Equal if key.len() < prefix.len() => return 0,
            std::cmp::Ordering::Greater => return self.len(),
            std::cmp::Ordering::Equal => {}
        }
        let h = head(&key[prefix.len()..]);
        // Blocks whose head is below the key's hold only smaller keys, above only larger.
        let lo = self.heads.partition_point(|&x| x < h);
        // The run of tied heads is short (usually empty): gallop over it from `lo`, in the
        // cache lines the search just loaded, instead of searching the rest of the index.
        let (mut bound, mut step) = (lo, 1);
        while bound < self.heads.len() && self.heads[bound] == h {
            bound = lo + step;
            step *= 2;
        }
        let bound = bound.min(self.heads.len());
        let hi = lo + self.heads[lo..bound].partition_point(|&x| x == h);
        let (mut lo, mut hi) = (lo, hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let k = self.last_key(mid);
            let before = if exclusive { k <= key } else { k < key };
            if before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_block_that_can_hold_a_key() {
        let mut ix = BlockIndex::with_capacity(3);
        for (i, k) in [&b"b"[..], b"dd", b"f"].iter().enumerate() {
            ix.push(i as u64 * 100, 10, k).unwrap();
        }
        ix.finish();
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.last_key(1), b"dd");
        assert_eq!(
            ix.get(2).map(|b| (b.offset, b.last_key)),
            Some((200, &b"f"[..]))
        );
        assert!(ix.get(3).is_none());
        let find = |k: &[u8], ex| ix.find(k, ex);
        assert_eq!(find(b"a", false), 0);
        assert_eq!(find(b"b", false), 0);
        assert_eq!(find(b"b", true), 1);
        assert_eq!(find(b"c", false), 1);
        assert_eq!(find(b"dd", true), 2);
        assert_eq!(find(b"f", false), 2);
        assert_eq!(find(b"g", false), 3);
        assert_eq!(find(b"f", true), 3);
        assert_eq!(ix.iter().count(), 3);
    }

    /// Keys over a three-byte alphabet with long shared prefixes, zero bytes and keys that
    /// are prefixes of others: every search must agree with a plain binary search.
    #[test]
    fn head_search_agrees_with_whole_key_search() {
        use proptest::prelude::*;
        let key = || proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xff)], 0..14);
        let prefix = proptest::collection::vec(any::<u8>(), 0..6);
        proptest!(|(pre in prefix, mut keys in proptest::collection::vec(key(), 1..40), probes in proptest::collection::vec(key(), 1..40))| {
            let mut keys: Vec<Vec<u8>> = keys.drain(..).map(|k| [pre.as_slice(), &k].concat()).collect();
            keys.sort();
            let mut ix = BlockIndex::with_capacity(keys.len());
            for k in &keys {
                ix.push(0, 1, k).unwrap();
            }
            ix.finish();
            let probes = probes.iter().flat_map(|p| [p.clone(), [pre.as_slice(), p].concat()]);
            for q in probes.chain(keys.iter().cloned()) {
                for exclusive in [false, true] {
                    let want = keys.partition_point(|k| if exclusive { k.as_slice() <= q.as_slice() } else { k.as_slice() < q.as_slice() });
                    prop_assert_eq!(ix.find(&q, exclusive), want, "{:?} exclusive {}", q, exclusive);
                }
            }
        });
    }
}
