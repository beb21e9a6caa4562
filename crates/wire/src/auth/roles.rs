//! Built-in roles and the privilege check, as MongoDB defines them.
//!
//! A privilege is an [`Action`] (MongoDB's action names) on a [`Target`]: a database or
//! the cluster. A role grants a list of `(scope, actions)`: on its own database, on every
//! "normal" database (the `...AnyDatabase` roles: every database but `local` and
//! `config`, as in MongoDB), on every database (`root`), or on the cluster. The tables
//! follow the MongoDB manual's "Built-In Roles" page, restricted to the actions of the
//! commands this server implements. User-defined roles are not supported.

use bson::{Bson, Document, doc};

/// MongoDB's privilege actions that the implemented commands need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Find,
    Insert,
    Update,
    Remove,
    CreateCollection,
    DropCollection,
    CreateIndex,
    DropIndex,
    ListCollections,
    ListIndexes,
    DropDatabase,
    RenameCollectionSameDB,
    CollStats,
    DbStats,
    KillCursors,
    ListDatabases,
    CreateUser,
    DropUser,
    GrantRole,
    RevokeRole,
    ChangePassword,
    /// Change one's own password. No built-in role grants it (MongoDB's manual has a
    /// user-defined role grant it); `changePassword` on the user's database covers it.
    ChangeOwnPassword,
    ViewUser,
    ServerStatus,
    HostInfo,
    GetCmdLineOpts,
    GetParameter,
}

/// What an action is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A database (its non-system collections).
    Db(&'a str),
    /// The cluster resource (`{cluster: true}`).
    Cluster,
}

/// Where a role's privilege applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The database the role is granted on.
    OwnDb,
    /// Every database except `local` and `config`.
    AnyNormalDb,
    /// Every database.
    AnyDb,
    /// The cluster resource.
    Cluster,
}

use Action::*;

const READ: &[Action] = &[
    Find,
    ListCollections,
    ListIndexes,
    KillCursors,
    CollStats,
    DbStats,
];
const READ_WRITE: &[Action] = &[
    Find,
    ListCollections,
    ListIndexes,
    KillCursors,
    CollStats,
    DbStats,
    Insert,
    Update,
    Remove,
    CreateCollection,
    DropCollection,
    CreateIndex,
    DropIndex,
    RenameCollectionSameDB,
];
/// dbAdmin reads metadata and manages collections and indexes, but reads no documents.
const DB_ADMIN: &[Action] = &[
    CollStats,
    DbStats,
    CreateCollection,
    CreateIndex,
    DropCollection,
    DropDatabase,
    DropIndex,
    ListCollections,
    ListIndexes,
    RenameCollectionSameDB,
];
const USER_ADMIN: &[Action] = &[
    ChangePassword,
    CreateUser,
    DropUser,
    GrantRole,
    RevokeRole,
    ViewUser,
];
const CLUSTER_MONITOR: &[Action] = &[
    ServerStatus,
    HostInfo,
    GetCmdLineOpts,
    GetParameter,
    ListDatabases,
];
const STATS: &[Action] = &[CollStats, DbStats];
const LIST_DATABASES: &[Action] = &[ListDatabases];
const ALL: &[Action] = &[
    Find,
    Insert,
    Update,
    Remove,
    CreateCollection,
    DropCollection,
    CreateIndex,
    DropIndex,
    ListCollections,
    ListIndexes,
    DropDatabase,
    RenameCollectionSameDB,
    CollStats,
    DbStats,
    KillCursors,
    CreateUser,
    DropUser,
    GrantRole,
    RevokeRole,
    ChangePassword,
    ViewUser,
];

/// A built-in role: its name, whether it exists only on `admin`, and its privileges.
pub struct BuiltinRole {
    pub name: &'static str,
    pub admin_only: bool,
    privileges: &'static [(Scope, &'static [Action])],
}

