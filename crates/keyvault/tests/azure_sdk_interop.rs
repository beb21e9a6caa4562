//! Drives the official Azure SDK for Python (azure-identity + azure-keyvault-keys) against
//! real identity + key vault servers started in-process. Fails (never skips) when the Python
//! packages are missing.

mod common;

use std::process::Stdio;

use common::*;
use keyvault::authz::{ROLE_KV_CRYPTO_OFFICER, ROLE_KV_CRYPTO_SERVICE_ENCRYPTION_USER};

const INSTALL_HINT: &str = "pip install -r tests/interop/requirements.txt";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_sdk_for_python_interop() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let check = tokio::process::Command::new("python3")
        .args(["-c", "import azure.identity, azure.keyvault.keys, pytest"])
        .output()
        .await
        .expect("python3 is required for the Azure SDK interop test");
    assert!(
        check.status.success(),
        "the Azure SDK for Python is not installed: run `{INSTALL_HINT}`\n{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let env = Env::start().await;
    // Fixtures: two vaults, an officer, a principal without role, a managed identity with
    // Key Vault Crypto Service Encryption User on vault A.
    let mut spec_a = env.spec();
    spec_a.purge_protection = true;
    spec_a.soft_delete_retention_days = 7;
    let a = env.create_vault("py-vault-a", &spec_a).await;
    let b = env.create_vault("py-vault-b", &env.spec()).await;
    let officer = env.principal("py-officer").await;
    let norole = env.principal("py-norole").await;
    env.assign(&a, ROLE_KV_CRYPTO_OFFICER, &officer.object_id)
        .await;
    env.assign(&b, ROLE_KV_CRYPTO_OFFICER, &officer.object_id)
        .await;
    let mi = env
        .admin
        .create_managed_identity(SUB, RG, "py-mi", LOCATION)
        .await
        .unwrap();
    env.assign(&a, ROLE_KV_CRYPTO_SERVICE_ENCRYPTION_USER, &mi.principal_id)
        .await;
    let app =
        format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Web/sites/py-app");
    env.admin.attach(&app, &mi.id).await.unwrap();
    let header = env.admin.issue_resource_secret(&app).await.unwrap();
    let ca_path = env.ca.ca_path();

    let out = tokio::process::Command::new("python3")
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rfEs",
            "tests/interop/keyvault",
        ])
        .current_dir(&repo)
        .env("KV_TEST_AUTHORITY", &env.id_base)
        .env("KV_TEST_TENANT", &env.tenant)
        .env("KV_TEST_CA", &ca_path)
        .env("REQUESTS_CA_BUNDLE", &ca_path)
        .env("SSL_CERT_FILE", &ca_path)
        .env("KV_TEST_VAULT_A", &a.vault_uri)
        .env("KV_TEST_VAULT_B", &b.vault_uri)
        .env("KV_TEST_OFFICER_ID", &officer.client_id)
        .env("KV_TEST_OFFICER_SECRET", officer.client_secret.as_str())
        .env("KV_TEST_NOROLE_ID", &norole.client_id)
        .env("KV_TEST_NOROLE_SECRET", norole.client_secret.as_str())
        .env("KV_TEST_MI_CLIENT_ID", &mi.client_id)
        .env("IDENTITY_ENDPOINT", format!("{}/msi/token", env.id_base))
        .env("IDENTITY_HEADER", header.as_str())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains("passed") || l.contains("failed") || l.contains("error"))
        .unwrap_or("");
    assert!(
        out.status.success()
            && summary.contains("passed")
            && !summary.contains("skipped")
            && !summary.contains("failed"),
        "Azure SDK interop failed:\n{stdout}\n{stderr}"
    );
    println!("{summary}");
    env.shutdown().await;
}
