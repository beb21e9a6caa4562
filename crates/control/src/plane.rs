//! The control plane proper: the cluster registry, create/update/delete, and the
//! runtimes whose revalidation loops keep every cluster's state true.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cluster::protocol::{BackupSettings, OpenParams};
use cluster::supervisor::NodeExit;
use envelope::{AzureKeyVault, Envelope, KekError, KeyUrl, Reason, WrappedKeyStore};
use parking_lot::RwLock;
use platform::token::{IdentitySelector, ManagedIdentityTokens};
use zeroize::Zeroizing;

use crate::PlaneError;
use crate::model::*;
use crate::registry::{AttachedIdentity, ClusterRecord, Registry, State};
use crate::runtime::{AdminPasswordRefused, CrashCause, NodeHealth, NodeSettings, Runtime, Status};
use crate::smk::{SERVICE_IDENTITY, SERVICE_RESOURCE_GROUP, ServiceKeys, ServiceVault};
use crate::validate::{self, CmkReference, CreateMode, EncryptionMode, Existing, ValidationError};

/// How the control plane runs.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: Arc<rustls::ServerConfig>,
    pub ca_pem: String,
    /// Where clients find the CA certificate (put in connection strings).
    pub ca_path: PathBuf,
    pub identity_url: String,
    /// The principal the control plane acts as towards the identity service and the
    /// service vault (an admin service principal).
    pub admin: identity::Credentials,
    /// Principals allowed to call the management API.
    pub admin_object_ids: Vec<String>,
    /// Client certificate presented to key vaults: marks the control plane as a trusted
    /// service for vault firewalls with the AzureServices bypass.
    pub trusted_service: pki::CertifiedKey,
    /// The key vault service's management endpoint (for the service vault).
    pub keyvault_mgmt_url: String,
    pub subscription: String,
    pub location: String,
    pub node: NodeSettings,
    /// `timeAfterCreate` of SMK keys' rotation policy (ISO 8601 duration).
    pub smk_rotate_after: String,
    /// Timeout of each call to a vault or the identity service.
    pub vault_timeout: Duration,
    pub backup: BackupConfig,
    /// Where the encrypted security audit log lives (none: no audit log).
    pub audit_dir: Option<PathBuf>,
}

/// Continuous backup of every cluster.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// Each cluster backs up into its own folder under this directory.
    pub root: PathBuf,
    /// How often WAL is archived: the recovery point objective.
    pub archive_interval: Duration,
    pub snapshot_interval: Duration,
    /// How far back a point-in-time restore can go (Azure's default: 35 days).
    pub retention: Duration,
}

/// Everything the control plane keeps about the service's own keys.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceState {
    vault: ServiceVault,
    resource_secret: Zeroizing<String>,
}

/// A cluster's runtime and the task running its revalidation loop.
type Running = (Arc<Runtime>, tokio::task::JoinHandle<()>);

pub struct Plane {
    cfg: Config,
    registry: Registry,
    state: tokio::sync::Mutex<State>,
    runtimes: RwLock<BTreeMap<String, Running>>,
    vault_http: reqwest::Client,
    identity_admin: identity::client::AdminClient,
    service: ServiceState,
    service_keys: ServiceKeys,
    /// Restores in progress, by target cluster name (shown while the create is pending).
    pub(crate) restores: parking_lot::Mutex<BTreeMap<String, RestoreStatus>>,
    audit: Option<Arc<crate::audit_trail::AuditTrail>>,
}

/// Where a point-in-time restore is (served at `…/restoreStatus`).
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    pub phase: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub percent: u32,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn bad_request(e: ValidationError) -> PlaneError {
    PlaneError::BadRequest {
        code: e.code.to_string(),
        message: e.message,
    }
}

/// Splits `/subscriptions/{s}/resourceGroups/{g}/providers/…/{type}/{name}`.
fn parse_identity_id(id: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = id.split('/').collect();
    match parts.as_slice() {
        ["", _, sub, _, rg, _, _, _, name] => {
            Some((sub.to_string(), rg.to_string(), name.to_string()))
        }
        _ => None,
    }
}

