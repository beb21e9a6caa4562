//! Command dispatch: one file per command (or small family of commands).
//!
//! [`execute`] is the only entry point. For every command it
//! 1. checks the availability gate (an Inaccessible cluster answers every command,
//!    `hello` included, with the reason),
//! 2. looks the command up in the one command table ([`table`]; unknown names get
//!    `CommandNotFound`),
//! 3. re-reads the connection's user when users changed since its roles were read
//!    ([`crate::auth::directory`]),
//! 4. checks authentication and the privilege the command's entry names,
//! 5. runs the entry's handler, and renders `{ok: 1, ...}` or `{ok: 0, errmsg, code, codeName}`.
//!
//! Logs carry command names, databases, durations and error codes, never bodies.

mod admin;
mod aggregate;
mod args;
mod count;
mod cursors;
mod ddl;
mod explain;
mod find;
mod find_and_modify;
mod hello;
mod max_time;
mod redact;
mod sasl;
mod table;
mod users;
mod write;

pub(crate) use admin::VERSION;
pub(crate) use args::{opt_bool, opt_doc, opt_i64};
pub use redact::redacted_shape;
pub use table::command_names;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bson::{Bson, Document, RawDocumentBuf};

use crate::auth::roles::{Action, Target, allowed, allowed_on_every_db};
use crate::backend::Db;
use crate::client::Client;
use crate::error::{CmdResult, CommandError, code};
use crate::server::{Shared, truncate};
use table::{Access, Command, aggregate_writes, lookup};

/// Everything a command handler gets.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub client: &'a mut Client,
    /// `$db`.
    pub db: String,
    /// The command name as sent (first key of the body).
    pub name: String,
    pub body: Document,
    pub handle: Arc<Db>,
    /// Gate epoch when `handle` was taken (cursors from an older epoch are dropped).
    pub epoch: u64,
    /// The command's `maxTimeMS` (clock started on admission), for the engine to poll.
    pub interrupt: docdb::Interrupt,
}

impl Ctx<'_> {
    /// Runs `f` on the database on a blocking thread: the engine does file I/O and
    /// must not stall the connection tasks.
    pub async fn blocking<T, F>(&self, f: F) -> CmdResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> CmdResult<T> + Send + 'static,
    {
        let db = self.handle.clone();
        let interrupt = self.interrupt.clone();
        tokio::task::spawn_blocking(move || {
            // Time spent waiting for a blocking thread counts against `maxTimeMS`.
            interrupt.check()?;
            f(&db)
        })
        .await
        .map_err(|e| CommandError::internal(format!("command task failed: {e}")))?
    }

    /// The command's first value as a collection name (`{find: "c"}`).
    pub fn collection(&self) -> CmdResult<String> {
        match self.body.get(&self.name) {
            Some(Bson::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Bson::String(_)) => Err(CommandError::new(
                code::INVALID_NAMESPACE,
                format!("Invalid namespace specified '{}.'", self.db),
            )),
            _ => Err(CommandError::new(
                code::INVALID_NAMESPACE,
                format!(
                    "collection name has invalid type {}",
                    docdb::error::type_name(self.body.get(&self.name).unwrap_or(&Bson::Null))
                ),
            )),
        }
    }
}

/// A command's reply: a document built by the handler, or a BSON body assembled from
/// stored documents without decoding them (query results), which already holds `ok`.
pub(crate) enum Reply {
    Doc(Document),
    Raw(RawDocumentBuf),
}

impl From<Document> for Reply {
    fn from(d: Document) -> Reply {
        Reply::Doc(d)
    }
}

impl From<RawDocumentBuf> for Reply {
    fn from(r: RawDocumentBuf) -> Reply {
        Reply::Raw(r)
    }
}

impl Reply {
    /// The reply as a `Document` (for the legacy `OP_REPLY` path, which only answers
    /// handshakes and so never sees a raw reply in practice).
    pub(crate) fn into_document(self) -> Document {
        match self {
            Reply::Doc(d) => d,
            Reply::Raw(r) => docdb::rawdoc::to_document(&r).unwrap_or_else(|e| {
                CommandError::internal(format!("reply could not be decoded: {e}")).to_document()
            }),
        }
    }
}

