//! The cluster administrator's password belongs to the management API (issue 17): a PATCH
//! of `properties.administrator.password` (or `strongroom cluster update
//! --admin-password`) resets it through the node, checked with the creation rules and
//! audited without the password; over the MongoDB wire protocol nobody — the
//! administrator included — can change it. Real `strongroom up`, real driver.

mod common;

use std::time::Duration;

use bson::{Document, doc};
use common::*;
use serde_json::{Value, json};

const FIRST_RESET: &str = "Reset!0ne-Passw0rd";
const SECOND_RESET: &str = "Reset!Tw0-Passw0rd";

/// A client with a single pooled connection, so "the connection that was open before the
/// reset" is one connection.
async fn single_connection(cluster: &Value, password: &str) -> mongodb::Client {
    let cs = cluster["properties"]["connectionString"]
        .as_str()
        .unwrap()
        .replace("<password>", password);
    let mut options = mongodb::options::ClientOptions::parse(&cs).await.unwrap();
    options.server_selection_timeout = Some(Duration::from_secs(5));
    options.max_pool_size = Some(1);
    mongodb::Client::with_options(options).unwrap()
}

/// The client's address as the server sees it: the same value before and after proves
/// the same connection served both.
async fn my_uri(client: &mongodb::Client) -> String {
    let r = client
        .database("admin")
        .run_command(doc! {"whatsmyuri": 1})
        .await
        .expect("whatsmyuri");
    r.get_str("you").expect("you").to_string()
}

