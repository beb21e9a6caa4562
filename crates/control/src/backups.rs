//! Backups from the control plane's side: unlocking a cluster's backups with its KEK,
//! point-in-time restore into a new cluster, and the `backups` / `backups/verify`
//! actions.
//!
//! A backup location holds the source cluster's root DEK wrapped by the source's KEK, so
//! everything here starts by asking the source's key vault — with the source's identity —
//! to unwrap it, after the same key checks a revalidation makes. A revoked, disabled or
//! expired key therefore locks the backups exactly as it locks the cluster.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use envelope::{KeyRequirements, RootDek, WrappedKeyStore};

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
    pub keys: backup::BackupKeys,
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

fn backup_error(source: &str, e: backup::Error) -> PlaneError {
    let code = match &e {
        backup::Error::OutOfRange(_) => "PointInTimeOutOfRange",
        backup::Error::Empty => "NoBackupAvailable",
        backup::Error::Tampered { .. }
        | backup::Error::CatalogTampered { .. }
        | backup::Error::RolledBack { .. } => "BackupDamaged",
        backup::Error::Storage(storage::Error::Corruption { .. }) => "BackupDamaged",
        _ => {
            return PlaneError::Internal(format!("the backups of '{source}': {e}"));
        }
    };
    PlaneError::BadRequest {
        code: code.into(),
        message: format!("The backups of '{source}' cannot be used: {e}"),
    }
}

