//! Real TLS handshakes over loopback sockets with the certificates the CA issues.

use std::sync::Arc;

use pki::{DevCa, TRUSTED_SERVICE_URI};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

async fn echo_once(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<(Vec<u8>, Option<usize>), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer_certs = tls.get_ref().1.peer_certificates().map(|c| c.len());
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer_certs)
    });
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = TlsConnector::from(client);
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    let peer = server_task.await.map_err(|e| e.to_string())??;
    Ok((out, peer))
}

#[tokio::test]
async fn server_certificate_verifies_for_localhost_and_loopback_ip() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(dir.path()).unwrap();
    let server = pki::server_config(&ca.issue_server(&["vault.test"]).unwrap(), None).unwrap();
    let client = pki::client_config(ca.ca_pem()).unwrap();
    for name in ["localhost", "127.0.0.1", "vault.test"] {
        let (echoed, peer) = echo_once(server.clone(), client.clone(), name)
            .await
            .unwrap();
        assert_eq!(echoed, b"hello");
        assert_eq!(peer, None);
    }
    let err = echo_once(server, client, "other.test").await.unwrap_err();
    assert!(
        err.contains("NotValidForName") || err.contains("not valid"),
        "{err}"
    );
}

#[tokio::test]
async fn reloaded_ca_issues_certificates_that_chain_to_the_stored_root() {
    let dir = tempfile::tempdir().unwrap();
    let first = DevCa::load_or_create(dir.path()).unwrap();
    let root = first.ca_pem().to_string();
    drop(first);
    let reloaded = DevCa::load_or_create(dir.path()).unwrap();
    assert_eq!(reloaded.ca_pem(), root, "the CA must not be regenerated");
    let server = pki::server_config(&reloaded.issue_server(&[]).unwrap(), None).unwrap();
    let client = pki::client_config(&root).unwrap();
    let (echoed, _) = echo_once(server, client, "localhost").await.unwrap();
    assert_eq!(echoed, b"hello");
}

#[tokio::test]
async fn a_foreign_ca_is_refused() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(ours.path()).unwrap();
    let other = DevCa::load_or_create(theirs.path()).unwrap();
    let server = pki::server_config(&ca.issue_server(&[]).unwrap(), None).unwrap();
    let client = pki::client_config(other.ca_pem()).unwrap();
    let err = echo_once(server, client, "localhost").await.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("invalid peer certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn optional_client_certificates_are_verified_when_presented() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(dir.path()).unwrap();
    let server = pki::server_config(&ca.issue_server(&[]).unwrap(), Some(ca.ca_pem())).unwrap();

    let anonymous = pki::client_config(ca.ca_pem()).unwrap();
    let (_, peer) = echo_once(server.clone(), anonymous, "localhost")
        .await
        .unwrap();
    assert_eq!(
        peer, None,
        "a client without a certificate is still admitted"
    );

    let service = ca
        .issue_client("control-plane", Some(TRUSTED_SERVICE_URI))
        .unwrap();
    let mutual = pki::client_config_with_identity(ca.ca_pem(), &service).unwrap();
    let (_, peer) = echo_once(server.clone(), mutual, "localhost")
        .await
        .unwrap();
    assert_eq!(peer, Some(1));

    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger_ca = DevCa::load_or_create(stranger_dir.path()).unwrap();
    let forged = stranger_ca
        .issue_client("intruder", Some(TRUSTED_SERVICE_URI))
        .unwrap();
    let forged_client = pki::client_config_with_identity(ca.ca_pem(), &forged).unwrap();
    assert!(echo_once(server, forged_client, "localhost").await.is_err());
}

#[test]
fn the_ca_key_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    DevCa::load_or_create(dir.path()).unwrap();
    let mode = std::fs::metadata(dir.path().join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "ca.key must not be readable by group or others"
    );
}

#[test]
fn trusted_service_certificates_are_recognised_by_their_uri() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(dir.path()).unwrap();
    let der = |pem: &str| vec![CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()];
    let service = ca
        .issue_client("control-plane", Some(TRUSTED_SERVICE_URI))
        .unwrap();
    let plain = ca.issue_client("tool", None).unwrap();
    let other = ca
        .issue_client("tool", Some("spiffe://strongroom/other"))
        .unwrap();
    assert!(pki::is_trusted_service(&der(&service.cert_pem)));
    assert!(!pki::is_trusted_service(&der(&plain.cert_pem)));
    assert!(!pki::is_trusted_service(&der(&other.cert_pem)));
    assert!(!pki::is_trusted_service(&[]));
}
