//! The node's backup thread: runs [`backup::Agent`] cycles on a timer next to the open
//! engine and reports each change to the supervisor.
//!
//! A plain thread, not a tokio task: a cycle copies files and fsyncs, which would stall
//! the runtime that serves clients.

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::mpsc;

use cluster::protocol::{BackupReport, BackupSettings, Event};

enum Stop {
    Now,
    AfterLastCycle,
}

pub(crate) struct BackupThread {
    stop: std_mpsc::Sender<Stop>,
    handle: std::thread::JoinHandle<()>,
}

impl BackupThread {
    pub(crate) async fn start(
        cluster: &str,
        engine: storage::Engine,
        keys: backup::BackupKeys,
        settings: BackupSettings,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<BackupThread, backup::Error> {
        let cluster = cluster.to_string();
        let interval = Duration::from_millis(settings.archive_interval_ms.max(10));
        // Open the location and load the catalog before reporting Ready, so a rolled-back
        // or foreign backup location is an error the supervisor sees.
        let agent = tokio::task::spawn_blocking(move || {
            let store: Arc<dyn backup::Store> =
                Arc::new(backup::DirStore::open(&settings.location)?);
            backup::Agent::start(
                engine,
                store,
                keys,
                &cluster,
                backup::AgentConfig {
                    snapshot_interval: Duration::from_secs(settings.snapshot_interval_secs),
                    retention: Duration::from_secs(settings.retention_secs),
                    // An idle cluster still moves its restorable window forward, at
                    // a thirtieth of the archiving rate (30 s at the default 1 s).
                    idle_catalog_interval: (interval * 30)
                        .clamp(Duration::from_secs(1), Duration::from_secs(30)),
                },
                settings.min_generation,
                Some(settings.wrapped_key),
            )
        })
        .await
        .map_err(|e| backup::Error::Format(format!("backup start panicked: {e}")))??;
        let (stop, stopped) = std_mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("backup".into())
            .spawn(move || run(agent, interval, stopped, events))
            .map_err(|e| backup::Error::Io {
                path: "backup thread".into(),
                source: e,
            })?;
        Ok(BackupThread { stop, handle })
    }

    /// Stops the thread (after one last cycle if asked) and waits for it, so the engine
    /// handle and keys it holds are gone when this returns.
    pub(crate) async fn stop(self, last_cycle: bool) {
        let _ = self.stop.send(if last_cycle {
            Stop::AfterLastCycle
        } else {
            Stop::Now
        });
        let handle = self.handle;
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
}

fn run(
    mut agent: backup::Agent,
    interval: Duration,
    stopped: std_mpsc::Receiver<Stop>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut last: Option<BackupReport> = None;
    loop {
        let report = match agent.cycle() {
            Ok(status) => BackupReport {
                generation: status.generation,
                earliest_micros: status.earliest_micros,
                restorable_until_micros: status.restorable_until_micros,
                snapshots: status.snapshots,
                error: None,
            },
            Err(e) => {
                tracing::warn!(error = %e, "backup cycle failed; retrying");
                let status = agent.status(0);
                BackupReport {
                    generation: status.generation,
                    earliest_micros: status.earliest_micros,
                    restorable_until_micros: status.restorable_until_micros,
                    snapshots: status.snapshots,
                    error: Some(e.to_string()),
                }
            }
        };
        if last.as_ref() != Some(&report) {
            let _ = events.send(Event::Backup(report.clone()));
            last = Some(report);
        }
        match stopped.recv_timeout(interval) {
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Ok(Stop::AfterLastCycle) => {
                if let Ok(status) = agent.cycle() {
                    let _ = events.send(Event::Backup(BackupReport {
                        generation: status.generation,
                        earliest_micros: status.earliest_micros,
                        restorable_until_micros: status.restorable_until_micros,
                        snapshots: status.snapshots,
                        error: None,
                    }));
                }
                return;
            }
            Ok(Stop::Now) | Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}
