//! Databases, collections and indexes: `create`, `drop`, `dropDatabase`,
//! `renameCollection`, `listCollections`, `listDatabases`, `createIndexes`,
//! `listIndexes`, `dropIndexes`.

use bson::{Bson, Document, doc};

use super::cursors::{first_batch, reply_document};
use super::{Ctx, opt_bool, opt_doc};
use crate::auth::roles::{Action, Target, allowed, any_privilege_on};
use crate::backend;
use crate::backend::Db;
use crate::cursor::{Buffered, CursorSource};
use crate::error::{CmdResult, CommandError, code};

pub(super) async fn create(ctx: &mut Ctx<'_>) -> CmdResult {
    let coll = ctx.collection()?;
    for unsupported in [
        "capped",
        "timeseries",
        "viewOn",
        "clusteredIndex",
        "encryptedFields",
    ] {
        if ctx
            .body
            .get(unsupported)
            .is_some_and(|v| !matches!(v, Bson::Boolean(false) | Bson::Null))
        {
            return Err(CommandError::new(
                code::NOT_IMPLEMENTED,
                format!("create: option '{unsupported}' is not supported"),
            ));
        }
    }
    let mut options = Document::new();
    for (k, v) in &ctx.body {
        if k == "create"
            || k.starts_with('$')
            || matches!(
                k.as_str(),
                "lsid"
                    | "writeConcern"
                    | "txnNumber"
                    | "apiVersion"
                    | "apiStrict"
                    | "apiDeprecationErrors"
                    | "comment"
            )
        {
            continue;
        }
        options.insert(k.clone(), v.clone());
    }
    let db = ctx.db.clone();
    ctx.blocking(move |h| h.create_collection(&db, &coll, options))
        .await?;
    Ok(Document::new())
}

pub(super) async fn drop(ctx: &mut Ctx<'_>) -> CmdResult {
    let coll = ctx.collection()?;
    let db = ctx.db.clone();
    let c = coll.clone();
    let n_indexes = ctx
        .blocking(move |h| backend::drop_collection(h, &db, &c))
        .await?;
    // MongoDB 7 answers a drop of a missing collection with success.
    Ok(match n_indexes {
        Some(n) => doc! {"nIndexesWas": n as i32, "ns": format!("{}.{coll}", ctx.db)},
        None => Document::new(),
    })
}

pub(super) async fn drop_database(ctx: &mut Ctx<'_>) -> CmdResult {
    if ctx.db == "admin" || ctx.db == "local" || ctx.db == "config" {
        return Err(CommandError::new(
            code::ILLEGAL_OPERATION,
            format!("Dropping the '{}' database is prohibited.", ctx.db),
        ));
    }
    let db = ctx.db.clone();
    ctx.blocking(move |h| h.drop_database(&db)).await?;
    Ok(doc! {"dropped": ctx.db.clone()})
}

fn split_ns(ns: &str) -> CmdResult<(String, String)> {
    match ns.split_once('.') {
        Some((d, c)) if !d.is_empty() && !c.is_empty() => Ok((d.to_string(), c.to_string())),
        _ => Err(CommandError::new(
            code::INVALID_NAMESPACE,
            format!("Invalid namespace specified '{ns}'"),
        )),
    }
}

/// `{renameCollection: "db.from", to: "db.to", dropTarget}` (run on admin).
pub(super) async fn rename_collection(ctx: &mut Ctx<'_>) -> CmdResult {
    if ctx.db != "admin" {
        return Err(CommandError::unauthorized(
            "renameCollection may only be run against the admin database.",
        ));
    }
    let from = ctx.collection()?;
    let to = match ctx.body.get("to") {
        Some(Bson::String(s)) => s.clone(),
        _ => return Err(CommandError::type_mismatch("'to' must be a string")),
    };
    let (from_db, from_coll) = split_ns(&from)?;
    let (to_db, to_coll) = split_ns(&to)?;
    // MongoDB's privileges: within one database, renameCollectionSameDB there; across
    // databases, find on the source, insert and createIndex on the target, and
    // dropCollection on the source. dropTarget also needs dropCollection on the target.
    let drop_target = opt_bool(&ctx.body, "dropTarget")?.unwrap_or(false);
    let mut needed = Vec::new();
    if from_db == to_db {
        needed.push((Action::RenameCollectionSameDB, from_db.as_str()));
    } else {
        needed.extend([
            (Action::Find, from_db.as_str()),
            (Action::DropCollection, from_db.as_str()),
            (Action::Insert, to_db.as_str()),
            (Action::CreateIndex, to_db.as_str()),
        ]);
    }
    if drop_target {
        needed.push((Action::DropCollection, to_db.as_str()));
    }
    let ok = ctx.client.user.as_ref().is_some_and(|u| {
        needed
            .iter()
            .all(|(a, db)| allowed(&u.roles, *a, Target::Db(db)))
    });
    if !ok {
        return Err(super::not_authorized(&ctx.db, &ctx.name, &ctx.body));
    }
    for c in [&from_coll, &to_coll] {
        if c.starts_with("system.") {
            return Err(CommandError::unauthorized(
                "cannot rename system collections",
            ));
        }
    }
    ctx.blocking(move |h| h.rename_collection(&from_db, &from_coll, &to_db, &to_coll, drop_target))
        .await?;
    Ok(Document::new())
}

