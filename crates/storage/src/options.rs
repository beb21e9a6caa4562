//! Engine options.

use std::sync::Arc;
use std::time::Duration;

use crate::fs::{Fs, RealFs};

/// Tuning and environment of an [`Engine`](crate::Engine).
#[derive(Clone, Debug)]
pub struct Options {
    /// Memtable size that triggers a flush to an L0 table. Default 64 MiB (RocksDB's
    /// `write_buffer_size`); level and table sizes scale with it. Against 8 MiB it loads
    /// 1 M YCSB documents in 28–36 s instead of 41–47 s: fewer, larger L0 tables and an
    /// L1 of 512 MiB mean each L0 → L1 compaction rewrites L1 fewer times. Point reads do
    /// not pay for the larger skiplist: the memtable's filter skips it for keys it does
    /// not hold (docs/benchmarks.md, Run 10).
    pub memtable_bytes: usize,
    /// Rotate the data key when the newest one is older than this. Default 7 days.
    pub data_key_rotation: Option<Duration>,
    /// Run leveled compaction on the background thread. Default true. When false,
    /// compaction happens only through [`Engine::compact`](crate::Engine::compact).
    pub background_compaction: bool,
    /// Nice value the compaction thread runs at (Linux; 0 leaves its priority alone).
    /// Default 19, RocksDB's `CpuPriority::kLow`: requests never wait out a compaction's
    /// time slice. On a saturated CPU L0 then fills up before compaction gets its turn;
    /// a 1 M-document YCSB load took 58.3–58.7 s at 0 and 50.7–63.9 s at 19 (noise).
    pub compaction_nice: i32,
    /// Plaintext bytes per sealed data block. Default 4096.
    pub block_size: usize,
    /// Capacity of the decrypted-block cache. Default 256 MiB (MongoDB's WiredTiger
    /// takes half the RAM by default; on 1 M documents 256 MiB served a quarter more
    /// point and range reads than 64 MiB, docs/benchmarks.md).
    pub block_cache_bytes: usize,
    /// Archive retired WAL segments in `<dir>/archive/` instead of deleting them, for
    /// continuous backup / point-in-time restore. Default false. The engine never deletes
    /// archived segments; see [`Engine::release_archived_wal`](crate::Engine::release_archived_wal).
    pub archive_wal: bool,
    /// File system; tests inject [`FaultyFs`](crate::fs::FaultyFs).
    pub fs: Arc<dyn Fs>,
    /// Cipher suite for new files. Benchmark builds only.
    #[cfg(feature = "bench-null-cipher")]
    pub cipher: crate::crypto::CipherSuite,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memtable_bytes: 64 << 20,
            data_key_rotation: Some(Duration::from_secs(7 * 24 * 3600)),
            background_compaction: true,
            compaction_nice: 19,
            block_size: 4096,
            block_cache_bytes: 256 << 20,
            archive_wal: false,
            fs: Arc::new(RealFs),
            #[cfg(feature = "bench-null-cipher")]
            cipher: crate::crypto::CipherSuite::Aes256Gcm,
        }
    }
}
