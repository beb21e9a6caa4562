//! End-to-end CMK scenarios against real processes: `strongroom up` (identity, key
//! vault, control plane, cluster nodes), driven with the Rust MongoDB driver, the vault's
//! REST API and the management API. Each cause in the product's "Inaccessible" table is
//! broken and fixed for real; the cluster must turn Inaccessible within one revalidation
//! interval with the right reason, refuse clients with a message naming it, and come
//! back Ready with every acknowledged document intact.

mod common;

use std::time::Duration;

use bson::doc;
use common::*;
use keyvault::client::{CreateKeyOptions, NetworkRules, UpdateKeyOptions};
use serde_json::Value;

const INTERVAL: &str = "1s";
/// Generous bound for CI: the target is two intervals; this only guards against hangs.
const WAIT: Duration = Duration::from_secs(20);
const DOCS: i64 = 200;

struct Fixture {
    d: Deployment,
    vault: keyvault::client::Vault,
    identity: identity::client::ManagedIdentityInfo,
    assignment: String,
    name: String,
}

impl Fixture {
    async fn new(versioned: bool) -> Fixture {
        let d =
            Deployment::start(INTERVAL, &["--grace-period", "1s", "--no-default-cluster"]).await;
        let vault = d.create_vault("cmkvault").await;
        d.grant_admin(&vault).await;
        let key = d
            .vault
            .create_key(vault.base(), "cmk", &CreateKeyOptions::default())
            .await
            .unwrap();
        let identity = d.create_identity("cluster-id").await;
        let assignment = d
            .vault
            .assign_role(d.mgmt_url(), &vault.id, CSEU, &identity.principal_id)
            .await
            .unwrap();
        let key_url = if versioned {
            key.kid.clone()
        } else {
            format!("{}/keys/cmk", vault.base())
        };
        let name = "orders".to_string();
        let (status, body) = d
            .put_cluster(&name, cmk_cluster(&key_url, &identity.id))
            .await;
        assert_eq!(status, 201, "{body:#}");
        assert_eq!(body["properties"]["clusterStatus"], "Ready", "{body:#}");
        assert_eq!(
            body["properties"]["encryption"]["customerManagedKeyEncryption"]["keyEncryptionKeyUrl"],
            key_url.as_str()
        );
        let f = Fixture {
            d,
            vault,
            identity,
            assignment,
            name,
        };
        let client = f.client().await;
        let docs: Vec<bson::Document> = (0..DOCS)
            .map(|i| doc! {"_id": i, "v": format!("value-{i}")})
            .collect();
        client
            .database("shop")
            .collection::<bson::Document>("items")
            .insert_many(docs)
            .await
            .unwrap();
        f
    }

    async fn view(&self) -> Value {
        self.d.get_cluster(&self.name).await
    }

    async fn client(&self) -> mongodb::Client {
        self.d
            .mongo(&self.view().await, "clusteradmin", ADMIN_PASSWORD)
            .await
    }

    fn key_url(&self) -> String {
        format!("{}/keys/cmk", self.vault.base())
    }

    /// Waits for Inaccessible with `reason`; checks that a new client is refused with a
    /// message naming it. Returns the time it took.
    async fn expect_inaccessible(&self, reason: &str) -> Duration {
        let (view, took) = self.d.wait_status(&self.name, "Inaccessible", WAIT).await;
        assert_eq!(
            view["properties"]["keyStatus"]["reason"], reason,
            "{view:#}"
        );
        assert_eq!(view["properties"]["keyStatus"]["state"], "Revoked");
        let err = self
            .client()
            .await
            .database("shop")
            .collection::<bson::Document>("items")
            .count_documents(doc! {})
            .await
            .expect_err("an Inaccessible cluster must refuse clients");
        let text = err.to_string();
        assert!(
            text.contains("Inaccessible") && text.contains(reason),
            "refusal should name the reason: {text}"
        );
        took
    }

