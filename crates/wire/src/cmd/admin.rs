//! Server and connection introspection: `buildInfo`, `ping`, `getnonce`, `whatsmyuri`, `connectionStatus`,
//! `endSessions`, `serverStatus`, `getCmdLineOpts`, `getParameter`, `hostInfo`.

use std::sync::atomic::Ordering;

use bson::{Bson, Document, doc};

use super::{Ctx, hello};
use crate::error::{CmdResult, CommandError, code};
use crate::message::{MAX_BSON_OBJECT_SIZE, MAX_MESSAGE_SIZE, MAX_NESTING_DEPTH};

/// The MongoDB version whose behaviour this server follows.
pub const VERSION: &str = "7.0.0";
pub const VERSION_ARRAY: [i32; 4] = [7, 0, 0, 0];

pub(super) fn build_info(_ctx: &mut Ctx<'_>) -> CmdResult {
    Ok(doc! {
        "version": VERSION,
        "gitVersion": "strongroom",
        "versionArray": VERSION_ARRAY.to_vec(),
        "strongroomVersion": env!("CARGO_PKG_VERSION"),
        "bits": 64,
        "debug": cfg!(debug_assertions),
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE as i32,
        "storageEngines": ["strongroom"],
        "javascriptEngine": "none",
        "allocator": "system",
        "modules": [],
        "openssl": {"running": "rustls (aws-lc-rs)", "compiled": "rustls (aws-lc-rs)"},
        "buildEnvironment": {"target_arch": std::env::consts::ARCH, "target_os": std::env::consts::OS},
        "sysInfo": "deprecated",
    })
}

pub(super) fn ping(_ctx: &mut Ctx<'_>) -> CmdResult {
    Ok(Document::new())
}

/// MONGODB-CR's nonce: that mechanism is gone; drivers that still ask are told so.
pub(super) fn getnonce(_ctx: &mut Ctx<'_>) -> CmdResult {
    Err(CommandError::new(
        code::NOT_IMPLEMENTED,
        "getnonce is not supported; use SCRAM-SHA-256",
    ))
}

pub(super) fn whatsmyuri(ctx: &mut Ctx<'_>) -> CmdResult {
    Ok(doc! {"you": ctx.client.peer.to_string()})
}

