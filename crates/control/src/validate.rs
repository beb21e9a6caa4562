//! The rules a create or update request must satisfy before anything is touched.
//!
//! These are the checks that need no network: shapes, names, and the lifecycle rules
//! (the encryption mode is fixed at creation; key and identity change together). The
//! checks that need the vault and the identity service (the key exists, is RSA of an
//! allowed size, enabled, inside its validity window, and the identity can get, wrap
//! and unwrap with it) run afterwards, in `envelope::Envelope::create`, still before
//! anything is created.

use crate::model::*;

/// A rejected request: HTTP 400 with this ARM error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ValidationError {
    pub code: &'static str,
    pub message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError {
        code,
        message: message.into(),
    }
}

/// How a cluster's root key is protected. Chosen at creation, never changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EncryptionMode {
    ServiceManaged,
    CustomerManaged(CmkReference),
}

/// A customer-managed key and the identity the cluster uses to reach it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CmkReference {
    /// Exactly as the user gave it: versioned (pinned) or version-less (follows rotation).
    pub key_url: String,
    pub identity_resource_id: String,
}

/// How the cluster comes to life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateMode {
    Default,
    PointInTimeRestore {
        point_in_time_utc: String,
        source_resource_id: String,
    },
}

/// A validated create request.
#[derive(Debug, Clone)]
pub struct CreatePlan {
    pub mode: EncryptionMode,
    pub create_mode: CreateMode,
    pub admin_user: Option<String>,
    pub admin_password: Option<String>,
    /// Every identity to attach (`identity.userAssignedIdentities`).
    pub identities: Vec<String>,
}

/// A validated update request.
#[derive(Debug, Clone, Default)]
pub struct UpdatePlan {
    pub new_cmk: Option<CmkReference>,
    /// The administrator's new password (a reset), zeroized when the plan goes.
    pub admin_password: Option<zeroize::Zeroizing<String>>,
    /// Identities listed in the request; attached even if a later step fails, as the
    /// managed service does (B10).
    pub identities: Vec<String>,
}

pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    let well_formed = (3..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if well_formed {
        Ok(())
    } else {
        Err(reject(
            "InvalidResourceName",
            format!(
                "The cluster name '{name}' is invalid. It must be 3 to 40 characters of lowercase letters, digits and single hyphens, and start and end with a letter or digit."
            ),
        ))
    }
}

/// Password rules of the managed service: 8 to 128 characters, with upper- and
/// lower-case letters, digits and non-alphanumeric characters.
pub fn validate_password(password: &str) -> Result<(), ValidationError> {
    let len = password.chars().count();
    let has = |f: fn(char) -> bool| password.chars().any(f);
    if !(8..=128).contains(&len)
        || !has(|c| c.is_ascii_uppercase())
        || !has(|c| c.is_ascii_lowercase())
        || !has(|c| c.is_ascii_digit())
        || !has(|c| !c.is_ascii_alphanumeric())
    {
        return Err(reject(
            "InvalidAdministratorPassword",
            "The administrator password must be 8 to 128 characters long and contain uppercase and lowercase letters, digits and non-alphanumeric characters.",
        ));
    }
    Ok(())
}

fn validate_user_name(user: &str) -> Result<(), ValidationError> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(reject(
            "InvalidAdministratorUserName",
            "The administrator user name must be 1 to 64 letters, digits, '_', '-' or '.'.",
        ))
    }
}

/// True for `/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{n}`.
pub fn is_identity_resource_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    matches!(parts.as_slice(),
        ["", s, _, g, _, p, ns, t, name]
            if s.eq_ignore_ascii_case("subscriptions")
                && g.eq_ignore_ascii_case("resourceGroups")
                && p.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.ManagedIdentity")
                && t.eq_ignore_ascii_case("userAssignedIdentities")
                && !name.is_empty())
}

