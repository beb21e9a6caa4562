//! Backups from the control plane's side: unlocking a cluster's backups with its KEK,
//! point-in-time restore into a new cluster, the `backups` / `backups/verify` actions,
//! and exports.
//!
//! A backup location holds the source cluster's root DEK wrapped by the source's KEK, so
//! everything here starts by asking the source's key vault — with the source's identity —
//! to unwrap it, after the same key checks a revalidation makes. A revoked, disabled or
//! expired key therefore locks the backups exactly as it locks the cluster.
//!
//! The control plane never opens a backup or an engine itself: every action that reads
//! or writes a cluster's data runs as a one-shot job process (`strongroom node --job`,
//! [`cluster::supervisor::run_job`]), handed the keys it needs as raw bytes. Here the
//! keys are only unwrapped, handed over and dropped (zeroized).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cluster::protocol::{JobFailure, JobKeys, JobSpec};
use cluster::supervisor::NodeError;
use envelope::{KeyRequirements, RootDek, WrappedKeyStore};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::PlaneError;
use crate::plane::{Plane, RestoreStatus};
use crate::registry::ClusterRecord;

/// What a restore needs from its source, gathered before anything is created.
pub(crate) struct RestoreSource {
    pub source: String,
    pub source_admin: Option<String>,
    pub location: PathBuf,
    pub min_generation: u64,
    pub point_in_time_micros: u64,
    /// The source's root DEK, for the restore job.
    pub dek: RootDek,
}

fn parse_point_in_time(text: &str) -> Result<u64, PlaneError> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| PlaneError::BadRequest {
            code: "InvalidRestoreParameters".into(),
            message: format!(
                "restoreParameters.pointInTimeUTC '{text}' is not an RFC 3339 UTC time: {e}"
            ),
        })?;
    let micros = t.unix_timestamp_nanos() / 1000;
    u64::try_from(micros).map_err(|_| PlaneError::BadRequest {
        code: "InvalidRestoreParameters".into(),
        message: format!("restoreParameters.pointInTimeUTC '{text}' is before 1970."),
    })
}

/// A failed job as the API reports it; `what` names the job for errors of the process
/// itself (it could not start, it died).
fn job_error(source: &str, what: &str, e: NodeError) -> PlaneError {
    let (failure, message) = match e {
        NodeError::JobFailed { failure, message } => (failure, message),
        other => return PlaneError::Internal(format!("{what} job: {other}")),
    };
    let code = match failure {
        JobFailure::OutOfRange => "PointInTimeOutOfRange",
        JobFailure::Empty => "NoBackupAvailable",
        JobFailure::Damaged => "BackupDamaged",
        JobFailure::Other => {
            return PlaneError::Internal(format!("the backups of '{source}': {message}"));
        }
    };
    PlaneError::BadRequest {
        code: code.into(),
        message: format!("The backups of '{source}' cannot be used: {message}"),
    }
}

/// A job's raw 32-byte copy of a key, for its `Job` frame.
fn job_key(dek: &RootDek) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(*dek.as_bytes())
}

/// The parts of a job's JSON result the control plane reads.
fn job_result<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, PlaneError> {
    serde_json::from_str(text).map_err(|e| PlaneError::Internal(format!("{what} job: {e}")))
}

/// What a restore job reports (`backup::RestoreSummary`, the fields logged here).
#[derive(serde::Deserialize)]
struct RestoreDone {
    tables: usize,
    wal_records: u64,
    table_bytes: u64,
    wal_bytes: u64,
    elapsed_ms: u64,
}

/// What an export job reports (`backup::ExportSummary`, the fields the manifest keeps).
#[derive(serde::Deserialize)]
struct ExportDone {
    collections: usize,
    documents: u64,
    bytes: u64,
}

impl Plane {
    /// Runs one job in a process of its own (`strongroom node --job`).
    async fn job(
        &self,
        spec: JobSpec,
        keys: JobKeys,
        progress: &mut (dyn FnMut(&str, u64, u64) + Send),
    ) -> Result<String, NodeError> {
        let node = &self.config().node;
        let mut args = node.args.clone();
        args.push("--job".into());
        cluster::supervisor::run_job(&node.program, &args, spec, keys, progress).await
    }

