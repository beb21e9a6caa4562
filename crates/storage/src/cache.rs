//! A bounded cache of decrypted blocks keyed by (file id, block index), sharded, with CLOCK
//! eviction. Blocks are sealed once on disk and opened once per cache miss.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::block::Block;

const SHARDS: usize = 16;

struct Slot {
    block: Arc<Block>,
    referenced: AtomicBool,
    size: usize,
}

#[derive(Default)]
struct Shard {
    map: HashMap<(u64, u64), Slot>,
    clock: VecDeque<(u64, u64)>,
    bytes: usize,
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
                None => continue,
            };
            if evict {
                if let Some(slot) = s.map.remove(&k) {
                    s.bytes -= slot.size;
                }
            } else {
                s.clock.push_back(k);
            }
        }
        s.bytes += size;
        s.clock.push_back((file, block));
        s.map.insert(
            (file, block),
            Slot {
                block: b,
                referenced: AtomicBool::new(false),
                size,
            },
        );
    }

    /// Drops every block of `file` (called when a table is deleted).
    pub(crate) fn evict_file(&self, file: u64) {
        for sh in &self.shards {
            let mut s = sh.lock();
            let before = s.map.len();
            let mut freed = 0;
            s.map.retain(|k, slot| {
                if k.0 == file {
                    freed += slot.size;
                    false
                } else {
                    true
                }
            });
            if s.map.len() != before {
                s.bytes -= freed;
                s.clock.retain(|k| k.0 != file);
            }
        }
    }
}
