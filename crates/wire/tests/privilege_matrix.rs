//! The privilege matrix: every command the server implements × every built-in role (and
//! a user with no roles, and no user at all) against a real server over TLS. The
//! expected answers are the table in `docs/security.md`, parsed here, so the document
//! and the server cannot drift apart: `✓` means the reply is not `Unauthorized` (it may
//! fail for another reason, such as a missing collection), `✗` means code 13.

mod common;

use std::collections::{BTreeSet, HashMap};

use bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use common::{TestServer, command_code};

const PW: &str = "Passw0rd!matrix";
/// The database the database-scoped roles are granted on.
const APP: &str = "app";

/// One column of the matrix: who runs the commands.
struct Column {
    header: String,
    /// `None` for the unauthenticated column.
    user: Option<String>,
    auth_db: String,
    client: mongodb::Client,
}

struct Row {
    label: String,
    db: String,
    expected: Vec<bool>,
}

fn parse_matrix() -> (Vec<String>, Vec<Row>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/security.md");
    let text = std::fs::read_to_string(path).expect("docs/security.md");
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("| command | db |"));
    let header = cells(
        lines
            .next()
            .expect("the privilege matrix table in docs/security.md"),
    );
    let roles = header[2..].to_vec();
    let mut rows = Vec::new();
    for line in lines.skip(1).take_while(|l| l.starts_with('|')) {
        let c = cells(line);
        assert_eq!(
            c.len(),
            header.len(),
            "row has the wrong number of cells: {line}"
        );
        let expected = c[2..]
            .iter()
            .map(|v| match v.as_str() {
                "✓" => true,
                "✗" => false,
                other => panic!("cell {other:?} in {line}: only ✓ and ✗"),
            })
            .collect();
        rows.push(Row {
            label: c[0].clone(),
            db: c[1].clone(),
            expected,
        });
    }
    (roles, rows)
}

