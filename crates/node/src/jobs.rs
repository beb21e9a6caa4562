//! One-shot jobs over a cluster's data: describe and verify a backup, point-in-time
//! restore, export, and decrypting an export.
//!
//! Each runs in a process of its own (`strongroom node --job`), not in the supervisor
//! and not in the cluster's serving node: the control plane unwraps the keys a job needs
//! (it talks to the vaults) and hands them over as raw bytes in a `Job` frame; the job
//! opens the backup location or the engine files, reports progress and its result, and
//! exits, so the keys, the restored scratch copy's key and every plaintext buffer die
//! with the process. A job needs no serving node, so it works for a restore into a
//! cluster that does not exist yet and for a source whose node is down.

use std::path::Path;

use cluster::protocol::{Command, Event, JobFailure, JobKeys, JobSpec, read_command};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::events;
use crate::serve::NodeRunError;

/// Reads one `Job` from stdin, runs it, reports `JobDone` or `JobFailed` on stdout.
pub async fn run_job() -> Result<(), NodeRunError> {
    let mut input = tokio::io::stdin();
    let (events, writer) = events::spawn_writer();
    let (spec, keys) = match read_command(&mut input).await? {
        Some(Command::Job { spec, keys }) => (spec, keys),
        _ => {
            events::close(events, writer).await;
            return Err(NodeRunError::NoJob);
        }
    };
    let progress = events.clone();
    let outcome = tokio::task::spawn_blocking(move || run(spec, keys, &progress))
        .await
        .unwrap_or_else(|e| {
            Err(JobError {
                failure: JobFailure::Other,
                message: format!("the job panicked: {e}"),
            })
        });
    let _ = events.send(match outcome {
        Ok(result) => Event::JobDone { result },
        Err(JobError { failure, message }) => Event::JobFailed { failure, message },
    });
    events::close(events, writer).await;
    Ok(())
}

struct JobError {
    failure: JobFailure,
    message: String,
}

impl From<backup::Error> for JobError {
    fn from(e: backup::Error) -> JobError {
        let failure = match &e {
            backup::Error::OutOfRange(_) => JobFailure::OutOfRange,
            backup::Error::Empty => JobFailure::Empty,
            backup::Error::Tampered { .. }
            | backup::Error::CatalogTampered { .. }
            | backup::Error::RolledBack { .. }
            | backup::Error::Storage(storage::Error::Corruption { .. }) => JobFailure::Damaged,
            _ => JobFailure::Other,
        };
        JobError {
            failure,
            message: e.to_string(),
        }
    }
}

fn other(message: impl ToString) -> JobError {
    JobError {
        failure: JobFailure::Other,
        message: message.to_string(),
    }
}

fn key(key: Option<Zeroizing<[u8; 32]>>, what: &str) -> Result<Zeroizing<[u8; 32]>, JobError> {
    key.ok_or_else(|| other(format!("the job was not given the {what} key")))
}

fn backup_keys(keys: &mut JobKeys) -> Result<backup::BackupKeys, JobError> {
    let dek = key(keys.backup.take(), "backup")?;
    Ok(backup::BackupKeys::from_root_dek(&dek)?)
}

fn root_key(dek: Zeroizing<[u8; 32]>) -> Result<storage::RootKey, JobError> {
    storage::RootKey::from_slice(dek.as_ref()).map_err(other)
}

fn json(value: &impl serde::Serialize) -> Result<String, JobError> {
    serde_json::to_string(value).map_err(other)
}

fn run(
    spec: JobSpec,
    mut keys: JobKeys,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<String, JobError> {
    let progress = |phase: &str, done: u64, total: u64| {
        let _ = events.send(Event::JobProgress {
            phase: phase.to_string(),
            done,
            total,
        });
    };
    match spec {
        JobSpec::Describe {
            location,
            min_generation,
        } => report(&mut keys, &location, min_generation, backup::describe),
        JobSpec::Verify {
            location,
            min_generation,
        } => report(&mut keys, &location, min_generation, backup::verify),
        JobSpec::Restore {
            location,
            min_generation,
            point_in_time_micros,
            target_dir,
        } => {
            let source = backup_keys(&mut keys)?;
            let target = root_key(key(keys.target.take(), "target")?)?;
            let store = backup::DirStore::open(&location)?;
            let summary = backup::restore(
                &store,
                &source,
                min_generation,
                point_in_time_micros,
                &target_dir,
                target,
                storage::Options::default(),
                &mut |p| progress(&format!("{:?}", p.phase), p.done_bytes, p.total_bytes),
            )?;
            json(&summary)
        }
        JobSpec::Export {
            location,
            min_generation,
            point_in_time_micros,
            scratch_dir,
            output_dir,
        } => {
            let source = backup_keys(&mut keys)?;
            let export_key = keys
                .export
                .take()
                .map(|k| backup::ExportKey::from_bytes(&k));
            let result = export(
                &location,
                &source,
                min_generation,
                point_in_time_micros,
                &scratch_dir,
                &output_dir,
                export_key.as_ref(),
                &mut |docs| progress("Exporting", docs, 0),
            );
            let _ = std::fs::remove_dir_all(&scratch_dir);
            json(&result?)
        }
        JobSpec::DecryptExport {
            input_dir,
            output_dir,
        } => {
            let export_key = backup::ExportKey::from_bytes(&*key(keys.export.take(), "export")?);
            json(&backup::decrypt_export(
                &input_dir,
                &export_key,
                &output_dir,
            )?)
        }
    }
}

/// Reads a backup location with its root DEK and answers with `read`'s report.
fn report<T: serde::Serialize>(
    keys: &mut JobKeys,
    location: &Path,
    min_generation: u64,
    read: fn(&dyn backup::Store, &backup::BackupKeys, u64) -> backup::Result<T>,
) -> Result<String, JobError> {
    let keys = backup_keys(keys)?;
    let store = backup::DirStore::open(location)?;
    json(&read(&store, &keys, min_generation)?)
}

/// The export reads a restored copy (under a throwaway root key), never the live
/// cluster: it sees exactly the requested instant.
#[allow(clippy::too_many_arguments)]
fn export(
    location: &Path,
    source: &backup::BackupKeys,
    min_generation: u64,
    at: u64,
    scratch: &Path,
    out: &Path,
    key: Option<&backup::ExportKey>,
    progress: &mut dyn FnMut(u64),
) -> Result<backup::ExportSummary, JobError> {
    let mut throwaway = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(throwaway.as_mut()).map_err(|_| other("no randomness"))?;
    let scratch_root = root_key(throwaway)?;
    let store = backup::DirStore::open(location)?;
    backup::restore(
        &store,
        source,
        min_generation,
        at,
        scratch,
        scratch_root.clone(),
        storage::Options::default(),
        &mut |_| {},
    )?;
    let engine = storage::Engine::open(scratch, scratch_root, storage::Options::default())
        .map_err(backup::Error::from)?;
    Ok(backup::export(engine, out, key, progress)?)
}
