//! The one table of commands: every command the server implements has exactly one entry
//! naming it (with its aliases), the privilege it needs, and its handler. Lookup, the
//! access check and dispatch all read this table, so they cannot disagree; a name that
//! is not here is `CommandNotFound`.
//!
//! Adding a command is its handler (`async fn(&mut Ctx) -> CmdResult<impl Into<Reply>>`)
//! in the `cmd/` file of its family and one line in [`COMMANDS`], as in mini-redis.
//!
//! Privileges are MongoDB's: an [`Action`] on the command's database or on the cluster.
//! Commands whose privileges depend on their arguments derive them from the body
//! ([`Access::DbFor`]); the user-management commands, `renameCollection` and
//! `listDatabases` check the databases they name in their handlers.

use std::pin::Pin;

use bson::{Bson, Document};

use super::{
    Ctx, Reply, admin, aggregate, count, cursors, ddl, explain, find, find_and_modify, hello, sasl,
    users, write,
};
use crate::auth::roles::Action::{self, *};
use crate::error::CmdResult;

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

/// A command's execution: parses its body from the [`Ctx`] and runs it. A plain function
/// pointer, so every entry of [`COMMANDS`] is one line that names a handler the compiler
/// checks exists; the boxed future is one allocation per command, small next to decoding
/// its body.
pub(crate) type Run = for<'a, 'c> fn(&'a mut Ctx<'c>) -> Pending<'a>;

/// A running command.
pub(crate) type Pending<'a> = Pin<Box<dyn Future<Output = CmdResult<Reply>> + Send + 'a>>;

/// One implemented command: its names, the privilege it needs and the function that runs
/// it. Nothing else lists commands, so these cannot drift apart.
pub(crate) struct Command {
    /// The name and its aliases, as clients send them.
    pub names: &'static [&'static str],
    pub access: Access,
    pub run: Run,
}

const fn cmd(names: &'static [&'static str], access: Access, run: Run) -> Command {
    Command { names, access, run }
}

/// An `async` handler's future as a [`Pending`] command.
fn wait<'a, T, F>(f: F) -> Pending<'a>
where
    F: Future<Output = CmdResult<T>> + Send + 'a,
    T: Into<Reply>,
{
    Box::pin(async move { f.await.map(Into::into) })
}

/// A synchronous handler's result as a [`Pending`] command.
fn done<'a, T: Into<Reply>>(r: CmdResult<T>) -> Pending<'a> {
    Box::pin(std::future::ready(r.map(Into::into)))
}