/// The ARM error for a key that cannot protect a new cluster.
fn key_rejection(e: &KekError) -> PlaneError {
    let code = match e.reason() {
        Reason::KeyDisabled => "AzureKeyVaultKeyDisabled",
        Reason::KeyExpired => "AzureKeyVaultKeyExpired",
        Reason::KeyNotYetActive => "AzureKeyVaultKeyNotYetActive",
        Reason::KeyDeleted => "AzureKeyVaultKeyNameNotFound",
        Reason::KeyInvalid => "InvalidKeyEncryptionKey",
        Reason::VaultDeleted | Reason::VaultUnreachable => "AzureKeyVaultUnreachable",
        Reason::FirewallDenied => "AzureKeyVaultForbiddenByFirewall",
        Reason::IdentityDeleted => "UserAssignedIdentityNotFound",
        Reason::AccessDenied => "AzureKeyVaultAccessDenied",
        Reason::Unauthenticated => "AzureKeyVaultUnauthenticated",
        Reason::WrappedKeyRejected | Reason::Internal => "KeyEncryptionKeyValidationFailed",
    };
    let message = match e.reason() {
        Reason::KeyDeleted => format!(
            "The operation could not be completed because the Azure Key Vault Key does not exist or User Assigned Identity does not have Get access to the Key: {e}"
        ),
        Reason::AccessDenied => format!(
            "The User Assigned Identity needs get, wrapKey and unwrapKey permissions on the key (RBAC role 'Key Vault Crypto Service Encryption User'): {e}"
        ),
        _ => e.to_string(),
    };
    PlaneError::BadRequest {
        code: code.to_string(),
        message,
    }
}

impl Plane {
    /// Opens the registry, sets up the service-managed key infrastructure, and starts a
    /// runtime (and its node) for every existing cluster.
    pub async fn start(cfg: Config) -> Result<Arc<Plane>, PlaneError> {
        std::fs::create_dir_all(cfg.data_dir.join("clusters"))
            .map_err(|e| PlaneError::Internal(format!("{}: {e}", cfg.data_dir.display())))?;
        let master = sealed::MasterKey::load_or_create(&cfg.data_dir.join("master.key"))?;
        let registry = Registry::open(&cfg.data_dir, &master);
        let audit = match &cfg.audit_dir {
            Some(dir) => Some(Arc::new(crate::audit_trail::AuditTrail::open(
                dir,
                &cfg.data_dir,
                &master,
                master.derive(crate::audit_trail::AUDIT_KEY_PURPOSE),
            )?)),
            None => None,
        };
        let state = registry.load()?;
        let vault_http = platform::https_client(
            &cfg.ca_pem,
            Some(&cfg.trusted_service),
            platform::ClientOptions::timeout(cfg.vault_timeout),
        )
        .map_err(|e| PlaneError::Internal(format!("vault HTTP client: {e}")))?;
        let identity_admin =
            identity::client::AdminClient::new(&cfg.identity_url, &cfg.ca_pem, &cfg.admin)
                .map_err(|e| PlaneError::Internal(format!("identity admin client: {e}")))?;
        let service_keys = ServiceKeys {
            http: vault_http.clone(),
            mgmt_url: cfg.keyvault_mgmt_url.trim_end_matches('/').to_string(),
            subscription: cfg.subscription.clone(),
            location: cfg.location.clone(),
            tenant_id: cfg.admin.tenant_id.clone(),
        };
        let service_file = sealed::SealedJson::<ServiceState>::new(
            cfg.data_dir.join("service.sealed"),
            &master,
            b"SRSVC1",
        );
        let service = match service_file.load()? {
            Some(s) => s,
            None => {
                let s = Self::bootstrap_service(&cfg, &identity_admin, &service_keys).await?;
                service_file.store(&s)?;
                s
            }
        };
        let plane = Arc::new(Plane {
            cfg,
            registry,
            state: tokio::sync::Mutex::new(state),
            runtimes: RwLock::new(BTreeMap::new()),
            vault_http,
            identity_admin,
            service,
            service_keys,
            restores: parking_lot::Mutex::new(BTreeMap::new()),
            audit,
        });
        let records: Vec<ClusterRecord> = plane
            .state
            .lock()
            .await
            .clusters
            .values()
            .cloned()
            .collect();
        for record in records {
            let envelope = plane.envelope_for(&record)?;
            plane.launch(&record, envelope, None);
        }
        Ok(plane)
    }

    async fn bootstrap_service(
        cfg: &Config,
        admin: &identity::client::AdminClient,
        keys: &ServiceKeys,
    ) -> Result<ServiceState, PlaneError> {
        let idf = |e: identity::Error| PlaneError::Internal(format!("service identity: {e}"));
        let identity = admin
            .create_managed_identity(
                &cfg.subscription,
                SERVICE_RESOURCE_GROUP,
                SERVICE_IDENTITY,
                &cfg.location,
            )
            .await
            .map_err(idf)?;
        let resource = control_resource_id(&cfg.subscription);
        admin.attach(&resource, &identity.id).await.map_err(idf)?;
        let secret = admin.issue_resource_secret(&resource).await.map_err(idf)?;
        let token = admin
            .token("https://management.azure.com/.default")
            .await
            .map_err(idf)?;
        let vault_uri = keys
            .ensure_vault(
                token.token.as_str(),
                &identity.principal_id,
                &cfg.admin.object_id,
            )
            .await?;
        tracing::info!(%vault_uri, "service-managed key vault ready");
        Ok(ServiceState {
            vault: ServiceVault {
                vault_uri,
                identity_resource_id: identity.id,
            },
            resource_secret: secret,
        })
    }

