//! Managed-identity endpoints: entitlement by resource secret, selectors, deletion and
//! recreation, against the real server over HTTPS.

mod common;

use std::time::Duration;

use common::{Harness, RG, SUB, VAULT, payload};
use identity::IdentitySelector;
use identity::client::msi_token;
use serde_json::Value;

const CLUSTER: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/Microsoft.DocumentDB/mongoClusters/c1";

async fn raw_msi(h: &Harness, path_and_query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = h.http.get(format!("{}{path_and_query}", h.base()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn msi_tokens_only_for_identities_attached_to_the_secret_holders_resource() {
    let h = Harness::start().await;
    let mi = h
        .admin
        .create_managed_identity(SUB, RG, "id-a", "westeurope")
        .await
        .unwrap();
    let other = h
        .admin
        .create_managed_identity(SUB, RG, "id-b", "westeurope")
        .await
        .unwrap();
    assert_eq!(
        mi.id,
        identity::service::identity_resource_id(SUB, RG, "id-a")
    );
    assert_ne!(mi.principal_id, other.principal_id);
    h.admin.attach(CLUSTER, &mi.id).await.unwrap();
    let secret = h.admin.issue_resource_secret(CLUSTER).await.unwrap();

    // Every selector finds the attached identity.
    for sel in [
        IdentitySelector::ClientId(mi.client_id.clone()),
        IdentitySelector::ObjectId(mi.principal_id.clone()),
        IdentitySelector::ResourceId(mi.id.clone()),
        IdentitySelector::Only,
    ] {
        let t = msi_token(&h.http, &h.base(), &secret, &sel, VAULT)
            .await
            .unwrap();
        assert_eq!(t.client_id.as_deref(), Some(mi.client_id.as_str()));
        let c = h.verifier(&[VAULT]).verify(&t.token).await.unwrap();
        assert_eq!(c.oid, mi.principal_id);
        assert_eq!(c.appid, mi.client_id);
        assert_eq!(c.tid, h.admin_creds.tenant_id);
        assert_eq!(c.aud, VAULT);
        assert_eq!(c.xms_mirid.as_deref(), Some(mi.id.as_str()));
        assert!(!c.xms_trusted_svc);
        assert!((t.expires_on - c.exp).abs() <= 1);
    }

    // The App Service response shape (string expires_on, client_id).
    let q = format!(
        "/msi/token?api-version=2019-08-01&resource={VAULT}&client_id={}",
        mi.client_id
    );
    let (status, body) = raw_msi(&h, &q, &[("X-IDENTITY-HEADER", &secret)]).await;
    assert_eq!(status, 200);
    assert!(body["expires_on"].as_str().unwrap().parse::<i64>().is_ok());
    assert_eq!(body["resource"], VAULT);
    assert_eq!(body["token_type"], "Bearer");

    // Missing / wrong secret.
    let (status, _) = raw_msi(&h, &q, &[]).await;
    assert_eq!(status, 401);
    let (status, body) = raw_msi(&h, &q, &[("X-IDENTITY-HEADER", "not-a-secret")]).await;
    assert_eq!(status, 403, "{body}");

    // An identity that exists but is not attached to this resource.
    let err = msi_token(
        &h.http,
        &h.base(),
        &secret,
        &IdentitySelector::ClientId(other.client_id.clone()),
        VAULT,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, identity::Error::Status { status: 400, .. }),
        "{err}"
    );

    // Another resource's secret cannot reach this resource's identity.
    h.admin.attach("other-cluster", &other.id).await.unwrap();
    let other_secret = h
        .admin
        .issue_resource_secret("other-cluster")
        .await
        .unwrap();
    let err = msi_token(
        &h.http,
        &h.base(),
        &other_secret,
        &IdentitySelector::ClientId(mi.client_id.clone()),
        VAULT,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, identity::Error::Status { status: 400, .. }),
        "{err}"
    );

    // With two identities attached, a selector is required.
    h.admin.attach(CLUSTER, &other.id).await.unwrap();
    let err = msi_token(&h.http, &h.base(), &secret, &IdentitySelector::Only, VAULT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, identity::Error::Status { status: 400, .. }),
        "{err}"
    );
    assert!(h.admin.detach(CLUSTER, &other.id).await.unwrap());

    // Reissuing the secret revokes the previous one.
    let fresh = h.admin.issue_resource_secret(CLUSTER).await.unwrap();
    let err = msi_token(&h.http, &h.base(), &secret, &IdentitySelector::Only, VAULT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, identity::Error::Status { status: 403, .. }),
        "{err}"
    );
    msi_token(&h.http, &h.base(), &fresh, &IdentitySelector::Only, VAULT)
        .await
        .unwrap();
    h.server.shutdown().await;
}

