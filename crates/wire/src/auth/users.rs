//! Users, stored in `admin.system.users` through docdb, in MongoDB's shape:
//!
//! ```text
//! { _id: "<db>.<user>", userId: UUID, user, db,
//!   credentials: { "SCRAM-SHA-256": { iterationCount, salt, storedKey, serverKey } },
//!   roles: [ { role, db } ] }
//! ```
//!
//! `salt`, `storedKey` and `serverKey` are base64 strings, as MongoDB stores them. The
//! password itself is never stored, logged or kept after the credentials are derived.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bson::{Bson, Document, doc};
use zeroize::Zeroizing;

use crate::auth::roles::RoleGrant;
use crate::auth::scram::{Credentials, DEFAULT_ITERATIONS};
use crate::backend::{self, Db};
use crate::error::{CmdResult, CommandError, code};

pub const USERS_DB: &str = "admin";
pub const USERS_COLLECTION: &str = "system.users";
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// A stored user.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: String,
    pub db: String,
    pub user_id: bson::Binary,
    pub credentials: Credentials,
    pub roles: Vec<RoleGrant>,
}

pub fn user_key(db: &str, user: &str) -> String {
    format!("{db}.{user}")
}

impl UserRecord {
    /// Creates a record, deriving SCRAM-SHA-256 credentials from `password`.
    pub fn new(
        db: &str,
        user: &str,
        password: &str,
        roles: Vec<RoleGrant>,
    ) -> CmdResult<UserRecord> {
        Ok(UserRecord {
            user: user.to_string(),
            db: db.to_string(),
            user_id: bson::Binary::from_uuid(bson::Uuid::new()),
            credentials: derive(password)?,
            roles,
        })
    }

    pub fn to_document(&self) -> Document {
        doc! {
            "_id": user_key(&self.db, &self.user),
            "userId": Bson::Binary(self.user_id.clone()),
            "user": self.user.clone(),
            "db": self.db.clone(),
            "credentials": {
                MECHANISM: {
                    "iterationCount": self.credentials.iteration_count as i32,
                    "salt": B64.encode(&self.credentials.salt),
                    "storedKey": B64.encode(&self.credentials.stored_key),
                    "serverKey": B64.encode(self.credentials.server_key.as_slice()),
                }
            },
            "roles": self.roles.iter().map(|r| Bson::Document(r.to_document())).collect::<Vec<_>>(),
        }
    }

    pub fn from_document(d: &Document) -> CmdResult<UserRecord> {
        let corrupt = |what: &str| {
            CommandError::internal(format!("stored user document has no valid {what}"))
        };
        let user = d.get_str("user").map_err(|_| corrupt("user"))?.to_string();
        let db = d.get_str("db").map_err(|_| corrupt("db"))?.to_string();
        let user_id = match d.get("userId") {
            Some(Bson::Binary(b)) => b.clone(),
            _ => return Err(corrupt("userId")),
        };
        let scram = d
            .get_document("credentials")
            .and_then(|c| c.get_document(MECHANISM))
            .map_err(|_| corrupt("SCRAM-SHA-256 credentials"))?;
        let b64 = |k: &str| -> CmdResult<Vec<u8>> {
            let s = scram.get_str(k).map_err(|_| corrupt(k))?;
            B64.decode(s).map_err(|_| corrupt(k))
        };
        let iteration_count = match scram.get("iterationCount") {
            Some(Bson::Int32(i)) if *i > 0 => *i as u32,
            Some(Bson::Int64(i)) if *i > 0 && *i <= u32::MAX as i64 => *i as u32,
            _ => return Err(corrupt("iterationCount")),
        };
        let credentials = Credentials {
            iteration_count,
            salt: b64("salt")?,
            stored_key: b64("storedKey")?,
            server_key: Zeroizing::new(b64("serverKey")?),
        };
        let mut roles = Vec::new();
        if let Ok(list) = d.get_array("roles") {
            for r in list {
                roles.push(RoleGrant::parse(r, &db).map_err(|_| corrupt("roles"))?);
            }
        }
        Ok(UserRecord {
            user,
            db,
            user_id,
            credentials,
            roles,
        })
    }

    /// The `usersInfo` view: never the credentials.
    pub fn to_info(&self) -> Document {
        doc! {
            "_id": user_key(&self.db, &self.user),
            "userId": Bson::Binary(self.user_id.clone()),
            "user": self.user.clone(),
            "db": self.db.clone(),
            "roles": self.roles.iter().map(|r| Bson::Document(r.to_document())).collect::<Vec<_>>(),
            "mechanisms": [MECHANISM],
        }
    }
}

