//! End-to-end throughput of the wire server through the official Rust driver, over TLS
//! with SCRAM-SHA-256, on docdb + the encrypted storage engine in a temp dir.
//!
//! Run: `cargo bench -p wire --bench throughput` (release). Prints a table. Sizes can be
//! changed with WIRE_BENCH_DOCS (default 20000) and WIRE_BENCH_CLIENTS (default 4).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Document, doc};
use futures::TryStreamExt;
use zeroize::Zeroizing;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn row(name: &str, ops: usize, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "| {name:<38} | {ops:>8} | {:>9.3} | {:>10.0} | {:>9.1} |",
        secs,
        ops as f64 / secs,
        secs * 1e6 / ops as f64
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("WIRE_BENCH_DOCS", 20_000);
    let clients = env_usize("WIRE_BENCH_CLIENTS", 4);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = pki::DevCa::load_or_create(&dir.path().join("ca")).expect("ca");
    let tls =
        wire::tls::server_config(&ca.issue_server(&["localhost"]).expect("cert")).expect("tls");
    let engine = storage::Engine::open(
        &dir.path().join("data"),
        storage::RootKey::from_bytes([7u8; 32]),
        storage::Options::default(),
    )
    .expect("engine");
    let db = docdb::Db::open(engine).expect("docdb");
    let mut config = wire::ServerConfig::new("127.0.0.1:0".parse().expect("addr"), db, tls);
    config.admin_user = Some(("bench".into(), Zeroizing::new("bench-pass".into())));
    config.slow_op_threshold = Duration::from_secs(3600);
    let server = wire::Server::start(config).await.expect("server");
    let uri = format!(
        "mongodb://bench:bench-pass@127.0.0.1:{}/?tls=true&tlsCAFile={}&directConnection=true",
        server.local_addr().port(),
        ca.ca_path().display()
    );
    let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
    let coll = Arc::new(client.database("bench").collection::<Document>("c"));
    coll.insert_one(doc! {"warm": true}).await.expect("warm up");

    println!("wire server, Rust driver 3.x, TLS + SCRAM-SHA-256, docdb on the encrypted engine");
    println!(
        "| {:<38} | {:>8} | {:>9} | {:>10} | {:>9} |",
        "operation", "ops", "seconds", "ops/s", "µs/op"
    );
    println!(
        "|{:-<40}|{:->10}|{:->11}|{:->12}|{:->11}|",
        "", "", "", "", ""
    );

    let t = Instant::now();
    for i in 0..n / 10 {
        coll.insert_one(doc! {"_id": i as i64, "k": (i % 100) as i64, "pad": "x".repeat(100)})
            .await
            .expect("insert");
    }
    row("insert_one (sync durable, 1 client)", n / 10, t.elapsed());

    let t = Instant::now();
    let batch: Vec<Document> = (n / 10..n)
        .map(|i| doc! {"_id": i as i64, "k": (i % 100) as i64, "pad": "x".repeat(100)})
        .collect();
    let count = batch.len();
    for chunk in batch.chunks(1000) {
        coll.insert_many(chunk.to_vec()).await.expect("insert_many");
    }
    row("insert_many (batches of 1000)", count, t.elapsed());

    let lookups = n / 4;
    let t = Instant::now();
    for i in 0..lookups {
        let id = ((i * 7919) % n) as i64;
        coll.find_one(doc! {"_id": id})
            .await
            .expect("find")
            .expect("doc");
    }
    row("find_one by _id (1 client)", lookups, t.elapsed());

    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let coll = coll.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..lookups / clients {
                let id = (((i + c * 31) * 7919) % n) as i64;
                coll.find_one(doc! {"_id": id})
                    .await
                    .expect("find")
                    .expect("doc");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    row(
        &format!("find_one by _id ({clients} clients)"),
        lookups / clients * clients,
        t.elapsed(),
    );

    let t = Instant::now();
    let all: Vec<Document> = coll
        .find(doc! {})
        .batch_size(1000)
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect");
    row(
        "full scan via cursor (batchSize 1000)",
        all.len(),
        t.elapsed(),
    );

    let t = Instant::now();
    let rounds = 200;
    for _ in 0..rounds {
        client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .expect("ping");
    }
    row("ping round trip", rounds, t.elapsed());

    client.shutdown().await;
    server.shutdown().await;
}
