//! Continuous backup and point-in-time restore against the real storage engine: the
//! agent backs up while writes happen in timed phases, and a restore to the boundary
//! between two phases yields exactly the first phase. Then tampering with every kind of
//! backup file, and the plaintext canary over the backup location.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backup::{Agent, AgentConfig, BackupKeys, DirStore, Store};
use storage::{Direction, Durability, Engine, Options, RootKey};

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn options() -> Options {
    Options {
        // Small memtables: several flushes, rolled and archived WAL segments.
        memtable_bytes: 64 << 10,
        archive_wal: true,
        ..Options::default()
    }
}

fn scan(engine: &Engine) -> BTreeMap<Vec<u8>, Vec<u8>> {
    engine
        .iter(.., Direction::Forward)
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn sleep_past(micros: u64) {
    while now_micros() <= micros {
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Source {
    _dir: tempfile::TempDir,
    engine: Engine,
    dek: [u8; 32],
    location: tempfile::TempDir,
    agent: Agent,
}

fn source(marker: &[u8]) -> Source {
    let dir = tempfile::tempdir().unwrap();
    let dek = [0x5a; 32];
    let engine = Engine::open(dir.path(), RootKey::from_bytes(dek), options()).unwrap();
    let location = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open(location.path()).unwrap());
    let agent = Agent::start(
        engine.clone(),
        store,
        BackupKeys::from_root_dek(&dek).unwrap(),
        "orders",
        AgentConfig {
            snapshot_interval: Duration::from_millis(300),
            // Idle cycles still move the restorable window (the phases end with no write).
            idle_catalog_interval: Duration::from_millis(10),
            ..AgentConfig::default()
        },
        0,
        None,
    )
    .unwrap();
    let _ = marker;
    Source {
        _dir: dir,
        engine,
        dek,
        location,
        agent,
    }
}

/// Writes `n` keys of phase `p` (with the marker in keys and values), running agent
/// cycles as it goes; returns the state after the phase.
fn phase(s: &mut Source, p: u32, n: u32, marker: &[u8]) {
    for i in 0..n {
        let mut key = marker.to_vec();
        key.extend_from_slice(format!("-p{p}-{i:05}").as_bytes());
        let mut value = marker.repeat(8);
        value.extend_from_slice(&[p as u8; 200]);
        s.engine.put(&key, &value, Durability::Buffered).unwrap();
        if i % 50 == 0 {
            s.agent.cycle().unwrap();
        }
        if i % 97 == 0 && p > 1 {
            // Overwrites and deletes of earlier phases too.
            let mut old = marker.to_vec();
            old.extend_from_slice(format!("-p{}-{i:05}", p - 1).as_bytes());
            s.engine.delete(&old, Durability::Buffered).unwrap();
        }
    }
    s.agent.cycle().unwrap();
}

fn restore_to(
    s: &Source,
    at: u64,
    target: &Path,
    target_dek: [u8; 32],
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let store = DirStore::open(s.location.path()).unwrap();
    let keys = BackupKeys::from_root_dek(&s.dek).unwrap();
    let mut seen = Vec::new();
    let summary = backup::restore(
        &store,
        &keys,
        s.agent.catalog().generation,
        at,
        target,
        RootKey::from_bytes(target_dek),
        Options::default(),
        &mut |p| seen.push(p.done_bytes),
    )
    .unwrap();
    assert!(summary.tables > 0 || summary.wal_records > 0);
    assert!(!seen.is_empty(), "restore reports progress");
    let engine = Engine::open(target, RootKey::from_bytes(target_dek), Options::default()).unwrap();
    let state = scan(&engine);
    engine.close().unwrap();
    state
}

#[test]
fn restore_to_each_phase_boundary_yields_exactly_that_state() {
    let marker = b"CANARY-7f3e";
    let mut s = source(marker);
    let mut boundaries = Vec::new();
    for p in 1..=4 {
        phase(&mut s, p, 600, marker);
        s.engine.sync_wal().unwrap();
        let state = scan(&s.engine);
        let boundary = now_micros();
        boundaries.push((boundary, state));
        sleep_past(boundary + 1000);
        // Let a snapshot fall between phases now and then.
        std::thread::sleep(Duration::from_millis(150));
        s.agent.cycle().unwrap();
    }
    s.engine.compact().unwrap();
    s.agent.cycle().unwrap();
    let catalog = s.agent.catalog().clone();
    assert!(
        catalog.snapshots.len() >= 2,
        "several snapshots: {}",
        catalog.snapshots.len()
    );
    assert!(
        catalog.wal.values().any(|w| w.complete),
        "retired segments archived"
    );
    assert!(
        catalog
            .wal
            .values()
            .filter(|w| w.complete)
            .all(|w| w.chunks.len() == 1),
        "a finished segment is one catalog entry, not one per cycle"
    );
    for (i, (at, expected)) in boundaries.iter().enumerate() {
        let target = tempfile::tempdir().unwrap();
        let got = restore_to(&s, *at, target.path(), [i as u8 + 1; 32]);
        assert_eq!(got.len(), expected.len(), "phase {} key count", i + 1);
        assert!(got == *expected, "phase {} state differs", i + 1);
    }

    // Outside the window: before the first snapshot, after the archived end.
    let store = DirStore::open(s.location.path()).unwrap();
    let keys = BackupKeys::from_root_dek(&s.dek).unwrap();
    let target = tempfile::tempdir().unwrap();
    let err = backup::restore(
        &store,
        &keys,
        0,
        catalog.earliest_micros().unwrap() - 1,
        target.path(),
        RootKey::from_bytes([9; 32]),
        Options::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("outside the restorable window"),
        "{err}"
    );

    // The canary: nothing in the backup location carries the marker in plaintext.
    assert_no_marker(s.location.path(), marker);
    let report = backup::verify(&store, &keys, 0).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert!(report.wal_records > 0 && report.tables > 0);
}

fn assert_no_marker(dir: &Path, marker: &[u8]) {
    let mut files = 0;
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "{} holds the marker in plaintext",
            entry.display()
        );
    }
    assert!(files > 3, "the scan saw the backup files");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A backup with some history, its location, and a verified-good baseline.
fn backed_up() -> (Source, u64) {
    let marker = b"TAMPER-base";
    let mut s = source(marker);
    for p in 1..=3 {
        phase(&mut s, p, 500, marker);
        std::thread::sleep(Duration::from_millis(120));
    }
    s.engine.sync_wal().unwrap();
    s.agent.cycle().unwrap();
    let at = s.agent.catalog().restorable_until_micros;
    (s, at)
}

/// What a damaged backup must be refused with.
#[derive(Debug, Clone, Copy)]
enum Damage<'a> {
    /// [`backup::Error::Tampered`] naming this file (one of them, when two were swapped).
    File(&'a [&'a str]),
    /// [`backup::Error::RolledBack`]: the newest catalog is older than the one recorded.
    RolledBack,
}

