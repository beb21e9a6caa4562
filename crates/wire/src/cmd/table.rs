//! The one table of commands: every command the server implements has exactly one entry
//! naming it (with its aliases), the privilege it needs, and its handler. Lookup, the
//! access check and dispatch all read this table, so they cannot disagree; a name that
//! is not here is `CommandNotFound`.
//!
//! Privileges are MongoDB's: an [`Action`] on the command's database or on the cluster.
//! Commands whose privileges depend on their arguments derive them from the body
//! ([`Access::DbFor`]); the user-management commands, `renameCollection` and
//! `listDatabases` check the databases they name in their handlers.

use bson::{Bson, Document};

use super::{Ctx, Reply, admin, crud, cursors, ddl, hello, sasl, users};
use crate::auth::roles::Action::{self, *};
use crate::error::{CmdResult, CommandError, code};

/// What a command needs before it may run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Access {
    /// Runs without authentication (handshake, authentication itself, ping).
    Open,
    /// Any authenticated user; the handler checks the rest (cursor ownership, the
    /// databases a user-management command or `renameCollection` names).
    Authenticated,
    /// Every one of these actions on the command's database.
    Db(&'static [Action]),
    /// Actions on the command's database that depend on the command's arguments.
    DbFor(fn(&Document) -> &'static [Action]),
    /// This action on the cluster.
    Cluster(Action),
}

/// Which handler runs a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handler {
    Find,
    Insert,
    Update,
    Delete,
    GetMore,
    Aggregate,
    FindAndModify,
    Count,
    Distinct,
    KillCursors,
    Explain,
    Create,
    Drop,
    DropDatabase,
    RenameCollection,
    ListCollections,
    ListDatabases,
    CreateIndexes,
    ListIndexes,
    DropIndexes,
    Hello,
    BuildInfo,
    Ping,
    GetNonce,
    WhatsMyUri,
    ConnectionStatus,
    EndSessions,
    SaslStart,
    SaslContinue,
    Logout,
    ServerStatus,
    GetCmdLineOpts,
    GetParameter,
    HostInfo,
    CreateUser,
    UpdateUser,
    DropUser,
    UsersInfo,
    GrantRolesToUser,
    RevokeRolesFromUser,
}

/// One implemented command.
pub(crate) struct Command {
    /// The name and its aliases, as clients send them.
    pub names: &'static [&'static str],
    pub access: Access,
    pub handler: Handler,
}

const fn cmd(names: &'static [&'static str], access: Access, handler: Handler) -> Command {
    Command {
        names,
        access,
        handler,
    }
}

