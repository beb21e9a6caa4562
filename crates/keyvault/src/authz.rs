//! Authorization of data-plane operations: Azure RBAC (role assignments on the vault or on
//! a key) or classic access policies, depending on `enableRbacAuthorization`.

use crate::model::VaultRecord;

/// A key permission, named as in access policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPerm {
    Get,
    List,
    Create,
    Import,
    Update,
    Delete,
    Recover,
    Backup,
    Restore,
    Decrypt,
    Encrypt,
    UnwrapKey,
    WrapKey,
    Verify,
    Sign,
    Purge,
    Rotate,
    GetRotationPolicy,
    SetRotationPolicy,
}

impl KeyPerm {
    /// Access-policy permission name.
    pub fn policy_name(self) -> &'static str {
        match self {
            KeyPerm::Get => "get",
            KeyPerm::List => "list",
            KeyPerm::Create => "create",
            KeyPerm::Import => "import",
            KeyPerm::Update => "update",
            KeyPerm::Delete => "delete",
            KeyPerm::Recover => "recover",
            KeyPerm::Backup => "backup",
            KeyPerm::Restore => "restore",
            KeyPerm::Decrypt => "decrypt",
            KeyPerm::Encrypt => "encrypt",
            KeyPerm::UnwrapKey => "unwrapKey",
            KeyPerm::WrapKey => "wrapKey",
            KeyPerm::Verify => "verify",
            KeyPerm::Sign => "sign",
            KeyPerm::Purge => "purge",
            KeyPerm::Rotate => "rotate",
            KeyPerm::GetRotationPolicy => "getrotationpolicy",
            KeyPerm::SetRotationPolicy => "setrotationpolicy",
        }
    }

    /// RBAC data action.
    pub fn data_action(self) -> &'static str {
        match self {
            KeyPerm::Get | KeyPerm::List => "Microsoft.KeyVault/vaults/keys/read",
            KeyPerm::Create => "Microsoft.KeyVault/vaults/keys/create/action",
            KeyPerm::Import => "Microsoft.KeyVault/vaults/keys/import/action",
            KeyPerm::Update => "Microsoft.KeyVault/vaults/keys/update/action",
            KeyPerm::Delete => "Microsoft.KeyVault/vaults/keys/delete",
            KeyPerm::Recover => "Microsoft.KeyVault/vaults/keys/recover/action",
            KeyPerm::Backup => "Microsoft.KeyVault/vaults/keys/backup/action",
            KeyPerm::Restore => "Microsoft.KeyVault/vaults/keys/restore/action",
            KeyPerm::Decrypt => "Microsoft.KeyVault/vaults/keys/decrypt/action",
            KeyPerm::Encrypt => "Microsoft.KeyVault/vaults/keys/encrypt/action",
            KeyPerm::UnwrapKey => "Microsoft.KeyVault/vaults/keys/unwrap/action",
            KeyPerm::WrapKey => "Microsoft.KeyVault/vaults/keys/wrap/action",
            KeyPerm::Verify => "Microsoft.KeyVault/vaults/keys/verify/action",
            KeyPerm::Sign => "Microsoft.KeyVault/vaults/keys/sign/action",
            KeyPerm::Purge => "Microsoft.KeyVault/vaults/keys/purge/action",
            KeyPerm::Rotate => "Microsoft.KeyVault/vaults/keys/rotate/action",
            KeyPerm::GetRotationPolicy => "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
            KeyPerm::SetRotationPolicy => "Microsoft.KeyVault/vaults/keyrotationpolicies/write",
        }
    }
}

/// All permission names valid in `accessPolicies[].permissions.keys`.
pub const POLICY_KEY_PERMISSIONS: &[&str] = &[
    "all",
    "backup",
    "create",
    "decrypt",
    "delete",
    "encrypt",
    "get",
    "getrotationpolicy",
    "import",
    "list",
    "purge",
    "recover",
    "release",
    "restore",
    "rotate",
    "setrotationpolicy",
    "sign",
    "unwrapKey",
    "update",
    "verify",
    "wrapKey",
];

pub const ROLE_KV_ADMINISTRATOR: &str = "00482a5a-887f-4fb3-b363-3b7fe8e74483";
pub const ROLE_KV_CRYPTO_OFFICER: &str = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603";
pub const ROLE_KV_CRYPTO_USER: &str = "12338af0-0e69-4776-bea7-57ae8d297424";
pub const ROLE_KV_CRYPTO_SERVICE_ENCRYPTION_USER: &str = "e147488a-f6f5-4113-8e2d-b22465e65bf6";
pub const ROLE_KV_READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";

/// Data actions granted by a built-in role (by role definition GUID), as in Azure.
pub fn role_data_actions(role_guid: &str) -> Option<&'static [&'static str]> {
    match role_guid.to_ascii_lowercase().as_str() {
        ROLE_KV_ADMINISTRATOR => Some(&["Microsoft.KeyVault/vaults/*"]),
        ROLE_KV_CRYPTO_OFFICER => Some(&[
            "Microsoft.KeyVault/vaults/keys/*",
            "Microsoft.KeyVault/vaults/keyrotationpolicies/*",
        ]),
        ROLE_KV_CRYPTO_USER => Some(&[
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/update/action",
            "Microsoft.KeyVault/vaults/keys/backup/action",
            "Microsoft.KeyVault/vaults/keys/encrypt/action",
            "Microsoft.KeyVault/vaults/keys/decrypt/action",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
            "Microsoft.KeyVault/vaults/keys/sign/action",
            "Microsoft.KeyVault/vaults/keys/verify/action",
        ]),
        ROLE_KV_CRYPTO_SERVICE_ENCRYPTION_USER => Some(&[
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
        ]),
        ROLE_KV_READER => Some(&["Microsoft.KeyVault/vaults/keys/read"]),
        _ => None,
    }
}