pub(super) fn connection_status(ctx: &mut Ctx<'_>) -> CmdResult {
    let (users, roles): (Vec<Bson>, Vec<Bson>) = match &ctx.client.user {
        Some(u) => (
            vec![Bson::Document(
                doc! {"user": u.user.clone(), "db": u.db.clone()},
            )],
            u.roles
                .iter()
                .map(|r| Bson::Document(r.to_document()))
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    Ok(doc! {"authInfo": {"authenticatedUsers": users, "authenticatedUserRoles": roles}})
}

/// Ends logical sessions: their cursors are closed.
pub(super) fn end_sessions(ctx: &mut Ctx<'_>) -> CmdResult {
    let Ok(list) = ctx.body.get_array("endSessions") else {
        return Err(CommandError::type_mismatch(
            "endSessions must be an array of session ids",
        ));
    };
    for item in list {
        if let Some(id) = item.as_document().and_then(|d| d.get("id")) {
            ctx.shared.cursors.end_session(id);
        }
    }
    Ok(Document::new())
}

pub(super) fn server_status(ctx: &mut Ctx<'_>) -> CmdResult {
    let s = ctx.shared;
    let c = &s.counters;
    let uptime = s.started.elapsed();
    let current = c.current_connections.load(Ordering::Relaxed);
    // Why writes are refused: the engine is read-only after a storage failure (the error
    // writes get), or the node is reopening it.
    let read_only: Option<String> = match s.db() {
        Ok(db) => db.read_only().map(|e| e.errmsg),
        Err(_) => s.state.read().reopening().map(str::to_string),
    };
    // Spill files held now against the temp-disk quota (`docdb::tempquota`).
    let temp = s.db().ok().map(|db| db.temp_usage());
    Ok(doc! {
        "host": hostname(),
        "version": VERSION,
        "process": "strongroom",
        "pid": std::process::id() as i64,
        "uptime": uptime.as_secs_f64().floor(),
        "uptimeMillis": uptime.as_millis() as i64,
        "uptimeEstimate": uptime.as_secs() as i64,
        "localTime": bson::DateTime::now(),
        "connections": {
            "current": current as i32,
            "available": (s.max_connections as i64 - current).max(0) as i32,
            "totalCreated": c.total_connections.load(Ordering::Relaxed) as i64,
            "rejected": c.rejected_connections.load(Ordering::Relaxed) as i64,
        },
        "opcounters": {
            "insert": c.insert.load(Ordering::Relaxed) as i64,
            "query": c.query.load(Ordering::Relaxed) as i64,
            "update": c.update.load(Ordering::Relaxed) as i64,
            "delete": c.delete.load(Ordering::Relaxed) as i64,
            "getmore": c.getmore.load(Ordering::Relaxed) as i64,
            "command": c.command.load(Ordering::Relaxed) as i64,
        },
        "network": {
            "idlePoll": {
                "budgetMicros": s.idle_poll.as_micros() as i64,
                "found": c.idle_poll_found.load(Ordering::Relaxed) as i64,
                "slept": c.idle_poll_slept.load(Ordering::Relaxed) as i64,
            },
        },
        "metrics": {"cursor": {"open": {"total": s.cursors.len() as i64}, "timedOut": 0i64}},
        "storageEngine": {
            "name": "strongroom",
            "supportsCommittedReads": false,
            "persistent": true,
            "backgroundWorkPending": s.db().is_ok_and(|db| db.maintenance_pending()),
            "readOnly": read_only.is_some(),
            "readOnlyReason": read_only,
            "tempDisk": {
                "bytesInUse": temp.map_or(0, |t| t.used) as i64,
                "quotaBytes": temp.map_or(0, |t| t.limit) as i64,
            },
        },
        "security": {"SSLServerSubjectName": "", "authentication": {"mechanisms": {"SCRAM-SHA-256": {}}}},
    })
}

pub(super) fn get_cmd_line_opts(ctx: &mut Ctx<'_>) -> CmdResult {
    let listen = ctx.shared.listen;
    let tls_mode = if ctx.shared.tls {
        "requireTLS"
    } else {
        "disabled"
    };
    Ok(doc! {
        "argv": ["strongroom"],
        "parsed": {
            "net": {
                "bindIp": listen.ip().to_string(),
                "port": listen.port() as i32,
                "tls": {"mode": tls_mode},
                "compression": {"compressors": "snappy,zstd,zlib"},
            },
            "security": {"authorization": "enabled"},
        },
    })
}

/// Parameters `getParameter` reports.
fn parameters(ctx: &Ctx<'_>) -> Document {
    doc! {
        "featureCompatibilityVersion": {"version": "7.0"},
        "authenticationMechanisms": ["SCRAM-SHA-256"],
        "cursorTimeoutMillis": ctx.shared.cursors.idle_timeout().as_millis() as i64,
        "maxBSONDepth": MAX_NESTING_DEPTH as i32,
        "maxMessageSizeBytes": MAX_MESSAGE_SIZE as i32,
        "logicalSessionTimeoutMinutes": hello::LOGICAL_SESSION_TIMEOUT_MINUTES,
        "requireApiVersion": false,
        "scramIterationCount": 10000,
        "scramSHA256IterationCount": crate::auth::scram::DEFAULT_ITERATIONS as i32,
        "tlsMode": if ctx.shared.tls { "requireTLS" } else { "disabled" },
        "enableTestCommands": false,
        "transactionLifetimeLimitSeconds": 60,
    }
}

/// `{getParameter: "*"}` (all), or `{getParameter: 1, <name>: 1, ...}`.
pub(super) fn get_parameter(ctx: &mut Ctx<'_>) -> CmdResult {
    let all = parameters(ctx);
    let everything = matches!(ctx.body.get("getParameter"), Some(Bson::String(s)) if s == "*")
        || ctx
            .body
            .get("getParameter")
            .and_then(Bson::as_document)
            .is_some_and(|d| d.get_bool("allParameters").unwrap_or(false));
    if everything {
        return Ok(all);
    }
    let mut out = Document::new();
    for key in ctx.body.keys() {
        if key == "getParameter" || key.starts_with('$') || key == "lsid" || key == "comment" {
            continue;
        }
        if let Some(v) = all.get(key) {
            out.insert(key.clone(), v.clone());
        }
    }
    if out.is_empty() {
        return Err(CommandError::new(
            code::INVALID_OPTIONS,
            "no option found to get",
        ));
    }
    Ok(out)
}

pub(super) fn host_info(_ctx: &mut Ctx<'_>) -> CmdResult {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as i32)
        .unwrap_or(1);
    let mem_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0);
    let os_release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Ok(doc! {
        "system": {
            "currentTime": bson::DateTime::now(),
            "hostname": hostname(),
            "cpuAddrSize": 64,
            "memSizeMB": mem_mb,
            "numCores": cores,
            "cpuArch": std::env::consts::ARCH,
        },
        "os": {"type": std::env::consts::OS, "name": std::env::consts::OS, "version": os_release},
        "extra": {},
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}
