//! Shared harness for the storage integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use storage::{Direction, Engine, Fs, Options, RootKey};

pub fn root() -> RootKey {
    RootKey::from_bytes([0x42; 32])
}

pub fn other_root() -> RootKey {
    RootKey::from_bytes([0x17; 32])
}

/// Small sizes so tests exercise flushes, many blocks and compaction quickly.
pub fn small_opts() -> Options {
    Options {
        memtable_bytes: 32 << 10,
        block_size: 512,
        block_cache_bytes: 1 << 20,
        ..Options::default()
    }
}

pub fn opts_with_fs(fs: Arc<dyn Fs>) -> Options {
    Options { fs, ..small_opts() }
}

pub fn open(dir: &Path) -> Engine {
    Engine::open(dir, root(), small_opts()).expect("open")
}

pub fn collect(db: &Engine, dir: Direction) -> Vec<(Vec<u8>, Vec<u8>)> {
    db.iter(.., dir)
        .expect("iter")
        .collect::<Result<Vec<_>, _>>()
        .expect("iter item")
}

pub fn key(i: u32) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

pub fn value(i: u32, generation: u32) -> Vec<u8> {
    format!("value-{i}-{generation}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

/// Every regular file under `dir` (recursively) with its bytes.
pub fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    b,
                ));
            }
        }
    }
    out
}

pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix) || n.starts_with(suffix))
        })
        .collect();
    v.sort();
    v
}
