//! Routing, pinned: every (method, path) of a matrix over both planes — known routes, their
//! case variants, empty segments, wrong methods, unknown paths — answers exactly what
//! `tests/routing.golden` records (status, the headers a client can see, the body, and the
//! audit log's operation name). The golden file was written by the hand-written router the
//! axum routers replaced; `UPDATE_GOLDEN=1` rewrites it (only when a change is meant).

mod common;

use std::fmt::Write as _;

use common::*;
use keyvault::authz::ROLE_KV_ADMINISTRATOR;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Data-plane paths (relative to the vault's base URL).
const DATA_PATHS: &[&str] = &[
    "/",
    "/keys",
    "/keys/",
    "/Keys",
    "/KEYS/k1",
    "/keys/k1",
    "/keys/k1/",
    "/keys/bad_name",
    "/keys/bad_name/create",
    "/keys/restore",
    "/keys/Restore",
    "/keys/k1/create",
    "/keys/k1/Create",
    "/keys/k1/rotate",
    "/keys/k1/backup",
    "/keys/k1/versions",
    "/keys/k1/Versions",
    "/keys/k1/rotationpolicy",
    "/keys/k1/rotationPolicy",
    "/keys/k1/0123456789abcdef0123456789abcdef",
    "/keys/k1/nope",
    "/keys/k1//wrapkey",
    "/keys/k1/v1/wrapKey",
    "/keys/k1/v1/UNWRAPKEY",
    "/keys/k1/v1/encrypt",
    "/keys/k1/v1/decrypt",
    "/keys/k1/v1/sign",
    "/keys/k1/v1/verify",
    "/keys/k1/v1/nope",
    "/keys/k1/v1/wrapkey/",
    "/keys/k1/v1/wrapkey/x",
    "/keys//create",
    "/keys//",
    "/deletedkeys",
    "/deletedkeys/",
    "/DeletedKeys/k1",
    "/deletedkeys/k1",
    "/deletedkeys/k1/",
    "/deletedkeys/bad_name",
    "/deletedkeys/k1/recover",
    "/deletedkeys/k1/Recover",
    "/deletedkeys/k1/recover/x",
    "/secrets/s1",
    "/keys/k1?api-version=7.5&foo=bar",
    "/keys/k1?api-version=1.0",
    "/keys/k1?foo=bar",
    "/keys/bad_name?foo=bar",
];

/// Management-plane paths; `{sub}`, `{rg}`, `{vault}` are filled in.
const MGMT_PATHS: &[&str] = &[
    "/",
    "/subscriptions/{sub}/providers/Microsoft.KeyVault/vaults",
    "/subscriptions/{sub}/providers/microsoft.keyvault/VAULTS/",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/nope-vault",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/nope-vault/",
    "/subscriptions/{sub}/resourceGroups/other/providers/Microsoft.KeyVault/vaults/{vault}",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/nope-vault/accessPolicies/add",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/accessPolicies/nope",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/providers/Microsoft.Authorization/roleAssignments",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/providers/Microsoft.Authorization/roleAssignments/",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/providers/Microsoft.Authorization/roleAssignments/00000000-0000-0000-0000-00000000dead",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/providers/Microsoft.Authorization/roleAssignments/not-a-guid",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/providers/Microsoft.Authorization/roleAssignments/a/b",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/keys/k1/providers/Microsoft.Authorization/roleAssignments",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/keys/k1/providers/Microsoft.Authorization/roleAssignments/not-a-guid",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/other",
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/nope-vault/providers/Microsoft.Authorization/roleAssignments",
    "/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/local/deletedVaults/nope-vault",
    "/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/local/deletedVaults/nope-vault/purge",
    "/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/local/deletedVaults/nope-vault/purge/x",
    "/dev/clock",
    "/dev/scheduler/run",
    "/dev/scheduler",
    "/dev/vaults/nope-vault/clock",
    "/dev/vaults/{vault}/nope",
    "/dev/vaults/{vault}",
    "/dev/nope",
    "/nope",
];

/// What a client sees of a response, the per-request parts (ids, dates, ports) blanked.
async fn describe(
    out: &mut String,
    audit_ids: &mut Vec<String>,
    env: &Env,
    req: reqwest::RequestBuilder,
    label: &str,
    base: &str,
) {
    let id = format!("route-{}", audit_ids.len());
    audit_ids.push(id.clone());
    let r = req
        .header("x-ms-client-request-id", &id)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let mut headers: Vec<String> = r
        .headers()
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "date" | "x-ms-request-id" | "content-length"))
        .map(|(n, v)| {
            let v = v.to_str().unwrap_or("?").replace(&id, "{id}");
            let v = v.replace(&env.id_base, "{identity}");
            format!("{n}: {}", mask_uuids(&v))
        })
        .collect();
    headers.sort();
    let body = r
        .text()
        .await
        .unwrap()
        .replace(base, "{base}")
        .replace(&env.mgmt(), "{mgmt}");
    let body = mask_times(&mask_uuids(&body));
    let _ = writeln!(out, "{label} -> {status}");
    for h in headers {
        let _ = writeln!(out, "  {h}");
    }
    let _ = writeln!(out, "  body: {body}");
}

