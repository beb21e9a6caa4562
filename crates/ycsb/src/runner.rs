//! The load phase and the timed runs.
//!
//! Load: `load_clients` concurrent sessions take the next batch of record numbers from a
//! shared counter and insert it (one request per batch on both targets), with a progress
//! line every `progress_every`. Run: for each mix and client count, `clients` sessions run
//! closed-loop (next operation as soon as the previous one is acknowledged) for
//! `warmup + duration`; only operations started after the warm-up are measured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::record::{self, Record};
use crate::stats::{Op, Recorder};
use crate::store::{Session, Store};
use crate::workload::{ClientModel, Distribution, Mix, RANGE_LIMIT, RANGE_WIDTH, Settings};
use crate::zipf::KeyChooser;

/// Outcome of the load phase.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub records: u64,
    pub elapsed: Duration,
    pub recorder: Recorder,
}

impl LoadResult {
    pub fn docs_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Outcome of one (mix, clients) run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub mix: Mix,
    pub clients: usize,
    pub measured: Duration,
    pub recorder: Recorder,
    /// The first error any client saw, for the log.
    pub first_error: Option<String>,
}

impl RunResult {
    pub fn ops_per_sec(&self) -> f64 {
        self.recorder.total_ops() as f64 / self.measured.as_secs_f64().max(1e-9)
    }
}

/// Everything measured on one target.
#[derive(Debug, Clone)]
pub struct TargetReport {
    pub name: String,
    pub description: String,
    pub load: LoadResult,
    pub runs: Vec<RunResult>,
}

impl TargetReport {
    pub fn run(&self, mix: Mix, clients: usize) -> Option<&RunResult> {
        self.runs
            .iter()
            .find(|r| r.mix == mix && r.clients == clients)
    }
}

fn log(target: &str, msg: std::fmt::Arguments<'_>) {
    eprintln!("[{target}] {msg}");
}

/// A target after its load phase, ready for timed runs.
pub struct Loaded {
    store: Arc<dyn Store>,
    load: LoadResult,
    chooser: Arc<KeyChooser>,
    runs: Vec<RunResult>,
}

/// Prepares the schema, loads `settings.records` records and checks the count.
pub async fn prepare_and_load(store: Arc<dyn Store>, settings: &Settings) -> Result<Loaded> {
    if settings.records == 0 || settings.clients.is_empty() || settings.batch_size == 0 {
        return Err(Error::Workload(
            "records, batch size and client counts must be positive".into(),
        ));
    }
    let name = store.name();
    log(name, format_args!("{}", store.describe()));
    store.prepare().await?;
    let load = load(store.clone(), settings).await?;
    let stored = store.count().await?;
    if stored != settings.records {
        return Err(Error::Workload(format!(
            "{name} holds {stored} records after loading {}",
            settings.records
        )));
    }
    let settle = Instant::now();
    store.after_load().await?;
    log(
        name,
        format_args!(
            "after the load: maintenance done in {:.1} s",
            settle.elapsed().as_secs_f64()
        ),
    );
    let chooser = Arc::new(match settings.distribution {
        Distribution::Uniform => KeyChooser::uniform(settings.records),
        Distribution::Zipfian => KeyChooser::zipfian(settings.records),
    });
    Ok(Loaded {
        store,
        load,
        chooser,
        runs: Vec::new(),
    })
}

impl Loaded {
    /// Runs one (mix, clients) cell and keeps its result.
    pub async fn run(&mut self, settings: &Settings, mix: Mix, clients: usize) -> Result<()> {
        let name = self.store.name();
        let r = run_mix(
            self.store.clone(),
            settings,
            self.chooser.clone(),
            mix,
            clients,
        )
        .await?;
        log(
            name,
            format_args!(
                "{} with {clients} clients: {:.0} ops/s, {} errors",
                mix.label(),
                r.ops_per_sec(),
                r.recorder.total_errors()
            ),
        );
        if let Some(e) = &r.first_error {
            log(name, format_args!("first error: {e}"));
        }
        self.runs.push(r);
        Ok(())
    }