pub(super) async fn list_collections(ctx: &mut Ctx<'_>) -> CmdResult {
    let filter = opt_doc(&ctx.body, "filter")?.unwrap_or_default();
    let name_only = opt_bool(&ctx.body, "nameOnly")?.unwrap_or(false);
    let batch = match opt_doc(&ctx.body, "cursor")? {
        Some(c) => super::cursors::batch_size(super::opt_i64(&c, "batchSize")?)?,
        None => None,
    };
    let db = ctx.db.clone();
    let mut entries = ctx
        .blocking(move |h| h.list_collections(&db, Some(&filter)))
        .await?;
    if name_only {
        entries = entries
            .into_iter()
            .map(|e| {
                let mut d = doc! {"name": e.get_str("name").unwrap_or("").to_string()};
                if let Ok(t) = e.get_str("type") {
                    d.insert("type", t.to_string());
                }
                d
            })
            .collect();
    }
    let ns = format!("{}.$cmd.listCollections", ctx.db);
    let open = move |_: &Db| -> CmdResult<Box<dyn CursorSource>> {
        Ok(Box::new(Buffered(entries.into())))
    };
    first_batch(ctx, ns, open, batch.or(Some(usize::MAX)), false)
        .await
        .and_then(reply_document)
}

/// Lists databases; users without the cluster-wide privilege see only the databases
/// they have a privilege on (MongoDB's `authorizedDatabases` behaviour).
pub(super) async fn list_databases(ctx: &mut Ctx<'_>) -> CmdResult {
    let name_only = opt_bool(&ctx.body, "nameOnly")?.unwrap_or(false);
    let filter = opt_doc(&ctx.body, "filter")?;
    let user = ctx.client.user.clone();
    let everything = user
        .as_ref()
        .is_some_and(|u| allowed(&u.roles, Action::ListDatabases, Target::Cluster));
    let mut dbs = ctx.blocking(|h| h.list_databases()).await?;
    if !everything {
        dbs.retain(|d| {
            user.as_ref()
                .is_some_and(|u| any_privilege_on(&u.roles, &d.name))
        });
    }
    let mut total: i64 = 0;
    let mut list = Vec::new();
    for d in dbs {
        let size = d.size_on_disk.min(i64::MAX as u64) as i64;
        total = total.saturating_add(size);
        let entry = if name_only {
            doc! {"name": d.name}
        } else {
            doc! {"name": d.name, "sizeOnDisk": size, "empty": d.empty}
        };
        if let Some(f) = &filter
            && !backend::matches(f, &entry)?
        {
            continue;
        }
        list.push(Bson::Document(entry));
    }
    if name_only {
        Ok(doc! {"databases": list})
    } else {
        Ok(doc! {"databases": list, "totalSize": total, "totalSizeMb": total / (1024 * 1024)})
    }
}

pub(super) async fn create_indexes(ctx: &mut Ctx<'_>) -> CmdResult {
    let coll = ctx.collection()?;
    let specs: Vec<Document> = match ctx.body.get("indexes") {
        Some(Bson::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|s| {
                s.as_document()
                    .cloned()
                    .ok_or_else(|| CommandError::type_mismatch("each index spec must be an object"))
            })
            .collect::<CmdResult<_>>()?,
        _ => {
            return Err(CommandError::bad_value(
                "Must specify at least one index to create",
            ));
        }
    };
    let db = ctx.db.clone();
    let r = ctx
        .blocking(move |h| h.create_indexes(&db, &coll, &specs))
        .await?;
    let mut reply = doc! {
        "numIndexesBefore": r.num_indexes_before as i32,
        "numIndexesAfter": r.num_indexes_after as i32,
        "createdCollectionAutomatically": r.created_collection_automatically,
    };
    if let Some(note) = r.note {
        reply.insert("note", note);
    }
    Ok(reply)
}

pub(super) async fn list_indexes(ctx: &mut Ctx<'_>) -> CmdResult {
    let coll = ctx.collection()?;
    let batch = match opt_doc(&ctx.body, "cursor")? {
        Some(c) => super::cursors::batch_size(super::opt_i64(&c, "batchSize")?)?,
        None => None,
    };
    let db = ctx.db.clone();
    let c = coll.clone();
    let specs = ctx.blocking(move |h| h.list_indexes(&db, &c)).await?;
    let ns = format!("{}.{coll}", ctx.db);
    let open =
        move |_: &Db| -> CmdResult<Box<dyn CursorSource>> { Ok(Box::new(Buffered(specs.into()))) };
    first_batch(ctx, ns, open, batch.or(Some(usize::MAX)), false)
        .await
        .and_then(reply_document)
}

pub(super) async fn drop_indexes(ctx: &mut Ctx<'_>) -> CmdResult {
    let coll = ctx.collection()?;
    let which = ctx.body.get("index").cloned().ok_or_else(|| {
        CommandError::failed_to_parse(
            "BSON field 'dropIndexes.index' is missing but a required field",
        )
    })?;
    let db = ctx.db.clone();
    let before = ctx
        .blocking(move |h| h.drop_indexes(&db, &coll, &which))
        .await?;
    Ok(doc! {"nIndexesWas": before as i32})
}
