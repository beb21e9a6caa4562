//! Built-in roles and the privilege check.
//!
//! Privileges are coarse on purpose: what a command needs is one [`Action`] on one
//! database, and a role grants a set of actions on its database (or on every database
//! for the `...AnyDatabase` roles). This mirrors MongoDB's built-in roles closely enough
//! for drivers and tools; user-defined roles are not supported.

use bson::{Bson, Document, doc};

/// What a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read documents and metadata (find, aggregate, listCollections, ...).
    Read,
    /// Change documents, collections and indexes.
    Write,
    /// Manage users (createUser, dropUser, ... ) of a database.
    UserAdmin,
    /// See every database's name and size.
    ListDatabases,
    /// Server-wide diagnostics (serverStatus, getCmdLineOpts, getParameter, hostInfo).
    ClusterMonitor,
}

/// A role granted on a database, as stored in `system.users` (`{role, db}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGrant {
    pub role: String,
    pub db: String,
}

/// The built-in roles this server knows: `(name, only valid on admin)`.
pub const BUILTIN_ROLES: &[(&str, bool)] = &[
    ("root", true),
    ("readWriteAnyDatabase", true),
    ("readAnyDatabase", true),
    ("userAdminAnyDatabase", true),
    ("clusterAdmin", true),
    ("clusterMonitor", true),
    ("readWrite", false),
    ("read", false),
    ("userAdmin", false),
    ("dbOwner", false),
];

/// Databases the `...AnyDatabase` roles do not reach (as in MongoDB).
fn is_internal_db(db: &str) -> bool {
    db == "local" || db == "config"
}

impl RoleGrant {
    /// Checks a role exists (and, for cluster-wide roles, that it is granted on admin).
    pub fn validate(&self) -> Result<(), String> {
        match BUILTIN_ROLES.iter().find(|(name, _)| *name == self.role) {
            None => Err(format!("Could not find role: {}@{}", self.role, self.db)),
            Some((_, true)) if self.db != "admin" => {
                Err(format!("Could not find role: {}@{}", self.role, self.db))
            }
            Some(_) => Ok(()),
        }
    }

    /// Does this grant allow `action` on database `db`?
    pub fn allows(&self, action: Action, db: &str) -> bool {
        use Action::*;
        let on_own_db = self.db == db;
        match self.role.as_str() {
            "root" => self.db == "admin",
            "readWriteAnyDatabase" => {
                self.db == "admin"
                    && (matches!(action, ListDatabases)
                        || (matches!(action, Read | Write) && !is_internal_db(db)))
            }
            "readAnyDatabase" => {
                self.db == "admin"
                    && (matches!(action, ListDatabases)
                        || (matches!(action, Read) && !is_internal_db(db)))
            }
            "userAdminAnyDatabase" => {
                self.db == "admin" && matches!(action, UserAdmin | ListDatabases)
            }
            "clusterAdmin" | "clusterMonitor" => {
                self.db == "admin" && matches!(action, ClusterMonitor | ListDatabases)
            }
            "readWrite" => on_own_db && matches!(action, Read | Write),
            "read" => on_own_db && matches!(action, Read),
            "userAdmin" => on_own_db && matches!(action, UserAdmin),
            "dbOwner" => on_own_db && matches!(action, Read | Write | UserAdmin),
            _ => false,
        }
    }

    pub fn to_document(&self) -> Document {
        doc! {"role": self.role.clone(), "db": self.db.clone()}
    }

    /// Parses a `roles` array element: `"name"` (on `default_db`) or `{role, db}`.
    pub fn parse(value: &Bson, default_db: &str) -> Result<RoleGrant, String> {
        match value {
            Bson::String(role) => Ok(RoleGrant {
                role: role.clone(),
                db: default_db.to_string(),
            }),
            Bson::Document(d) => {
                let role = d
                    .get_str("role")
                    .map_err(|_| "role document needs a string 'role'".to_string())?;
                let db = d
                    .get_str("db")
                    .map_err(|_| "role document needs a string 'db'".to_string())?;
                Ok(RoleGrant {
                    role: role.to_string(),
                    db: db.to_string(),
                })
            }
            _ => Err("roles must be strings or {role, db} documents".to_string()),
        }
    }
}

/// True when one of `grants` allows `action` on every database (cluster-wide roles only).
pub fn allowed_everywhere(grants: &[RoleGrant], action: Action) -> bool {
    grants.iter().any(|g| {
        g.db == "admin"
            && match g.role.as_str() {
                "root" => true,
                "readWriteAnyDatabase" => {
                    matches!(action, Action::Read | Action::Write | Action::ListDatabases)
                }
                "readAnyDatabase" => matches!(action, Action::Read | Action::ListDatabases),
                "userAdminAnyDatabase" => {
                    matches!(action, Action::UserAdmin | Action::ListDatabases)
                }
                "clusterAdmin" | "clusterMonitor" => {
                    matches!(action, Action::ClusterMonitor | Action::ListDatabases)
                }
                _ => false,
            }
    })
}

/// True when any of `grants` allows `action` on `db`.
pub fn allowed(grants: &[RoleGrant], action: Action, db: &str) -> bool {
    grants.iter().any(|g| g.allows(action, db))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(role: &str, db: &str) -> RoleGrant {
        RoleGrant {
            role: role.into(),
            db: db.into(),
        }
    }

    #[test]
    fn builtin_roles_grant_what_they_say() {
        assert!(allowed(&[g("root", "admin")], Action::UserAdmin, "x"));
        assert!(!allowed(&[g("root", "x")], Action::Read, "x"));
        assert!(allowed(&[g("readWrite", "app")], Action::Write, "app"));
        assert!(!allowed(&[g("readWrite", "app")], Action::Write, "other"));
        assert!(allowed(&[g("read", "app")], Action::Read, "app"));
        assert!(!allowed(&[g("read", "app")], Action::Write, "app"));
        assert!(allowed(&[g("readAnyDatabase", "admin")], Action::Read, "z"));
        assert!(!allowed(
            &[g("readAnyDatabase", "admin")],
            Action::Read,
            "local"
        ));
        assert!(!allowed(
            &[g("readAnyDatabase", "admin")],
            Action::Write,
            "z"
        ));
        assert!(allowed(
            &[g("readWriteAnyDatabase", "admin")],
            Action::Write,
            "z"
        ));
        assert!(!allowed(
            &[g("readWriteAnyDatabase", "admin")],
            Action::UserAdmin,
            "z"
        ));
        assert!(allowed(
            &[g("userAdminAnyDatabase", "admin")],
            Action::UserAdmin,
            "z"
        ));
        assert!(!allowed(&[], Action::Read, "z"));
        assert!(allowed_everywhere(
            &[g("userAdminAnyDatabase", "admin")],
            Action::UserAdmin
        ));
        assert!(!allowed_everywhere(
            &[g("userAdmin", "admin")],
            Action::UserAdmin
        ));
        assert!(!allowed_everywhere(
            &[g("userAdmin", "*any*")],
            Action::UserAdmin
        ));
    }

    #[test]
    fn validation_rejects_unknown_and_misplaced_roles() {
        assert!(g("readWrite", "app").validate().is_ok());
        assert!(g("root", "admin").validate().is_ok());
        assert!(g("root", "app").validate().is_err());
        assert!(g("superuser", "admin").validate().is_err());
    }
}