    fn tokens(&self, secret: &Zeroizing<String>, identity_id: &str) -> Arc<ManagedIdentityTokens> {
        Arc::new(ManagedIdentityTokens::new(
            self.vault_http.clone(),
            format!("{}/msi/token", self.cfg.identity_url.trim_end_matches('/')),
            secret.clone(),
            IdentitySelector::ResourceId(identity_id.to_string()),
        ))
    }

    fn cluster_dir(&self, name: &str) -> PathBuf {
        self.cfg.data_dir.join("clusters").join(name)
    }

    /// The envelope of a cluster as its record describes it.
    pub(crate) fn envelope_for(&self, record: &ClusterRecord) -> Result<Envelope, PlaneError> {
        let (key_url, tokens) = match &record.mode {
            EncryptionMode::CustomerManaged(cmk) => {
                let secret = record.resource_secret.as_ref().ok_or_else(|| {
                    PlaneError::Internal(format!("cluster {} has no identity secret", record.name))
                })?;
                (
                    cmk.key_url.clone(),
                    self.tokens(secret, &cmk.identity_resource_id),
                )
            }
            EncryptionMode::ServiceManaged => {
                let url = record.service_key_url.clone().ok_or_else(|| {
                    PlaneError::Internal(format!("cluster {} has no service key", record.name))
                })?;
                let tokens = self.tokens(
                    &self.service.resource_secret,
                    &self.service.vault.identity_resource_id,
                );
                (url, tokens)
            }
        };
        let kek = AzureKeyVault::new(self.vault_http.clone(), KeyUrl::parse(&key_url)?, tokens);
        Ok(Envelope::new(
            Arc::new(kek),
            WrappedKeyStore::new(self.cluster_dir(&record.name)),
        ))
    }

    pub(crate) fn backup_location(&self, record: &ClusterRecord) -> Option<PathBuf> {
        record
            .backup_id
            .as_ref()
            .map(|id| self.cfg.backup.root.join(id))
    }

    fn backup_settings(&self, record: &ClusterRecord) -> Option<BackupSettings> {
        let location = self.backup_location(record)?;
        Some(BackupSettings {
            location,
            wrapped_key: WrappedKeyStore::new(self.cluster_dir(&record.name)).path(),
            archive_interval_ms: self.cfg.backup.archive_interval.as_millis() as u64,
            snapshot_interval_secs: self.cfg.backup.snapshot_interval.as_secs().max(1),
            retention_secs: self.cfg.backup.retention.as_secs(),
            min_generation: record.backup_generation,
        })
    }