impl Damage<'_> {
    /// Whether `err` is this damage, reported against the right file.
    fn matches(&self, err: &backup::Error) -> bool {
        match (self, err) {
            (Damage::File(files), backup::Error::Tampered { file, .. }) => {
                files.contains(&file.as_str())
            }
            (Damage::RolledBack, backup::Error::RolledBack { found, expected }) => found < expected,
            _ => false,
        }
    }
}

/// Verify must report the damage (a problem naming the file, or the rollback error) and
/// restore must refuse with the same integrity error.
fn verify_and_restore_fail(s: &Source, at: u64, what: &str, damage: Damage) {
    let store = DirStore::open(s.location.path()).unwrap();
    let keys = BackupKeys::from_root_dek(&s.dek).unwrap();
    let generation = s.agent.catalog().generation;
    match (backup::verify(&store, &keys, generation), damage) {
        (Ok(report), Damage::File(files)) => assert!(
            report.problems.iter().any(|p| {
                p.contains("is damaged or was replaced") && files.iter().any(|f| p.contains(f))
            }),
            "{what}: verify did not name {files:?}: {:?}",
            report.problems
        ),
        (Ok(report), Damage::RolledBack) => {
            panic!("{what}: verify accepted a rolled-back catalog: {report:?}")
        }
        (Err(e), damage) => assert!(damage.matches(&e), "{what}: verify failed with {e:?}"),
    }
    let target = tempfile::tempdir().unwrap();
    let result = backup::restore(
        &store,
        &keys,
        generation,
        at,
        target.path(),
        RootKey::from_bytes([3; 32]),
        Options::default(),
        &mut |_| {},
    );
    match result {
        Ok(summary) => panic!("{what}: restore succeeded on a damaged backup: {summary:?}"),
        Err(e) => assert!(
            damage.matches(&e),
            "{what}: restore failed with {e:?}, expected {damage:?}"
        ),
    }
}

