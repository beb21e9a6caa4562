//! Shared pieces of the fuzz targets: a fixed small document set, a BSON reader that goes
//! through the project's own decoder, and the in-process MongoDB server the wire target
//! talks to.
//!
//! Every target asserts properties, not only "no panic": a panic, an abort or a stack
//! overflow in any thread (the server's included) ends the run, because libfuzzer-sys
//! installs a panic hook that aborts the process.

use std::sync::{Arc, OnceLock};

use bson::{Document, doc};

/// Parses `data` as one BSON document with the project's own decoder (the path every
/// command body and stored document takes), or `None` when it is not one.
pub fn document(data: &[u8]) -> Option<Document> {
    let raw = bson::RawDocument::from_bytes(data).ok()?;
    docdb::rawdoc::to_document(raw).ok()
}

/// The documents the query target runs against: nested fields, arrays, mixed types.
pub fn sample_documents() -> Vec<Document> {
    vec![
        doc! {"_id": 1, "a": 1, "b": {"c": [1, 2, {"d": "x"}]}, "s": "hello", "t": true},
        doc! {"_id": 2, "a": 2.5, "b": {"c": []}, "arr": [[1, 2], {"k": null}], "s": "World"},
        doc! {"_id": 3, "a": "str", "b": null, "n": {"m": {"o": {"p": 1}}}},
        doc! {"_id": 4, "a": [1, [2, 3]], "d": bson::DateTime::from_millis(1_700_000_000_000)},
        doc! {"_id": "five", "a": bson::Decimal128::from_bytes([0; 16]), "x": {"$y": 1}},
    ]
}

/// A database on the in-memory key-value store holding [`sample_documents`] in `db.c`,
/// with a secondary index so the planner has a choice.
pub fn sample_db() -> docdb::Db {
    let db = docdb::Db::open_kv(
        Arc::new(docdb::memkv::MemKv::new()),
        docdb::DbConfig::default(),
    )
    .expect("memkv db");
    db.insert("db", "c", sample_documents(), true)
        .expect("seed documents");
    db.create_indexes("db", "c", &[doc! {"key": {"a": 1}, "name": "a_1"}])
        .expect("index");
    db
}

/// The in-process MongoDB server (plaintext, on loopback, nobody logged in) the wire
/// target sends its bytes to. Started once per fuzzing process and kept in a static for
/// the life of the process (reachable, so the leak checker does not count it).
pub fn wire_server() -> std::net::SocketAddr {
    struct Running {
        addr: std::net::SocketAddr,
        _server: wire::Server,
        _runtime: tokio::runtime::Runtime,
        _dir: tempfile::TempDir,
    }
    static SERVER: OnceLock<Running> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let dir = tempfile::tempdir().expect("tempdir");
            let ca = pki::DevCa::load_or_create(&dir.path().join("ca")).expect("ca");
            let tls = wire::tls::server_config(&ca.issue_server(&["localhost"]).expect("cert"))
                .expect("tls");
            let mut config = wire::ServerConfig::new(
                "127.0.0.1:0".parse().expect("addr"),
                sample_db(),
                tls,
            );
            config.tls = None;
            config.insecure_plaintext = true;
            config.idle_poll = std::time::Duration::ZERO;
            let server = runtime
                .block_on(wire::Server::start(config))
                .expect("server");
            Running {
                addr: server.local_addr(),
                _server: server,
                _runtime: runtime,
                _dir: dir,
            }
        })
        .addr
}