    fn launch(
        self: &Arc<Self>,
        record: &ClusterRecord,
        envelope: Envelope,
        admin: Option<OpenParams>,
    ) -> Arc<Runtime> {
        let (notices, mut incoming) = tokio::sync::mpsc::unbounded_channel();
        let runtime = Runtime::new(
            record.name.clone(),
            self.cluster_dir(&record.name),
            record.port,
            self.cfg.node.clone(),
            envelope,
            admin,
            self.backup_settings(record),
            notices,
        );
        let task = tokio::spawn(runtime.clone().run());
        // Node notices: backup progress (kept, and its generation persisted as the
        // rollback floor) and audit events.
        let plane = Arc::downgrade(self);
        let name = record.name.clone();
        let weak_runtime = Arc::downgrade(&runtime);
        tokio::spawn(async move {
            let mut persisted: Option<std::time::Instant> = None;
            while let Some(event) = incoming.recv().await {
                let (Some(plane), Some(runtime)) = (plane.upgrade(), weak_runtime.upgrade()) else {
                    break;
                };
                match event {
                    cluster::protocol::Event::Backup(report) => {
                        if let Some(error) = &report.error {
                            tracing::warn!(cluster = %name, %error, "backup cycle failed");
                        }
                        let generation = report.generation;
                        runtime.set_backup_report(report);
                        // The floor only has to trail the location closely enough to
                        // catch a rollback by more than a minute; persisting it costs
                        // a sealed rewrite and an fsync of the whole registry.
                        if persisted.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                            persisted = Some(std::time::Instant::now());
                            plane.persist_backup_generation(&name, generation).await;
                        }
                    }
                    cluster::protocol::Event::Audit(notice) => plane.node_audit(&name, notice),
                    cluster::protocol::Event::ReadOnly { reason, .. } => {
                        tracing::error!(cluster = %name, %reason, "cluster is read-only");
                        runtime.set_read_only_reason(Some(reason));
                    }
                    cluster::protocol::Event::Writable => {
                        tracing::info!(cluster = %name, "cluster takes writes again");
                        runtime.set_read_only_reason(None);
                    }
                    _ => {}
                }
            }
        });
        self.runtimes
            .write()
            .insert(record.name.clone(), (runtime.clone(), task));
        runtime
    }

    pub(crate) fn config(&self) -> &Config {
        &self.cfg
    }

    pub(crate) fn audit_trail(&self) -> Option<&Arc<crate::audit_trail::AuditTrail>> {
        self.audit.as_ref()
    }

    async fn persist_backup_generation(&self, name: &str, generation: u64) {
        let mut state = self.state.lock().await;
        if let Some(r) = state.clusters.get_mut(name)
            && generation > r.backup_generation
        {
            r.backup_generation = generation;
            if let Err(e) = self.registry.store(&state) {
                tracing::warn!(cluster = %name, error = %e, "backup generation not recorded");
            }
        }
    }

    pub fn runtime(&self, name: &str) -> Option<Arc<Runtime>> {
        self.runtimes.read().get(name).map(|(r, _)| r.clone())
    }

    /// Looks up the identities of a request and checks they are usable by this service.
    async fn resolve_identities(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, AttachedIdentity>, PlaneError> {
        let mut out = BTreeMap::new();
        for id in ids {
            let (sub, rg, name) = parse_identity_id(id).ok_or_else(|| PlaneError::BadRequest {
                code: "InvalidUserAssignedIdentity".into(),
                message: format!("'{id}' is not a user-assigned managed identity resource id."),
            })?;
            let info = self
                .identity_admin
                .get_managed_identity(&sub, &rg, &name)
                .await
                .map_err(|e| PlaneError::Internal(format!("identity service: {e}")))?
                .ok_or_else(|| PlaneError::BadRequest {
                    code: "UserAssignedIdentityNotFound".into(),
                    message: format!("The user-assigned managed identity '{id}' does not exist."),
                })?;
            if info.tenant_id != self.cfg.admin.tenant_id {
                return Err(PlaneError::BadRequest {
                    code: "UserAssignedIdentityTenantMismatch".into(),
                    message: format!(
                        "The user-assigned managed identity '{id}' belongs to tenant {}, not to the cluster's tenant {}.",
                        info.tenant_id, self.cfg.admin.tenant_id
                    ),
                });
            }
            out.insert(
                info.id.clone(),
                AttachedIdentity {
                    principal_id: info.principal_id,
                    client_id: info.client_id,
                },
            );
        }
        Ok(out)
    }

    /// The tenant a vault belongs to, from its authentication challenge (the way Azure
    /// clients discover it): a vault of another tenant is refused before any key call.
    async fn check_vault_tenant(&self, key_url: &str) -> Result<(), PlaneError> {
        let url = KeyUrl::parse(key_url)?;
        let probe = format!("{}/keys/{}/?api-version=7.4", url.vault, url.name);
        let resp = match self.vault_http.get(&probe).send().await {
            Ok(r) => r,
            // Unreachable vaults are reported by the key validation that follows.
            Err(_) => return Ok(()),
        };
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let tenant = challenge
            .split("authorization=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|authority| authority.trim_end_matches('/').rsplit('/').next())
            .map(str::to_string);
        match tenant {
            Some(t) if t != self.cfg.admin.tenant_id => Err(PlaneError::BadRequest {
                code: "KeyVaultTenantMismatch".into(),
                message: format!(
                    "The key vault of '{key_url}' belongs to tenant {t}; the vault, the identity and the cluster must share tenant {}.",
                    self.cfg.admin.tenant_id
                ),
            }),
            _ => Ok(()),
        }
    }

    fn resource_id(sub: &str, rg: &str, name: &str) -> String {
        format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{RESOURCE_TYPE}/{name}")
    }

    /// PUT on a name that does not exist: validate everything, then create.
    pub async fn create(
        self: &Arc<Self>,
        sub: &str,
        rg: &str,
        name: &str,
        req: MongoCluster,
    ) -> Result<MongoCluster, PlaneError> {
        let plan = validate::validate_create(name, &req).map_err(bad_request)?;
        if self.state.lock().await.clusters.contains_key(name) {
            return Err(PlaneError::Conflict(format!(
                "A cluster named '{name}' already exists."
            )));
        }
        // A restore reads its source before anything is created: a key that cannot
        // unlock the source's backups, or an instant outside the window, creates nothing.
        let restore = match &plan.create_mode {
            CreateMode::Default => None,
            CreateMode::PointInTimeRestore {
                point_in_time_utc,
                source_resource_id,
            } => Some(
                self.prepare_restore(point_in_time_utc, source_resource_id)
                    .await?,
            ),
        };
        let resource_id = Self::resource_id(sub, rg, name);
        let identities = self.resolve_identities(&plan.identities).await?;
        let dir = self.cluster_dir(name);
        let mut record = ClusterRecord {
            name: name.to_string(),
            resource_id: resource_id.clone(),
            location: req
                .location
                .clone()
                .unwrap_or_else(|| self.cfg.location.clone()),
            tags: req.tags.clone(),
            mode: plan.mode.clone(),
            service_key_url: None,
            identities,
            admin_user: plan
                .admin_user
                .clone()
                .or_else(|| restore.as_ref().and_then(|r| r.source_admin.clone())),
            create_mode: match &plan.create_mode {
                CreateMode::Default => "Default".into(),
                CreateMode::PointInTimeRestore { .. } => "PointInTimeRestore".into(),
            },
            restore_parameters: req
                .properties
                .restore_parameters
                .clone()
                .filter(|_| restore.is_some()),
            port: free_port()?,
            created_at: now_rfc3339(),
            resource_secret: None,
            key_status: KeyStatus::default(),
            backup_id: Some(format!("{name}-{}", uuid::Uuid::new_v4().simple())),
            backup_generation: 0,
        };
        let outcome = async {
            match &plan.mode {
                EncryptionMode::CustomerManaged(cmk) => {
                    self.check_vault_tenant(&cmk.key_url).await?;
                    for id in record.identities.keys() {
                        self.identity_admin
                            .attach(&resource_id, id)
                            .await
                            .map_err(|e| PlaneError::Internal(format!("attach identity: {e}")))?;
                    }
                    let secret = self
                        .identity_admin
                        .issue_resource_secret(&resource_id)
                        .await
                        .map_err(|e| PlaneError::Internal(format!("identity secret: {e}")))?;
                    record.resource_secret = Some(secret);
                }
                EncryptionMode::ServiceManaged => {
                    let token = self.service_vault_token().await?;
                    let url = self
                        .service_keys
                        .ensure_cluster_key(
                            &self.service.vault.vault_uri,
                            token.as_str(),
                            name,
                            &self.cfg.smk_rotate_after,
                        )
                        .await?;
                    record.service_key_url = Some(url);
                }
            }
            let envelope = self.envelope_for(&record)?;
            let created = envelope.create().await.map_err(|e| key_rejection(&e))?;
            if let Some(source) = restore {
                self.run_restore(name, source, &dir.join("data"), &created.dek)
                    .await?;
            }
            Ok::<_, PlaneError>((envelope, created))
        }
        .await;
        self.restores.lock().remove(name);
        let (envelope, created) = match outcome {
            Ok(v) => v,
            Err(e) => {
                // Nothing half-created: no directory, no attachment, no record.
                let _ = std::fs::remove_dir_all(&dir);
                for id in record.identities.keys() {
                    let _ = self.identity_admin.detach(&resource_id, id).await;
                }
                return Err(e);
            }
        };
        record.key_status = KeyStatus {
            mode: mode_name(&record.mode).into(),
            state: "Valid".into(),
            active_key_version: Some(created.active_kid.clone()),
            reason: None,
            message: None,
            last_validated: Some(now_rfc3339()),
        };
        drop(created);
        {
            let mut state = self.state.lock().await;
            state.clusters.insert(name.to_string(), record.clone());
            self.registry.store(&state)?;
        }
        let admin = OpenParams {
            admin_user: plan.admin_user.clone(),
            admin_password: plan.admin_password.clone().map(Zeroizing::new),
            backup: None,
        };
        let runtime = self.launch(&record, envelope, Some(admin));
        self.audit(
            audit::AuditEvent::now(
                if record.create_mode == "PointInTimeRestore" {
                    audit::EventKind::BackupRestored
                } else {
                    audit::EventKind::ClusterCreated
                },
                audit::Outcome::Success,
                match &record.restore_parameters {
                    Some(p) => format!(
                        "{} cluster restored from {} at {}",
                        mode_name(&record.mode),
                        p.source_resource_id.as_deref().unwrap_or_default(),
                        p.point_in_time_utc.as_deref().unwrap_or_default()
                    ),
                    None => format!("{} cluster created", mode_name(&record.mode)),
                },
            )
            .cluster(name),
        );
        // The loop's first pass opens the node; wait for it so the answer says Ready.
        runtime.revalidate_once().await;
        Ok(self.view(&record, &runtime))
    }

    async fn service_vault_token(&self) -> Result<Zeroizing<String>, PlaneError> {
        let token = self
            .identity_admin
            .token("https://vault.azure.net/.default")
            .await
            .map_err(|e| PlaneError::Internal(format!("service vault token: {e}")))?;
        Ok(Zeroizing::new(token.token.to_string()))
    }

    /// PUT/PATCH on an existing cluster. `caller` (the management principal's object id)
    /// is recorded in the audit log.
    pub async fn update(
        self: &Arc<Self>,
        name: &str,
        mut req: MongoCluster,
        caller: Option<&str>,
    ) -> Result<MongoCluster, PlaneError> {
        let record = self.record(name).await?;
        let runtime = self
            .runtime(name)
            .ok_or_else(|| PlaneError::NotFound(name.into()))?;
        let mut plan = validate::validate_update(
            &Existing {
                mode: &record.mode,
                admin_user: record.admin_user.as_deref(),
                create_mode: &record.create_mode,
            },
            &req,
        )
        .map_err(bad_request)?;
        // The request's copy of the password goes now; the plan holds a zeroizing one.
        if let Some(password) = req
            .properties
            .administrator
            .as_mut()
            .and_then(|a| a.password.take())
        {
            drop(Zeroizing::new(password));
        }
        // First, so that a refusal (the cluster is not Ready) leaves everything unchanged.
        if let Some(password) = plan.admin_password.take() {
            self.reset_admin_password(&record, &runtime, password, caller)
                .await?;
        }
        // Identities named in the request are attached even if a later step fails (B10).
        let identities = self.resolve_identities(&plan.identities).await?;
        for id in identities.keys() {
            self.identity_admin
                .attach(&record.resource_id, id)
                .await
                .map_err(|e| PlaneError::Internal(format!("attach identity: {e}")))?;
        }
        let mut record = {
            let mut state = self.state.lock().await;
            let r = state
                .clusters
                .get_mut(name)
                .ok_or_else(|| PlaneError::NotFound(name.into()))?;
            r.identities.extend(identities);
            r.tags.extend(req.tags.clone());
            let copy = r.clone();
            self.registry.store(&state)?;
            copy
        };
        if let Some(new_cmk) = plan.new_cmk {
            let key_url = new_cmk.key_url.clone();
            self.switch_key(&mut record, &runtime, new_cmk).await?;
            self.audit(
                audit::AuditEvent::now(
                    audit::EventKind::KeyRewrapped,
                    audit::Outcome::Success,
                    format!("root key moved to {key_url}"),
                )
                .cluster(name),
            );
        }
        self.audit(
            audit::AuditEvent::now(
                audit::EventKind::ClusterUpdated,
                audit::Outcome::Success,
                "cluster updated",
            )
            .cluster(name),
        );
        Ok(self.view(&record, &runtime))
    }

    /// Resets the administrator's password through the node (the management API's PATCH
    /// of `properties.administrator.password`), and audits it — who, never the password.
    /// The control plane keeps no copy: `password` is zeroized when the node has it.
    async fn reset_admin_password(
        &self,
        record: &ClusterRecord,
        runtime: &Arc<Runtime>,
        password: Zeroizing<String>,
        caller: Option<&str>,
    ) -> Result<(), PlaneError> {
        let Some(user) = record.admin_user.as_deref() else {
            return Err(PlaneError::BadRequest {
                code: "AdministratorNotSet".into(),
                message: "The cluster has no administrator recorded; its password can't be reset."
                    .into(),
            });
        };
        let outcome = runtime.reset_admin_password(user, password).await;
        let (result, audit_outcome, detail) = match outcome {
            Ok(()) => (
                Ok(()),
                audit::Outcome::Success,
                format!("password of administrator {user} reset through the management API"),
            ),
            Err(e @ AdminPasswordRefused::NotReady(_)) => (
                Err(PlaneError::Conflict(format!(
                    "The administrator's password can be reset only while the cluster is Ready: {e}. Nothing was changed; try again when it is Ready."
                ))),
                audit::Outcome::Failure,
                format!("password reset of administrator {user} refused: {e}"),
            ),
            Err(e @ AdminPasswordRefused::Node(_)) => (
                Err(PlaneError::Internal(format!(
                    "The administrator's password was not reset: {e}"
                ))),
                audit::Outcome::Failure,
                format!("password reset of administrator {user} failed: {e}"),
            ),
        };
        let mut event =
            audit::AuditEvent::now(audit::EventKind::AdminPasswordReset, audit_outcome, detail)
                .cluster(&record.name);
        if let Some(caller) = caller {
            event = event.principal(caller);
        }
        self.audit(event);
        result
    }

    /// Moves a CMK cluster to another key and/or identity.
    async fn switch_key(
        &self,
        record: &mut ClusterRecord,
        runtime: &Arc<Runtime>,
        target: CmkReference,
    ) -> Result<(), PlaneError> {
        if let Status::Inaccessible {
            reason: Reason::KeyExpired,
            ..
        } = runtime.status()
        {
            return Err(PlaneError::BadRequest {
                code: "KeyExpiredUpdateNotAllowed".into(),
                message: "The cluster is Inaccessible because its key expired. Extend the key's expiry date and wait for the cluster to be Ready before pointing it at another key or version.".into(),
            });
        }
        self.check_vault_tenant(&target.key_url).await?;
        let mut next = record.clone();
        next.mode = EncryptionMode::CustomerManaged(target.clone());
        let new_envelope = self.envelope_for(&next)?;
        let current = runtime.envelope();
        let (stored, _) = current
            .store()
            .load()?
            .ok_or_else(|| PlaneError::Internal("the cluster has no wrapped root key".into()))?;
        // The new identity may be the only one left (the old one was deleted): try it on
        // the stored wrapping first, then the current identity.
        let dek = match new_envelope.kek().unwrap(&stored).await {
            Ok(dek) => dek,
            Err(first) => current
                .kek()
                .unwrap(&stored)
                .await
                .map_err(|_| key_rejection(&first))?,
        };
        let kid = current
            .rekey(&new_envelope, &dek)
            .await
            .map_err(|e| key_rejection(&e))?;
        drop(dek);
        next.key_status.active_key_version = Some(kid);
        {
            let mut state = self.state.lock().await;
            state.clusters.insert(next.name.clone(), next.clone());
            self.registry.store(&state)?;
        }
        runtime.set_envelope(new_envelope);
        runtime.revalidate_once().await;
        *record = next;
        Ok(())
    }

    pub(crate) async fn record(&self, name: &str) -> Result<ClusterRecord, PlaneError> {
        self.state
            .lock()
            .await
            .clusters
            .get(name)
            .cloned()
            .ok_or_else(|| PlaneError::NotFound(name.into()))
    }

    pub async fn get(&self, name: &str) -> Result<MongoCluster, PlaneError> {
        let record = self.record(name).await?;
        let runtime = self
            .runtime(name)
            .ok_or_else(|| PlaneError::NotFound(name.into()))?;
        Ok(self.view(&record, &runtime))
    }

    pub async fn list(&self) -> Vec<MongoCluster> {
        let records: Vec<ClusterRecord> =
            self.state.lock().await.clusters.values().cloned().collect();
        records
            .iter()
            .filter_map(|r| self.runtime(&r.name).map(|rt| self.view(r, &rt)))
            .collect()
    }

    /// Runs a revalidation pass now and returns the resulting view.
    pub async fn revalidate(&self, name: &str) -> Result<MongoCluster, PlaneError> {
        let runtime = self
            .runtime(name)
            .ok_or_else(|| PlaneError::NotFound(name.into()))?;
        runtime.revalidate_once().await;
        self.get(name).await
    }

    /// Stops the cluster, crypto-shreds its root key, removes its data and detaches its
    /// identities.
    pub async fn delete(&self, name: &str) -> Result<(), PlaneError> {
        let record = self.record(name).await?;
        let removed = self.runtimes.write().remove(name);
        if let Some((runtime, task)) = removed {
            task.abort();
            runtime.stop().await;
            runtime.envelope().store().destroy()?;
        }
        let dir = self.cluster_dir(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| PlaneError::Internal(format!("{}: {e}", dir.display())))?;
        }
        // The backups go too: their wrapped root key is as shredded as the cluster's.
        if let Some(location) = self.backup_location(&record)
            && location.exists()
        {
            std::fs::remove_dir_all(&location)
                .map_err(|e| PlaneError::Internal(format!("{}: {e}", location.display())))?;
        }
        if let Some(url) = &record.service_key_url {
            let token = self.service_vault_token().await?;
            if let Err(e) = self
                .service_keys
                .delete_cluster_key(url, token.as_str())
                .await
            {
                tracing::warn!(cluster = %name, error = %e, "service key not deleted");
            }
        }
        for id in record.identities.keys() {
            let _ = self.identity_admin.detach(&record.resource_id, id).await;
        }
        let mut state = self.state.lock().await;
        state.clusters.remove(name);
        self.registry.store(&state)?;
        self.audit(
            audit::AuditEvent::now(
                audit::EventKind::ClusterDeleted,
                audit::Outcome::Success,
                "cluster deleted; root key and backups destroyed",
            )
            .cluster(name),
        );
        Ok(())
    }

    pub fn connection_string(&self, record: &ClusterRecord) -> String {
        format!(
            "mongodb://{}:<password>@127.0.0.1:{}/?tls=true&tlsCAFile={}&authMechanism=SCRAM-SHA-256&retrywrites=false&maxIdleTimeMS=120000",
            record.admin_user.as_deref().unwrap_or("<user>"),
            record.port,
            self.cfg.ca_path.display()
        )
    }

    /// The API view of a cluster: the record plus what the runtime knows now.
    fn view(&self, record: &ClusterRecord, runtime: &Runtime) -> MongoCluster {
        let status = runtime.status();
        let key = runtime.key_view();
        let (state, reason, message) = match &status {
            Status::Ready | Status::Starting => ("Valid", None, key.warning.clone()),
            Status::Provisioning => ("Pending", None, None),
            Status::Inaccessible { reason, message } => {
                ("Revoked", Some(reason.to_string()), Some(message.clone()))
            }
        };
        let cmk = match &record.mode {
            EncryptionMode::CustomerManaged(c) => Some(c),
            EncryptionMode::ServiceManaged => None,
        };
        let identity = (!record.identities.is_empty()).then(|| ManagedServiceIdentity {
            identity_type: IDENTITY_TYPE_USER_ASSIGNED.into(),
            user_assigned_identities: record
                .identities
                .iter()
                .map(|(id, a)| {
                    (
                        id.clone(),
                        UserAssignedIdentity {
                            principal_id: Some(a.principal_id.clone()),
                            client_id: Some(a.client_id.clone()),
                        },
                    )
                })
                .collect(),
        });
        MongoCluster {
            id: Some(record.resource_id.clone()),
            name: Some(record.name.clone()),
            resource_type: Some(RESOURCE_TYPE.into()),
            location: Some(record.location.clone()),
            tags: record.tags.clone(),
            identity,
            properties: Properties {
                create_mode: Some(record.create_mode.clone()),
                restore_parameters: record.restore_parameters.clone(),
                administrator: Some(Administrator {
                    user_name: record.admin_user.clone(),
                    password: None,
                }),
                server_version: Some("7.0".into()),
                encryption: cmk.map(|c| Encryption {
                    customer_managed_key_encryption: Some(CustomerManagedKeyEncryption {
                        key_encryption_key_identity: Some(KeyEncryptionKeyIdentity {
                            identity_type: Some(KEK_IDENTITY_TYPE.into()),
                            user_assigned_identity_resource_id: Some(
                                c.identity_resource_id.clone(),
                            ),
                        }),
                        key_encryption_key_url: Some(c.key_url.clone()),
                    }),
                }),
                sharding: Some(Sharding {
                    shard_count: Some(1),
                }),
                provisioning_state: Some("Succeeded".into()),
                cluster_status: Some(status.as_str().into()),
                connection_string: Some(self.connection_string(record)),
                key_status: Some(KeyStatus {
                    mode: mode_name(&record.mode).into(),
                    state: state.into(),
                    active_key_version: cmk.and(
                        key.active_kid
                            .clone()
                            .or_else(|| record.key_status.active_key_version.clone()),
                    ),
                    reason,
                    message,
                    last_validated: key.last_validated.and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    }),
                }),
                backup: runtime.backup_report().map(|b| BackupProperties {
                    earliest_restore_time: b.earliest_micros.map(backup::rfc3339),
                    latest_restore_time: (b.restorable_until_micros > 0)
                        .then(|| backup::rfc3339(b.restorable_until_micros)),
                    last_error: b.error.clone(),
                }),
                node_health: Some(node_health_view(&runtime.node_health())),
                read_only_reason: runtime.read_only_reason(),
            },
        }
    }

    /// Stops every node (the process is shutting down).
    pub async fn shutdown(&self) {
        let runtimes: Vec<_> = std::mem::take(&mut *self.runtimes.write())
            .into_values()
            .collect();
        for (runtime, task) in runtimes {
            task.abort();
            runtime.stop().await;
        }
    }
}