fn files(s: &Source, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(s.location.path().join(prefix))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = at.min(bytes.len() - 1);
    bytes[i] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn tampered_backup_files_are_caught_by_verify_and_restore() {
    // Flip a byte in a table.
    let (s, at) = backed_up();
    let used = s.agent.catalog().snapshot_for(at).unwrap().tables[0].1;
    flip(
        &s.location.path().join(backup::catalog::table_name(used)),
        500,
    );
    let name = backup::catalog::table_name(used);
    verify_and_restore_fail(&s, at, "flipped table byte", Damage::File(&[name.as_str()]));

    // Truncate a WAL segment.
    let (s, at) = backed_up();
    let w = files(&s, "wal");
    let last = w.last().unwrap();
    let name = format!("wal/{}", last.file_name().unwrap().to_string_lossy());
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    verify_and_restore_fail(&s, at, "truncated WAL", Damage::File(&[name.as_str()]));

    // Swap two tables.
    let (s, at) = backed_up();
    let used = s.location.path().join(backup::catalog::table_name(
        s.agent.catalog().snapshot_for(at).unwrap().tables[0].1,
    ));
    let t = files(&s, "tables");
    let other = t.iter().find(|p| **p != used).expect("two tables");
    let a = std::fs::read(&used).unwrap();
    let b = std::fs::read(other).unwrap();
    std::fs::write(&used, b).unwrap();
    std::fs::write(other, a).unwrap();
    let names =
        [&used, other].map(|p| format!("tables/{}", p.file_name().unwrap().to_string_lossy()));
    let names = [names[0].as_str(), names[1].as_str()];
    verify_and_restore_fail(&s, at, "swapped tables", Damage::File(&names));

    // Replay an old catalog over the newest one (a rollback of the whole location).
    let (mut s, at) = backed_up();
    let catalogs = files(&s, "catalog");
    let old = std::fs::read(catalogs.last().unwrap()).unwrap();
    phase(&mut s, 9, 200, b"TAMPER-more");
    s.agent.cycle().unwrap();
    for c in files(&s, "catalog") {
        std::fs::remove_file(c).unwrap();
    }
    std::fs::write(catalogs.last().unwrap(), old).unwrap();
    verify_and_restore_fail(&s, at, "replayed old catalog", Damage::RolledBack);

    // Replay an old copy of a WAL segment (a shorter prefix of the same segment).
    // The segment the agent is still appending to is the one that grows.
    let (mut s, _) = backed_up();
    let (&id, _) = s
        .agent
        .catalog()
        .wal
        .iter()
        .find(|(_, w)| !w.complete)
        .expect("a live WAL segment being archived");
    let name = backup::catalog::wal_name(id);
    let live = s.location.path().join(&name);
    let old = std::fs::read(&live).unwrap();
    phase(&mut s, 9, 100, b"TAMPER-more");
    s.agent.cycle().unwrap();
    let at = s.agent.catalog().restorable_until_micros;
    let grown = std::fs::read(&live).unwrap();
    assert!(
        grown.len() > old.len() && grown.starts_with(&old),
        "{name} did not grow with the new writes ({} -> {} bytes)",
        old.len(),
        grown.len()
    );
    std::fs::write(&live, old).unwrap();
    verify_and_restore_fail(
        &s,
        at,
        "replayed old WAL copy",
        Damage::File(&[name.as_str()]),
    );

    // A catalog sealed under another cluster's key is refused.
    let (s, _) = backed_up();
    let store = DirStore::open(s.location.path()).unwrap();
    let other = BackupKeys::from_root_dek(&[0x11; 32]).unwrap();
    let newest = files(&s, "catalog").pop().unwrap();
    match backup::verify(&store, &other, 0) {
        Err(backup::Error::CatalogTampered { file }) => assert!(
            newest.ends_with(&file),
            "{file} is not the newest catalog {}",
            newest.display()
        ),
        other => panic!("a foreign key's catalog: expected CatalogTampered, got {other:?}"),
    }
}

#[test]
fn agent_resumes_from_its_catalog_and_releases_archived_wal() {
    let marker = b"RESUME-marker";
    let mut s = source(marker);
    phase(&mut s, 1, 800, marker);
    s.agent.cycle().unwrap();
    let generation = s.agent.catalog().generation;
    assert!(
        s.engine.archived_wal().unwrap().is_empty(),
        "archived segments are released once recorded"
    );
    // A new agent (a node restart) resumes from the catalog.
    let store: Arc<dyn Store> = Arc::new(DirStore::open(s.location.path()).unwrap());
    let mut again = Agent::start(
        s.engine.clone(),
        store.clone(),
        BackupKeys::from_root_dek(&s.dek).unwrap(),
        "orders",
        AgentConfig::default(),
        generation,
        None,
    )
    .unwrap();
    assert_eq!(again.catalog().generation, generation);
    phase(&mut s, 2, 300, marker);
    again.cycle().unwrap();
    assert!(again.catalog().generation > generation);
    // A floor above what the location holds is a rollback.
    // (Both agents wrote to the location above; a floor far beyond either.)
    let floor = 1 << 40;
    match Agent::start(
        s.engine.clone(),
        store,
        BackupKeys::from_root_dek(&s.dek).unwrap(),
        "orders",
        AgentConfig::default(),
        floor,
        None,
    ) {
        Err(backup::Error::RolledBack { .. }) => {}
        Err(other) => panic!("expected a rollback error, got {other}"),
        Ok(_) => panic!("a catalog older than the floor was accepted"),
    }
}

#[test]
fn retention_prunes_old_snapshots_wal_and_tables() {
    let marker = b"RETAIN-marker";
    let dir = tempfile::tempdir().unwrap();
    let dek = [0x77; 32];
    let engine = Engine::open(dir.path(), RootKey::from_bytes(dek), options()).unwrap();
    let location = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open(location.path()).unwrap());
    let mut agent = Agent::start(
        engine.clone(),
        store.clone(),
        BackupKeys::from_root_dek(&dek).unwrap(),
        "retained",
        AgentConfig {
            snapshot_interval: Duration::from_millis(100),
            retention: Duration::from_millis(600),
            idle_catalog_interval: Duration::from_millis(50),
        },
        0,
        None,
    )
    .unwrap();
    for p in 1..=3 {
        write_phase(&engine, p, marker);
        agent.cycle().unwrap();
        std::thread::sleep(Duration::from_millis(120));
    }
    agent.cycle().unwrap();
    let first_earliest = agent.catalog().earliest_micros().unwrap();
    let first_tables: Vec<u64> = agent.catalog().tables.keys().copied().collect();
    // Keep writing (and compacting, so old tables leave the live set) past the window.
    for p in 4..=12 {
        write_phase(&engine, p, marker);
        if p % 3 == 0 {
            engine.compact().unwrap();
        }
        agent.cycle().unwrap();
        std::thread::sleep(Duration::from_millis(120));
    }
    agent.cycle().unwrap();
    let catalog = agent.catalog().clone();
    let earliest = catalog.earliest_micros().unwrap();
    assert!(earliest > first_earliest, "the window moved forward");
    let window = now_micros() - earliest;
    assert!(
        window < 2_000_000,
        "snapshots older than the retention window (but one) are gone: window {window} µs"
    );
    // Tables only the pruned snapshots used are deleted from the location.
    let pruned: Vec<u64> = first_tables
        .iter()
        .filter(|id| !catalog.tables.contains_key(id))
        .copied()
        .collect();
    assert!(!pruned.is_empty(), "some early tables were pruned");
    for id in pruned {
        assert!(
            !location
                .path()
                .join(backup::catalog::table_name(id))
                .exists()
        );
    }
    // What is left verifies clean and restores; the pruned past does not.
    let keys = BackupKeys::from_root_dek(&dek).unwrap();
    let report = backup::verify(store.as_ref(), &keys, 0).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert!(
        report.unexpected_files.is_empty(),
        "{:?}",
        report.unexpected_files
    );
    let target = tempfile::tempdir().unwrap();
    let err = backup::restore(
        store.as_ref(),
        &keys,
        0,
        first_earliest,
        target.path(),
        RootKey::from_bytes([2; 32]),
        Options::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("outside the restorable window"),
        "{err}"
    );
    let target = tempfile::tempdir().unwrap();
    backup::restore(
        store.as_ref(),
        &keys,
        0,
        catalog.restorable_until_micros,
        target.path(),
        RootKey::from_bytes([3; 32]),
        Options::default(),
        &mut |_| {},
    )
    .unwrap();
    let restored = Engine::open(
        target.path(),
        RootKey::from_bytes([3; 32]),
        Options::default(),
    )
    .unwrap();
    assert!(scan(&restored) == scan(&engine));
}

fn write_phase(engine: &Engine, p: u32, marker: &[u8]) {
    for i in 0..400 {
        let mut key = marker.to_vec();
        key.extend_from_slice(format!("-{i:05}").as_bytes());
        engine
            .put(&key, &[p as u8; 300], Durability::Buffered)
            .unwrap();
    }
}
