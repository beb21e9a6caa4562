//! The engine's own files under a known key, mutated: a template directory (an SST and
//! its manifest from a flush, then WAL records) is made once; each input picks one file
//! and flips bytes in it or cuts it short, and the engine opens the copy. Opening may fail
//! (corruption is an error) and a cut WAL may lose its tail, but every key and value the
//! engine then returns must be one that was written: mutated bytes are never served as
//! data.
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use storage::{Direction, Durability, Engine, Options, RootKey};

const KEY: [u8; 32] = [7; 32];

struct Template {
    files: Vec<(PathBuf, Vec<u8>)>,
    written: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn options() -> Options {
    Options {
        background_compaction: false,
        block_cache_bytes: 1 << 20,
        memtable_bytes: 1 << 20,
        ..Options::default()
    }
}

fn scratch() -> tempfile::TempDir {
    // Memory-backed where the machine has it: each input writes a whole directory.
    if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").expect("tempdir")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}

fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = scratch();
        let engine = Engine::open(dir.path(), RootKey::from_bytes(KEY), options()).expect("open");
        let mut written = BTreeMap::new();
        for i in 0..120u32 {
            let key = format!("key{i:05}").into_bytes();
            let value = format!("value {i} {}", "v".repeat((i % 7) as usize * 40)).into_bytes();
            engine.put(&key, &value, Durability::Sync).expect("put");
            written.insert(key, value);
            if i == 80 {
                engine.flush().expect("flush");
            }
        }
        engine.close().expect("close");
        let mut files = Vec::new();
        collect(dir.path(), dir.path(), &mut files);
        files.sort();
        Template { files, written }
    })
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.file_name().is_some_and(|n| n != "LOCK") {
            let bytes = std::fs::read(&path).expect("read");
            out.push((path.strip_prefix(root).expect("prefix").to_path_buf(), bytes));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let t = template();
    let [pick, mode, edits @ ..] = data else {
        return;
    };
    let target = *pick as usize % t.files.len();
    let dir = scratch();
    for (i, (rel, bytes)) in t.files.iter().enumerate() {
        let mut bytes = bytes.clone();
        if i == target && !bytes.is_empty() {
            if mode % 4 == 0 {
                // Cut the file at an offset the input chooses.
                let at = u32::from_le_bytes(pad4(edits)) as usize % bytes.len();
                bytes.truncate(at);
            } else {
                // Flip bytes: (offset u32, xor u8) pairs.
                for edit in edits.chunks_exact(5).take(16) {
                    let at = u32::from_le_bytes([edit[0], edit[1], edit[2], edit[3]]) as usize;
                    let len = bytes.len();
                    bytes[at % len] ^= edit[4].max(1);
                }
            }
        }
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write");
    }
    let Ok(engine) = Engine::open(dir.path(), RootKey::from_bytes(KEY), options()) else {
        return;
    };
    if let Ok(iter) = engine.iter(.., Direction::Forward) {
        for item in iter {
            let Ok((key, value)) = item else { break };
            assert_eq!(
                t.written.get(&key),
                Some(&value),
                "the engine served a key or value that was never written"
            );
        }
    }
    let _ = engine.close();
});

fn pad4(b: &[u8]) -> [u8; 4] {
    let mut out = [0u8; 4];
    for (o, i) in out.iter_mut().zip(b) {
        *o = *i;
    }
    out
}
