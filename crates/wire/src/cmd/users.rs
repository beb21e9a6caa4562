//! `createUser`, `updateUser`, `dropUser`, `usersInfo`, `grantRolesToUser`,
//! `revokeRolesFromUser` (SCRAM-SHA-256 users only), with MongoDB's privilege rules:
//! granting a role needs `grantRole` on the role's database and taking one away needs
//! `revokeRole` there, so a database's user administrator can hand out that database's
//! roles but not `root` (a role on `admin`); a password change needs `changePassword` on
//! the user's database. The cluster's administrator (see
//! [`crate::auth::directory::Directory`]) cannot be dropped, lose a role, or get a new
//! password from anyone, itself included: these are refused with `Unauthorized` (13). Its
//! password is reset through the management API ([`crate::Server::reset_admin_password`]).
//! Every change to a user's roles or existence moves the users generation, so open
//! connections see it at their next command.

use bson::{Bson, Document, doc};
use zeroize::Zeroizing;

use super::{Ctx, not_authorized};
use crate::auth::roles::{Action, RoleGrant, Target, allowed, allowed_on_every_db};
use crate::auth::users::{self, UserRecord};
use crate::error::{CmdResult, CommandError, code};

fn user_name(ctx: &Ctx<'_>) -> CmdResult<String> {
    match ctx.body.get(&ctx.name) {
        Some(Bson::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(CommandError::bad_value(format!(
            "{} needs a non-empty user name",
            ctx.name
        ))),
    }
}

fn password(body: &Document) -> CmdResult<Option<Zeroizing<String>>> {
    match body.get("pwd") {
        None => Ok(None),
        Some(Bson::String(s)) => Ok(Some(Zeroizing::new(s.clone()))),
        Some(_) => Err(CommandError::type_mismatch("'pwd' must be a string")),
    }
}

fn check_mechanisms(body: &Document) -> CmdResult<()> {
    if let Some(v) = body.get("mechanisms") {
        let Bson::Array(list) = v else {
            return Err(CommandError::type_mismatch("'mechanisms' must be an array"));
        };
        for m in list {
            if m.as_str() != Some(users::MECHANISM) {
                return Err(CommandError::bad_value(format!(
                    "Unsupported mechanism {}: only SCRAM-SHA-256 is available",
                    m.as_str().unwrap_or("?")
                )));
            }
        }
    }
    if body.get_bool("digestPassword").unwrap_or(true) {
        Ok(())
    } else {
        Err(CommandError::bad_value(
            "Use of SCRAM-SHA-256 requires undigested passwords",
        ))
    }
}

fn roles(body: &Document, db: &str) -> CmdResult<Option<Vec<RoleGrant>>> {
    let Some(v) = body.get("roles") else {
        return Ok(None);
    };
    let Bson::Array(list) = v else {
        return Err(CommandError::type_mismatch("'roles' must be an array"));
    };
    let mut out = Vec::new();
    for r in list {
        let grant = RoleGrant::parse(r, db).map_err(CommandError::bad_value)?;
        grant
            .validate()
            .map_err(|m| CommandError::new(code::ROLE_NOT_FOUND, m))?;
        out.push(grant);
    }
    Ok(Some(out))
}

pub(super) async fn create_user(ctx: &mut Ctx<'_>) -> CmdResult {
    let user = user_name(ctx)?;
    check_mechanisms(&ctx.body)?;
    let Some(pwd) = password(&ctx.body)? else {
        return Err(CommandError::bad_value(
            "Must provide a 'pwd' field for all user documents, except those with '$external' as the user's source db",
        ));
    };
    let roles = roles(&ctx.body, &ctx.db)?.ok_or_else(|| {
        CommandError::bad_value("\"createUser\" command requires a \"roles\" array")
    })?;
    require_on_roles(ctx, Action::GrantRole, &roles)?;
    let db = ctx.db.clone();
    let name = user.clone();
    ctx.blocking(move |h| {
        let record = UserRecord::new(&db, &user, &pwd, roles)?;
        users::insert_user(h, &record)
    })
    .await?;
    audit_user_change(
        ctx,
        crate::audit::SecurityEventKind::UserCreated,
        format!(
            "created user {} on {}",
            crate::audit::name(&name),
            crate::audit::name(&ctx.db)
        ),
    );
    Ok(Document::new())
}

pub(super) async fn update_user(ctx: &mut Ctx<'_>) -> CmdResult {
    let user = user_name(ctx)?;
    check_mechanisms(&ctx.body)?;
    let pwd = password(&ctx.body)?;
    let roles = roles(&ctx.body, &ctx.db)?;
    if pwd.is_none() && roles.is_none() {
        return Err(CommandError::bad_value(
            "Must specify at least one field to update in updateUser",
        ));
    }
    let is_self = is_caller(ctx, &ctx.db, &user);
    if pwd.is_some() {
        let own = is_self && require(ctx, Action::ChangeOwnPassword, &ctx.db).is_ok();
        if !own {
            require(ctx, Action::ChangePassword, &ctx.db)?;
        }
        // Nobody, the administrator included: its password is the management API's.
        if ctx.shared.users.is_admin(&ctx.db, &user) {
            return Err(CommandError::unauthorized(format!(
                "not authorized on {} to execute command {{ updateUser: \"{}\", pwd: ... }}: the cluster administrator's password can't be changed through the MongoDB API; reset it through the management API (PATCH the mongoCluster with properties.administrator.password, or `strongroom cluster update <name> --admin-password`)",
                ctx.db,
                crate::server::truncate(&user, 64),
            )));
        }
    }
    if let Some(roles) = &roles {
        require_on_roles(ctx, Action::GrantRole, roles)?;
    }
    let what = match (pwd.is_some(), roles.is_some()) {
        (true, true) => "changed the password and roles of user",
        (true, false) => "changed the password of user",
        _ => "changed the roles of user",
    };
    let (db, lookup) = (ctx.db.clone(), user.clone());
    let mut record = ctx.blocking(move |h| find(h, &db, &lookup)).await?;
    if let Some(roles) = roles {
        let removed = removed_roles(&record.roles, &roles);
        require_on_roles(ctx, Action::RevokeRole, &removed)?;
        if !removed.is_empty() {
            protect_admin(ctx, &user, "lose a role")?;
        }
        record.roles = roles;
    }
    let (db, name) = (ctx.db.clone(), user.clone());
    ctx.blocking(move |h| {
        if let Some(pwd) = pwd {
            record.credentials = UserRecord::new(&db, &name, &pwd, Vec::new())?.credentials;
        }
        users::replace_user(h, &record)
    })
    .await?;
    ctx.shared.users.changed();
    audit_user_change(
        ctx,
        crate::audit::SecurityEventKind::UserUpdated,
        format!(
            "{what} {} on {}",
            crate::audit::name(&user),
            crate::audit::name(&ctx.db)
        ),
    );
    Ok(Document::new())
}

/// `{grantRolesToUser: "<user>", roles: [...]}`: needs `grantRole` on every role's db.
pub(super) async fn grant_roles_to_user(ctx: &mut Ctx<'_>) -> CmdResult {
    change_roles(ctx, true).await
}

/// `{revokeRolesFromUser: "<user>", roles: [...]}`: needs `revokeRole` on every role's db.
pub(super) async fn revoke_roles_from_user(ctx: &mut Ctx<'_>) -> CmdResult {
    change_roles(ctx, false).await
}

async fn change_roles(ctx: &mut Ctx<'_>, grant: bool) -> CmdResult {
    let user = user_name(ctx)?;
    let listed = roles(&ctx.body, &ctx.db)?.ok_or_else(|| {
        CommandError::bad_value(format!(
            "\"{}\" command requires a \"roles\" array",
            ctx.name
        ))
    })?;
    if listed.is_empty() {
        return Err(CommandError::bad_value(format!(
            "\"{}\" command requires a non-empty \"roles\" array",
            ctx.name
        )));
    }
    let action = if grant {
        Action::GrantRole
    } else {
        Action::RevokeRole
    };
    require_on_roles(ctx, action, &listed)?;
    let (db, lookup) = (ctx.db.clone(), user.clone());
    let mut record = ctx.blocking(move |h| find(h, &db, &lookup)).await?;
    if grant {
        for r in listed {
            if !record.roles.contains(&r) {
                record.roles.push(r);
            }
        }
    } else {
        let before = record.roles.len();
        record.roles.retain(|r| !listed.contains(r));
        if record.roles.len() != before {
            protect_admin(ctx, &user, "lose a role")?;
        }
    }
    ctx.blocking(move |h| users::replace_user(h, &record))
        .await?;
    ctx.shared.users.changed();
    audit_user_change(
        ctx,
        crate::audit::SecurityEventKind::UserUpdated,
        format!(
            "{} roles of user {} on {}",
            if grant { "granted" } else { "revoked" },
            crate::audit::name(&user),
            crate::audit::name(&ctx.db)
        ),
    );
    Ok(Document::new())
}

fn find(h: &crate::backend::Db, db: &str, user: &str) -> CmdResult<UserRecord> {
    users::find_user(h, db, user)?.ok_or_else(|| users::user_not_found(user, db))
}

/// The roles in `old` that `new` no longer has.
fn removed_roles(old: &[RoleGrant], new: &[RoleGrant]) -> Vec<RoleGrant> {
    old.iter().filter(|r| !new.contains(r)).cloned().collect()
}

/// Is the connection's user `db.user`?
fn is_caller(ctx: &Ctx<'_>, db: &str, user: &str) -> bool {
    ctx.client
        .user
        .as_ref()
        .is_some_and(|u| u.db == db && u.user == user)
}

/// `action` on `db` for the connection's user, or MongoDB's `Unauthorized`.
fn require(ctx: &Ctx<'_>, action: Action, db: &str) -> CmdResult<()> {
    let ok = ctx
        .client
        .user
        .as_ref()
        .is_some_and(|u| allowed(&u.roles, action, Target::Db(db)));
    if ok {
        Ok(())
    } else {
        Err(not_authorized(&ctx.db, &ctx.name, &ctx.body))
    }
}

/// `action` (grantRole / revokeRole) on the database of every role in `roles`.
fn require_on_roles(ctx: &Ctx<'_>, action: Action, roles: &[RoleGrant]) -> CmdResult<()> {
    roles.iter().try_for_each(|r| require(ctx, action, &r.db))
}

/// Refuses to change the cluster's administrator (`admin.<name>`) in a way that could
/// lock everyone out: it is created and named by the management API.
fn protect_admin(ctx: &Ctx<'_>, user: &str, what: &str) -> CmdResult<()> {
    if ctx.shared.users.is_admin(&ctx.db, user) {
        return Err(CommandError::unauthorized(format!(
            "not authorized on {} to execute command {{ {}: \"{}\" }}: the cluster's administrator can't {what} through the MongoDB API",
            ctx.db,
            crate::server::truncate(&ctx.name, 64),
            crate::server::truncate(user, 64),
        )));
    }
    Ok(())
}

pub(super) async fn drop_user(ctx: &mut Ctx<'_>) -> CmdResult {
    let user = user_name(ctx)?;
    protect_admin(ctx, &user, "be dropped")?;
    let db = ctx.db.clone();
    let name = user.clone();
    ctx.blocking(move |h| users::delete_user(h, &db, &user))
        .await?;
    ctx.shared.users.changed();
    ctx.shared.cursors.close_user(&ctx.db, &name);
    audit_user_change(
        ctx,
        crate::audit::SecurityEventKind::UserDropped,
        format!(
            "dropped user {} on {}",
            crate::audit::name(&name),
            crate::audit::name(&ctx.db)
        ),
    );
    Ok(Document::new())
}

/// `usersInfo: 1` (all users of this db), `"name"`, `{user, db}` or an array of those;
/// `forAllDBs: true` with `usersInfo: 1` on admin. A user may always see themself.
pub(super) async fn users_info(ctx: &mut Ctx<'_>) -> CmdResult {
    let spec = ctx.body.get("usersInfo").cloned().unwrap_or(Bson::Int32(1));
    let mut wanted: Vec<(String, String)> = Vec::new();
    let mut whole_db: Option<Option<String>> = None; // Some(None) = every db
    let mut parse_one = |v: &Bson| -> CmdResult<()> {
        match v {
            Bson::String(u) => wanted.push((ctx.db.clone(), u.clone())),
            Bson::Document(d) => {
                let u = d
                    .get_str("user")
                    .map_err(|_| CommandError::bad_value("usersInfo needs 'user'"))?;
                let db = d
                    .get_str("db")
                    .map_err(|_| CommandError::bad_value("usersInfo needs 'db'"))?;
                wanted.push((db.to_string(), u.to_string()));
            }
            _ => {
                return Err(CommandError::bad_value(
                    "usersInfo entries must be names or {user, db}",
                ));
            }
        }
        Ok(())
    };
    match &spec {
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => {
            if ctx.body.get_bool("forAllDBs").unwrap_or(false) {
                whole_db = Some(None);
            } else {
                whole_db = Some(Some(ctx.db.clone()));
            }
        }
        Bson::Array(items) => {
            for i in items {
                parse_one(i)?;
            }
        }
        other => parse_one(other)?,
    }
    // Authorisation: viewUser on the users' databases (on every database for
    // forAllDBs), or a user asking only about itself.
    let me = ctx.client.user.clone();
    let is_admin_for = |db: &str| {
        me.as_ref()
            .is_some_and(|u| allowed(&u.roles, Action::ViewUser, Target::Db(db)))
    };
    let authorised = match &whole_db {
        Some(None) => me
            .as_ref()
            .is_some_and(|u| allowed_on_every_db(&u.roles, Action::ViewUser)),
        Some(Some(db)) => is_admin_for(db),
        None => wanted.iter().all(|(db, u)| {
            is_admin_for(db) || me.as_ref().is_some_and(|m| &m.db == db && &m.user == u)
        }),
    };
    if !authorised {
        return Err(not_authorized(&ctx.db, &ctx.name, &ctx.body));
    }
    let filter = match (&whole_db, wanted.is_empty()) {
        (Some(None), _) => doc! {},
        (Some(Some(db)), _) => doc! {"db": db.clone()},
        (None, true) => return Ok(doc! {"users": []}),
        (None, false) => {
            doc! {"_id": {"$in": wanted.iter().map(|(d, u)| Bson::String(users::user_key(d, u))).collect::<Vec<_>>()}}
        }
    };
    let found = ctx.blocking(move |h| users::list_users(h, filter)).await?;
    let mut list: Vec<Document> = found.iter().map(UserRecord::to_info).collect();
    list.sort_by(|a, b| {
        a.get_str("_id")
            .unwrap_or("")
            .cmp(b.get_str("_id").unwrap_or(""))
    });
    Ok(doc! {"users": list})
}

/// Records a user-management change for the audit log: who did it, from where, to whom.
fn audit_user_change(ctx: &Ctx<'_>, kind: crate::audit::SecurityEventKind, detail: String) {
    crate::audit::record(crate::audit::SecurityEvent {
        kind,
        principal: ctx
            .client
            .user
            .as_ref()
            .map(|u| crate::audit::name(&u.user)),
        remote: Some(ctx.client.peer),
        success: true,
        detail,
    });
}
