//! The create and update rules, one test per rule, each with its own error code.

use control::model::MongoCluster;
use control::validate::*;
use serde_json::json;

const UAMI: &str = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-id";
const OTHER: &str = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/other";
const KEY: &str = "https://127.0.0.1:8443/keys/cmk";

fn cluster(v: serde_json::Value) -> MongoCluster {
    serde_json::from_value(v).unwrap()
}

fn admin() -> serde_json::Value {
    json!({"userName": "clusteradmin", "password": "Str0ng!Passw0rd"})
}

fn cmk_request(
    identity_type: &str,
    listed: &[&str],
    kek_identity: serde_json::Value,
    key: &str,
) -> MongoCluster {
    let uais: serde_json::Map<String, serde_json::Value> =
        listed.iter().map(|i| (i.to_string(), json!({}))).collect();
    cluster(json!({
        "location": "local",
        "identity": {"type": identity_type, "userAssignedIdentities": uais},
        "properties": {
            "administrator": admin(),
            "encryption": {"customerManagedKeyEncryption": {
                "keyEncryptionKeyIdentity": kek_identity,
                "keyEncryptionKeyUrl": key}}
        }
    }))
}

fn kek_identity(id: &str) -> serde_json::Value {
    json!({"identityType": "UserAssignedIdentity", "userAssignedIdentityResourceId": id})
}

fn code(r: Result<impl std::fmt::Debug, ValidationError>) -> &'static str {
    r.expect_err("expected a rejection").code
}

#[test]
fn no_encryption_block_means_service_managed() {
    let req = cluster(json!({"location": "local", "properties": {"administrator": admin()}}));
    let plan = validate_create("orders", &req).unwrap();
    assert_eq!(plan.mode, EncryptionMode::ServiceManaged);
    assert_eq!(plan.create_mode, CreateMode::Default);
}

#[test]
fn a_complete_cmk_request_is_accepted_with_the_url_as_given() {
    let req = cmk_request("UserAssigned", &[UAMI], kek_identity(UAMI), KEY);
    let plan = validate_create("orders", &req).unwrap();
    assert_eq!(
        plan.mode,
        EncryptionMode::CustomerManaged(CmkReference {
            key_url: KEY.into(),
            identity_resource_id: UAMI.into()
        })
    );
}

#[test]
fn cmk_requires_a_user_assigned_identity_listed_on_the_cluster() {
    let not_user_assigned = cmk_request("SystemAssigned", &[], kek_identity(UAMI), KEY);
    assert_eq!(
        code(validate_create("orders", &not_user_assigned)),
        "UserAssignedIdentityRequired"
    );
    let not_listed = cmk_request("UserAssigned", &[OTHER], kek_identity(UAMI), KEY);
    assert_eq!(
        code(validate_create("orders", &not_listed)),
        "KeyEncryptionKeyIdentityNotAssigned"
    );
    let wrong_type = cmk_request(
        "UserAssigned",
        &[UAMI],
        json!({"identityType": "SystemAssignedIdentity", "userAssignedIdentityResourceId": UAMI}),
        KEY,
    );
    assert_eq!(
        code(validate_create("orders", &wrong_type)),
        "InvalidKeyEncryptionKeyIdentityType"
    );
    let bad_id = cmk_request(
        "UserAssigned",
        &["/subscriptions/s/identities/x"],
        kek_identity(UAMI),
        KEY,
    );
    assert_eq!(
        code(validate_create("orders", &bad_id)),
        "InvalidUserAssignedIdentity"
    );
}

#[test]
fn key_and_identity_come_together() {
    let mut req = cmk_request("UserAssigned", &[UAMI], kek_identity(UAMI), KEY);
    req.properties
        .encryption
        .as_mut()
        .unwrap()
        .customer_managed_key_encryption
        .as_mut()
        .unwrap()
        .key_encryption_key_url = None;
    assert_eq!(
        code(validate_create("orders", &req)),
        "KeyAndIdentityRequiredTogether"
    );
}

#[test]
fn key_urls_must_name_a_vault_key() {
    let req = cmk_request(
        "UserAssigned",
        &[UAMI],
        kek_identity(UAMI),
        "https://v/secrets/x",
    );
    assert_eq!(
        code(validate_create("orders", &req)),
        "InvalidKeyEncryptionKeyUrl"
    );
}

