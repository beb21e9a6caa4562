//! A table's data-block index, laid out for binary search.
//!
//! Every point read searches the index of each table whose bloom filter says "maybe". With
//! one heap allocation per block's last key, each of a search's ~12 probes chased a
//! pointer into a different allocation; on a 1 M-document data set that chasing was a
//! fifth of the server's CPU on range queries. Here the last keys sit end to end in one
//! buffer, their end offsets in another, and the block positions in a third, so a search
//! touches a few contiguous arrays.

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
}

impl BlockIndex {
    pub(crate) fn with_capacity(blocks: usize) -> BlockIndex {
        BlockIndex {
            keys: Vec::new(),
            key_ends: Vec::with_capacity(blocks),
            blocks: Vec::with_capacity(blocks),
        }
    }

    /// Appends the next block. `None` if the keys outgrow 4 GiB (no real table gets near).
    pub(crate) fn push(&mut self, offset: u64, len: u32, last_key: &[u8]) -> Option<()> {
        self.keys.extend_from_slice(last_key);
        self.key_ends.push(u32::try_from(self.keys.len()).ok()?);
        self.blocks.push((offset, len));
        Some(())
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
        let (mut lo, mut hi) = (0, self.len());
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
}
