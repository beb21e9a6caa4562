//! Admin API authorization and object management over HTTPS.

mod common;

use common::{Harness, RG, SUB};
use identity::client::{AdminClient, client_credentials_token};
use identity::{Credentials, Error};
use serde_json::Value;
use zeroize::Zeroizing;

async fn admin_get(h: &Harness, path: &str, bearer: Option<&str>) -> (u16, Value, Option<String>) {
    let mut req = h.http.get(format!("{}{path}", h.base()));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (status, resp.json().await.unwrap_or(Value::Null), www)
}

async fn token(h: &Harness, c: &Credentials, scope: &str) -> String {
    client_credentials_token(
        &h.http,
        &h.base(),
        &c.tenant_id,
        &c.client_id,
        &c.client_secret,
        scope,
    )
    .await
    .unwrap()
    .token
    .to_string()
}

#[tokio::test]
async fn admin_api_requires_an_admin_token_for_an_admin_audience() {
    let h = Harness::start().await;
    let path = "/admin/servicePrincipals";

    let (status, body, www) = admin_get(&h, path, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(www.unwrap().starts_with("Bearer"));

    // Admin principal, admin audiences: accepted (both spellings).
    for scope in [
        "api://strongroom-identity/.default",
        "https://management.azure.com//.default",
        "https://management.azure.com/.default",
    ] {
        let t = token(&h, &h.admin_creds, scope).await;
        let (status, body, _) = admin_get(&h, path, Some(&t)).await;
        assert_eq!(status, 200, "{scope}: {body}");
        let names: Vec<&str> = body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["displayName"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"strongroom-admin") && names.contains(&"strongroom-control-plane"));
        assert!(
            body.to_string().find("clientSecret").is_none(),
            "secrets are never listed"
        );
    }

    // Admin principal, vault audience: rejected.
    let t = token(&h, &h.admin_creds, "https://vault.azure.net/.default").await;
    assert_eq!(admin_get(&h, path, Some(&t)).await.0, 401);

    // Non-admin principal (the control plane is trusted but not admin): forbidden.
    let t = token(&h, &h.control_creds, "api://strongroom-identity/.default").await;
    let (status, body, _) = admin_get(&h, path, Some(&t)).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "AuthorizationFailed");

    // Garbage and tampered tokens.
    assert_eq!(admin_get(&h, path, Some("not.a.jwt")).await.0, 401);
    let good = token(&h, &h.admin_creds, "api://strongroom-identity/.default").await;
    // Flip a character in the middle of the signature (not its padding bits).
    let mut tampered: Vec<char> = good.chars().collect();
    let at = tampered.len() - 20;
    tampered[at] = if tampered[at] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    assert_eq!(admin_get(&h, path, Some(&tampered)).await.0, 401);

    // A deleted admin's unexpired token stops working.
    let second = h
        .admin
        .create_service_principal("second admin", true, false)
        .await
        .unwrap();
    let t2 = token(&h, &second, "api://strongroom-identity/.default").await;
    assert_eq!(admin_get(&h, path, Some(&t2)).await.0, 200);
    assert!(
        h.admin
            .delete_service_principal(&second.client_id)
            .await
            .unwrap()
    );
    assert_eq!(admin_get(&h, path, Some(&t2)).await.0, 401);
    h.server.shutdown().await;
}

#[tokio::test]
async fn identities_are_arm_shaped_idempotent_and_listed() {
    let h = Harness::start().await;
    let a = h
        .admin
        .create_managed_identity(SUB, RG, "one", "westeurope")
        .await
        .unwrap();
    let again = h
        .admin
        .create_managed_identity(SUB, RG, "one", "northeurope")
        .await
        .unwrap();
    assert_eq!(
        (again.principal_id.as_str(), again.client_id.as_str()),
        (a.principal_id.as_str(), a.client_id.as_str())
    );
    assert_eq!(again.location, "northeurope");
    h.admin
        .create_managed_identity(SUB, RG, "two", "westeurope")
        .await
        .unwrap();
    h.admin
        .create_managed_identity(SUB, "other-rg", "three", "westeurope")
        .await
        .unwrap();

    let t = token(&h, &h.admin_creds, "https://management.azure.com/.default").await;
    let path = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
    );
    let (status, list, _) = admin_get(&h, &path, Some(&t)).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["one", "two"]);
    let one = &list["value"][0];
    assert_eq!(
        one["type"],
        "Microsoft.ManagedIdentity/userAssignedIdentities"
    );
    assert_eq!(
        one["properties"]["tenantId"],
        h.admin_creds.tenant_id.as_str()
    );

    let (status, body, _) = admin_get(&h, &format!("{path}/missing"), Some(&t)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "ResourceNotFound");

    // ARM naming rules are enforced.
    for bad in ["ab", "-lead", "bad!name"] {
        let resp = h
            .http
            .put(format!("{}{path}/{bad}", h.base()))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "InvalidRequestContent");
    }
    // Empty bodies are accepted with a default location.
    let resp = h
        .http
        .put(format!("{}{path}/bare", h.base()))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    h.server.shutdown().await;
}

#[tokio::test]
async fn tenants_are_isolated_from_each_other() {
    let h = Harness::start().await;
    let mine = h
        .admin
        .create_managed_identity(SUB, RG, "mine", "westeurope")
        .await
        .unwrap();
    let t = token(&h, &h.admin_creds, "api://strongroom-identity/.default").await;
    let resp = h
        .http
        .post(format!("{}/admin/tenants", h.base()))
        .bearer_auth(&t)
        .json(&serde_json::json!({"displayName": "contoso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let body: Value = resp.json().await.unwrap();
    let other = Credentials {
        tenant_id: body["tenantId"].as_str().unwrap().into(),
        client_id: body["admin"]["clientId"].as_str().unwrap().into(),
        object_id: body["admin"]["objectId"].as_str().unwrap().into(),
        client_secret: Zeroizing::new(body["admin"]["clientSecret"].as_str().unwrap().into()),
    };
    assert_ne!(other.tenant_id, h.admin_creds.tenant_id);
    let other_admin = AdminClient::new(&h.base(), &h.tls.ca_pem, &other).unwrap();

    // The other tenant's admin neither sees nor deletes nor attaches our identity.
    assert!(
        other_admin
            .get_managed_identity(SUB, RG, "mine")
            .await
            .unwrap()
            .is_none()
    );
    let err = other_admin
        .delete_managed_identity(SUB, RG, "mine")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Status { status: 403, .. }), "{err}");
    let err = other_admin
        .attach("their-cluster", &mine.id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Status { status: 404, .. }), "{err}");
    // Our admin's client secret does not work against the other tenant's token endpoint.
    let err = client_credentials_token(
        &h.http,
        &h.base(),
        &other.tenant_id,
        &h.admin_creds.client_id,
        &h.admin_creds.client_secret,
        "https://vault.azure.net/.default",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Status { status: 400, .. }), "{err}");
    assert!(
        h.admin
            .get_managed_identity(SUB, RG, "mine")
            .await
            .unwrap()
            .is_some()
    );
    h.server.shutdown().await;
}
