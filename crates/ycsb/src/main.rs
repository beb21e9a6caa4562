//! `ycsb`: the YCSB-style benchmark, Strongroom (through the official `mongodb` driver,
//! against a `ycsb-server` child process) side by side with PostgreSQL JSONB (a cluster
//! the harness creates in a temp dir). Prints Markdown tables; see docs/benchmarks.md.
//!
//! ```text
//! cargo build --release -p ycsb
//! target/release/ycsb --target both --records 1000000 --clients 1,8,32 --duration 30s
//! ```

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use ycsb::cpus::{self, CpuSplit};
use ycsb::pg_cluster::{self, PgCluster};
use ycsb::record::Shape;
use ycsb::runner::{self, TargetReport};
use ycsb::server_proc::ServerProcess;
use ycsb::store::Store;
use ycsb::store::postgres::Postgres;
use ycsb::store::strongroom::Strongroom;
use ycsb::workload::{ClientModel, Distribution, Mix, Resources, Settings, Transport};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Strongroom,
    Postgres,
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    Tls,
    Plain,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Model {
    Threads,
    Tasks,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Dist {
    Zipfian,
    Uniform,
}

#[derive(Parser)]
#[command(about = "YCSB-style benchmark: Strongroom (mongodb driver) vs PostgreSQL JSONB")]
struct Args {
    #[arg(long, value_enum, default_value = "both")]
    target: Target,
    /// Documents loaded before the runs.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Concurrent client counts, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    clients: Vec<usize>,
    /// Measured duration of each (mix, clients) run: `30s`, `500ms`, `2m` or seconds.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before each run.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    warmup: Duration,
    /// Approximate bytes of field values per document (10 fields of value-size/10).
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Documents per insert batch in the load phase (same on both targets).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Concurrent loaders in the load phase.
    #[arg(long, default_value_t = 4)]
    load_clients: usize,
    /// Mixes to run: A (50/50), B (95/5), E (range query).
    #[arg(long, value_delimiter = ',', default_value = "A,B,E", value_parser = parse_mix)]
    mixes: Vec<Mix>,
    #[arg(long, value_enum, default_value = "zipfian")]
    distribution: Dist,
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// The `ycsb-server` binary (default: next to this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Directory with PostgreSQL's `initdb` and `pg_ctl` (default: /usr/lib/postgresql/*/bin).
    #[arg(long)]
    pg_bin: Option<PathBuf>,
    /// Parent directory for both databases' data (default: the system temp dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seconds between load progress lines.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    progress: Duration,
    /// Load and run one target after the other instead of interleaving the cells.
    #[arg(long)]
    sequential: bool,
    /// Transport for both targets: `tls` (TLS 1.3 to Strongroom and to PostgreSQL with
    /// `ssl = on`) or `plain` (plain TCP to both; Strongroom runs with its explicit
    /// insecure flag). Both sides always get the same transport.
    #[arg(long, value_enum, default_value = "tls")]
    transport: TransportArg,
    /// How clients run: `threads` (YCSB's model: a thread per client, each with a
    /// single-threaded runtime and a connection of its own) or `tasks` (every client a
    /// task on one multi-threaded runtime sharing one driver client and its pool).
    #[arg(long, value_enum, default_value = "threads")]
    client_model: Model,
    /// MiB of cache for each database: Strongroom's decrypted-block cache and
    /// PostgreSQL's `shared_buffers` get the same (default: a quarter of the host's
    /// memory, PostgreSQL's starting point for `shared_buffers`).
    #[arg(long)]
    cache_mb: Option<usize>,
    /// `on`: the load generator runs on one half of the CPUs and both databases on the
    /// other, as YCSB runs its clients on machines of their own; `off`: everything
    /// shares every CPU (Runs 1-6).
    #[arg(long, value_enum, default_value = "on")]
    cpu_split: Switch,
    /// Also write the Markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

fn parse_mix(s: &str) -> Result<Mix, String> {
    Mix::parse(s).ok_or_else(|| format!("unknown mix {s:?} (A, B, E)"))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let split = match args.cpu_split {
        Switch::On => {
            let allowed = cpus::allowed()?;
            let split = CpuSplit::halves(&allowed).ok_or_else(|| {
                anyhow::anyhow!("--cpu-split on needs two CPUs, this process may use {allowed:?}")
            })?;
            // Before the runtime exists, so that every thread of the harness inherits it.
            cpus::pin_current_thread(&split.client)?;
            Some(split)
        }
        Switch::Off => None,
    };
    let resources = Resources {
        cache_mb: args
            .cache_mb
            .unwrap_or_else(ycsb::workload::default_cache_mb),
        cpus: split.as_ref().map(|s| s.database.clone()),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args, split, resources))
}

async fn run(args: Args, split: Option<CpuSplit>, resources: Resources) -> anyhow::Result<()> {
    let settings = Settings {
        records: args.records,
        shape: Shape::for_value_size(args.value_size),
        batch_size: args.batch_size,
        load_clients: args.load_clients,
        clients: args.clients.clone(),
        mixes: args.mixes.clone(),
        duration: args.duration,
        warmup: args.warmup,
        distribution: match args.distribution {
            Dist::Zipfian => Distribution::Zipfian,
            Dist::Uniform => Distribution::Uniform,
        },
        seed: args.seed,
        progress_every: args.progress,
        client_model: match args.client_model {
            Model::Threads => ClientModel::Threads,
            Model::Tasks => ClientModel::Tasks,
        },
    };
    let data_dir = args.data_dir.as_deref();
    let transport = match args.transport {
        TransportArg::Tls => Transport::Tls,
        TransportArg::Plain => Transport::Plain,
    };

    // Both targets stay up for the whole run; with `--sequential` each is loaded and
    // run on its own, otherwise each (mix, clients) cell runs on both back to back.
    let mut server = None;
    let mut cluster = None;
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    let outcome = async {
        if matches!(args.target, Target::Strongroom | Target::Both) {
            let bin = match &args.server_bin {
                Some(b) => b.clone(),
                None => std::env::current_exe()?
                    .parent()
                    .map(|d| d.join("ycsb-server"))
                    .ok_or_else(|| anyhow::anyhow!("cannot locate ycsb-server"))?,
            };
            let s =
                server.insert(ServerProcess::spawn(&bin, data_dir, transport, &resources).await?);
            stores.push(Arc::new(
                Strongroom::connect(s, settings.max_clients()).await?,
            ));
        }
        if matches!(args.target, Target::Postgres | Target::Both) {
            let bin = pg_cluster::find_bin_dir(args.pg_bin.as_deref()).ok_or_else(|| {
                anyhow::anyhow!("PostgreSQL not found (apt-get install -y postgresql, or --pg-bin)")
            })?;
            if transport == Transport::Tls {
                let c = cluster.insert(PgCluster::start_tls(&bin, data_dir, &resources).await?);
                let ca = c
                    .tls_ca_pem()
                    .ok_or_else(|| anyhow::anyhow!("TLS cluster without a CA"))?;
                let tls = ycsb::pg_tls::RustlsConnect::new(ca)?;
                stores.push(Arc::new(Postgres::connect_tls(&c.conninfo(), tls).await?));
            } else {
                let c = cluster.insert(PgCluster::start(&bin, data_dir, &resources).await?);
                stores.push(Arc::new(Postgres::connect(&c.conninfo()).await?));
            }
        }
        if args.sequential {
            let mut reports = Vec::new();
            for store in stores.drain(..) {
                reports.push(runner::run_target(store, &settings).await?);
            }
            Ok::<_, anyhow::Error>(reports)
        } else {
            Ok(runner::run_interleaved(std::mem::take(&mut stores), &settings).await?)
        }
    }
    .await;
    drop(stores);
    if let Some(s) = server {
        s.stop().await?;
    }
    if let Some(c) = cluster {
        c.stop().await?;
    }
    let reports: Vec<TargetReport> = outcome?;

    let mut md = String::new();
    md.push_str(&format!(
        "records: {}, value size: {} B ({} fields x {} B), distribution: {:?}, batch: {}, \
         loaders: {}, clients: {}, warm-up {:?}, measured {:?} per run, cache {} MiB each, {}, {}\n\n",
        settings.records,
        settings.shape.field_count * settings.shape.field_len,
        settings.shape.field_count,
        settings.shape.field_len,
        settings.distribution,
        settings.batch_size,
        settings.load_clients,
        match settings.client_model {
            ClientModel::Threads => "a thread per client (own runtime and connection)",
            ClientModel::Tasks => "tasks on one runtime (shared driver pool)",
        },
        settings.warmup,
        settings.duration,
        resources.cache_mb,
        match &split {
            Some(s) => format!("client on CPUs {} and databases on CPUs {}", s.client, s.database),
            None => "client and databases sharing every CPU".to_string(),
        },
        if args.sequential {
            "targets run one after the other"
        } else {
            "cells interleaved (each mix/clients cell runs on every target back to back)"
        }
    ));
    md.push_str("### Load\n\n");
    md.push_str(&ycsb::report::load_table(
        &reports.iter().collect::<Vec<_>>(),
    ));
    for r in &reports {
        md.push_str(&format!("\n### {}\n\n", r.name));
        md.push_str(&ycsb::report::target_table(r));
    }
    if let [sr, pg] = &reports[..] {
        md.push_str("\n### Ratio (Strongroom / PostgreSQL throughput)\n\n");
        md.push_str(&ycsb::report::ratio_table(sr, pg));
    }
    md.push_str("\n### Latency distribution\n");
    for r in &reports {
        md.push('\n');
        md.push_str(&ycsb::report::distribution_table(r));
    }
    println!("{md}");
    if let Some(path) = &args.out {
        std::fs::write(path, &md)?;
    }
    Ok(())
}