/// The command a row runs, for one column; `i` makes names unique per row and column.
fn body(label: &str, col: &Column, i: usize) -> Document {
    let me = col.user.clone().unwrap_or_else(|| "nobody".into());
    let new_user = format!("n{i}_{}", col.header.replace(' ', "_"));
    let payload = |b: &[u8]| {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: b.to_vec(),
        })
    };
    match label {
        "find" => doc! {"find": "c", "filter": {}},
        "insert" => doc! {"insert": "c", "documents": [{"x": 1}]},
        "update" => doc! {"update": "c", "updates": [{"q": {"x": 1}, "u": {"$set": {"y": 1}}}]},
        "update (upsert)" => {
            doc! {"update": "c", "updates": [{"q": {"x": 7}, "u": {"$set": {"y": 1}}, "upsert": true}]}
        }
        "delete" => doc! {"delete": "c", "deletes": [{"q": {"x": 999}, "limit": 0}]},
        "getMore" => doc! {"getMore": 4242i64, "collection": "c"},
        "aggregate" => doc! {"aggregate": "c", "pipeline": [], "cursor": {}},
        "aggregate ($out)" => {
            doc! {"aggregate": "c", "pipeline": [{"$out": "c_out"}], "cursor": {}}
        }
        "findAndModify" | "findandmodify" => {
            doc! {label: "c", "query": {"x": 999}, "update": {"$set": {"y": 2}}}
        }
        "findAndModify (remove)" => {
            doc! {"findAndModify": "c", "query": {"x": 999}, "remove": true}
        }
        "count" => doc! {"count": "c"},
        "distinct" => doc! {"distinct": "c", "key": "x"},
        "killCursors" => doc! {"killCursors": "c", "cursors": [4242i64]},
        "explain (find)" => doc! {"explain": {"find": "c", "filter": {}}},
        "explain (delete)" => {
            doc! {"explain": {"delete": "c", "deletes": [{"q": {"x": 999}, "limit": 0}]}}
        }
        "create" => doc! {"create": format!("made{i}")},
        "drop" => doc! {"drop": "never_there"},
        "renameCollection (app to app)" => {
            doc! {"renameCollection": "app.never_there", "to": "app.elsewhere"}
        }
        "renameCollection (app to other)" => {
            doc! {"renameCollection": "app.never_there", "to": "other.elsewhere"}
        }
        "listCollections" => doc! {"listCollections": 1},
        "listDatabases" => doc! {"listDatabases": 1},
        "createIndexes" => {
            doc! {"createIndexes": "c", "indexes": [{"key": {"x": 1}, "name": "x_1"}]}
        }
        "listIndexes" => doc! {"listIndexes": "c"},
        "dropIndexes" | "deleteIndexes" => doc! {label: "c", "index": "never_there"},
        "hello" | "isMaster" | "ismaster" | "buildInfo" | "buildinfo" | "ping" | "getnonce"
        | "whatsmyuri" | "connectionStatus" | "hostInfo" | "serverStatus" | "getCmdLineOpts"
        | "logout" => doc! {label: 1},
        "endSessions" => doc! {"endSessions": []},
        "saslStart" => {
            doc! {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": payload(b"not scram")}
        }
        "saslContinue" => {
            doc! {"saslContinue": 1, "conversationId": 99, "payload": payload(b"")}
        }
        "getParameter" => doc! {"getParameter": "*"},
        "createUser (read@app)" => {
            doc! {"createUser": new_user, "pwd": PW, "roles": [{"role": "read", "db": APP}]}
        }
        "createUser (root@admin)" => {
            doc! {"createUser": new_user, "pwd": PW, "roles": [{"role": "root", "db": "admin"}]}
        }
        "updateUser (password of another user)" => doc! {"updateUser": "v_pw", "pwd": PW},
        "updateUser (own password)" => doc! {"updateUser": me, "pwd": PW},
        "updateUser (roles: readWrite@app)" => {
            doc! {"updateUser": "v_rw", "roles": [{"role": "readWrite", "db": APP}]}
        }
        "updateUser (roles: root@admin)" => {
            doc! {"updateUser": "v_root", "roles": [{"role": "root", "db": "admin"}]}
        }
        "updateUser (cluster admin's password)" => {
            doc! {"updateUser": common::ADMIN_USER, "pwd": PW}
        }
        "updateUser (cluster admin's roles)" => {
            doc! {"updateUser": common::ADMIN_USER, "roles": [{"role": "read", "db": "admin"}]}
        }
        "dropUser" => doc! {"dropUser": "v_drop"},
        "dropUser (cluster admin)" => doc! {"dropUser": common::ADMIN_USER},
        "usersInfo (self)" => doc! {"usersInfo": {"user": me, "db": col.auth_db.clone()}},
        "usersInfo (every user of app)" => doc! {"usersInfo": 1},
        "usersInfo (forAllDBs)" => doc! {"usersInfo": 1, "forAllDBs": true},
        "grantRolesToUser (read@app)" => {
            doc! {"grantRolesToUser": "v_grant", "roles": [{"role": "read", "db": APP}]}
        }
        "grantRolesToUser (root@admin)" => {
            doc! {"grantRolesToUser": "v_grant", "roles": [{"role": "root", "db": "admin"}]}
        }
        "revokeRolesFromUser (read@app)" => {
            doc! {"revokeRolesFromUser": "v_revoke", "roles": [{"role": "read", "db": APP}]}
        }
        "revokeRolesFromUser (cluster admin's root)" => {
            doc! {"revokeRolesFromUser": common::ADMIN_USER, "roles": [{"role": "root", "db": "admin"}]}
        }
        "dropDatabase" => doc! {"dropDatabase": 1},
        other => panic!("docs/security.md has a matrix row this test cannot run: {other}"),
    }
}

/// The role granted to a column's user: database roles on `app`, the others on `admin`.
fn grant_for(header: &str) -> Option<(&'static str, Option<Document>)> {
    Some(match header {
        "read" | "readWrite" | "dbAdmin" | "dbOwner" | "userAdmin" => {
            (APP, Some(doc! {"role": header, "db": APP}))
        }
        "readAnyDatabase"
        | "readWriteAnyDatabase"
        | "dbAdminAnyDatabase"
        | "userAdminAnyDatabase"
        | "clusterMonitor"
        | "clusterAdmin"
        | "root" => ("admin", Some(doc! {"role": header, "db": "admin"})),
        "no roles" => (APP, None),
        "unauthenticated" => return None,
        other => panic!("unknown matrix column {other}"),
    })
}

