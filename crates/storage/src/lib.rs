//! Strongroom's encrypted LSM key-value engine.
//!
//! Every file the engine writes — WAL segments, SSTs, the manifest, the data-key registry
//! and temp/spill files — starts with a self-describing header (magic, version, kind, file
//! id, data-key id, cipher suite, random salt) and is sealed block by block with
//! AES-256-GCM under a per-file subkey `HKDF-SHA256(data key, salt, "strongroom file v1" ||
//! kind || file id)`, nonce = block counter, AAD = (file id, kind, block index, format
//! version, is_last). Data keys live in a registry sealed under the caller's [`RootKey`];
//! key changes are committed through the manifest. See `docs/storage.md` for the formats.
//!
//! ```no_run
//! use storage::{Durability, Engine, Options, RootKey};
//! # fn main() -> Result<(), storage::Error> {
//! let db = Engine::open(std::path::Path::new("/tmp/db"), RootKey::from_bytes([7; 32]), Options::default())?;
//! db.put(b"k", b"v", Durability::Sync)?;
//! assert_eq!(db.get(b"k")?, Some(b"v".to_vec()));
//! # Ok(()) }
//! ```

pub mod allocator;
mod archive;
mod batch;
mod block;
mod cache;
mod checkpoint;
mod codec;
mod compact;
mod crypto;
mod engine;
mod error;
pub mod fs;
mod iterators;
mod logfile;
mod manifest;
mod memtable;
pub mod offline;
mod options;
pub mod restore;
mod snapshot;
mod table;
mod temp;
mod thread_priority;
mod version;
mod wal;
mod wal_spare;
mod wal_sync;

pub use archive::ArchivedWal;
pub use batch::{BatchOp, WriteBatch};
pub use checkpoint::{Checkpoint, CheckpointTable, SealedRegistry, WalPosition};
pub use crypto::{CipherSuite, KeyId, RootKey};
pub use engine::{Durability, Engine, LevelStats, MAX_KEY_LEN, MAX_VALUE_LEN, Progress, Stats};
pub use error::{Cause, Error, Poison, Result};
pub use fs::{CrashMode, FaultyFs, Fs, RealFs};
pub use iterators::Direction;
pub use options::Options;
pub use snapshot::{Iter, Snapshot};
pub use temp::{TempReader, TempWriter};
pub use wal_sync::DurableCallback;