#[tokio::test]
async fn imds_shape_requires_metadata_header_and_resource_secret() {
    let h = Harness::start().await;
    let mi = h
        .admin
        .create_managed_identity(SUB, RG, "imds-id", "westeurope")
        .await
        .unwrap();
    h.admin.attach(CLUSTER, &mi.id).await.unwrap();
    let secret = h.admin.issue_resource_secret(CLUSTER).await.unwrap();
    let q = format!(
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/&msi_res_id={}",
        mi.id
    );
    let (status, body) = raw_msi(&h, &q, &[("X-IDENTITY-HEADER", &secret)]).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error_description"],
        "Required metadata header not specified"
    );
    let (status, _) = raw_msi(&h, &q, &[("Metadata", "true")]).await;
    assert_eq!(status, 401);
    let (status, body) = raw_msi(
        &h,
        &q,
        &[("Metadata", "true"), ("X-IDENTITY-HEADER", &secret)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resource"], "https://management.azure.com/");
    assert_eq!(body["expires_in"], "3600");
    assert_eq!(body["object_id"], mi.principal_id.as_str());
    let claims = payload(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://management.azure.com/");
    assert_eq!(claims["xms_mirid"], mi.id.as_str());
    h.server.shutdown().await;
}

#[tokio::test]
async fn deleting_an_identity_stops_msi_and_invalidates_its_tokens_and_recreation_is_a_new_principal()
 {
    let h = Harness::start().await;
    let mi = h
        .admin
        .create_managed_identity(SUB, RG, "doomed", "westeurope")
        .await
        .unwrap();
    h.admin.attach(CLUSTER, &mi.id).await.unwrap();
    let secret = h.admin.issue_resource_secret(CLUSTER).await.unwrap();
    let sel = IdentitySelector::ResourceId(mi.id.clone());
    let old = msi_token(&h.http, &h.base(), &secret, &sel, VAULT)
        .await
        .unwrap();
    let verifier = h
        .verifier(&[VAULT])
        .with_liveness_ttl(Duration::from_millis(200));
    verifier.verify(&old.token).await.unwrap();

    let principal = h
        .http
        .get(format!("{}/principals/{}", h.base(), mi.principal_id))
        .send()
        .await
        .unwrap();
    assert_eq!(principal.status().as_u16(), 200);
    let info: Value = principal.json().await.unwrap();
    assert_eq!(info["kind"], "ManagedIdentity");
    assert_eq!(info["appId"], mi.client_id.as_str());

    assert!(
        h.admin
            .delete_managed_identity(SUB, RG, "doomed")
            .await
            .unwrap()
    );
    assert!(
        !h.admin
            .delete_managed_identity(SUB, RG, "doomed")
            .await
            .unwrap()
    );
    assert!(
        h.admin
            .get_managed_identity(SUB, RG, "doomed")
            .await
            .unwrap()
            .is_none()
    );
    let gone = h
        .http
        .get(format!("{}/principals/{}", h.base(), mi.principal_id))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 404);

    let err = msi_token(&h.http, &h.base(), &secret, &sel, VAULT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, identity::Error::Status { status: 400, .. }),
        "{err}"
    );

    // The still-unexpired token fails liveness once the cache entry ages out.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match verifier.verify(&old.token).await {
            Err(identity::TokenError::PrincipalGone(oid)) => {
                assert_eq!(oid, mi.principal_id);
                break;
            }
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "still accepted: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    // Recreate with the same name: new principal and client ids; not attached anymore.
    let again = h
        .admin
        .create_managed_identity(SUB, RG, "doomed", "westeurope")
        .await
        .unwrap();
    assert_eq!(again.id, mi.id);
    assert_ne!(again.principal_id, mi.principal_id);
    assert_ne!(again.client_id, mi.client_id);
    let err = msi_token(&h.http, &h.base(), &secret, &sel, VAULT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, identity::Error::Status { status: 400, .. }),
        "{err}"
    );
    assert!(matches!(
        verifier.verify(&old.token).await,
        Err(identity::TokenError::PrincipalGone(_))
    ));
    h.admin.attach(CLUSTER, &again.id).await.unwrap();
    let new = msi_token(&h.http, &h.base(), &secret, &sel, VAULT)
        .await
        .unwrap();
    assert_eq!(
        verifier.verify(&new.token).await.unwrap().oid,
        again.principal_id
    );
    h.server.shutdown().await;
}