    pub fn into_report(self) -> TargetReport {
        TargetReport {
            name: self.store.name().to_string(),
            description: self.store.describe(),
            load: self.load,
            runs: self.runs,
        }
    }
}

/// Loads one target, then runs every mix at every client count.
pub async fn run_target(store: Arc<dyn Store>, settings: &Settings) -> Result<TargetReport> {
    let mut loaded = prepare_and_load(store, settings).await?;
    for &mix in &settings.mixes {
        for &clients in &settings.clients {
            loaded.run(settings, mix, clients).await?;
        }
    }
    Ok(loaded.into_report())
}

/// Loads every target (one after the other), then runs each (mix, clients) cell on
/// every target back to back. On a shared machine whose neighbours' load changes by
/// the minute, this keeps the two sides of each ratio seconds apart instead of many
/// minutes.
pub async fn run_interleaved(
    stores: Vec<Arc<dyn Store>>,
    settings: &Settings,
) -> Result<Vec<TargetReport>> {
    let mut loaded = Vec::with_capacity(stores.len());
    for store in stores {
        loaded.push(prepare_and_load(store, settings).await?);
    }
    for &mix in &settings.mixes {
        for &clients in &settings.clients {
            for target in &mut loaded {
                target.run(settings, mix, clients).await?;
            }
        }
    }
    Ok(loaded.into_iter().map(Loaded::into_report).collect())
}

/// The load phase.
pub async fn load(store: Arc<dyn Store>, settings: &Settings) -> Result<LoadResult> {
    let name = store.name();
    let total = settings.records;
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..settings.load_clients.max(1) {
        let mut session = store.session().await?;
        let next = next.clone();
        let done = done.clone();
        let (shape, batch, seed) = (settings.shape, settings.batch_size as u64, settings.seed);
        tasks.spawn(async move {
            let mut recorder = Recorder::default();
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    return Ok::<Recorder, Error>(recorder);
                }
                let last = (first + batch).min(total);
                // Seeded by batch so both targets load exactly the same documents.
                let mut rng = SmallRng::seed_from_u64(seed ^ first.rotate_left(17));
                let records: Vec<Record> = (first..last)
                    .map(|n| Record::generate(n, shape, &mut rng))
                    .collect();
                let t0 = Instant::now();
                session.insert_batch(&records).await?;
                recorder.record(Op::InsertBatch, t0.elapsed());
                done.fetch_add(last - first, Ordering::Relaxed);
            }
        });
    }
    let progress = {
        let done = done.clone();
        let every = settings.progress_every.max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                log(
                    name,
                    format_args!(
                        "load: {n}/{total} documents ({:.1} %), {:.0} docs/s, {secs:.0} s",
                        n as f64 * 100.0 / total as f64,
                        n as f64 / secs.max(1e-9)
                    ),
                );
            }
        })
    };
    let mut recorder = Recorder::default();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(r)) => recorder.merge(&r),
            Ok(Err(e)) => {
                failure.get_or_insert(e);
                tasks.abort_all();
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                failure.get_or_insert(Error::Workload(format!("loader task: {e}")));
            }
        }
    }
    progress.abort();
    if let Some(e) = failure {
        return Err(e);
    }
    let elapsed = started.elapsed();
    let result = LoadResult {
        records: total,
        elapsed,
        recorder,
    };
    log(
        name,
        format_args!(
            "loaded {total} documents in {:.1} s ({:.0} docs/s)",
            elapsed.as_secs_f64(),
            result.docs_per_sec()
        ),
    );
    Ok(result)
}

/// One timed run of `mix` with `clients` concurrent sessions, in the settings' client model.
pub async fn run_mix(
    store: Arc<dyn Store>,
    settings: &Settings,
    chooser: Arc<KeyChooser>,
    mix: Mix,
    clients: usize,
) -> Result<RunResult> {
    match settings.client_model {
        ClientModel::Tasks => run_mix_tasks(store, settings, chooser, mix, clients).await,
        ClientModel::Threads => run_mix_threads(store, settings, chooser, mix, clients).await,
    }
}