    /// The source cluster a `sourceResourceId` names (by its ARM id, or its name).
    async fn source_record(&self, source_resource_id: &str) -> Result<ClusterRecord, PlaneError> {
        let name = source_resource_id
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        let record = self.record(name).await.map_err(|_| PlaneError::BadRequest {
            code: "SourceClusterNotFound".into(),
            message: format!(
                "restoreParameters.sourceResourceId '{source_resource_id}' does not name an existing cluster."
            ),
        })?;
        if !record.resource_id.eq_ignore_ascii_case(source_resource_id)
            && source_resource_id.contains('/')
        {
            return Err(PlaneError::BadRequest {
                code: "SourceClusterNotFound".into(),
                message: format!(
                    "restoreParameters.sourceResourceId '{source_resource_id}' does not name an existing cluster."
                ),
            });
        }
        Ok(record)
    }

    /// Unwraps the root DEK mirrored in a cluster's backup location with the cluster's
    /// KEK, after checking the key the way a revalidation does.
    pub(crate) async fn unlock_backups(
        &self,
        record: &ClusterRecord,
    ) -> Result<(PathBuf, RootDek), PlaneError> {
        let location = self
            .backup_location(record)
            .ok_or_else(|| PlaneError::BadRequest {
                code: "NoBackupAvailable".into(),
                message: format!("Cluster '{}' has no backups.", record.name),
            })?;
        let key_dir = location.join("key");
        let (current, previous) =
            WrappedKeyStore::new(&key_dir)
                .load()?
                .ok_or_else(|| PlaneError::BadRequest {
                    code: "NoBackupAvailable".into(),
                    message: format!("Cluster '{}' has no backup yet.", record.name),
                })?;
        let envelope = self.envelope_for(record)?;
        let kek = envelope.kek();
        let locked = |e: envelope::KekError, kid: &str| PlaneError::BadRequest {
            code: "BackupKeyUnavailable".into(),
            message: format!(
                "The backups of '{}' are protected by key {kid}, which is unavailable: {}: {e}",
                record.name,
                e.reason()
            ),
        };
        let state = kek.key_state().await.map_err(|e| locked(e, &current.kid))?;
        KeyRequirements::default()
            .check(&state)
            .map_err(|e| locked(e, &current.kid))?;
        let dek: RootDek = match kek.unwrap(&current).await {
            Ok(dek) => dek,
            Err(first) => {
                let mut found = None;
                for w in &previous {
                    if let Ok(dek) = kek.unwrap(w).await {
                        found = Some(dek);
                        break;
                    }
                }
                found.ok_or_else(|| locked(first, &current.kid))?
            }
        };
        Ok((location, dek))
    }

    pub(crate) async fn prepare_restore(
        &self,
        point_in_time_utc: &str,
        source_resource_id: &str,
    ) -> Result<RestoreSource, PlaneError> {
        let point_in_time_micros = parse_point_in_time(point_in_time_utc)?;
        let record = self.source_record(source_resource_id).await?;
        let min_generation = self.min_generation(&record);
        let (location, dek) = self.unlock_backups(&record).await?;
        Ok(RestoreSource {
            source: record.name.clone(),
            source_admin: record.admin_user.clone(),
            location,
            min_generation,
            point_in_time_micros,
            dek,
        })
    }

    /// The rollback floor for a cluster's backup catalog.
    fn min_generation(&self, record: &ClusterRecord) -> u64 {
        let reported = self
            .runtime(&record.name)
            .and_then(|r| r.backup_report())
            .map(|r| r.generation)
            .unwrap_or(0);
        reported.max(record.backup_generation)
    }

    /// Restores `source` into `target_dir` under the new cluster's root DEK (a restore
    /// job), showing progress at `…/restoreStatus` and in the log.
    pub(crate) async fn run_restore(
        self: &Arc<Self>,
        target: &str,
        source: RestoreSource,
        target_dir: &Path,
        target_dek: &RootDek,
    ) -> Result<(), PlaneError> {
        let keys = JobKeys {
            backup: Some(job_key(&source.dek)),
            target: Some(job_key(target_dek)),
            export: None,
        };
        drop(source.dek);
        let spec = JobSpec::Restore {
            location: source.location,
            min_generation: source.min_generation,
            point_in_time_micros: source.point_in_time_micros,
            target_dir: target_dir.to_path_buf(),
        };
        let mut last_logged = 0u32;
        let mut progress = |phase: &str, done_bytes: u64, total_bytes: u64| {
            let percent = (done_bytes * 100)
                .checked_div(total_bytes)
                .map_or(100, |v| v as u32);
            self.restores.lock().insert(
                target.to_string(),
                RestoreStatus {
                    phase: phase.to_string(),
                    done_bytes,
                    total_bytes,
                    percent,
                },
            );
            if percent >= last_logged + 10 || percent == 100 {
                last_logged = percent;
                tracing::info!(cluster = %target, percent, phase, "restoring");
            }
        };
        let result = self
            .job(spec, keys, &mut progress)
            .await
            .map_err(|e| job_error(&source.source, "restore", e))?;
        let summary: RestoreDone = job_result("restore", &result)?;
        tracing::info!(
            cluster = %target,
            source = %source.source,
            tables = summary.tables,
            wal_records = summary.wal_records,
            bytes = summary.table_bytes + summary.wal_bytes,
            ms = summary.elapsed_ms,
            "point-in-time restore complete"
        );
        Ok(())
    }