fn listed_identities(cluster: &MongoCluster) -> Result<Vec<String>, ValidationError> {
    let Some(identity) = &cluster.identity else {
        return Ok(Vec::new());
    };
    let types: Vec<&str> = identity.identity_type.split(',').map(str::trim).collect();
    if !types.contains(&IDENTITY_TYPE_USER_ASSIGNED)
        && !identity.user_assigned_identities.is_empty()
    {
        return Err(reject(
            "InvalidIdentityType",
            format!(
                "identity.type '{}' does not include 'UserAssigned', but userAssignedIdentities are listed.",
                identity.identity_type
            ),
        ));
    }
    for id in identity.user_assigned_identities.keys() {
        if !is_identity_resource_id(id) {
            return Err(reject(
                "InvalidUserAssignedIdentity",
                format!("'{id}' is not a user-assigned managed identity resource id."),
            ));
        }
    }
    Ok(identity.user_assigned_identities.keys().cloned().collect())
}

/// Checks a `customerManagedKeyEncryption` block against the identities of the request.
fn validate_cmk(
    cmk: &CustomerManagedKeyEncryption,
    cluster: &MongoCluster,
    identities: &[String],
) -> Result<CmkReference, ValidationError> {
    let together = || {
        reject(
            "KeyAndIdentityRequiredTogether",
            "User assigned identity and key vault key need to be provided together: set both keyEncryptionKeyUrl and keyEncryptionKeyIdentity.userAssignedIdentityResourceId.",
        )
    };
    let (Some(key_url), Some(kek_identity)) = (
        &cmk.key_encryption_key_url,
        &cmk.key_encryption_key_identity,
    ) else {
        return Err(together());
    };
    let Some(identity_id) = &kek_identity.user_assigned_identity_resource_id else {
        return Err(together());
    };
    match kek_identity.identity_type.as_deref() {
        Some(KEK_IDENTITY_TYPE) => {}
        other => {
            return Err(reject(
                "InvalidKeyEncryptionKeyIdentityType",
                format!(
                    "keyEncryptionKeyIdentity.identityType must be 'UserAssignedIdentity', not {}.",
                    other.map_or("missing".to_string(), |t| format!("'{t}'"))
                ),
            ));
        }
    }
    let user_assigned = cluster.identity.as_ref().is_some_and(|i| {
        i.identity_type
            .split(',')
            .any(|t| t.trim() == IDENTITY_TYPE_USER_ASSIGNED)
    });
    if !user_assigned {
        return Err(reject(
            "UserAssignedIdentityRequired",
            "Customer-managed key encryption requires identity.type 'UserAssigned' with the key encryption key identity in identity.userAssignedIdentities.",
        ));
    }
    if !identities
        .iter()
        .any(|i| i.eq_ignore_ascii_case(identity_id))
    {
        return Err(reject(
            "KeyEncryptionKeyIdentityNotAssigned",
            format!(
                "The key encryption key identity '{identity_id}' is not listed in identity.userAssignedIdentities."
            ),
        ));
    }
    if let Err(e) = envelope::KeyUrl::parse(key_url) {
        return Err(reject("InvalidKeyEncryptionKeyUrl", e.to_string()));
    }
    Ok(CmkReference {
        key_url: key_url.clone(),
        identity_resource_id: identity_id.clone(),
    })
}

pub fn validate_create(name: &str, req: &MongoCluster) -> Result<CreatePlan, ValidationError> {
    validate_name(name)?;
    let identities = listed_identities(req)?;
    let props = &req.properties;
    let mode = match props
        .encryption
        .as_ref()
        .and_then(|e| e.customer_managed_key_encryption.as_ref())
    {
        None => EncryptionMode::ServiceManaged,
        Some(cmk) => EncryptionMode::CustomerManaged(validate_cmk(cmk, req, &identities)?),
    };
    if let Some(shards) = props.sharding.as_ref().and_then(|s| s.shard_count)
        && shards != 1
    {
        return Err(reject(
            "InvalidShardCount",
            "This deployment runs one physical shard per cluster: sharding.shardCount must be 1.",
        ));
    }
    let create_mode = match props.create_mode.as_deref().unwrap_or("Default") {
        "Default" => CreateMode::Default,
        "PointInTimeRestore" => {
            let params = props.restore_parameters.as_ref();
            let point = params.and_then(|p| p.point_in_time_utc.clone());
            let source = params.and_then(|p| p.source_resource_id.clone());
            let (Some(point_in_time_utc), Some(source_resource_id)) = (point, source) else {
                return Err(reject(
                    "InvalidRestoreParameters",
                    "createMode 'PointInTimeRestore' requires restoreParameters.pointInTimeUTC and restoreParameters.sourceResourceId.",
                ));
            };
            CreateMode::PointInTimeRestore {
                point_in_time_utc,
                source_resource_id,
            }
        }
        other => {
            return Err(reject(
                "InvalidCreateMode",
                format!(
                    "createMode '{other}' is not supported; use 'Default' or 'PointInTimeRestore'."
                ),
            ));
        }
    };
    let admin = props.administrator.as_ref();
    let admin_user = admin.and_then(|a| a.user_name.clone());
    let admin_password = admin.and_then(|a| a.password.clone());
    if create_mode == CreateMode::Default && (admin_user.is_none() || admin_password.is_none()) {
        return Err(reject(
            "AdministratorRequired",
            "properties.administrator.userName and properties.administrator.password are required to create a cluster.",
        ));
    }
    if let Some(user) = &admin_user {
        validate_user_name(user)?;
    }
    if let Some(password) = &admin_password {
        validate_password(password)?;
    }
    Ok(CreatePlan {
        mode,
        create_mode,
        admin_user,
        admin_password,
        identities,
    })
}