fn client_seed(settings: &Settings, mix: Mix, clients: usize, i: usize) -> u64 {
    settings.seed ^ ((clients as u64) << 40) ^ ((mix as u64) << 32) ^ i as u64
}

/// Thread-per-client: each client opens its own session on its own single-threaded
/// runtime; all of them start together once every session is connected.
async fn run_mix_threads(
    store: Arc<dyn Store>,
    settings: &Settings,
    chooser: Arc<KeyChooser>,
    mix: Mix,
    clients: usize,
) -> Result<RunResult> {
    // Two rendezvous: every session connected, then the start instant published.
    let connected = Arc::new(Barrier::new(clients + 1));
    let go = Arc::new(Barrier::new(clients + 1));
    let start: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let (warmup, duration) = (settings.warmup, settings.duration);
    let mut threads = Vec::with_capacity(clients);
    for i in 0..clients {
        let (store, chooser) = (store.clone(), chooser.clone());
        let (connected, go, start) = (connected.clone(), go.clone(), start.clone());
        let seed = client_seed(settings, mix, clients, i);
        let params = ClientParams::of(settings);
        let thread = std::thread::Builder::new()
            .name(format!("ycsb-client-{i}"))
            .spawn(move || -> Result<(Recorder, Option<String>)> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Workload(format!("client runtime: {e}")));
                let session = match &runtime {
                    Ok(rt) => rt.block_on(store.own_session()),
                    Err(e) => Err(Error::Workload(e.to_string())),
                };
                // Reach both rendezvous even on failure, so no thread waits forever.
                connected.wait();
                go.wait();
                let (runtime, session) = (runtime?, session?);
                let begin = *start
                    .get()
                    .ok_or_else(|| Error::Workload("start instant not set".into()))?;
                let client = Client::new(session, chooser, seed, params);
                let measure_from = begin + warmup;
                let outcome =
                    runtime.block_on(client.run(mix, measure_from, measure_from + duration));
                Ok(outcome)
            })
            .map_err(|e| Error::Workload(format!("client thread: {e}")))?;
        threads.push(thread);
    }
    let joined = tokio::task::spawn_blocking(move || {
        connected.wait();
        let _ = start.set(Instant::now());
        go.wait();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| Error::Workload("benchmark client thread panicked".into()))?
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| Error::Workload(format!("client threads: {e}")))?;
    run_result(settings, mix, clients, joined)
}

/// Every client a task on the calling (multi-threaded) runtime, with sessions from
/// [`Store::session`].
async fn run_mix_tasks(
    store: Arc<dyn Store>,
    settings: &Settings,
    chooser: Arc<KeyChooser>,
    mix: Mix,
    clients: usize,
) -> Result<RunResult> {
    let mut sessions = Vec::with_capacity(clients);
    for _ in 0..clients {
        sessions.push(store.session().await?);
    }
    let start = Instant::now();
    let measure_from = start + settings.warmup;
    let end = measure_from + settings.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, session) in sessions.into_iter().enumerate() {
        let seed = client_seed(settings, mix, clients, i);
        let client = Client::new(session, chooser.clone(), seed, ClientParams::of(settings));
        tasks.spawn(client.run(mix, measure_from, end));
    }
    let mut outcomes = Vec::with_capacity(clients);
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined.map_err(|e| Error::Workload(format!("benchmark client task: {e}"))));
    }
    run_result(settings, mix, clients, outcomes)
}

/// What every client of a run recorded, merged; the first error any client saw.
fn run_result(
    settings: &Settings,
    mix: Mix,
    clients: usize,
    outcomes: Vec<Result<(Recorder, Option<String>)>>,
) -> Result<RunResult> {
    let mut recorder = Recorder::default();
    let mut first_error = None;
    for outcome in outcomes {
        let (r, err) = outcome?;
        recorder.merge(&r);
        first_error = first_error.or(err);
    }
    Ok(RunResult {
        mix,
        clients,
        measured: settings.duration,
        recorder,
        first_error,
    })
}