    pub fn restore_status(&self, name: &str) -> Option<RestoreStatus> {
        self.restores.lock().get(name).cloned()
    }

    /// `backups`: what the cluster's backup holds (a job reads the sealed catalog;
    /// its report is passed on as it wrote it).
    pub async fn backup_info(&self, name: &str) -> Result<Box<RawValue>, PlaneError> {
        let record = self.record(name).await?;
        let min_generation = self.min_generation(&record);
        let (location, dek) = self.unlock_backups(&record).await?;
        let spec = JobSpec::Describe {
            location,
            min_generation,
        };
        self.backup_report_job(name, spec, dek).await
    }

    /// `backups/verify`: authenticates every byte of the cluster's backup (a job).
    pub async fn verify_backup(&self, name: &str) -> Result<Box<RawValue>, PlaneError> {
        let record = self.record(name).await?;
        let min_generation = self.min_generation(&record);
        let (location, dek) = self.unlock_backups(&record).await?;
        let spec = JobSpec::Verify {
            location,
            min_generation,
        };
        self.backup_report_job(name, spec, dek).await
    }

    /// Runs a job that reads a backup with its root DEK and answers with a report.
    async fn backup_report_job(
        &self,
        name: &str,
        spec: JobSpec,
        dek: RootDek,
    ) -> Result<Box<RawValue>, PlaneError> {
        let keys = JobKeys {
            backup: Some(job_key(&dek)),
            ..JobKeys::default()
        };
        drop(dek);
        let report = self
            .job(spec, keys, &mut |_, _, _| {})
            .await
            .map_err(|e| job_error(name, "backup", e))?;
        RawValue::from_string(report).map_err(|e| PlaneError::Internal(format!("backup job: {e}")))
    }
}

/// `backups/export`: what to export and how.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportRequest {
    /// An empty (or absent) directory on the server's file system.
    pub output_directory: PathBuf,
    /// RFC 3339; the newest restorable instant when omitted.
    #[serde(default, rename = "pointInTimeUTC")]
    pub point_in_time_utc: Option<String>,
    /// Write plaintext BSON (the operator's explicit choice); encrypted otherwise.
    #[serde(default)]
    pub plaintext: bool,
}

/// `backups/decryptExport`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecryptExportRequest {
    pub input_directory: PathBuf,
    pub output_directory: PathBuf,
}

/// `export.json`, next to the exported files.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportManifest {
    pub format: u32,
    pub cluster: String,
    pub point_in_time: String,
    pub encrypted: bool,
    /// The export key, wrapped by the cluster's KEK (encrypted exports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_key: Option<envelope::WrappedDek>,
    pub collections: usize,
    pub documents: u64,
    pub bytes: u64,
}

const EXPORT_MANIFEST: &str = "export.json";