fn rfc3339(t: time::OffsetDateTime) -> Option<String> {
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The API view of a runtime's node health.
fn node_health_view(health: &NodeHealth) -> crate::model::NodeHealth {
    let last_crash = health.last_crash.as_ref().map(|crash| {
        let (reason, signal, exit_code) = match &crash.cause {
            CrashCause::Exited(exit @ NodeExit::Signal(n)) => (
                exit.signal_name().unwrap_or("Signal").to_string(),
                Some(*n),
                None,
            ),
            CrashCause::Exited(NodeExit::Code(code)) => ("ExitCode".into(), None, Some(*code)),
            CrashCause::Exited(NodeExit::Unknown) => ("Unknown".into(), None, None),
            CrashCause::StartFailed(_) => ("StartFailed".into(), None, None),
        };
        NodeCrash {
            time: rfc3339(crash.time).unwrap_or_default(),
            reason,
            signal,
            exit_code,
            message: crash.cause.to_string(),
        }
    });
    crate::model::NodeHealth {
        state: if health.restarting {
            "Restarting"
        } else {
            "Healthy"
        }
        .into(),
        crash_count: health.crash_count,
        last_crash,
        next_restart_time: health.next_restart.and_then(rfc3339),
    }
}

fn mode_name(mode: &EncryptionMode) -> &'static str {
    match mode {
        EncryptionMode::ServiceManaged => "ServiceManaged",
        EncryptionMode::CustomerManaged(_) => "CustomerManaged",
    }
}

/// The identity-service resource the control plane itself is (holder of the SMK identity).
fn control_resource_id(subscription: &str) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{SERVICE_RESOURCE_GROUP}/providers/Strongroom.Control/controlPlanes/default"
    )
}

/// Picks a free loopback port for a new cluster (kept for the cluster's lifetime).
fn free_port() -> Result<u16, PlaneError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| PlaneError::Internal(format!("no free port: {e}")))?;
    Ok(listener
        .local_addr()
        .map_err(|e| PlaneError::Internal(format!("no free port: {e}")))?
        .port())
}