/// Runs one command and renders its reply.
pub(crate) async fn execute(
    shared: &Arc<Shared>,
    client: &mut Client,
    db: String,
    body: Document,
) -> Reply {
    let started = Instant::now();
    let name = body.keys().next().cloned().unwrap_or_default();
    shared.counters.command.fetch_add(1, Ordering::Relaxed);
    // `run` hands the body back (less the statements a write command moved out of it),
    // so the redacted shape for the slow-op log is built only for commands that turned
    // out slow, not for every command.
    let command = lookup(&name);
    let (result, body) = run(shared, client, command, db.clone(), name.clone(), body).await;
    let elapsed = started.elapsed();
    // An unknown command's name is whatever the client sent: user data, not logged.
    let shown = if command.is_some() {
        truncate(&name, 64)
    } else {
        "<unknown command>"
    };
    let error_code = result.as_ref().err().map(|e| e.code);
    tracing::debug!(conn = client.connection_id, cmd = shown, db = %truncate(&db, 64), micros = elapsed.as_micros() as u64, code = ?error_code, "command");
    if elapsed >= shared.slow_op_threshold {
        // Slow-op log: the command's shape with every value replaced by "###".
        let shape = redacted_shape(&body);
        tracing::info!(conn = client.connection_id, cmd = shown, ms = elapsed.as_millis() as u64, code = ?error_code, shape = %shape, "slow operation");
    }
    match result {
        Ok(Reply::Doc(mut reply)) => {
            if !reply.contains_key("ok") {
                reply.insert("ok", 1.0);
            }
            Reply::Doc(reply)
        }
        Ok(raw @ Reply::Raw(_)) => raw,
        Err(e) => Reply::Doc(e.to_document()),
    }
}

/// Multi-document transactions need a replica set; this server is a standalone, and
/// says so exactly as MongoDB does.
fn refuse_transactions(body: &Document) -> CmdResult<()> {
    let starts = body.get("startTransaction").is_some();
    let in_txn = matches!(body.get("autocommit"), Some(Bson::Boolean(false)));
    if starts || in_txn {
        return Err(CommandError::new(
            code::ILLEGAL_OPERATION,
            "Transaction numbers are only allowed on a replica set member or mongos",
        ));
    }
    Ok(())
}

/// Checks and runs a command; gives the body back (for the slow-op log).
async fn run(
    shared: &Arc<Shared>,
    client: &mut Client,
    command: Option<&'static Command>,
    db: String,
    name: String,
    body: Document,
) -> (CmdResult<Reply>, Document) {
    // The epoch is read before the handle: a cursor opened on a handle from before a
    // gate change must carry the older epoch, so the registry refuses it.
    let epoch = shared.epoch();
    let (handle, command) = match admit(shared, client, command, &db, &name, &body).await {
        Ok(h) => h,
        Err(e) => return (Err(e), body),
    };
    let interrupt = match max_time::interrupt(&body) {
        Ok(i) => i,
        Err(e) => return (Err(e), body),
    };
    let mut ctx = Ctx {
        shared,
        client,
        db,
        name,
        body,
        handle,
        epoch,
        interrupt,
    };
    let result = (command.run)(&mut ctx).await;
    (result, ctx.body)
}

/// The gate, the command lookup and every access check a command passes before it runs.
async fn admit(
    shared: &Arc<Shared>,
    client: &mut Client,
    command: Option<&'static Command>,
    db: &str,
    name: &str,
    body: &Document,
) -> CmdResult<(Arc<Db>, &'static Command)> {
    let handle = shared.db()?;
    let Some(command) = command else {
        return Err(CommandError::new(
            code::COMMAND_NOT_FOUND,
            format!("no such command: '{}'", truncate(name, 128)),
        ));
    };
    if client.user.is_some() && client.users_generation != shared.users.generation() {
        refresh_user(shared, client, &handle).await?;
    }
    authorize(client, command.access, db, name, body)?;
    refuse_transactions(body)?;
    protect_system_namespaces(client, db, name, body)?;
    Ok((handle, command))
}