#[tokio::test]
async fn every_command_for_every_role_matches_docs_security_md() {
    let (headers, rows) = parse_matrix();

    // Every implemented command (aliases included) has a row; every row is a command.
    let implemented: BTreeSet<&str> = wire::command_names().collect();
    let covered: BTreeSet<&str> = rows
        .iter()
        .map(|r| r.label.split(' ').next().unwrap_or(""))
        .collect();
    let missing: Vec<_> = implemented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "commands without a matrix row: {missing:?}"
    );
    let unknown: Vec<_> = covered.difference(&implemented).collect();
    assert!(
        unknown.is_empty(),
        "matrix rows for unknown commands: {unknown:?}"
    );
    assert_eq!(
        rows.last().map(|r| r.label.as_str()),
        Some("logout"),
        "logout ends each connection's session: it must be the last row"
    );

    let ts = TestServer::start().await;
    let admin = ts.client().await;
    let setup = |db: &'static str, cmd: Document| {
        let admin = admin.clone();
        async move {
            admin
                .database(db)
                .run_command(cmd.clone())
                .await
                .unwrap_or_else(|e| panic!("setup {cmd}: {e}"));
        }
    };
    setup(APP, doc! {"insert": "c", "documents": [{"x": 1}]}).await;
    for victim in ["v_pw", "v_rw", "v_root", "v_drop", "v_grant", "v_revoke"] {
        setup(
            APP,
            doc! {"createUser": victim, "pwd": PW, "roles": [{"role": "read", "db": APP}]},
        )
        .await;
    }
    let mut columns = Vec::new();
    for header in &headers {
        let column = match grant_for(header) {
            Some((db, role)) => {
                let user = format!("u_{}", header.replace(' ', "_"));
                let roles: Vec<Document> = role.into_iter().collect();
                setup(db, doc! {"createUser": &user, "pwd": PW, "roles": roles}).await;
                Column {
                    header: header.clone(),
                    client: ts.single_connection_client(&user, PW, db).await,
                    user: Some(user),
                    auth_db: db.to_string(),
                }
            }
            None => Column {
                header: header.clone(),
                client: ts.unauthenticated_client().await,
                user: None,
                auth_db: APP.to_string(),
            },
        };
        columns.push(column);
    }

    // Each client logs in on its first command (SCRAM's key derivation dominates the
    // test's time in a debug build): log them all in at once.
    let logins = columns.iter().map(|c| async move {
        c.client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
    });
    for (col, r) in columns.iter().zip(futures::future::join_all(logins).await) {
        r.unwrap_or_else(|e| panic!("{} could not log in: {e}", col.header));
    }

    let started = std::time::Instant::now();
    let mut wrong = Vec::new();
    let mut codes: HashMap<i32, usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        for (col, expected) in columns.iter().zip(&row.expected) {
            let db = if row.db == "own" {
                col.auth_db.as_str()
            } else {
                row.db.as_str()
            };
            let cmd = body(&row.label, col, i);
            let allowed = match col.client.database(db).run_command(cmd).await {
                Ok(_) => true,
                Err(e) => {
                    let code = command_code(&e).unwrap_or_else(|| {
                        panic!("{} as {}: not a command error: {e}", row.label, col.header)
                    });
                    *codes.entry(code).or_default() += 1;
                    code != 13
                }
            };
            if allowed != *expected {
                wrong.push(format!(
                    "{} on {db} as {}: expected {}, got {}",
                    row.label,
                    col.header,
                    if *expected { "✓" } else { "✗ (13)" },
                    if allowed {
                        "allowed"
                    } else {
                        "13 Unauthorized"
                    },
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ from docs/security.md:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    eprintln!(
        "{} rows x {} columns in {:?}; error codes seen: {codes:?}",
        rows.len(),
        columns.len(),
        started.elapsed()
    );
    ts.stop().await;
}