impl Plane {
    /// Exports a cluster as of a restore point to a `mongodump`-layout directory,
    /// encrypted under a fresh key wrapped by the cluster's KEK unless `plaintext`.
    pub async fn export_backup(
        self: &Arc<Self>,
        name: &str,
        req: ExportRequest,
    ) -> Result<ExportManifest, PlaneError> {
        let record = self.record(name).await?;
        let min_generation = self.min_generation(&record);
        let (location, dek) = self.unlock_backups(&record).await?;
        let at = match &req.point_in_time_utc {
            Some(t) => parse_point_in_time(t)?,
            None => self
                .runtime(name)
                .and_then(|r| r.backup_report())
                .map(|r| r.restorable_until_micros)
                .filter(|t| *t > 0)
                .ok_or_else(|| PlaneError::BadRequest {
                    code: "NoBackupAvailable".into(),
                    message: format!("Cluster '{name}' has no restorable backup yet."),
                })?,
        };
        let (wrapped_key, export_key) = if req.plaintext {
            (None, None)
        } else {
            let envelope = self.envelope_for(&record)?;
            let state = envelope.kek().key_state().await?;
            KeyRequirements::default().check(&state)?;
            let key = RootDek::generate()?;
            let wrapped = envelope.kek().wrap(&state.kid, &key).await?;
            (Some(wrapped), Some(job_key(&key)))
        };
        let keys = JobKeys {
            backup: Some(job_key(&dek)),
            target: None,
            export: export_key,
        };
        drop(dek);
        let spec = JobSpec::Export {
            location,
            min_generation,
            point_in_time_micros: at,
            // The job restores a copy as of `at` here (under a throwaway key of its own)
            // and removes it when done.
            scratch_dir: self
                .config()
                .data_dir
                .join("exports")
                .join(uuid::Uuid::new_v4().simple().to_string()),
            output_dir: req.output_directory.clone(),
        };
        let result = self
            .job(spec, keys, &mut |_, documents, _| {
                tracing::info!(cluster = %name, documents, "exporting");
            })
            .await
            .map_err(|e| job_error(name, "export", e))?;
        let summary: ExportDone = job_result("export", &result)?;
        let manifest = ExportManifest {
            format: 1,
            cluster: name.to_string(),
            point_in_time: crate::plane::micros_rfc3339(at),
            encrypted: wrapped_key.is_some(),
            wrapped_key,
            collections: summary.collections,
            documents: summary.documents,
            bytes: summary.bytes,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| PlaneError::Internal(e.to_string()))?;
        sealed::write_atomic(&req.output_directory.join(EXPORT_MANIFEST), &json, 0o600)?;
        self.audit(
            audit::AuditEvent::now(
                audit::EventKind::ExportCreated,
                audit::Outcome::Success,
                format!(
                    "{} export as of {} to {}",
                    if manifest.encrypted {
                        "encrypted"
                    } else {
                        "PLAINTEXT"
                    },
                    manifest.point_in_time,
                    req.output_directory.display()
                ),
            )
            .cluster(name),
        );
        Ok(manifest)
    }

    /// Turns an encrypted export back into a plain dump (for `mongorestore`), unwrapping
    /// its key with the cluster's KEK.
    pub async fn decrypt_export(
        &self,
        name: &str,
        req: DecryptExportRequest,
    ) -> Result<serde_json::Value, PlaneError> {
        let record = self.record(name).await?;
        let manifest_path = req.input_directory.join(EXPORT_MANIFEST);
        let bytes = std::fs::read(&manifest_path).map_err(|e| PlaneError::BadRequest {
            code: "InvalidExport".into(),
            message: format!("{}: {e}", manifest_path.display()),
        })?;
        let manifest: ExportManifest =
            serde_json::from_slice(&bytes).map_err(|e| PlaneError::BadRequest {
                code: "InvalidExport".into(),
                message: format!("{}: {e}", manifest_path.display()),
            })?;
        let wrapped = manifest.wrapped_key.ok_or_else(|| PlaneError::BadRequest {
            code: "InvalidExport".into(),
            message: "This export is not encrypted.".into(),
        })?;
        let envelope = self.envelope_for(&record)?;
        let key = envelope
            .kek()
            .unwrap(&wrapped)
            .await
            .map_err(|e| PlaneError::BadRequest {
                code: "BackupKeyUnavailable".into(),
                message: format!(
                    "The export is protected by key {}, which is unavailable: {}: {e}",
                    wrapped.kid,
                    e.reason()
                ),
            })?;
        let keys = JobKeys {
            export: Some(job_key(&key)),
            ..JobKeys::default()
        };
        drop(key);
        let spec = JobSpec::DecryptExport {
            input_dir: req.input_directory.clone(),
            output_dir: req.output_directory.clone(),
        };
        let result = self
            .job(spec, keys, &mut |_, _, _| {})
            .await
            .map_err(|e| job_error(name, "decrypt", e))?;
        let bytes: u64 = job_result("decrypt", &result)?;
        Ok(serde_json::json!({ "outputDirectory": req.output_directory, "bytes": bytes }))
    }
}