/// Every command, the busiest first (lookup scans in order).
pub(crate) const COMMANDS: &[Command] = &[
    cmd(&["find"], Access::Db(&[Find]), Handler::Find),
    cmd(&["insert"], Access::Db(&[Insert]), Handler::Insert),
    cmd(&["update"], Access::DbFor(update_actions), Handler::Update),
    cmd(&["delete"], Access::Db(&[Remove]), Handler::Delete),
    // Only the cursor's owner may continue it (checked by the cursor registry).
    cmd(&["getMore"], Access::Authenticated, Handler::GetMore),
    cmd(
        &["aggregate"],
        Access::DbFor(aggregate_actions),
        Handler::Aggregate,
    ),
    cmd(
        &["findAndModify", "findandmodify"],
        Access::DbFor(find_and_modify_actions),
        Handler::FindAndModify,
    ),
    cmd(&["count"], Access::Db(&[Find]), Handler::Count),
    cmd(&["distinct"], Access::Db(&[Find]), Handler::Distinct),
    // A user may always kill its own cursors (MongoDB too); others' are refused by the
    // registry.
    cmd(
        &["killCursors"],
        Access::Authenticated,
        Handler::KillCursors,
    ),
    cmd(
        &["explain"],
        Access::DbFor(explain_actions),
        Handler::Explain,
    ),
    cmd(
        &["create"],
        Access::Db(&[CreateCollection]),
        Handler::Create,
    ),
    cmd(&["drop"], Access::Db(&[DropCollection]), Handler::Drop),
    cmd(
        &["dropDatabase"],
        Access::Db(&[DropDatabase]),
        Handler::DropDatabase,
    ),
    // Runs on admin; the handler checks the source and target databases.
    cmd(
        &["renameCollection"],
        Access::Authenticated,
        Handler::RenameCollection,
    ),
    cmd(
        &["listCollections"],
        Access::Db(&[ListCollections]),
        Handler::ListCollections,
    ),
    // Without the cluster's listDatabases, a user sees the databases it has a privilege
    // on (MongoDB's authorizedDatabases).
    cmd(
        &["listDatabases"],
        Access::Authenticated,
        Handler::ListDatabases,
    ),
    cmd(
        &["createIndexes"],
        Access::Db(&[CreateIndex]),
        Handler::CreateIndexes,
    ),
    cmd(
        &["listIndexes"],
        Access::Db(&[ListIndexes]),
        Handler::ListIndexes,
    ),
    cmd(
        &["dropIndexes", "deleteIndexes"],
        Access::Db(&[DropIndex]),
        Handler::DropIndexes,
    ),
    cmd(
        &["hello", "isMaster", "ismaster"],
        Access::Open,
        Handler::Hello,
    ),
    cmd(
        &["buildInfo", "buildinfo"],
        Access::Open,
        Handler::BuildInfo,
    ),
    cmd(&["ping"], Access::Open, Handler::Ping),
    cmd(&["getnonce"], Access::Open, Handler::GetNonce),
    cmd(&["whatsmyuri"], Access::Open, Handler::WhatsMyUri),
    cmd(
        &["connectionStatus"],
        Access::Open,
        Handler::ConnectionStatus,
    ),
    cmd(&["endSessions"], Access::Open, Handler::EndSessions),
    cmd(&["saslStart"], Access::Open, Handler::SaslStart),
    cmd(&["saslContinue"], Access::Open, Handler::SaslContinue),
    cmd(&["logout"], Access::Open, Handler::Logout),
    cmd(
        &["serverStatus"],
        Access::Cluster(ServerStatus),
        Handler::ServerStatus,
    ),
    cmd(
        &["getCmdLineOpts"],
        Access::Cluster(GetCmdLineOpts),
        Handler::GetCmdLineOpts,
    ),
    cmd(
        &["getParameter"],
        Access::Cluster(GetParameter),
        Handler::GetParameter,
    ),
    cmd(&["hostInfo"], Access::Cluster(HostInfo), Handler::HostInfo),
    // The handler also needs grantRole on every role's database.
    cmd(
        &["createUser"],
        Access::Db(&[CreateUser]),
        Handler::CreateUser,
    ),
    // changePassword (or changeOwnPassword on oneself), grantRole/revokeRole on the
    // roles' databases: checked by the handler.
    cmd(&["updateUser"], Access::Authenticated, Handler::UpdateUser),
    cmd(&["dropUser"], Access::Db(&[DropUser]), Handler::DropUser),
    // viewUser on the users' databases, or oneself: checked by the handler.
    cmd(&["usersInfo"], Access::Authenticated, Handler::UsersInfo),
    // grantRole / revokeRole on every role's database: checked by the handler.
    cmd(
        &["grantRolesToUser"],
        Access::Authenticated,
        Handler::GrantRolesToUser,
    ),
    cmd(
        &["revokeRolesFromUser"],
        Access::Authenticated,
        Handler::RevokeRolesFromUser,
    ),
];

/// The entry for a command name; `None` for unknown commands.
pub(crate) fn lookup(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.names.contains(&name))
}

/// Every command name (aliases included) the server implements.
pub fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().flat_map(|c| c.names.iter().copied())
}

/// Runs the handler of an entry.
pub(super) async fn dispatch(handler: Handler, ctx: &mut Ctx<'_>) -> CmdResult<Reply> {
    let doc = match handler {
        // Query replies are assembled from stored BSON without re-encoding it.
        Handler::Find => return crud::find(ctx).await,
        Handler::Aggregate => return crud::aggregate(ctx).await,
        Handler::GetMore => return cursors::get_more(ctx).await.map(Reply::Raw),
        Handler::Insert => crud::insert(ctx).await,
        Handler::Update => crud::update(ctx).await,
        Handler::Delete => crud::delete(ctx).await,
        Handler::FindAndModify => crud::find_and_modify(ctx).await,
        Handler::Count => crud::count(ctx).await,
        Handler::Distinct => crud::distinct(ctx).await,
        Handler::KillCursors => cursors::kill_cursors(ctx),
        Handler::Explain => crud::explain(ctx).await,
        Handler::Create => ddl::create(ctx).await,
        Handler::Drop => ddl::drop(ctx).await,
        Handler::DropDatabase => ddl::drop_database(ctx).await,
        Handler::RenameCollection => ddl::rename_collection(ctx).await,
        Handler::ListCollections => ddl::list_collections(ctx).await,
        Handler::ListDatabases => ddl::list_databases(ctx).await,
        Handler::CreateIndexes => ddl::create_indexes(ctx).await,
        Handler::ListIndexes => ddl::list_indexes(ctx).await,
        Handler::DropIndexes => ddl::drop_indexes(ctx).await,
        Handler::Hello => hello::hello(ctx).await,
        Handler::BuildInfo => admin::build_info(ctx),
        Handler::Ping => Ok(Document::new()),
        Handler::GetNonce => Err(CommandError::new(
            code::NOT_IMPLEMENTED,
            "getnonce is not supported; use SCRAM-SHA-256",
        )),
        Handler::WhatsMyUri => admin::whatsmyuri(ctx),
        Handler::ConnectionStatus => admin::connection_status(ctx),
        Handler::EndSessions => admin::end_sessions(ctx),
        Handler::SaslStart => sasl::sasl_start(ctx).await,
        Handler::SaslContinue => sasl::sasl_continue(ctx).await,
        Handler::Logout => sasl::logout(ctx),
        Handler::ServerStatus => admin::server_status(ctx),
        Handler::GetCmdLineOpts => admin::get_cmd_line_opts(ctx),
        Handler::GetParameter => admin::get_parameter(ctx),
        Handler::HostInfo => admin::host_info(ctx),
        Handler::CreateUser => users::create_user(ctx).await,
        Handler::UpdateUser => users::update_user(ctx).await,
        Handler::DropUser => users::drop_user(ctx).await,
        Handler::UsersInfo => users::users_info(ctx).await,
        Handler::GrantRolesToUser => users::grant_roles_to_user(ctx).await,
        Handler::RevokeRolesFromUser => users::revoke_roles_from_user(ctx).await,
    };
    doc.map(Reply::Doc)
}

