//! ycsb — a YCSB-style benchmark that drives Strongroom through the official `mongodb`
//! driver and runs the same workload against PostgreSQL storing the documents as JSONB.
//!
//! The benchmark is a library so the harness can be exercised at tiny scale by
//! `cargo test`; the `ycsb` binary is a thin CLI over [`runner::run_target`], and the
//! `ycsb-server` binary runs a Strongroom server in its own process (the load generator
//! and the database never share a process, exactly as with PostgreSQL).
//!
//! - [`cpus`]: client CPUs apart from database CPUs, as YCSB's separate client machines;
//! - [`zipf`]: YCSB's (scrambled) zipfian key chooser;
//! - [`record`]: record keys and ~1 KiB documents (`field0..field9` + indexed `rank`);
//! - [`workload`]: the mixes (A 50/50, B 95/5, E-like range query) and run settings;
//! - [`stats`]: per-operation HDR latency histograms and their summaries;
//! - [`store`]: the two targets behind one [`store::Store`] trait;
//! - [`pg_cluster`]: a throw-away PostgreSQL cluster (initdb/pg_ctl in a temp dir);
//! - [`pg_tls`]: TLS 1.3 for the PostgreSQL connections (`--transport tls`), rustls on aws-lc-rs;
//! - [`server_proc`]: the `ycsb-server` child process;
//! - [`runner`]: load phase and timed runs with N concurrent clients;
//! - [`report`]: the Markdown tables.

pub mod cpus;
pub mod error;
pub mod pg_cluster;
pub mod pg_tls;
pub mod record;
pub mod report;
pub mod runner;
pub mod server_proc;
pub mod stats;
pub mod store;
pub mod workload;
pub mod zipf;

pub use error::{Error, Result};