    /// Waits for Ready; checks every acknowledged document is there. Returns the time.
    async fn expect_ready_and_intact(&self) -> Duration {
        let (_, took) = self.d.wait_status(&self.name, "Ready", WAIT).await;
        let items = self
            .client()
            .await
            .database("shop")
            .collection::<bson::Document>("items");
        assert_eq!(items.count_documents(doc! {}).await.unwrap(), DOCS as u64);
        let last = items
            .find_one(doc! {"_id": DOCS - 1})
            .await
            .unwrap()
            .unwrap();
        assert_eq!(last.get_str("v").unwrap(), format!("value-{}", DOCS - 1));
        took
    }
}

fn report(scenario: &str, revoke: Duration, recover: Duration) {
    eprintln!(
        "TIMING {scenario:<22} revoke->Inaccessible {:>6} ms   fix->Ready {:>6} ms",
        revoke.as_millis(),
        recover.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_the_key_makes_the_cluster_inaccessible_until_enabled() {
    let f = Fixture::new(false).await;
    let off = UpdateKeyOptions {
        enabled: Some(false),
        ..Default::default()
    };
    f.d.vault.update_key(&f.key_url(), &off).await.unwrap();
    let revoke = f.expect_inaccessible("KeyDisabled").await;
    let on = UpdateKeyOptions {
        enabled: Some(true),
        ..Default::default()
    };
    f.d.vault.update_key(&f.key_url(), &on).await.unwrap();
    let recover = f.expect_ready_and_intact().await;
    report("key disabled", revoke, recover);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_key_is_caught_on_the_vault_clock_and_extending_it_heals() {
    let f = Fixture::new(false).await;
    let now = time_now();
    let day = 86_400;
    let exp = UpdateKeyOptions {
        exp: Some(now + day),
        ..Default::default()
    };
    f.d.vault.update_key(&f.key_url(), &exp).await.unwrap();
    // Two days pass on the vault's clock: the key is past its expiry there.
    f.d.vault
        .dev_shift_clock(f.d.mgmt_url(), Some(&f.vault.name), 2 * day)
        .await
        .unwrap();
    let revoke = f.expect_inaccessible("KeyExpired").await;
    let extend = UpdateKeyOptions {
        exp: Some(now + 30 * day),
        ..Default::default()
    };
    f.d.vault.update_key(&f.key_url(), &extend).await.unwrap();
    let recover = f.expect_ready_and_intact().await;
    report("key expired", revoke, recover);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_soft_deleted_key_heals_when_recovered() {
    let f = Fixture::new(false).await;
    f.d.vault.delete_key(f.vault.base(), "cmk").await.unwrap();
    let revoke = f.expect_inaccessible("KeyDeleted").await;
    f.d.vault
        .recover_deleted_key(f.vault.base(), "cmk")
        .await
        .unwrap();
    let recover = f.expect_ready_and_intact().await;
    report("key soft-deleted", revoke, recover);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_vault_heals_when_recovered() {
    let f = Fixture::new(false).await;
    f.d.vault
        .delete_vault(f.d.mgmt_url(), SUB, RG, &f.vault.name)
        .await
        .unwrap();
    let (view, revoke) = f.d.wait_status(&f.name, "Inaccessible", WAIT).await;
    let reason = view["properties"]["keyStatus"]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason == "VaultDeleted" || reason == "VaultUnreachable",
        "{view:#}"
    );
    f.d.vault
        .recover_vault(f.d.mgmt_url(), SUB, RG, &f.vault.name, "local")
        .await
        .unwrap();
    let recover = f.expect_ready_and_intact().await;
    report("vault deleted", revoke, recover);
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_the_role_assignment_denies_access_until_granted_again() {
    let f = Fixture::new(false).await;
    f.d.vault
        .delete_role_assignment(f.d.mgmt_url(), &f.vault.id, &f.assignment)
        .await
        .unwrap();
    let revoke = f.expect_inaccessible("AccessDenied").await;
    f.d.vault
        .assign_role(f.d.mgmt_url(), &f.vault.id, CSEU, &f.identity.principal_id)
        .await
        .unwrap();
    let recover = f.expect_ready_and_intact().await;
    report("role removed", revoke, recover);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_firewall_without_the_trusted_service_bypass_denies_the_service() {
    let f = Fixture::new(false).await;
    let deny = NetworkRules {
        default_action: "Deny".into(),
        bypass: "None".into(),
        ..Default::default()
    };
    f.d.vault
        .set_network_rules(f.d.mgmt_url(), SUB, RG, &f.vault.name, &deny)
        .await
        .unwrap();
    let revoke = f.expect_inaccessible("FirewallDenied").await;
    // "Allow trusted services to bypass this firewall": the control plane is one.
    let bypass = NetworkRules {
        default_action: "Deny".into(),
        bypass: "AzureServices".into(),
        ..Default::default()
    };
    f.d.vault
        .set_network_rules(f.d.mgmt_url(), SUB, RG, &f.vault.name, &bypass)
        .await
        .unwrap();
    let recover = f.expect_ready_and_intact().await;
    report("firewall", revoke, recover);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_identity_is_not_restored_by_a_namesake_only_by_an_update() {
    let f = Fixture::new(false).await;
    assert!(
        f.d.identity
            .delete_managed_identity(SUB, RG, "cluster-id")
            .await
            .unwrap()
    );
    let revoke = f.expect_inaccessible("IdentityDeleted").await;
    // Same name, new principal: still no access, and the cluster stays Inaccessible.
    let again = f.d.create_identity("cluster-id").await;
    assert_ne!(again.principal_id, f.identity.principal_id);
    f.d.vault
        .assign_role(f.d.mgmt_url(), &f.vault.id, CSEU, &again.principal_id)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        f.view().await["properties"]["clusterStatus"],
        "Inaccessible"
    );
    // Updating the cluster to the new identity restores it.
    // The update names the key and the identity together, as the service requires.
    let mut update = cmk_cluster(&f.key_url(), &again.id);
    update["properties"]
        .as_object_mut()
        .unwrap()
        .remove("administrator");
    let (status, body) =
        f.d.control(
            reqwest::Method::PATCH,
            &f.d.cluster_url(&f.name),
            Some(update),
        )
        .await;
    assert_eq!(status, 200, "{body:#}");
    let recover = f.expect_ready_and_intact().await;
    report("identity deleted", revoke, recover);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_less_key_follows_rotation_and_the_old_version_can_then_be_disabled() {
    let f = Fixture::new(false).await;
    let before = f.view().await["properties"]["keyStatus"]["activeKeyVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let rotated = f.d.vault.rotate_key(f.vault.base(), "cmk").await.unwrap();
    assert_ne!(rotated.kid, before);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let view = f.view().await;
        if view["properties"]["keyStatus"]["activeKeyVersion"] == rotated.kid.as_str() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no re-wrap onto {}: {view:#}",
            rotated.kid
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let off = UpdateKeyOptions {
        enabled: Some(false),
        ..Default::default()
    };
    f.d.vault.update_key(&before, &off).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(f.view().await["properties"]["clusterStatus"], "Ready");
    f.expect_ready_and_intact().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_versioned_key_stays_pinned_and_its_expiry_makes_the_cluster_inaccessible() {
    let f = Fixture::new(true).await;
    let pinned = f.view().await["properties"]["keyStatus"]["activeKeyVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let rotated = f.d.vault.rotate_key(f.vault.base(), "cmk").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let view = f.view().await;
    assert_eq!(
        view["properties"]["keyStatus"]["activeKeyVersion"],
        pinned.as_str()
    );
    assert_ne!(rotated.kid, pinned);
    assert_eq!(view["properties"]["clusterStatus"], "Ready");
    let exp = UpdateKeyOptions {
        exp: Some(time_now() + 3),
        ..Default::default()
    };
    f.d.vault.update_key(&pinned, &exp).await.unwrap();
    f.expect_inaccessible("KeyExpired").await;
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
