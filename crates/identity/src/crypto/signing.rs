//! The ES256 (P-256) token-signing key and its public JWK.
//!
//! The private key exists in plaintext only inside this process (aws-lc-rs key object and
//! a zeroizing PKCS#8 buffer used for sealing). The `kid` is the RFC 7638 JWK thumbprint,
//! so it is stable across restarts and derivable by anyone holding the public key.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Error;

/// One public key in JWKS form (`kty` EC, `crv` P-256).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: String,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    pub crv: String,
    pub x: String,
    pub y: String,
}

/// A JSON Web Key Set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// The service's signing key.
pub struct SigningKey {
    kid: String,
    pair: EcdsaKeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
    jwk: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh P-256 key.
    pub fn generate() -> Result<SigningKey, Error> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| Error::Crypto("P-256 key generation"))?;
        SigningKey::from_pkcs8(Zeroizing::new(doc.as_ref().to_vec()))
    }

    /// Rebuilds a key from its PKCS#8 v1/v2 DER encoding.
    pub fn from_pkcs8(pkcs8: Zeroizing<Vec<u8>>) -> Result<SigningKey, Error> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(|_| Error::Crypto("P-256 PKCS#8 key rejected"))?;
        let point = pair.public_key().as_ref();
        // Uncompressed SEC1 point: 0x04 || X (32) || Y (32).
        if point.len() != 65 || point[0] != 4 {
            return Err(Error::Crypto("unexpected P-256 public key encoding"));
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        let kid = thumbprint(&x, &y);
        let jwk = Jwk {
            kty: "EC".into(),
            use_: Some("sig".into()),
            kid: kid.clone(),
            alg: Some("ES256".into()),
            crv: "P-256".into(),
            x,
            y,
        };
        Ok(SigningKey {
            kid,
            pair,
            pkcs8,
            jwk,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The private key in PKCS#8 DER, for sealing only.
    pub(crate) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// ES256 signature (raw `r || s`, 64 bytes) as JWS requires.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let sig = self
            .pair
            .sign(&SystemRandom::new(), message)
            .map_err(|_| Error::Crypto("ES256 sign"))?;
        Ok(sig.as_ref().to_vec())
    }
}

/// RFC 7638 thumbprint of an EC JWK: SHA-256 over the canonical member order.
pub fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes()).as_ref())
}

/// The uncompressed SEC1 public point of a JWK, for signature verification.
pub fn jwk_public_point(jwk: &Jwk) -> Option<Vec<u8>> {
    if jwk.kty != "EC" || jwk.crv != "P-256" {
        return None;
    }
    let x = URL_SAFE_NO_PAD.decode(&jwk.x).ok()?;
    let y = URL_SAFE_NO_PAD.decode(&jwk.y).ok()?;
    if x.len() != 32 || y.len() != 32 {
        return None;
    }
    let mut point = Vec::with_capacity(65);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Some(point)
}
