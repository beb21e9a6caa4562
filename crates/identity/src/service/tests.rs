//! Unit tests of the service core that need its private parts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::*;

fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The P-256 private scalar: the first `OCTET STRING (32)` in the PKCS#8 DER (the
/// algorithm OIDs before it contain no `04 20`).
fn scalar(pkcs8: &[u8]) -> Vec<u8> {
    let at = pkcs8.windows(2).position(|w| w == [0x04, 0x20]).unwrap() + 2;
    pkcs8[at..at + 32].to_vec()
}

#[test]
fn signing_key_is_never_written_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::open(dir.path(), "https://127.0.0.1:1", Duration::from_secs(60)).unwrap();
    let boot = svc.bootstrap().unwrap();
    let admin = boot.admin.unwrap();
    let (mi, _) = svc
        .put_identity(&boot.tenant_id, "s", "rg", "mi-n", "l", BTreeMap::new())
        .unwrap();
    svc.attach(&boot.tenant_id, "res", &mi.id).unwrap();
    let res_secret = svc.issue_resource_secret(&boot.tenant_id, "res").unwrap();
    let pkcs8 = svc.signing.pkcs8().to_vec();
    let scalar = scalar(&pkcs8);
    let b64 = STANDARD.encode(&pkcs8);
    let url_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&scalar);
    let hex_scalar = hex::encode(&scalar);
    for (path, bytes) in files(dir.path()) {
        let name = path.display();
        assert!(!contains(&bytes, &pkcs8), "PKCS#8 in {name}");
        assert!(!contains(&bytes, &scalar), "scalar in {name}");
        assert!(!contains(&bytes, b64.as_bytes()), "base64 PKCS#8 in {name}");
        assert!(
            !contains(&bytes, url_b64.as_bytes()),
            "base64url scalar in {name}"
        );
        assert!(
            !contains(&bytes, hex_scalar.as_bytes()),
            "hex scalar in {name}"
        );
        assert!(
            !contains(&bytes, admin.client_secret.as_bytes()),
            "client secret in {name}"
        );
        assert!(
            !contains(&bytes, res_secret.as_bytes()),
            "resource secret in {name}"
        );
    }
    // And the sealed key reopens to the same key after a restart.
    let kid = svc.signing.kid().to_string();
    drop(svc);
    let again = Service::open(dir.path(), "https://127.0.0.1:1", Duration::from_secs(60)).unwrap();
    assert_eq!(again.signing.kid(), kid);
    assert_eq!(again.signing.pkcs8(), &pkcs8[..]);
}

#[test]
fn credentials_file_round_trips_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let creds = Credentials {
        tenant_id: "t".into(),
        client_id: "c".into(),
        object_id: "o".into(),
        client_secret: Zeroizing::new("s3cret".into()),
    };
    let path = dir.path().join("admin.json");
    creds.save(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let back = Credentials::load(&path).unwrap();
    assert_eq!(back.client_secret.as_str(), "s3cret");
    assert_eq!(back.client_id, "c");
    assert!(!format!("{back:?}").contains("s3cret"));
}

#[test]
fn a_failed_save_leaves_memory_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::open(dir.path(), "https://127.0.0.1:1", Duration::from_secs(60)).unwrap();
    let boot = svc.bootstrap().unwrap();
    // Make the next save fail: a directory where the state file must be renamed to.
    let state = dir.path().join("state.json");
    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("occupied"), b"").unwrap();
    let err = svc.put_identity(&boot.tenant_id, "s", "rg", "mi-n", "l", BTreeMap::new());
    assert!(err.is_err());
    assert!(
        svc.get_identity(&identity_resource_id("s", "rg", "mi-n"))
            .is_none()
    );
    std::fs::remove_dir_all(&state).unwrap();
    svc.put_identity(&boot.tenant_id, "s", "rg", "mi-n", "l", BTreeMap::new())
        .unwrap();
    assert!(
        svc.get_identity(&identity_resource_id("s", "rg", "mi-n"))
            .is_some()
    );
}