/// Azure action matching: `*` matches any (possibly empty) run of characters; case-insensitive.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let a = action.to_ascii_lowercase();
    match p.split_once('*') {
        None => p == a,
        Some((pre, post)) => {
            a.len() >= pre.len() + post.len() && a.starts_with(pre) && a.ends_with(post)
        }
    }
}

/// Why a data-plane request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Access-policy model: the permission name.
    Policy(&'static str),
    /// RBAC model: the data action and the resource it was checked on.
    Rbac {
        action: &'static str,
        resource: String,
    },
}

/// Decides whether `oid` may perform `perm` (on `key`, when given) in `vault`.
pub fn check(
    vault: &VaultRecord,
    oid: &str,
    perm: KeyPerm,
    key: Option<&str>,
) -> Result<(), Denied> {
    let vault_id = vault.resource_id();
    if vault.rbac {
        let action = perm.data_action();
        let resource = match key {
            Some(k) => format!("{vault_id}/keys/{k}"),
            None => vault_id.clone(),
        };
        let allowed = vault.role_assignments.iter().any(|ra| {
            ra.principal_id.eq_ignore_ascii_case(oid)
                && scope_covers(&ra.scope, &vault_id, key)
                && role_data_actions(&ra.role_definition_id)
                    .is_some_and(|acts| acts.iter().any(|p| action_matches(p, action)))
        });
        if allowed {
            Ok(())
        } else {
            Err(Denied::Rbac { action, resource })
        }
    } else {
        let name = perm.policy_name();
        let allowed = vault.access_policies.iter().any(|ap| {
            ap.object_id.eq_ignore_ascii_case(oid)
                && ap
                    .keys
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(name) || p.eq_ignore_ascii_case("all"))
        });
        if allowed {
            Ok(())
        } else {
            Err(Denied::Policy(name))
        }
    }
}

fn scope_covers(scope: &str, vault_id: &str, key: Option<&str>) -> bool {
    let scope = scope.trim_end_matches('/');
    if scope.eq_ignore_ascii_case(vault_id) {
        return true;
    }
    match key {
        Some(k) => scope.eq_ignore_ascii_case(&format!("{vault_id}/keys/{k}")),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn vault(rbac: bool) -> VaultRecord {
        VaultRecord {
            name: "v1".into(),
            subscription: "s".into(),
            resource_group: "rg".into(),
            location: "local".into(),
            tenant_id: "t".into(),
            sku_family: "A".into(),
            sku_name: "standard".into(),
            soft_delete_retention_days: 90,
            purge_protection: false,
            rbac,
            access_policies: vec![AccessPolicy {
                tenant_id: "t".into(),
                object_id: "pol".into(),
                application_id: None,
                keys: vec!["get".into(), "wrapKey".into()],
                secrets: vec![],
                certificates: vec![],
            }],
            network_acls: NetworkAcls::default(),
            public_network_access: "Enabled".into(),
            port: 1,
            created_by: "c".into(),
            created_at: 0,
            updated_at: 0,
            tags: Default::default(),
            role_assignments: vec![
                RoleAssignment {
                    name: "a".into(),
                    role_definition_id: ROLE_KV_CRYPTO_SERVICE_ENCRYPTION_USER.into(),
                    principal_id: "cmk".into(),
                    scope: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v1".into(),
                },
                RoleAssignment {
                    name: "b".into(),
                    role_definition_id: ROLE_KV_CRYPTO_OFFICER.into(),
                    principal_id: "officer".into(),
                    scope: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v1/keys/only".into(),
                },
            ],
            deleted: None,
        }
    }

    #[test]
    fn rbac_roles_and_scopes() {
        let v = vault(true);
        assert!(check(&v, "cmk", KeyPerm::UnwrapKey, Some("k")).is_ok());
        assert!(check(&v, "cmk", KeyPerm::Get, Some("k")).is_ok());
        assert!(check(&v, "cmk", KeyPerm::List, None).is_ok());
        assert!(check(&v, "cmk", KeyPerm::Sign, Some("k")).is_err());
        assert!(check(&v, "cmk", KeyPerm::Create, Some("k")).is_err());
        assert!(check(&v, "officer", KeyPerm::Create, Some("only")).is_ok());
        assert!(check(&v, "officer", KeyPerm::SetRotationPolicy, Some("only")).is_ok());
        assert!(check(&v, "officer", KeyPerm::Create, Some("other")).is_err());
        assert!(check(&v, "pol", KeyPerm::Get, Some("k")).is_err());
    }

    #[test]
    fn access_policies() {
        let v = vault(false);
        assert!(check(&v, "pol", KeyPerm::WrapKey, Some("k")).is_ok());
        assert_eq!(
            check(&v, "pol", KeyPerm::UnwrapKey, Some("k")),
            Err(Denied::Policy("unwrapKey"))
        );
        assert!(check(&v, "cmk", KeyPerm::Get, Some("k")).is_err());
    }

    #[test]
    fn wildcard_actions() {
        assert!(action_matches(
            "Microsoft.KeyVault/vaults/*",
            "Microsoft.KeyVault/vaults/keys/read"
        ));
        assert!(action_matches(
            "microsoft.keyvault/vaults/keys/*",
            "Microsoft.KeyVault/vaults/keys/wrap/action"
        ));
        assert!(!action_matches(
            "Microsoft.KeyVault/vaults/keys/*",
            "Microsoft.KeyVault/vaults/keyrotationpolicies/read"
        ));
    }
}
