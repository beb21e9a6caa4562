//! Regression tests for issue 17: user administration follows MongoDB's privilege rules,
//! the cluster's administrator cannot be dropped or demoted, and user changes reach open
//! connections at their next command. Real server over TLS, real driver.

mod common;

use bson::{Document, doc};
use common::{ADMIN_USER, TestServer, command_code};

const PW: &str = "Passw0rd!user";

async fn run(client: &mongodb::Client, db: &str, cmd: Document) -> Result<Document, i32> {
    client
        .database(db)
        .run_command(cmd)
        .await
        .map_err(|e| command_code(&e).unwrap_or_else(|| panic!("not a command error: {e}")))
}

async fn create_user(admin: &mongodb::Client, db: &str, user: &str, roles: bson::Bson) {
    run(
        admin,
        db,
        doc! {"createUser": user, "pwd": PW, "roles": roles},
    )
    .await
    .unwrap_or_else(|code| panic!("createUser {user}: code {code}"));
}

#[tokio::test]
async fn a_database_user_admin_cannot_hand_out_root() {
    let ts = TestServer::start().await;
    let admin = ts.client().await;
    create_user(&admin, "sec", "secadmin", bson::bson!(["userAdmin"])).await;
    create_user(&admin, "sec", "plain", bson::bson!(["read"])).await;
    let ua = ts.single_connection_client("secadmin", PW, "sec").await;
    let root = bson::bson!([{"role": "root", "db": "admin"}]);

    let r = run(
        &ua,
        "sec",
        doc! {"createUser": "evil", "pwd": PW, "roles": root.clone()},
    )
    .await;
    assert_eq!(r.err(), Some(13), "createUser with root@admin");
    let r = run(
        &ua,
        "sec",
        doc! {"grantRolesToUser": "plain", "roles": root.clone()},
    )
    .await;
    assert_eq!(r.err(), Some(13), "grantRolesToUser root@admin");
    let r = run(
        &ua,
        "sec",
        doc! {"updateUser": "secadmin", "roles": root.clone()},
    )
    .await;
    assert_eq!(r.err(), Some(13), "updateUser itself to root@admin");
    let r = run(&ua, "sec", doc! {"updateUser": "plain", "roles": root}).await;
    assert_eq!(r.err(), Some(13), "updateUser another user to root@admin");

    // What it may do: hand out its own database's roles.
    run(
        &ua,
        "sec",
        doc! {"createUser": "fine", "pwd": PW, "roles": ["readWrite"]},
    )
    .await
    .expect("createUser readWrite@sec");
    run(
        &ua,
        "sec",
        doc! {"grantRolesToUser": "plain", "roles": ["readWrite"]},
    )
    .await
    .expect("grantRolesToUser readWrite@sec");
    let info = run(&admin, "sec", doc! {"usersInfo": "evil"})
        .await
        .expect("usersInfo");
    assert!(info.get_array("users").expect("users").is_empty(), "{info}");
    ts.stop().await;
}

#[tokio::test]
async fn the_cluster_administrator_cannot_be_dropped_or_demoted() {
    let ts = TestServer::start().await;
    let admin = ts.client().await;
    create_user(
        &admin,
        "admin",
        "useradmin",
        bson::bson!([{"role": "userAdminAnyDatabase", "db": "admin"}]),
    )
    .await;
    let uaad = ts.single_connection_client("useradmin", PW, "admin").await;
    for (who, client) in [("itself", &admin), ("userAdminAnyDatabase", &uaad)] {
        let r = run(client, "admin", doc! {"dropUser": ADMIN_USER}).await;
        assert_eq!(r.err(), Some(13), "dropUser by {who}");
        let r = run(
            client,
            "admin",
            doc! {"updateUser": ADMIN_USER, "roles": [{"role": "read", "db": "admin"}]},
        )
        .await;
        assert_eq!(r.err(), Some(13), "updateUser roles by {who}");
        let r = run(
            client,
            "admin",
            doc! {"revokeRolesFromUser": ADMIN_USER, "roles": [{"role": "root", "db": "admin"}]},
        )
        .await;
        assert_eq!(r.err(), Some(13), "revokeRolesFromUser by {who}");
    }
    let r = run(
        &uaad,
        "admin",
        doc! {"updateUser": ADMIN_USER, "pwd": "Taken0ver!"},
    )
    .await;
    assert_eq!(
        r.err(),
        Some(13),
        "another user changing the admin's password"
    );
    // Not even the administrator itself: its password belongs to the management API.
    let err = admin
        .database("admin")
        .run_command(doc! {"updateUser": ADMIN_USER, "pwd": "Taken0ver!"})
        .await
        .expect_err("the admin changing its own password");
    let mongodb::error::ErrorKind::Command(c) = &*err.kind else {
        panic!("not a command error: {err}");
    };
    assert_eq!(c.code, 13, "the admin changing its own password");
    assert!(
        c.message.contains("management API") && !c.message.contains("Taken0ver"),
        "{}",
        c.message
    );
    // It is still there, still root, and still works.
    let info = run(&admin, "admin", doc! {"usersInfo": ADMIN_USER})
        .await
        .expect("usersInfo");
    let users = info.get_array("users").expect("users");
    assert_eq!(users.len(), 1, "{info}");
    let fresh = ts.client().await;
    run(&fresh, "admin", doc! {"serverStatus": 1})
        .await
        .expect("admin still root");
    ts.stop().await;
}

