//! An in-memory [`Kv`] for fast unit tests of logic that does not depend on durability.
//! Storage-backed behaviour is tested against the real encrypted engine (`tests/`).

use std::collections::BTreeMap;
use std::io::{Cursor as IoCursor, Read, Write};
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::Result;
use crate::kv::{Batch, Kv, KvSnapshot, ScanFn, TempStore, TempWrite};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Copy-on-write in-memory store (snapshots share the map until the next write).
#[derive(Default)]
pub struct MemKv {
    map: RwLock<Arc<Map>>,
}

impl MemKv {
    pub fn new() -> Self {
        Self::default()
    }
}

struct MemSnap(Arc<Map>);

impl KvSnapshot for MemSnap {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(key).cloned())
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        f: &mut ScanFn,
    ) -> Result<()> {
        let range = self.0.range::<[u8], _>((start, end));
        if reverse {
            for (k, v) in range.rev() {
                if !f(k, v)? {
                    break;
                }
            }
        } else {
            for (k, v) in range {
                if !f(k, v)? {
                    break;
                }
            }
        }
        Ok(())
    }
}

struct MemTemp(Vec<u8>);

impl Write for MemTemp {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl TempWrite for MemTemp {
    fn finish(self: Box<Self>) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(IoCursor::new(self.0)))
    }
}

impl TempStore for MemKv {
    fn temp_file(&self) -> Result<Box<dyn TempWrite>> {
        Ok(Box::new(MemTemp(Vec::new())))
    }
}

impl Kv for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().get(key).cloned())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn write(&self, batch: Batch, _sync: bool) -> Result<()> {
        let mut guard = self.map.write();
        let map = Arc::make_mut(&mut guard);
        for (k, v) in batch.ops {
            match v {
                Some(v) => {
                    map.insert(k, v);
                }
                None => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Arc<dyn KvSnapshot>> {
        Ok(Arc::new(MemSnap(self.map.read().clone())))
    }
}