#[test]
fn names_and_administrators_follow_the_service_rules() {
    let req = cluster(json!({"properties": {"administrator": admin()}}));
    for bad in [
        "ab",
        "Orders",
        "-orders",
        "orders-",
        "or--ders",
        &"a".repeat(41),
    ] {
        assert_eq!(
            code(validate_create(bad, &req)),
            "InvalidResourceName",
            "{bad}"
        );
    }
    let no_admin = cluster(json!({"properties": {}}));
    assert_eq!(
        code(validate_create("orders", &no_admin)),
        "AdministratorRequired"
    );
    for weak in [
        "short1!A",
        "alllowercase1!",
        "ALLUPPER1!",
        "NoDigits!!",
        "NoSymbols11",
    ] {
        let req =
            cluster(json!({"properties": {"administrator": {"userName": "a", "password": weak}}}));
        if weak == "short1!A" {
            assert!(
                validate_create("orders", &req).is_ok(),
                "8 characters is enough"
            );
        } else {
            assert_eq!(
                code(validate_create("orders", &req)),
                "InvalidAdministratorPassword",
                "{weak}"
            );
        }
    }
}

#[test]
fn restores_name_their_source_and_instant() {
    let req = cluster(json!({"properties": {"createMode": "PointInTimeRestore"}}));
    assert_eq!(
        code(validate_create("orders", &req)),
        "InvalidRestoreParameters"
    );
    let ok = cluster(json!({"properties": {"createMode": "PointInTimeRestore",
        "restoreParameters": {"pointInTimeUTC": "2026-11-28T10:00:00Z", "sourceResourceId": "/x"}}}));
    assert!(matches!(
        validate_create("orders", &ok).unwrap().create_mode,
        CreateMode::PointInTimeRestore { .. }
    ));
    let bad =
        cluster(json!({"properties": {"createMode": "GeoReplica", "administrator": admin()}}));
    assert_eq!(code(validate_create("orders", &bad)), "InvalidCreateMode");
}

#[test]
fn the_encryption_mode_never_changes() {
    let smk = EncryptionMode::ServiceManaged;
    let existing = Existing {
        mode: &smk,
        admin_user: Some("clusteradmin"),
        create_mode: "Default",
    };
    let to_cmk = cmk_request("UserAssigned", &[UAMI], kek_identity(UAMI), KEY);
    assert_eq!(
        code(validate_update(&existing, &to_cmk)),
        "EncryptionModeCannotBeChanged"
    );

    let cmk = EncryptionMode::CustomerManaged(CmkReference {
        key_url: KEY.into(),
        identity_resource_id: UAMI.into(),
    });
    let existing = Existing {
        mode: &cmk,
        admin_user: Some("clusteradmin"),
        create_mode: "Default",
    };
    let to_smk = cluster(json!({"properties": {"encryption": {}}}));
    assert_eq!(
        code(validate_update(&existing, &to_smk)),
        "EncryptionModeCannotBeChanged"
    );
}

#[test]
fn a_cmk_update_needs_both_parts_and_records_the_change() {
    let cmk = EncryptionMode::CustomerManaged(CmkReference {
        key_url: KEY.into(),
        identity_resource_id: UAMI.into(),
    });
    let existing = Existing {
        mode: &cmk,
        admin_user: Some("clusteradmin"),
        create_mode: "Default",
    };
    let only_key = cluster(
        json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {UAMI: {}}},
        "properties": {"encryption": {"customerManagedKeyEncryption": {"keyEncryptionKeyUrl": "https://127.0.0.1:8443/keys/other"}}}}),
    );
    assert_eq!(
        code(validate_update(&existing, &only_key)),
        "KeyAndIdentityRequiredTogether"
    );

    let same = cmk_request("UserAssigned", &[UAMI], kek_identity(UAMI), KEY);
    assert!(validate_update(&existing, &same).unwrap().new_cmk.is_none());

    let moved = cmk_request("UserAssigned", &[UAMI, OTHER], kek_identity(OTHER), KEY);
    let plan = validate_update(&existing, &moved).unwrap();
    assert_eq!(plan.new_cmk.unwrap().identity_resource_id, OTHER);
    assert_eq!(plan.identities.len(), 2);
}

#[test]
fn create_only_and_fixed_properties_are_refused_on_update() {
    let cmk = EncryptionMode::CustomerManaged(CmkReference {
        key_url: KEY.into(),
        identity_resource_id: UAMI.into(),
    });
    let existing = Existing {
        mode: &cmk,
        admin_user: Some("clusteradmin"),
        create_mode: "Default",
    };
    let shards = cluster(json!({"properties": {"sharding": {"shardCount": 2}}}));
    assert_eq!(
        code(validate_update(&existing, &shards)),
        "ShardCountChangeNotSupportedWithCmk"
    );
    let restore = cluster(json!({"properties": {"createMode": "PointInTimeRestore"}}));
    assert_eq!(
        code(validate_update(&existing, &restore)),
        "CreateModeCannotBeChanged"
    );
    let rename = cluster(json!({"properties": {"administrator": {"userName": "root2"}}}));
    assert_eq!(
        code(validate_update(&existing, &rename)),
        "AdministratorUserNameCannotBeChanged"
    );
    let weak = cluster(json!({"properties": {"administrator": {"password": "weak"}}}));
    assert_eq!(
        code(validate_update(&existing, &weak)),
        "InvalidAdministratorPassword"
    );
}