/// The built-in roles this server knows.
pub const BUILTIN_ROLES: &[BuiltinRole] = &[
    BuiltinRole {
        name: "read",
        admin_only: false,
        privileges: &[(Scope::OwnDb, READ)],
    },
    BuiltinRole {
        name: "readWrite",
        admin_only: false,
        privileges: &[(Scope::OwnDb, READ_WRITE)],
    },
    BuiltinRole {
        name: "dbAdmin",
        admin_only: false,
        privileges: &[(Scope::OwnDb, DB_ADMIN)],
    },
    BuiltinRole {
        name: "userAdmin",
        admin_only: false,
        privileges: &[(Scope::OwnDb, USER_ADMIN)],
    },
    BuiltinRole {
        name: "dbOwner",
        admin_only: false,
        privileges: &[
            (Scope::OwnDb, READ_WRITE),
            (Scope::OwnDb, DB_ADMIN),
            (Scope::OwnDb, USER_ADMIN),
        ],
    },
    BuiltinRole {
        name: "readAnyDatabase",
        admin_only: true,
        privileges: &[(Scope::AnyNormalDb, READ), (Scope::Cluster, LIST_DATABASES)],
    },
    BuiltinRole {
        name: "readWriteAnyDatabase",
        admin_only: true,
        privileges: &[
            (Scope::AnyNormalDb, READ_WRITE),
            (Scope::Cluster, LIST_DATABASES),
        ],
    },
    BuiltinRole {
        name: "dbAdminAnyDatabase",
        admin_only: true,
        privileges: &[
            (Scope::AnyNormalDb, DB_ADMIN),
            (Scope::Cluster, LIST_DATABASES),
        ],
    },
    BuiltinRole {
        name: "userAdminAnyDatabase",
        admin_only: true,
        privileges: &[
            (Scope::AnyNormalDb, USER_ADMIN),
            (Scope::Cluster, LIST_DATABASES),
        ],
    },
    BuiltinRole {
        name: "clusterMonitor",
        admin_only: true,
        privileges: &[
            (Scope::Cluster, CLUSTER_MONITOR),
            (Scope::AnyNormalDb, STATS),
        ],
    },
    BuiltinRole {
        name: "clusterAdmin",
        admin_only: true,
        privileges: &[
            (Scope::Cluster, CLUSTER_MONITOR),
            (Scope::AnyNormalDb, STATS),
            (Scope::AnyNormalDb, &[DropDatabase]),
        ],
    },
    BuiltinRole {
        name: "root",
        admin_only: true,
        privileges: &[(Scope::AnyDb, ALL), (Scope::Cluster, CLUSTER_MONITOR)],
    },
];

/// Databases the `...AnyDatabase` roles do not reach (as in MongoDB).
fn is_internal_db(db: &str) -> bool {
    db == "local" || db == "config"
}

fn builtin(name: &str) -> Option<&'static BuiltinRole> {
    BUILTIN_ROLES.iter().find(|r| r.name == name)
}

/// A role granted on a database, as stored in `system.users` (`{role, db}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleGrant {
    pub role: String,
    pub db: String,
}

impl RoleGrant {
    /// Checks a role exists (and, for cluster-wide roles, that it is granted on admin).
    pub fn validate(&self) -> Result<(), String> {
        match builtin(&self.role) {
            Some(r) if !r.admin_only || self.db == "admin" => Ok(()),
            _ => Err(format!("Could not find role: {}@{}", self.role, self.db)),
        }
    }