/// What a client needs from the settings (copied into client threads).
#[derive(Clone, Copy)]
struct ClientParams {
    records: u64,
    field_count: usize,
    field_len: usize,
}

impl ClientParams {
    fn of(settings: &Settings) -> ClientParams {
        ClientParams {
            records: settings.records,
            field_count: settings.shape.field_count,
            field_len: settings.shape.field_len,
        }
    }
}

/// One closed-loop benchmark client.
struct Client {
    session: Box<dyn Session>,
    rng: SmallRng,
    chooser: Arc<KeyChooser>,
    records: u64,
    field_count: usize,
    field_len: usize,
}

impl Client {
    fn new(
        session: Box<dyn Session>,
        chooser: Arc<KeyChooser>,
        seed: u64,
        p: ClientParams,
    ) -> Client {
        Client {
            session,
            rng: SmallRng::seed_from_u64(seed),
            chooser,
            records: p.records,
            field_count: p.field_count,
            field_len: p.field_len,
        }
    }

    async fn run(
        mut self,
        mix: Mix,
        measure_from: Instant,
        end: Instant,
    ) -> (Recorder, Option<String>) {
        let mut recorder = Recorder::default();
        let mut first_error = None;
        loop {
            let t0 = Instant::now();
            if t0 >= end {
                break;
            }
            let measured = t0 >= measure_from;
            let (op, outcome) = self.one(mix, &mut recorder, measured).await;
            let latency = t0.elapsed();
            match outcome {
                Ok(()) if measured => recorder.record(op, latency),
                Ok(()) => {}
                Err(e) => {
                    if measured {
                        recorder.error(op);
                    }
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        (recorder, first_error)
    }

    /// Chooses and performs the next operation. Reads that find nothing and updates
    /// that match nothing are errors: every key read or updated was loaded.
    async fn one(&mut self, mix: Mix, recorder: &mut Recorder, measured: bool) -> (Op, Result<()>) {
        match mix {
            Mix::E => {
                let span = self.records.saturating_sub(RANGE_WIDTH as u64).max(1);
                let lo = (self.chooser.next(&mut self.rng) % span) as i64;
                let outcome = self.session.range(lo, lo + RANGE_WIDTH, RANGE_LIMIT).await;
                let outcome = outcome.and_then(|n| {
                    if measured {
                        recorder.range_docs += n;
                    }
                    let expected = (RANGE_LIMIT as u64).min(self.records - lo as u64);
                    if n == expected {
                        Ok(())
                    } else {
                        Err(Error::Workload(format!(
                            "range [{lo}, {}] returned {n} documents, expected {expected}",
                            lo + RANGE_WIDTH
                        )))
                    }
                });
                (Op::Range, outcome)
            }
            Mix::A | Mix::B => {
                let key = record::key(self.chooser.next(&mut self.rng));
                if self.rng.random::<f64>() < mix.read_fraction() {
                    let outcome = self.session.read(&key).await.and_then(|found| {
                        if found {
                            Ok(())
                        } else {
                            if measured {
                                recorder.misses += 1;
                            }
                            Err(Error::Workload(format!("read of {key} found nothing")))
                        }
                    });
                    (Op::Read, outcome)
                } else {
                    let field = record::field_name(self.rng.random_range(0..self.field_count));
                    let value = record::random_value(&mut self.rng, self.field_len);
                    let outcome = self
                        .session
                        .update(&key, &field, &value)
                        .await
                        .and_then(|hit| {
                            if hit {
                                Ok(())
                            } else {
                                Err(Error::Workload(format!("update of {key} matched nothing")))
                            }
                        });
                    (Op::Update, outcome)
                }
            }
        }
    }
}