/// Every command, the busiest first (lookup scans in order).
pub(crate) const COMMANDS: &[Command] = &[
    cmd(&["find"], Access::Db(&[Find]), |c| wait(find::find(c))),
    cmd(&["insert"], Access::Db(&[Insert]), |c| {
        wait(write::insert(c))
    }),
    cmd(&["update"], Access::DbFor(update_actions), |c| {
        wait(write::update(c))
    }),
    cmd(&["delete"], Access::Db(&[Remove]), |c| {
        wait(write::delete(c))
    }),
    // Only the cursor's owner may continue it (checked by the cursor registry).
    cmd(&["getMore"], Access::Authenticated, |c| {
        wait(cursors::get_more(c))
    }),
    cmd(&["aggregate"], Access::DbFor(aggregate_actions), |c| {
        wait(aggregate::aggregate(c))
    }),
    cmd(
        &["findAndModify", "findandmodify"],
        Access::DbFor(find_and_modify_actions),
        |c| wait(find_and_modify::find_and_modify(c)),
    ),
    cmd(&["count"], Access::Db(&[Find]), |c| wait(count::count(c))),
    cmd(&["distinct"], Access::Db(&[Find]), |c| {
        wait(count::distinct(c))
    }),
    // A user may always kill its own cursors (MongoDB too); others' are refused by the
    // registry.
    cmd(&["killCursors"], Access::Authenticated, |c| {
        done(cursors::kill_cursors(c))
    }),
    cmd(&["explain"], Access::DbFor(explain_actions), |c| {
        wait(explain::explain(c))
    }),
    cmd(&["create"], Access::Db(&[CreateCollection]), |c| {
        wait(ddl::create(c))
    }),
    cmd(&["drop"], Access::Db(&[DropCollection]), |c| {
        wait(ddl::drop(c))
    }),
    cmd(&["dropDatabase"], Access::Db(&[DropDatabase]), |c| {
        wait(ddl::drop_database(c))
    }),
    // Runs on admin; the handler checks the source and target databases.
    cmd(&["renameCollection"], Access::Authenticated, |c| {
        wait(ddl::rename_collection(c))
    }),
    cmd(&["listCollections"], Access::Db(&[ListCollections]), |c| {
        wait(ddl::list_collections(c))
    }),
    // Without the cluster's listDatabases, a user sees the databases it has a privilege
    // on (MongoDB's authorizedDatabases).
    cmd(&["listDatabases"], Access::Authenticated, |c| {
        wait(ddl::list_databases(c))
    }),
    cmd(&["createIndexes"], Access::Db(&[CreateIndex]), |c| {
        wait(ddl::create_indexes(c))
    }),
    cmd(&["listIndexes"], Access::Db(&[ListIndexes]), |c| {
        wait(ddl::list_indexes(c))
    }),
    cmd(
        &["dropIndexes", "deleteIndexes"],
        Access::Db(&[DropIndex]),
        |c| wait(ddl::drop_indexes(c)),
    ),
    cmd(&["hello", "isMaster", "ismaster"], Access::Open, |c| {
        wait(hello::hello(c))
    }),
    cmd(&["buildInfo", "buildinfo"], Access::Open, |c| {
        done(admin::build_info(c))
    }),
    cmd(&["ping"], Access::Open, |c| done(admin::ping(c))),
    cmd(&["getnonce"], Access::Open, |c| done(admin::getnonce(c))),
    cmd(&["whatsmyuri"], Access::Open, |c| {
        done(admin::whatsmyuri(c))
    }),
    cmd(&["connectionStatus"], Access::Open, |c| {
        done(admin::connection_status(c))
    }),
    cmd(&["endSessions"], Access::Open, |c| {
        done(admin::end_sessions(c))
    }),
    cmd(&["saslStart"], Access::Open, |c| wait(sasl::sasl_start(c))),
    cmd(&["saslContinue"], Access::Open, |c| {
        wait(sasl::sasl_continue(c))
    }),
    cmd(&["logout"], Access::Open, |c| done(sasl::logout(c))),
    cmd(&["serverStatus"], Access::Cluster(ServerStatus), |c| {
        done(admin::server_status(c))
    }),
    cmd(&["getCmdLineOpts"], Access::Cluster(GetCmdLineOpts), |c| {
        done(admin::get_cmd_line_opts(c))
    }),
    cmd(&["getParameter"], Access::Cluster(GetParameter), |c| {
        done(admin::get_parameter(c))
    }),
    cmd(&["hostInfo"], Access::Cluster(HostInfo), |c| {
        done(admin::host_info(c))
    }),
    // The handler also needs grantRole on every role's database.
    cmd(&["createUser"], Access::Db(&[CreateUser]), |c| {
        wait(users::create_user(c))
    }),
    // changePassword (or changeOwnPassword on oneself), grantRole/revokeRole on the
    // roles' databases: checked by the handler.
    cmd(&["updateUser"], Access::Authenticated, |c| {
        wait(users::update_user(c))
    }),
    cmd(&["dropUser"], Access::Db(&[DropUser]), |c| {
        wait(users::drop_user(c))
    }),
    // viewUser on the users' databases, or oneself: checked by the handler.
    cmd(&["usersInfo"], Access::Authenticated, |c| {
        wait(users::users_info(c))
    }),
    // grantRole / revokeRole on every role's database: checked by the handler.
    cmd(&["grantRolesToUser"], Access::Authenticated, |c| {
        wait(users::grant_roles_to_user(c))
    }),
    cmd(&["revokeRolesFromUser"], Access::Authenticated, |c| {
        wait(users::revoke_roles_from_user(c))
    }),
];

/// The entry for a command name; `None` for unknown commands.
pub(crate) fn lookup(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.names.contains(&name))
}

/// Every command name (aliases included) the server implements.
pub fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().flat_map(|c| c.names.iter().copied())
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