/// A fresh login's outcome: Ok, or the server's code for the failed authentication.
async fn login(d: &Deployment, cluster: &Value, password: &str) -> Result<(), i32> {
    let client = d.mongo(cluster, "clusteradmin", password).await;
    let outcome = client
        .database("app")
        .run_command(doc! {"count": "c"})
        .await
        .map(drop)
        .map_err(|e| {
            assert!(
                matches!(
                    e.kind.as_ref(),
                    mongodb::error::ErrorKind::Authentication { .. }
                ),
                "not an authentication error: {e}"
            );
            // The driver keeps the server's reply as the error's source (boxed).
            let source = std::error::Error::source(&e);
            source
                .and_then(|s| s.downcast_ref::<Box<mongodb::error::Error>>())
                .map(|b| b.as_ref())
                .or_else(|| source.and_then(|s| s.downcast_ref::<mongodb::error::Error>()))
                .and_then(|s| match s.kind.as_ref() {
                    mongodb::error::ErrorKind::Command(c) => Some(c.code),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no server code in {e:?}"))
        });
    client.shutdown().await;
    outcome
}

async fn patch(d: &Deployment, name: &str, body: Value) -> (u16, Value) {
    d.control(reqwest::Method::PATCH, &d.cluster_url(name), Some(body))
        .await
}

fn password_body(password: &str) -> Value {
    json!({"properties": {"administrator": {"password": password}}})
}

/// The events (`{time, kind, principal, outcome, detail, …}`) of one kind for a cluster,
/// once `enough` holds for them (audit records are written in the background).
async fn audit_events(
    d: &Deployment,
    cluster: &str,
    kind: &str,
    enough: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let url = format!(
        "{}/providers/Strongroom.Control/auditEvents?cluster={cluster}&kind={kind}",
        d.control_url()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = d.control(reqwest::Method::GET, &url, None).await;
        assert_eq!(status, 200, "{body:#}");
        let events: Vec<Value> = body["value"]
            .as_array()
            .map(|records| records.iter().map(|r| r["event"].clone()).collect())
            .unwrap_or_default();
        if enough(&events) {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{kind} events never matched: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn successes(events: &[Value]) -> usize {
    events.iter().filter(|e| e["outcome"] == "success").count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_administrator_password_is_reset_through_the_management_api_only() {
    let d = Deployment::start("1h", &["--no-default-cluster"]).await;
    let (status, cluster) = d.put_cluster("pwreset", smk_cluster()).await;
    assert_eq!(status, 201, "{cluster:#}");
    assert_eq!(
        cluster["properties"]["clusterStatus"], "Ready",
        "{cluster:#}"
    );

    // A connection authenticated with the creation password, kept open throughout.
    let open = single_connection(&cluster, ADMIN_PASSWORD).await;
    let coll = open.database("app").collection::<Document>("c");
    coll.insert_one(doc! {"n": 1}).await.expect("insert");
    let uri = my_uri(&open).await;

    // Over the wire the administrator cannot change its own password.
    let err = open
        .database("admin")
        .run_command(doc! {"updateUser": "clusteradmin", "pwd": FIRST_RESET})
        .await
        .expect_err("updateUser of the administrator's password");
    let mongodb::error::ErrorKind::Command(c) = err.kind.as_ref() else {
        panic!("not a command error: {err}");
    };
    assert_eq!(
        (c.code, c.code_name.as_str()),
        (13, "Unauthorized"),
        "{err}"
    );
    assert!(c.message.contains("management API"), "{}", c.message);
    assert_eq!(login(&d, &cluster, FIRST_RESET).await, Err(18));

    // Weak passwords and another user name are refused in ARM's shape; nothing changes.
    for weak in ["Sh0rt!a", "alllowercase1!", "NoDigitsHere!", "NoSymbols123"] {
        let (status, body) = patch(&d, "pwreset", password_body(weak)).await;
        assert_eq!(status, 400, "{weak}: {body:#}");
        assert_eq!(
            body["error"]["code"], "InvalidAdministratorPassword",
            "{body:#}"
        );
        assert!(
            !body.to_string().contains(weak),
            "the password is echoed: {body:#}"
        );
    }
    let (status, body) = patch(
        &d,
        "pwreset",
        json!({"properties": {"administrator": {"userName": "someoneelse", "password": FIRST_RESET}}}),
    )
    .await;
    assert_eq!(status, 400, "{body:#}");
    assert_eq!(
        body["error"]["code"], "AdministratorUserNameCannotBeChanged",
        "{body:#}"
    );
    assert_eq!(login(&d, &cluster, ADMIN_PASSWORD).await, Ok(()));

    // The reset: old password refused (18), new one accepted, open connection unaffected.
    let (status, body) = patch(&d, "pwreset", password_body(FIRST_RESET)).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["properties"]["clusterStatus"], "Ready", "{body:#}");
    assert!(
        !body.to_string().contains(FIRST_RESET),
        "the password is returned: {body:#}"
    );
    assert_eq!(login(&d, &cluster, ADMIN_PASSWORD).await, Err(18));
    assert_eq!(login(&d, &cluster, FIRST_RESET).await, Ok(()));
    coll.insert_one(doc! {"n": 2})
        .await
        .expect("the open connection still works");
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 2);
    assert_eq!(my_uri(&open).await, uri, "the same connection served both");

    // The CLI does the same.
    let (ok, out) = cli(
        &d,
        &[
            "cluster",
            "update",
            "pwreset",
            "--admin-password",
            SECOND_RESET,
        ],
    );
    assert!(ok, "{out}");
    assert!(!out.contains(SECOND_RESET), "{out}");
    assert_eq!(login(&d, &cluster, FIRST_RESET).await, Err(18));
    assert_eq!(login(&d, &cluster, SECOND_RESET).await, Ok(()));
    let (ok, out) = cli(&d, &["cluster", "update", "pwreset"]);
    assert!(!ok && out.contains("nothing to update"), "{out}");

    // Audited: who asked, and never the password.
    let records = audit_events(&d, "pwreset", "admin_password_reset", |e| successes(e) >= 2).await;
    assert_eq!(successes(&records), 2, "{records:#?}");
    for r in &records {
        assert_eq!(r["principal"], d.admin.object_id.as_str(), "{r:#}");
        let text = r.to_string();
        for secret in [ADMIN_PASSWORD, FIRST_RESET, SECOND_RESET] {
            assert!(!text.contains(secret), "password in the audit log: {r:#}");
        }
    }
    open.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_is_refused_with_409_while_the_cluster_is_not_ready() {
    let d = Deployment::start("1h", &["--no-default-cluster"]).await;
    let vault = d.create_vault("pwvault").await;
    d.grant_admin(&vault).await;
    d.vault
        .create_key(
            vault.base(),
            "cmk",
            &keyvault::client::CreateKeyOptions::default(),
        )
        .await
        .unwrap();
    let id = d.create_identity("pw-id").await;
    d.vault
        .assign_role(d.mgmt_url(), &vault.id, CSEU, &id.principal_id)
        .await
        .unwrap();
    let key_url = format!("{}/keys/cmk", vault.base());
    let (status, cluster) = d
        .put_cluster("notready", cmk_cluster(&key_url, &id.id))
        .await;
    assert_eq!(status, 201, "{cluster:#}");
    // Disable the customer's key and revalidate: Inaccessible.
    d.vault
        .update_key(
            &key_url,
            &keyvault::client::UpdateKeyOptions {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let url = d
        .cluster_url("notready")
        .replace("?api-version", "/revalidate?api-version");
    let (status, body) = d.control(reqwest::Method::POST, &url, None).await;
    assert_eq!(status, 200, "{body:#}");
    d.wait_status("notready", "Inaccessible", Duration::from_secs(30))
        .await;
    let (status, body) = patch(&d, "notready", password_body(FIRST_RESET)).await;
    assert_eq!(status, 409, "{body:#}");
    assert_eq!(body["error"]["code"], "Conflict", "{body:#}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Ready"), "{message}");
    assert!(!body.to_string().contains(FIRST_RESET), "{body:#}");
    let refused = audit_events(&d, "notready", "admin_password_reset", |e| !e.is_empty()).await;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["outcome"], "failure", "{refused:#?}");
    assert_eq!(refused[0]["principal"], d.admin.object_id.as_str());

    // Back to Ready: the refused password was not applied later.
    d.vault
        .update_key(
            &key_url,
            &keyvault::client::UpdateKeyOptions {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, body) = d.control(reqwest::Method::POST, &url, None).await;
    assert_eq!(status, 200, "{body:#}");
    let (cluster, _) = d
        .wait_status("notready", "Ready", Duration::from_secs(30))
        .await;
    assert_eq!(login(&d, &cluster, ADMIN_PASSWORD).await, Ok(()));
    assert_eq!(login(&d, &cluster, FIRST_RESET).await, Err(18));
}
