//! A cluster node: one process that serves one cluster's MongoDB endpoint, and the
//! one-shot job processes that open a cluster's data for the control plane.
//!
//! The control plane talks to key vaults; a node never does. It spawns `strongroom node`
//! and drives it over stdin with the protocol in `cluster::protocol`: `Init`, `Open`
//! (the unwrapped root DEK), `Lock`, `ResetAdminPassword`, `Shutdown` ([`run`]). A
//! restore, an export or a backup verification runs in a `strongroom node --job`
//! process ([`run_job`]): one `Job` frame with the keys it needs, progress and a result
//! on stdout, then exit. This crate is the only one on the supervisor's side of the
//! process boundary that opens engine files or decrypts backup data, so the control
//! plane never links `storage`, `docdb` or `wire`.
//!
//! A storage failure (a full disk, an I/O error) makes the engine read-only; the node
//! reports it (`ReadOnly`), reopens the engine once that can work and reports `Writable`,
//! without restarting ([`Recovery`]).

mod backups;
mod events;
mod jobs;
mod recovery;
mod serve;

pub use jobs::run_job;
pub use recovery::{Recovery, Reopener, Step};
pub use serve::{NodeOptions, NodeRunError, run};