/// Blanks RFC 3339 times (`2026-01-02T03:04:05Z`).
fn mask_times(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\"20") {
        let (head, tail) = rest.split_at(i + 1);
        out.push_str(head);
        let b = tail.as_bytes();
        if b.len() >= 20 && b[4] == b'-' && b[10] == b'T' && b[19] == b'Z' {
            out.push_str("{time}");
            rest = &tail[20..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Blanks every UUID (tenants, principals, role assignments differ per run).
fn mask_uuids(s: &str) -> String {
    let b = s.as_bytes();
    let is_uuid = |w: &[u8]| {
        w.len() == 36
            && w.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    };
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if i + 36 <= b.len() && s.is_char_boundary(i + 36) && is_uuid(&b[i..i + 36]) {
            out.push_str("{uuid}");
            i += 36;
        } else {
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_answer_as_the_golden_file_records() {
    let env = Env::start().await;
    let vault = env.create_vault("kv-routes", &env.spec()).await;
    env.assign(&vault, ROLE_KV_ADMINISTRATOR, &env.admin_creds.object_id)
        .await;
    let data_tok = env.token(&env.admin_creds, "https://vault.azure.net").await;
    let mgmt_tok = env
        .token(&env.admin_creds, "https://management.azure.com/")
        .await;
    let base = vault.base().to_string();
    let mut out = String::new();
    let mut ids = Vec::new();

    for path in DATA_PATHS {
        let url = if path.contains('?') {
            format!("{base}{path}")
        } else {
            format!("{base}{path}?api-version=7.5")
        };
        for m in METHODS {
            let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
            let req = env.http.request(method, &url).bearer_auth(&data_tok);
            describe(
                &mut out,
                &mut ids,
                &env,
                req,
                &format!("data {m} {path}"),
                &base,
            )
            .await;
        }
    }
    // Order of the pipeline: route, then api-version, then authentication.
    for path in [
        "/keys/k1",
        "/keys/bad_name",
        "/keys/k1/nope/x",
        "/keys/k1/v1/wrapkey",
    ] {
        for (label, query, auth) in [
            ("no-version", "", true),
            ("no-token", "?api-version=7.5", false),
            ("neither", "", false),
        ] {
            for m in ["GET", "POST"] {
                let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
                let mut req = env.http.request(method, format!("{base}{path}{query}"));
                if auth {
                    req = req.bearer_auth(&data_tok);
                }
                let l = format!("data {label} {m} {path}");
                describe(&mut out, &mut ids, &env, req, &l, &base).await;
            }
        }
    }

    let mgmt = env.mgmt();
    for path in MGMT_PATHS {
        let p = path
            .replace("{sub}", SUB)
            .replace("{rg}", RG)
            .replace("{vault}", &vault.name);
        for m in METHODS {
            let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
            let req = env
                .http
                .request(method, format!("{mgmt}{p}?api-version=2023-07-01"))
                .bearer_auth(&mgmt_tok);
            describe(
                &mut out,
                &mut ids,
                &env,
                req,
                &format!("mgmt {m} {path}"),
                &base,
            )
            .await;
        }
    }
    for m in ["GET", "POST"] {
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        let req = env.http.request(method, format!("{mgmt}/nope"));
        describe(
            &mut out,
            &mut ids,
            &env,
            req,
            &format!("mgmt no-token {m} /nope"),
            &base,
        )
        .await;
    }

    // The audit log's operation name of each request, by correlation id.
    let audit_path = env.audit_dir().join(keyvault::audit::AUDIT_FILE);
    let mut names = std::collections::HashMap::new();
    wait_until(10, || {
        let text = std::fs::read_to_string(&audit_path).unwrap_or_default();
        names.clear();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(id) = v["correlationId"].as_str() {
                names.insert(
                    id.to_string(),
                    format!(
                        "{} {} {} vault={} caller={} trusted={}",
                        v["operationName"].as_str().unwrap_or("?"),
                        v["result"].as_str().unwrap_or("?"),
                        v["keyId"].as_str().unwrap_or("-").replace(&base, "{base}"),
                        v["vault"].as_str().unwrap_or("-"),
                        mask_uuids(v["callerOid"].as_str().unwrap_or("-")),
                        v["trustedService"],
                    ),
                );
            }
        }
        let done = ids.iter().all(|i| names.contains_key(i));
        async move { done }
    })
    .await;
    out.push_str("audit:\n");
    for id in &ids {
        let _ = writeln!(out, "  {id}: {}", names[id]);
    }

    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/routing.golden");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &out).unwrap();
    } else {
        let want = std::fs::read_to_string(&golden).unwrap();
        if want != out {
            let got = golden.with_extension("got");
            std::fs::write(&got, &out).unwrap();
            panic!(
                "routing answers differ from {}; see {}",
                golden.display(),
                got.display()
            );
        }
    }
    env.shutdown().await;
}