impl Plane {
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
    ) -> Result<(PathBuf, backup::BackupKeys), PlaneError> {
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
        let keys = backup::BackupKeys::from_root_dek(dek.as_bytes())
            .map_err(|e| PlaneError::Internal(e.to_string()))?;
        Ok((location, keys))
    }

    pub(crate) async fn prepare_restore(
        &self,
        point_in_time_utc: &str,
        source_resource_id: &str,
    ) -> Result<RestoreSource, PlaneError> {
        let point_in_time_micros = parse_point_in_time(point_in_time_utc)?;
        let record = self.source_record(source_resource_id).await?;
        let min_generation = self.min_generation(&record);
        let (location, keys) = self.unlock_backups(&record).await?;
        Ok(RestoreSource {
            source: record.name.clone(),
            source_admin: record.admin_user.clone(),
            location,
            min_generation,
            point_in_time_micros,
            keys,
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

    /// Restores `source` into `target_dir` under the new cluster's root DEK, showing
    /// progress at `…/restoreStatus` and in the log.
    pub(crate) async fn run_restore(
        self: &Arc<Self>,
        target: &str,
        source: RestoreSource,
        target_dir: &Path,
        target_dek: &RootDek,
    ) -> Result<(), PlaneError> {
        let target_root = storage::RootKey::from_slice(target_dek.as_bytes())
            .map_err(|e| PlaneError::Internal(e.to_string()))?;
        let plane = self.clone();
        let name = target.to_string();
        let dir = target_dir.to_path_buf();
        let source_name = source.source.clone();
        let summary = tokio::task::spawn_blocking(move || {
            let store = backup::DirStore::open(&source.location)?;
            let mut last_logged = 0u32;
            let mut progress = |p: backup::RestoreProgress| {
                let percent = (p.done_bytes * 100)
                    .checked_div(p.total_bytes)
                    .map_or(100, |v| v as u32);
                plane.restores.lock().insert(
                    name.clone(),
                    RestoreStatus {
                        phase: format!("{:?}", p.phase),
                        done_bytes: p.done_bytes,
                        total_bytes: p.total_bytes,
                        percent,
                    },
                );
                if percent >= last_logged + 10 || percent == 100 {
                    last_logged = percent;
                    tracing::info!(cluster = %name, percent, phase = ?p.phase, "restoring");
                }
            };
            backup::restore(
                &store,
                &source.keys,
                source.min_generation,
                source.point_in_time_micros,
                &dir,
                target_root,
                storage::Options::default(),
                &mut progress,
            )
        })
        .await
        .map_err(|e| PlaneError::Internal(format!("restore task: {e}")))?
        .map_err(|e| backup_error(&source_name, e))?;
        tracing::info!(
            cluster = %target,
            source = %source_name,
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

    /// `backups`: what the cluster's backup holds (reads the sealed catalog).
    pub async fn backup_info(&self, name: &str) -> Result<backup::BackupInfo, PlaneError> {
        let record = self.record(name).await?;
        let min_generation = self.min_generation(&record);
        let (location, keys) = self.unlock_backups(&record).await?;
        tokio::task::spawn_blocking(move || {
            let store = backup::DirStore::open(&location)?;
            backup::describe(&store, &keys, min_generation)
        })
        .await
        .map_err(|e| PlaneError::Internal(format!("backup task: {e}")))?
        .map_err(|e| backup_error(name, e))
    }

    /// `backups/verify`: authenticates every byte of the cluster's backup.
    pub async fn verify_backup(&self, name: &str) -> Result<backup::VerifyReport, PlaneError> {
        let record = self.record(name).await?;
        let min_generation = self.min_generation(&record);
        let (location, keys) = self.unlock_backups(&record).await?;
        let report = tokio::task::spawn_blocking(move || {
            let store = backup::DirStore::open(&location)?;
            backup::verify(&store, &keys, min_generation)
        })
        .await
        .map_err(|e| PlaneError::Internal(format!("backup task: {e}")))?
        .map_err(|e| backup_error(name, e))?;
        Ok(report)
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
        let (location, keys) = self.unlock_backups(&record).await?;
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
        let wrapped_key_and_key = if req.plaintext {
            None
        } else {
            let envelope = self.envelope_for(&record)?;
            let state = envelope.kek().key_state().await?;
            KeyRequirements::default().check(&state)?;
            let key = RootDek::generate()?;
            let wrapped = envelope.kek().wrap(&state.kid, &key).await?;
            Some((wrapped, backup::ExportKey::from_bytes(key.as_bytes())))
        };
        let scratch = self
            .config()
            .data_dir
            .join("exports")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let scratch_key = RootDek::generate()?;
        let scratch_root = storage::RootKey::from_slice(scratch_key.as_bytes())
            .map_err(|e| PlaneError::Internal(e.to_string()))?;
        drop(scratch_key);
        let out = req.output_directory.clone();
        let cluster = name.to_string();
        let (wrapped_key, export_key) = match wrapped_key_and_key {
            Some((w, k)) => (Some(w), Some(k)),
            None => (None, None),
        };
        let summary = tokio::task::spawn_blocking(move || {
            // The export reads a restored copy (under a throwaway root key), never the
            // live cluster: it sees exactly the requested instant.
            let store = backup::DirStore::open(&location)?;
            let result = (|| {
                backup::restore(
                    &store,
                    &keys,
                    min_generation,
                    at,
                    &scratch,
                    scratch_root.clone(),
                    storage::Options::default(),
                    &mut |_| {},
                )?;
                let engine =
                    storage::Engine::open(&scratch, scratch_root, storage::Options::default())?;
                backup::export(engine, &out, export_key.as_ref(), &mut |docs| {
                    tracing::info!(cluster = %cluster, documents = docs, "exporting");
                })
            })();
            let _ = std::fs::remove_dir_all(&scratch);
            result
        })
        .await
        .map_err(|e| PlaneError::Internal(format!("export task: {e}")))?
        .map_err(|e| backup_error(name, e))?;
        let manifest = ExportManifest {
            format: 1,
            cluster: name.to_string(),
            point_in_time: backup::rfc3339(at),
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
        let export_key = backup::ExportKey::from_bytes(key.as_bytes());
        drop(key);
        let (input, output) = (req.input_directory.clone(), req.output_directory.clone());
        let bytes = tokio::task::spawn_blocking(move || {
            backup::decrypt_export(&input, &export_key, &output)
        })
        .await
        .map_err(|e| PlaneError::Internal(format!("decrypt task: {e}")))?
        .map_err(|e| backup_error(name, e))?;
        Ok(serde_json::json!({ "outputDirectory": req.output_directory, "bytes": bytes }))
    }
}
