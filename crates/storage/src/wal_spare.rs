//! The next WAL segment, made ready before it is needed.
//!
//! A segment reserves its space up front so that a group commit's fdatasync writes the
//! records alone. Allocating the space (`fallocate`) is not enough on ext4: the blocks
//! stay *unwritten* extents, and each first write to one converts it, a metadata change
//! the next fdatasync must also write — an `ext4_write_inode` and a synchronous buffer
//! write in 4 % of the samples of a server running YCSB A with one client. Writing the
//! zeros avoids it but takes ~75 ms for a 64 MiB memtable's segment, too long for writers
//! to wait at a memtable switch. So the `storage-wal-spare` thread writes the next segment
//! while the current one fills (PostgreSQL fills its WAL segments with zeros ahead of use
//! for the same reason), and the switch renames it into place.
//!
//! The spare lives as `NNNNNN.walspare` until taken, so a crash leaves an unreferenced file
//! that [`Engine::open`](crate::Engine::open) removes, never a WAL it would replay. The
//! first switch asks for a spare; each switch that takes one asks for the next. An engine
//! that never fills a memtable never writes one.

use std::path::Path;

use parking_lot::Mutex;

use crate::crypto::keys::KeyId;
use crate::fs::Fs;
use crate::logfile::LogWriter;

/// File name of a spare segment.
pub(crate) fn spare_name(id: u64) -> String {
    format!("{id:06}.walspare")
}

#[derive(Default)]
struct Slot {
    /// A switch asked for a spare that is not ready yet.
    wanted: bool,
    ready: Option<LogWriter>,
}

/// The one spare segment (or the wish for one), shared by the writer and the spare thread.
#[derive(Default)]
pub(crate) struct SpareWal {
    slot: Mutex<Slot>,
}

impl SpareWal {
    /// Takes the ready spare if it may follow the `active` segment: its id must be larger
    /// (WAL segments replay in id order) and it must be sealed under `key`, the newest
    /// data key. A spare that may not is removed. Either way the next spare is wanted.
    pub(crate) fn take(
        &self,
        fs: &dyn Fs,
        dir: &Path,
        active: u64,
        key: KeyId,
    ) -> Option<LogWriter> {
        let spare = {
            let mut slot = self.slot.lock();
            slot.wanted = true;
            slot.ready.take()?
        };
        if spare.id() > active && spare.key_id() == key {
            return Some(spare);
        }
        discard(fs, dir, spare);
        None
    }

    /// True if a switch asked for a spare and none is ready.
    pub(crate) fn wanted(&self) -> bool {
        let slot = self.slot.lock();
        slot.wanted && slot.ready.is_none()
    }

    /// Offers a freshly written spare.
    pub(crate) fn put(&self, fs: &dyn Fs, dir: &Path, spare: LogWriter) {
        let mut slot = self.slot.lock();
        slot.wanted = false;
        if let Some(old) = slot.ready.replace(spare) {
            drop(slot);
            discard(fs, dir, old);
        }
    }

    /// Removes the spare, if any (at close: it would only be removed at the next open).
    pub(crate) fn clear(&self, fs: &dyn Fs, dir: &Path) {
        let spare = self.slot.lock().ready.take();
        if let Some(spare) = spare {
            discard(fs, dir, spare);
        }
    }
}

fn discard(fs: &dyn Fs, dir: &Path, spare: LogWriter) {
    let name = spare_name(spare.id());
    drop(spare);
    if let Err(e) = fs.remove(&dir.join(&name)) {
        tracing::warn!(file = %name, error = %e, "could not remove a spare WAL segment");
    }
}
