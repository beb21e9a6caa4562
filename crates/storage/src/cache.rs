//! A bounded cache of decrypted blocks keyed by (file id, block index), sharded, with CLOCK
//! eviction. Blocks are sealed once on disk and opened once per cache miss.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;

use crate::block::Block;

const SHARDS: usize = 16;

struct Slot {
    block: Arc<Block>,
    referenced: AtomicBool,
    size: usize,
}

#[derive(Default)]
struct Shard {
    /// Keyed by (file id, block index): the engine's own numbers, so a fast unkeyed hash
    /// is safe, and SipHash's keyed rounds would buy nothing.
    map: HashMap<(u64, u64), Slot, FxBuildHasher>,
    clock: VecDeque<(u64, u64)>,
    bytes: usize,
    /// Entries in `clock` whose block was evicted directly (not by the clock hand).
    stale: usize,
}

impl Shard {
    /// Adds a block the caller made room for, unreferenced (first in line for eviction).
    fn admit(&mut self, key: (u64, u64), block: Arc<Block>, size: usize) {
        self.bytes += size;
        self.clock.push_back(key);
        self.map.insert(
            key,
            Slot {
                block,
                referenced: AtomicBool::new(false),
                size,
            },
        );
    }
}

pub(crate) struct BlockCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

impl BlockCache {
    pub(crate) fn new(capacity: usize) -> BlockCache {
        BlockCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity / SHARDS,
        }
    }

    fn shard(&self, file: u64, block: u64) -> &Mutex<Shard> {
        let h =
            file.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ block.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        &self.shards[(h >> 32) as usize % SHARDS]
    }

    pub(crate) fn get(&self, file: u64, block: u64) -> Option<Arc<Block>> {
        let s = self.shard(file, block).lock();
        s.map.get(&(file, block)).map(|slot| {
            slot.referenced.store(true, Ordering::Relaxed);
            slot.block.clone()
        })
    }

    pub(crate) fn insert(&self, file: u64, block: u64, b: Arc<Block>) {
        let size = b.mem_size();
        if self.per_shard == 0 || size > self.per_shard {
            return;
        }
        let mut s = self.shard(file, block).lock();
        if s.map.contains_key(&(file, block)) {
            return;
        }
        while s.bytes + size > self.per_shard {
            let Some(k) = s.clock.pop_front() else { break };
            let evict = match s.map.get(&k) {
                Some(slot) => !slot.referenced.swap(false, Ordering::Relaxed),
                None => {
                    s.stale = s.stale.saturating_sub(1);
                    continue;
                }
            };
            if evict {
                if let Some(slot) = s.map.remove(&k) {
                    s.bytes -= slot.size;
                }
            } else {
                s.clock.push_back(k);
            }
        }
        s.admit((file, block), b, size);
    }

    /// Offers a block being written (a flush or compaction output) to the cache: kept only
    /// if its shard has room without evicting anything, and unreferenced, so it is the
    /// first to go when reads need the space. Builders ask [`has_room`](Self::has_room)
    /// first and hand over the block they built instead of copying and re-decoding it.
    ///
    /// A write-through buffer pool (PostgreSQL's, InnoDB's) leaves what it wrote in
    /// memory the same way; without this an LSM cache starts cold after every compaction,
    /// since the blocks readers had cached belonged to the tables it replaced.
    pub(crate) fn warm(&self, file: u64, block: u64, b: Block) {
        let size = b.mem_size();
        let mut s = self.shard(file, block).lock();
        if s.bytes + size > self.per_shard || s.map.contains_key(&(file, block)) {
            return;
        }
        s.admit((file, block), Arc::new(b), size);
    }

    /// Whether a block of `size` plaintext bytes would be kept by [`warm`](Self::warm).
    pub(crate) fn has_room(&self, file: u64, block: u64, size: usize) -> bool {
        let s = self.shard(file, block).lock();
        s.bytes + size + 64 <= self.per_shard
    }

    /// Drops blocks `0..blocks` of `file` (called when a table is deleted). Looks each
    /// one up rather than scanning the cache, which holds millions of blocks when it is
    /// large; their clock entries are left behind and swept once they outnumber the
    /// live ones (file ids are never reused, so a stale entry cannot alias a new block).
    pub(crate) fn evict_file(&self, file: u64, blocks: u64) {
        for block in 0..blocks {
            let mut s = self.shard(file, block).lock();
            if let Some(slot) = s.map.remove(&(file, block)) {
                s.bytes -= slot.size;
                s.stale += 1;
                if s.stale > s.map.len() + 1024 {
                    let Shard { map, clock, .. } = &mut *s;
                    clock.retain(|k| map.contains_key(k));
                    s.stale = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockBuilder;

    fn plain(n: u8) -> Vec<u8> {
        let mut b = BlockBuilder::default();
        b.add(&[n; 8], 1, Some(&[n; 200]));
        let mut out = Vec::new();
        b.finish_into(&mut out);
        out
    }

    fn built(n: u8) -> Block {
        let mut b = BlockBuilder::default();
        b.add(&[n; 8], 1, Some(&[n; 200]));
        b.finish_owned(&mut Vec::new())
    }

    fn resident(c: &BlockCache) -> usize {
        c.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    #[test]
    fn warming_fills_free_room_and_never_evicts() {
        let c = BlockCache::new(SHARDS * 1024);
        c.warm(1, 0, built(1));
        let b = c.get(1, 0).expect("a warmed block is served");
        assert_eq!(b.key_at(0), [1u8; 8]);
        // Fill every shard with blocks readers asked for.
        for i in 0..4096u64 {
            c.insert(2, i, Arc::new(Block::decode(plain(2)).unwrap()));
        }
        let full = resident(&c);
        for i in 0..256u64 {
            c.warm(3, i, built(3));
        }
        assert_eq!(resident(&c), full, "warming displaced cached blocks");
        assert!((0..256).all(|i| c.get(3, i).is_none()));
    }

    #[test]
    fn evicting_a_file_frees_its_bytes_and_sweeps_stale_clock_entries() {
        let c = BlockCache::new(SHARDS * 4 * 1024 * 1024);
        for f in 0..8u64 {
            for i in 0..8000u64 {
                c.warm(f, i, built(f as u8));
            }
        }
        assert_eq!(resident(&c), 64_000);
        for f in 0..7u64 {
            c.evict_file(f, 8000);
        }
        assert_eq!(resident(&c), 8000);
        assert!(c.get(0, 5).is_none() && c.get(7, 5).is_some());
        let bytes: usize = c.shards.iter().map(|s| s.lock().bytes).sum();
        let live: usize = c
            .shards
            .iter()
            .map(|s| s.lock().map.values().map(|v| v.size).sum::<usize>())
            .sum();
        assert_eq!(bytes, live, "byte count drifted from the blocks held");
        // Stale entries were swept once they outnumbered the live ones by the slack.
        let clock: usize = c.shards.iter().map(|s| s.lock().clock.len()).sum();
        assert!(clock < 64_000, "clock never swept: {clock} entries");
        for s in &c.shards {
            let s = s.lock();
            assert!(s.clock.len() <= s.map.len() + 1024 + s.stale);
        }
    }
}