/// `$out` replaces its target (insert + remove), `$merge` inserts and updates.
pub(super) fn aggregate_writes(body: &Document) -> bool {
    !matches!(aggregate_actions(body), [Find])
}

fn aggregate_actions(body: &Document) -> &'static [Action] {
    let (mut out, mut merge) = (false, false);
    if let Ok(stages) = body.get_array("pipeline") {
        for s in stages.iter().filter_map(Bson::as_document) {
            out |= s.contains_key("$out");
            merge |= s.contains_key("$merge");
        }
    }
    match (out, merge) {
        (false, false) => &[Find],
        (true, false) => &[Find, Insert, Remove],
        (false, true) => &[Find, Insert, Update],
        (true, true) => &[Find, Insert, Update, Remove],
    }
}

/// An upsert may insert: it needs `insert` too.
fn update_actions(body: &Document) -> &'static [Action] {
    let upserts = body
        .get_array("updates")
        .is_ok_and(|list| list.iter().filter_map(Bson::as_document).any(is_upsert));
    if upserts {
        &[Update, Insert]
    } else {
        &[Update]
    }
}

/// Read as the handlers read it ([`super::opt_bool`]: any non-zero number is true), so a
/// value the handler takes as an upsert cannot pass here as a plain update.
fn is_upsert(d: &Document) -> bool {
    super::opt_bool(d, "upsert").ok().flatten().unwrap_or(false)
}

fn find_and_modify_actions(body: &Document) -> &'static [Action] {
    if super::opt_bool(body, "remove")
        .ok()
        .flatten()
        .unwrap_or(false)
    {
        &[Find, Remove]
    } else if is_upsert(body) {
        &[Find, Update, Insert]
    } else {
        &[Find, Update]
    }
}

/// Explaining a command needs that command's privileges.
fn explain_actions(body: &Document) -> &'static [Action] {
    let Ok(inner) = body.get_document("explain") else {
        return &[Find];
    };
    match inner.keys().next().map(String::as_str) {
        Some("update") => update_actions(inner),
        Some("delete") => &[Remove],
        Some("findAndModify" | "findandmodify") => find_and_modify_actions(inner),
        Some("aggregate") => aggregate_actions(inner),
        _ => &[Find],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn every_name_has_one_entry_and_unknown_names_none() {
        let mut seen = std::collections::HashSet::new();
        for name in command_names() {
            assert!(seen.insert(name), "{name} is listed twice");
        }
        for name in [
            "hello",
            "find",
            "insert",
            "createUser",
            "serverStatus",
            "getMore",
        ] {
            assert!(lookup(name).is_some(), "{name}");
        }
        assert!(lookup("shutdown").is_none());
    }

    #[test]
    fn privileges_follow_the_arguments() {
        let out = doc! {"aggregate": "c", "pipeline": [{"$match": {}}, {"$out": "x"}]};
        assert_eq!(aggregate_actions(&out), &[Find, Insert, Remove]);
        let upsert = doc! {"update": "c", "updates": [{"q": {}, "u": {}, "upsert": true}]};
        assert_eq!(update_actions(&upsert), &[Update, Insert]);
        let numeric = doc! {"update": "c", "updates": [{"q": {}, "u": {}, "upsert": 1.0}]};
        assert_eq!(update_actions(&numeric), &[Update, Insert]);
        let remove = doc! {"findAndModify": "c", "remove": 1i64};
        assert_eq!(find_and_modify_actions(&remove), &[Find, Remove]);
        let explain = doc! {"explain": {"delete": "c", "deletes": []}};
        assert_eq!(explain_actions(&explain), &[Remove]);
    }
}