/// Users changed since this connection's roles were read: re-reads its user. A dropped
/// user's connection is logged out (its commands then need authentication again, as in
/// MongoDB); a changed user's connection continues with the new roles.
async fn refresh_user(
    shared: &Arc<Shared>,
    client: &mut Client,
    handle: &Arc<Db>,
) -> CmdResult<()> {
    let Some(user) = client.user.clone() else {
        return Ok(());
    };
    // Read before the record: a change stored after this moves the generation past it.
    let generation = shared.users.generation();
    let db = handle.clone();
    let (name, auth_db) = (user.user.clone(), user.db.clone());
    let record =
        tokio::task::spawn_blocking(move || crate::auth::users::find_user(&db, &auth_db, &name))
            .await
            .map_err(|e| CommandError::internal(format!("user lookup failed: {e}")))??;
    client.users_generation = generation;
    match record {
        Some(r) => {
            if r.roles != user.roles {
                tracing::info!(conn = client.connection_id, user = %truncate(&user.user, 64), db = %truncate(&user.db, 64), "roles changed; the connection continues with the new roles");
            }
            if let Some(u) = client.user.as_mut() {
                u.roles = r.roles;
            }
        }
        None => {
            tracing::info!(conn = client.connection_id, user = %truncate(&user.user, 64), db = %truncate(&user.db, 64), "user dropped; the connection is logged out");
            crate::audit::record(crate::audit::SecurityEvent {
                kind: crate::audit::SecurityEventKind::UserDropped,
                principal: Some(crate::audit::name(&user.user)),
                remote: Some(client.peer),
                success: true,
                detail: format!(
                    "connection {} logged out: its user was dropped",
                    client.connection_id
                ),
            });
            client.user = None;
        }
    }
    Ok(())
}

fn authorize(
    client: &Client,
    access: Access,
    db: &str,
    name: &str,
    body: &Document,
) -> CmdResult<()> {
    if matches!(access, Access::Open) {
        return Ok(());
    }
    let Some(user) = &client.user else {
        return Err(requires_authentication(name));
    };
    let ok = match access {
        Access::Open | Access::Authenticated => true,
        Access::Db(actions) => actions
            .iter()
            .all(|a| allowed(&user.roles, *a, Target::Db(db))),
        Access::DbFor(actions) => actions(body)
            .iter()
            .all(|a| allowed(&user.roles, *a, Target::Db(db))),
        Access::Cluster(a) => allowed(&user.roles, a, Target::Cluster),
    };
    if ok {
        Ok(())
    } else {
        Err(not_authorized(db, name, body))
    }
}

fn requires_authentication(name: &str) -> CommandError {
    CommandError::unauthorized(format!(
        "command {} requires authentication",
        truncate(name, 64)
    ))
}

/// MongoDB's message names the command; only the command's first field is echoed
/// (never the body, which may hold user data).
pub(super) fn not_authorized(db: &str, name: &str, body: &Document) -> CommandError {
    let first = body
        .get(name)
        .map(|v| match v {
            Bson::String(s) => format!("\"{}\"", truncate(s, 64)),
            Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Boolean(_) => v.to_string(),
            _ => "...".to_string(),
        })
        .unwrap_or_default();
    CommandError::unauthorized(format!(
        "not authorized on {db} to execute command {{ {}: {first}, $db: \"{db}\" }}",
        truncate(name, 64)
    ))
}

/// `admin.system.users` holds credentials: only the user commands write it, and only
/// user administrators read it. Other `system.*` collections are not writable by CRUD.
fn protect_system_namespaces(
    client: &Client,
    db: &str,
    name: &str,
    body: &Document,
) -> CmdResult<()> {
    let Some(Bson::String(coll)) = body.get(name) else {
        return Ok(());
    };
    if !coll.starts_with("system.") {
        return Ok(());
    }
    let reads = matches!(
        name,
        "find" | "count" | "distinct" | "listIndexes" | "aggregate" | "collStats" | "explain"
    );
    if reads && !aggregate_writes(body) {
        if db == "admin" && coll == "system.users" {
            // It holds every database's users: only who may view users everywhere.
            let ok = client
                .user
                .as_ref()
                .is_some_and(|u| allowed_on_every_db(&u.roles, Action::ViewUser));
            if !ok {
                return Err(not_authorized(db, name, body));
            }
        }
        return Ok(());
    }
    if matches!(name, "getMore" | "killCursors") {
        return Ok(());
    }
    Err(CommandError::unauthorized(format!(
        "not authorized on {db} to execute command {{ {name}: \"{}\" }}: {db}.{} is a system collection",
        truncate(coll, 64),
        truncate(coll, 64)
    )))
}