fn derive(password: &str) -> CmdResult<Credentials> {
    if password.is_empty() {
        return Err(CommandError::bad_value("Password cannot be empty"));
    }
    Credentials::derive(password, DEFAULT_ITERATIONS)
        .map_err(|e| CommandError::bad_value(format!("invalid password: {e}")))
}

/// Looks a user up.
pub fn find_user(db: &Db, auth_db: &str, user: &str) -> CmdResult<Option<UserRecord>> {
    let filter = doc! {"_id": user_key(auth_db, user)};
    match backend::find_one(db, USERS_DB, USERS_COLLECTION, filter)? {
        Some(d) => Ok(Some(UserRecord::from_document(&d)?)),
        None => Ok(None),
    }
}

/// Stores a new user; `51003` if it exists.
pub fn insert_user(db: &Db, record: &UserRecord) -> CmdResult<()> {
    match backend::insert_one(db, USERS_DB, USERS_COLLECTION, record.to_document()) {
        Err(e) if e.code == 11000 => Err(CommandError::new(
            code::location(51003),
            format!("User \"{}@{}\" already exists", record.user, record.db),
        )),
        other => other,
    }
}

/// Replaces a stored user; `UserNotFound` if it does not exist.
pub fn replace_user(db: &Db, record: &UserRecord) -> CmdResult<()> {
    let filter = doc! {"_id": user_key(&record.db, &record.user)};
    if backend::replace_one(db, USERS_DB, USERS_COLLECTION, filter, record.to_document())? == 0 {
        return Err(user_not_found(&record.user, &record.db));
    }
    Ok(())
}

/// Deletes a user; `UserNotFound` if it does not exist.
pub fn delete_user(db: &Db, auth_db: &str, user: &str) -> CmdResult<()> {
    let filter = doc! {"_id": user_key(auth_db, user)};
    if backend::delete_one(db, USERS_DB, USERS_COLLECTION, filter)? == 0 {
        return Err(user_not_found(user, auth_db));
    }
    Ok(())
}

/// Every user matching `filter` (over the stored documents).
pub fn list_users(db: &Db, filter: Document) -> CmdResult<Vec<UserRecord>> {
    backend::find_all(db, USERS_DB, USERS_COLLECTION, filter)?
        .iter()
        .map(UserRecord::from_document)
        .collect()
}

pub fn user_not_found(user: &str, db: &str) -> CommandError {
    CommandError::new(
        code::USER_NOT_FOUND,
        format!("Could not find user \"{user}\" for db \"{db}\""),
    )
}

/// Creates `admin.<user>` with role `root` unless a user by that name exists.
pub async fn ensure_admin(db: Arc<Db>, user: &str, password: &Zeroizing<String>) -> CmdResult<()> {
    let user = user.to_string();
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        if find_user(&db, USERS_DB, &user)?.is_some() {
            return Ok(());
        }
        let record = UserRecord::new(
            USERS_DB,
            &user,
            &password,
            vec![RoleGrant {
                role: "root".into(),
                db: USERS_DB.into(),
            }],
        )?;
        insert_user(&db, &record)?;
        tracing::info!(user = %user, "created initial admin user");
        Ok(())
    })
    .await
    .map_err(|e| CommandError::internal(format!("admin user task failed: {e}")))?
}

/// Gives `admin.<user>` new SCRAM-SHA-256 credentials derived from `password` (the
/// management API's password reset), creating it with role `root` if it is missing. Its
/// roles and user id stay; connections already authenticated as it stay authenticated, as
/// in MongoDB, and new logins need the new password.
pub async fn reset_admin_password(
    db: Arc<Db>,
    user: &str,
    password: &Zeroizing<String>,
) -> CmdResult<()> {
    let user = user.to_string();
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        let credentials = derive(&password)?;
        drop(password);
        match find_user(&db, USERS_DB, &user)? {
            Some(mut record) => {
                record.credentials = credentials;
                replace_user(&db, &record)?;
            }
            None => {
                let record = UserRecord {
                    user: user.clone(),
                    db: USERS_DB.to_string(),
                    user_id: bson::Binary::from_uuid(bson::Uuid::new()),
                    credentials,
                    roles: vec![RoleGrant {
                        role: "root".into(),
                        db: USERS_DB.into(),
                    }],
                };
                insert_user(&db, &record)?;
            }
        }
        tracing::info!(user = %user, "administrator password reset");
        Ok(())
    })
    .await
    .map_err(|e| CommandError::internal(format!("admin password task failed: {e}")))?
}
