//! The development CA: created once per data directory, reloaded on every start.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::Error;

/// URI SAN carried by client certificates of first-party services (the control plane).
/// A key vault whose firewall admits "trusted services" recognises callers by it.
pub const TRUSTED_SERVICE_URI: &str = "spiffe://strongroom/trusted-service";

const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const CA_COMMON_NAME: &str = "Strongroom Development CA";

/// A certificate and its private key, both PEM. The key zeroizes on drop.
#[derive(Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A private certificate authority kept in a directory (`ca.pem`, `ca.key` with mode 0600).
pub struct DevCa {
    dir: PathBuf,
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DevCa {
    /// Loads the CA in `dir`, creating it (and `dir`) on first use.
    pub fn load_or_create(dir: &Path) -> Result<DevCa, Error> {
        let io = |source| Error::Io {
            dir: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if cert_path.exists() && key_path.exists() {
            let cert_pem = fs::read_to_string(&cert_path).map_err(io)?;
            let key_pem = Zeroizing::new(fs::read_to_string(&key_path).map_err(io)?);
            let key = KeyPair::from_pem(&key_pem)?;
            return Ok(DevCa {
                dir: dir.to_path_buf(),
                cert_pem,
                key,
            });
        }
        let key = KeyPair::generate()?;
        let cert_pem = ca_params().self_signed(&key)?.pem();
        // The key is written first and the certificate last: a crash in between leaves no
        // `ca.pem`, so the next start generates a fresh pair instead of a mismatched one.
        sealed::write_atomic_io(&key_path, key.serialize_pem().as_bytes(), 0o600).map_err(io)?;
        sealed::write_atomic_io(&cert_path, cert_pem.as_bytes(), 0o644).map_err(io)?;
        tracing::info!(dir = %dir.display(), "created development certificate authority");
        Ok(DevCa {
            dir: dir.to_path_buf(),
            cert_pem,
            key,
        })
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn ca_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Path of the CA certificate file, for clients configured by path (`tlsCAFile`, …).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses). `localhost`
    /// and `127.0.0.1` are always included, since every service listens on loopback.
    pub fn issue_server(&self, names: &[&str]) -> Result<CertifiedKey, Error> {
        let mut sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        for always in ["localhost", "127.0.0.1"] {
            if !sans.iter().any(|s| s == always) {
                sans.push(always.to_string());
            }
        }
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// Issues a client certificate. `uri_san` (for example [`TRUSTED_SERVICE_URI`]) lets a
    /// server recognise what kind of caller it is.
    pub fn issue_client(
        &self,
        common_name: &str,
        uri_san: Option<&str>,
    ) -> Result<CertifiedKey, Error> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if let Some(uri) = uri_san {
            params
                .subject_alt_names
                .push(SanType::URI(uri.to_string().try_into()?));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Result<CertifiedKey, Error> {
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(397);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        // Rebuilding the issuer from the same parameters and key yields the same subject
        // and key identifier as the stored CA certificate, so the chain verifies.
        let issuer = Issuer::new(ca_params(), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "Strongroom");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time::macros::datetime!(2024-01-01 0:00 UTC);
    params.not_after = time::macros::datetime!(2044-01-01 0:00 UTC);
    params
}