/// What an existing cluster's immutable choices were.
#[derive(Debug, Clone)]
pub struct Existing<'a> {
    pub mode: &'a EncryptionMode,
    pub admin_user: Option<&'a str>,
    pub create_mode: &'a str,
}

pub fn validate_update(
    existing: &Existing<'_>,
    req: &MongoCluster,
) -> Result<UpdatePlan, ValidationError> {
    let props = &req.properties;
    let identities = listed_identities(req)?;
    if let Some(mode) = props.create_mode.as_deref()
        && mode != existing.create_mode
    {
        return Err(reject(
            "CreateModeCannotBeChanged",
            "createMode and restoreParameters are set at creation and can't be changed.",
        ));
    }
    if existing.create_mode == "Default" && props.restore_parameters.is_some() {
        return Err(reject(
            "CreateModeCannotBeChanged",
            "createMode and restoreParameters are set at creation and can't be changed.",
        ));
    }
    if let Some(shards) = props.sharding.as_ref().and_then(|s| s.shard_count)
        && shards != 1
    {
        let code = if matches!(existing.mode, EncryptionMode::CustomerManaged(_)) {
            "ShardCountChangeNotSupportedWithCmk"
        } else {
            "InvalidShardCount"
        };
        return Err(reject(
            code,
            "Adding physical shards isn't supported: sharding.shardCount must stay 1.",
        ));
    }
    let requested_cmk = props
        .encryption
        .as_ref()
        .and_then(|e| e.customer_managed_key_encryption.as_ref());
    let new_cmk = match (existing.mode, requested_cmk, props.encryption.is_some()) {
        (EncryptionMode::ServiceManaged, Some(_), _) => {
            return Err(reject(
                "EncryptionModeCannotBeChanged",
                "The cluster uses service-managed keys; the encryption mode is chosen at creation and can't be changed. Restore the cluster to a new one with customer-managed keys instead.",
            ));
        }
        (EncryptionMode::CustomerManaged(_), None, true) => {
            return Err(reject(
                "EncryptionModeCannotBeChanged",
                "The cluster uses customer-managed keys; the encryption mode is chosen at creation and can't be changed back to service-managed keys.",
            ));
        }
        (EncryptionMode::CustomerManaged(current), Some(cmk), _) => {
            let reference = validate_cmk(cmk, req, &identities)?;
            (reference != *current).then_some(reference)
        }
        (_, None, _) => None,
    };
    let admin = props.administrator.as_ref();
    if let Some(user) = admin.and_then(|a| a.user_name.as_deref())
        && Some(user) != existing.admin_user
    {
        return Err(reject(
            "AdministratorUserNameCannotBeChanged",
            "The administrator user name is set at creation and can't be changed.",
        ));
    }
    let admin_password = admin
        .and_then(|a| a.password.clone())
        .map(zeroize::Zeroizing::new);
    if let Some(password) = &admin_password {
        validate_password(password)?;
    }
    Ok(UpdatePlan {
        new_cmk,
        admin_password,
        identities,
    })
}