    /// Does this grant allow `action` on `target`? Unknown or misplaced roles allow
    /// nothing (a stored record is never trusted beyond what validation would accept).
    pub fn allows(&self, action: Action, target: Target<'_>) -> bool {
        if self.validate().is_err() {
            return false;
        }
        let Some(role) = builtin(&self.role) else {
            return false;
        };
        role.privileges.iter().any(|(scope, actions)| {
            let reaches = match (scope, target) {
                (Scope::OwnDb, Target::Db(db)) => db == self.db,
                (Scope::AnyNormalDb, Target::Db(db)) => !is_internal_db(db),
                (Scope::AnyDb, Target::Db(_)) => true,
                (Scope::Cluster, Target::Cluster) => true,
                _ => false,
            };
            reaches && actions.contains(&action)
        })
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

/// True when any of `grants` allows `action` on `target`.
pub fn allowed(grants: &[RoleGrant], action: Action, target: Target<'_>) -> bool {
    grants.iter().any(|g| g.allows(action, target))
}

/// True when `grants` allow `action` on every database, `admin` included (the
/// `...AnyDatabase` roles and `root`): what a command that spans every database needs.
pub fn allowed_on_every_db(grants: &[RoleGrant], action: Action) -> bool {
    grants.iter().any(|g| {
        g.validate().is_ok()
            && builtin(&g.role).is_some_and(|r| {
                r.privileges.iter().any(|(scope, actions)| {
                    matches!(scope, Scope::AnyNormalDb | Scope::AnyDb) && actions.contains(&action)
                })
            })
    })
}

/// True when `grants` allow anything on `db` (which databases `listDatabases` shows a
/// user without the cluster-wide `listDatabases`).
pub fn any_privilege_on(grants: &[RoleGrant], db: &str) -> bool {
    ALL.iter().any(|a| allowed(grants, *a, Target::Db(db)))
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

    fn on(grant: RoleGrant, action: Action, db: &str) -> bool {
        allowed(&[grant], action, Target::Db(db))
    }

    #[test]
    fn builtin_roles_grant_what_mongodb_documents() {
        assert!(on(g("root", "admin"), CreateUser, "x"));
        assert!(on(g("root", "admin"), Find, "local"));
        assert!(!on(g("root", "x"), Find, "x"), "root exists only on admin");
        assert!(on(g("readWrite", "app"), Insert, "app"));
        assert!(!on(g("readWrite", "app"), Insert, "other"));
        assert!(!on(g("readWrite", "app"), DropDatabase, "app"));
        assert!(on(g("read", "app"), Find, "app"));
        assert!(!on(g("read", "app"), Insert, "app"));
        assert!(on(g("dbAdmin", "app"), DropDatabase, "app"));
        assert!(on(g("dbAdmin", "app"), ListCollections, "app"));
        assert!(
            !on(g("dbAdmin", "app"), Find, "app"),
            "dbAdmin reads no data"
        );
        assert!(!on(g("dbAdmin", "app"), Insert, "app"));
        assert!(on(g("dbOwner", "app"), GrantRole, "app"));
        assert!(on(g("dbOwner", "app"), DropDatabase, "app"));
        assert!(!on(g("userAdmin", "app"), Find, "app"));
        assert!(on(g("userAdmin", "app"), GrantRole, "app"));
        assert!(!on(g("userAdmin", "app"), GrantRole, "admin"));
        assert!(on(g("readAnyDatabase", "admin"), Find, "z"));
        assert!(!on(g("readAnyDatabase", "admin"), Find, "local"));
        assert!(!on(g("readAnyDatabase", "admin"), Insert, "z"));
        assert!(on(g("readWriteAnyDatabase", "admin"), Insert, "z"));
        assert!(!on(g("readWriteAnyDatabase", "admin"), CreateUser, "z"));
        assert!(on(g("dbAdminAnyDatabase", "admin"), DropDatabase, "z"));
        assert!(on(g("userAdminAnyDatabase", "admin"), GrantRole, "admin"));
        assert!(!on(g("clusterMonitor", "admin"), Find, "z"));
        assert!(allowed(
            &[g("clusterMonitor", "admin")],
            ServerStatus,
            Target::Cluster
        ));
        assert!(!allowed(
            &[g("readWrite", "admin")],
            ServerStatus,
            Target::Cluster
        ));
        assert!(!allowed(&[], Find, Target::Db("z")));
        assert!(allowed_on_every_db(
            &[g("userAdminAnyDatabase", "admin")],
            ViewUser
        ));
        assert!(!allowed_on_every_db(&[g("userAdmin", "admin")], ViewUser));
        assert!(!allowed_on_every_db(&[g("userAdmin", "*any*")], ViewUser));
    }

    #[test]
    fn no_builtin_role_grants_change_own_password() {
        for r in BUILTIN_ROLES {
            let db = if r.admin_only { "admin" } else { "app" };
            assert!(!on(g(r.name, db), ChangeOwnPassword, db), "{}", r.name);
        }
    }

    #[test]
    fn validation_rejects_unknown_and_misplaced_roles() {
        assert!(g("readWrite", "app").validate().is_ok());
        assert!(g("dbAdmin", "app").validate().is_ok());
        assert!(g("root", "admin").validate().is_ok());
        assert!(g("dbAdminAnyDatabase", "admin").validate().is_ok());
        assert!(g("root", "app").validate().is_err());
        assert!(g("superuser", "admin").validate().is_err());
    }
}
