//! Real TLS handshakes over loopback sockets with the certificates the CA issues.

use std::sync::Arc;

use pki::{DevCa, TRUSTED_SERVICE_URI};
use rustls::CertificateError;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why an echo failed: each side's I/O error (a refused handshake is an `InvalidData`
/// error wrapping the `rustls::Error`).
#[derive(Debug)]
struct Failed {
    client: Option<std::io::Error>,
    server: Option<std::io::Error>,
}

impl Failed {
    fn client_tls(&self) -> Option<&rustls::Error> {
        tls_error(self.client.as_ref()?)
    }
    fn server_tls(&self) -> Option<&rustls::Error> {
        tls_error(self.server.as_ref()?)
    }
}

fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

// A certificate from a foreign development CA fails the chain check as `BadSignature`
// (every dev CA has the same subject, so the issuer is found by name and its signature
// does not verify) or `UnknownIssuer`; both mean "not issued by the trusted CA".

/// One TLS connection: the client sends "hello", the server echoes it and closes. Returns
/// what the client read back and how many certificates the client presented.
async fn echo_once(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<(Vec<u8>, Option<usize>), Failed> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let peer_certs = tls.get_ref().1.peer_certificates().map(|c| c.len());
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await?;
        tls.write_all(&buf).await?;
        tls.shutdown().await?;
        Ok::<_, std::io::Error>(peer_certs)
    });
    let client_side = async {
        let tcp = TcpStream::connect(addr).await?;
        let connector = TlsConnector::from(client);
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        let mut tls = connector.connect(server_name, tcp).await?;
        tls.write_all(b"hello").await?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    }
    .await;
    let server_side = tokio::time::timeout(std::time::Duration::from_secs(10), server_task)
        .await
        .expect("the server side finished within 10s")
        .expect("server task");
    match (client_side, server_side) {
        (Ok(out), Ok(peer)) => Ok((out, peer)),
        (client, server) => Err(Failed {
            client: client.err(),
            server: server.err(),
        }),
    }
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
        matches!(
            err.client_tls(),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "the client must refuse a certificate for another name: {err:?}"
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
        matches!(
            err.client_tls(),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature
            ))
        ),
        "the client must refuse a server certificate from a foreign CA: {err:?}"
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
    let err = echo_once(server, forged_client, "localhost")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.server_tls(),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature
            ))
        ),
        "the server must refuse a client certificate from a foreign CA: {err:?}"
    );
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