#[tokio::test]
async fn a_dropped_users_open_connection_is_refused_at_its_next_command() {
    let ts = TestServer::start().await;
    let admin = ts.client().await;
    // On admin, so the raw SCRAM client below (which authenticates there) can log in.
    let read_write_app = bson::bson!([{"role": "readWrite", "db": "app"}]);
    create_user(&admin, "admin", "leaver", read_write_app.clone()).await;
    run(
        &admin,
        "app",
        doc! {"insert": "c", "documents": [{"x": 1}, {"x": 2}, {"x": 3}]},
    )
    .await
    .expect("insert");
    let conn = ts.single_connection_client("leaver", PW, "admin").await;
    let first = run(&conn, "app", doc! {"find": "c", "batchSize": 1})
        .await
        .expect("find before the drop");
    let cursor_id = first
        .get_document("cursor")
        .and_then(|c| c.get_i64("id"))
        .expect("an open cursor");
    assert_ne!(cursor_id, 0, "{first}");
    run(&admin, "admin", doc! {"dropUser": "leaver"})
        .await
        .expect("dropUser");
    let r = run(&conn, "app", doc! {"find": "c"}).await;
    assert_eq!(r.err(), Some(13), "find after the drop");
    let r = run(&conn, "app", doc! {"insert": "c", "documents": [{"x": 1}]}).await;
    assert_eq!(r.err(), Some(13), "insert after the drop");
    // A user created later under the same name does not inherit the dropped one's
    // cursors (a raw connection, so no session id stands in the way either).
    create_user(&admin, "admin", "leaver", read_write_app).await;
    let mut raw = common::RawClient::connect(&ts).await;
    common::authenticate(&mut raw, "leaver", PW).await;
    let r = raw
        .command(
            1,
            doc! {"getMore": cursor_id, "collection": "c", "$db": "app"},
        )
        .await
        .expect("reply");
    assert_eq!(
        r.get_i32("code").ok(),
        Some(43),
        "getMore on the dropped user's cursor: {r}"
    );
    ts.stop().await;
}

#[tokio::test]
async fn a_revoked_role_stops_working_on_open_connections() {
    let ts = TestServer::start().await;
    let admin = ts.client().await;
    create_user(&admin, "app", "writer", bson::bson!(["readWrite"])).await;
    let conn = ts.single_connection_client("writer", PW, "app").await;
    run(&conn, "app", doc! {"insert": "c", "documents": [{"x": 1}]})
        .await
        .expect("insert while readWrite");
    run(
        &admin,
        "app",
        doc! {"updateUser": "writer", "roles": ["read"]},
    )
    .await
    .expect("updateUser to read");
    let r = run(&conn, "app", doc! {"insert": "c", "documents": [{"x": 2}]}).await;
    assert_eq!(r.err(), Some(13), "insert after readWrite was taken away");
    run(&conn, "app", doc! {"find": "c"})
        .await
        .expect("read still allowed");
    // And back: a granted role works on the same connection too.
    run(
        &admin,
        "app",
        doc! {"updateUser": "writer", "roles": ["readWrite"]},
    )
    .await
    .expect("updateUser back to readWrite");
    run(&conn, "app", doc! {"insert": "c", "documents": [{"x": 3}]})
        .await
        .expect("insert after readWrite was granted again");
    ts.stop().await;
}
