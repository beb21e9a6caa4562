//! The whole harness at tiny scale against the real targets: a `ycsb-server` child
//! process driven through the official `mongodb` driver, and a throw-away PostgreSQL
//! cluster (PostgreSQL is a test dependency: without it these tests fail, never skip).
//! Proves the benchmark works; measures nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bson::doc;
use ycsb::pg_cluster::{self, PgCluster};
use ycsb::record::{self, Shape};
use ycsb::runner::{self, TargetReport};
use ycsb::server_proc::ServerProcess;
use ycsb::stats::Op;
use ycsb::store::Store;
use ycsb::store::postgres::Postgres;
use ycsb::store::strongroom::{COLLECTION, DATABASE, Strongroom};
use ycsb::workload::{Distribution, Mix, Resources, Settings, Transport};

fn tiny() -> Settings {
    Settings {
        records: 2_000,
        shape: Shape::DEFAULT,
        batch_size: 100,
        load_clients: 2,
        clients: vec![1],
        mixes: Mix::ALL.to_vec(),
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(100),
        distribution: Distribution::Zipfian,
        seed: 1,
        progress_every: Duration::from_millis(500),
        client_model: ycsb::workload::ClientModel::default(),
    }
}

/// Every mix ran, did real work and saw no errors; range queries returned full pages.
fn check(report: &TargetReport, settings: &Settings) {
    assert_eq!(report.load.records, settings.records);
    assert_eq!(
        report.load.recorder.count(Op::InsertBatch),
        settings.records / settings.batch_size as u64
    );
    assert_eq!(
        report.runs.len(),
        settings.mixes.len() * settings.clients.len()
    );
    for run in &report.runs {
        let r = &run.recorder;
        assert_eq!(r.total_errors(), 0, "{:?}: {:?}", run.mix, run.first_error);
        assert!(r.total_ops() > 0, "{:?} did nothing", run.mix);
        match run.mix {
            Mix::A | Mix::B => {
                assert!(r.count(Op::Read) > 0);
                assert_eq!(r.count(Op::Range), 0);
                assert_eq!(r.misses, 0);
            }
            Mix::E => {
                assert!(r.count(Op::Range) > 0);
                assert_eq!(r.range_docs, r.count(Op::Range) * 100);
            }
        }
    }
    // A has half updates: with one client for a second there are always some.
    let a = report.run(Mix::A, 1).expect("mix A ran");
    assert!(a.recorder.count(Op::Update) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strongroom_harness_runs_every_mix_through_the_mongodb_driver() {
    let settings = tiny();
    let server = ServerProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_ycsb-server")),
        None,
        Transport::Tls,
        &Resources::small(),
    )
    .await
    .expect("ycsb-server starts and prints READY");
    assert_ne!(server.port(), 0);
    let store = Arc::new(
        Strongroom::connect(&server, settings.max_clients())
            .await
            .expect("driver connects over TLS with SCRAM-SHA-256"),
    );
    let report = runner::run_target(store.clone(), &settings)
        .await
        .expect("harness runs");
    check(&report, &settings);

    // The documents are really there, with the loaded shape.
    let coll = store
        .client()
        .database(DATABASE)
        .collection::<bson::Document>(COLLECTION);
    let d = coll
        .find_one(doc! {"_id": record::key(7)})
        .await
        .expect("find")
        .expect("record 7 exists");
    assert_eq!(d.get_i64("rank").ok(), Some(7));
    for i in 0..10 {
        let v = d.get_str(record::field_name(i)).expect("field present");
        assert_eq!(v.len(), 100);
    }
    // The range query is served by the rank index, not a collection scan.
    let plan = store
        .client()
        .database(DATABASE)
        .run_command(doc! {
            "explain": {"find": COLLECTION, "filter": {"rank": {"$gte": 10_i64, "$lte": 110_i64}}, "limit": 100},
        })
        .await
        .expect("explain");
    let text = format!("{plan}");
    assert!(text.contains("IXSCAN") && text.contains("rank_1"), "{text}");

    drop(store);
    server
        .stop()
        .await
        .expect("server exits cleanly when stdin closes");
}

/// PostgreSQL's `initdb`/`pg_ctl` directory. Missing PostgreSQL fails the test (it is a
/// test dependency, installed by `scripts/install-test-deps`), never skips it.
fn postgresql_bin() -> std::path::PathBuf {
    pg_cluster::find_bin_dir(None).expect(
        "PostgreSQL's initdb and pg_ctl are required under /usr/lib/postgresql/<major>/bin: \
         run scripts/install-test-deps (apt-get install postgresql)",
    )
}

/// The `--target both` path: both targets up at once, loaded one after the other, and
/// every (mix, clients) cell run on each back to back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_run_against_strongroom_and_postgresql() {
    let bin = postgresql_bin();
    let settings = tiny();
    let cluster = PgCluster::start(&bin, None, &Resources::small())
        .await
        .expect("initdb + pg_ctl start");
    let server = ServerProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_ycsb-server")),
        None,
        Transport::Tls,
        &Resources::small(),
    )
    .await
    .expect("ycsb-server starts");
    let pg: Arc<dyn Store> = Arc::new(
        Postgres::connect(&cluster.conninfo())
            .await
            .expect("connect"),
    );
    let sr: Arc<dyn Store> = Arc::new(
        Strongroom::connect(&server, settings.max_clients())
            .await
            .expect("driver connects"),
    );
    let reports = runner::run_interleaved(vec![sr, pg], &settings)
        .await
        .expect("harness runs");
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].name, "Strongroom");
    assert_eq!(reports[1].name, "PostgreSQL");
    for r in &reports {
        check(r, &settings);
    }
    let ratios = ycsb::report::ratio_table(&reports[0], &reports[1]);
    assert_eq!(ratios.lines().count(), 2 + 1 + settings.mixes.len());
    server.stop().await.expect("server stops");
    cluster.stop().await.expect("pg_ctl stop");
}

/// `--transport tls` on the PostgreSQL side: the cluster runs with `ssl = on` and the sessions speak TLS 1.3 (checked
/// server-side by `connect_tls` through `pg_stat_ssl`); a client without TLS is refused
/// by `sslmode=require` instead of silently falling back to plain TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_over_tls() {
    let bin = postgresql_bin();
    let settings = tiny();
    let cluster = PgCluster::start_tls(&bin, None, &Resources::small())
        .await
        .expect("initdb + pg_ctl start with ssl = on");
    assert!(cluster.conninfo().contains("sslmode=require"));
    assert!(
        Postgres::connect(&cluster.conninfo()).await.is_err(),
        "a plaintext client must not get through sslmode=require"
    );
    let ca = cluster.tls_ca_pem().expect("CA").to_string();
    let tls = ycsb::pg_tls::RustlsConnect::new(&ca).expect("client config");
    let pg: Arc<dyn Store> = Arc::new(
        Postgres::connect_tls(&cluster.conninfo(), tls)
            .await
            .expect("TLS 1.3 connection"),
    );
    assert!(pg.describe().contains("TLS 1.3"), "{}", pg.describe());
    let report = runner::run_target(pg, &settings)
        .await
        .expect("harness runs over TLS");
    check(&report, &settings);
    cluster.stop().await.expect("pg_ctl stop");
}
