//! Access tokens: the claim set (the contract with the key vault and control plane), JWS
//! compact encoding with ES256, and validation shared by the in-process admin check and
//! the HTTP [`crate::verify::Verifier`].

use std::collections::HashMap;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::crypto::signing::SigningKey;

/// Leeway applied to `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 60;

/// Claims of every access token this service issues.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The requested resource (`https://vault.azure.net`), without `/.default`.
    pub aud: String,
    /// `{base_url}/{tid}/v2.0`.
    pub iss: String,
    pub tid: String,
    /// Principal (object) id of the caller.
    pub oid: String,
    /// Client (application) id of the caller.
    pub appid: String,
    pub azp: String,
    pub sub: String,
    pub idtyp: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Managed identity resource id, on managed-identity tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xms_mirid: Option<String>,
    pub ver: String,
    pub uti: String,
    /// Present and true only for first-party (trusted service) principals.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub xms_trusted_svc: bool,
}

impl Claims {
    /// True for a managed-identity token.
    pub fn is_managed_identity(&self) -> bool {
        self.xms_mirid.is_some()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// Encodes and signs `claims` as a compact JWS.
pub fn sign(key: &SigningKey, claims: &Claims) -> Result<String, Error> {
    let header = Header {
        alg: "ES256".into(),
        typ: Some("JWT".into()),
        kid: Some(key.kid().to_string()),
    };
    let header = serde_json::to_vec(&header).map_err(|_| Error::Crypto("encode header"))?;
    let body = serde_json::to_vec(claims).map_err(|_| Error::Crypto("encode claims"))?;
    let mut out = URL_SAFE_NO_PAD.encode(header);
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(body));
    let sig = key.sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(out)
}

/// Why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("unsupported token algorithm '{0}'")]
    Algorithm(String),
    #[error("token signing key '{0}' is unknown")]
    UnknownKey(String),
    #[error("token signature is invalid")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issuer '{0}' is not accepted")]
    Issuer(String),
    #[error("token audience '{0}' is not accepted")]
    Audience(String),
    #[error("token principal '{0}' no longer exists")]
    PrincipalGone(String),
    #[error("identity service unavailable: {0}")]
    Unavailable(String),
}

/// The `kid` in a token's header, without verifying anything.
pub fn peek_kid(token: &str) -> Result<String, TokenError> {
    let header = token
        .split('.')
        .next()
        .ok_or(TokenError::Malformed("no header"))?;
    let header: Header = decode_part(header)?;
    header.kid.ok_or(TokenError::Malformed("no kid"))
}

fn decode_part<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed("base64"))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed("json"))
}

/// What a validator accepts.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The issuer base URL; `iss` must equal `{issuer_base}/{tid}/v2.0`.
    pub issuer_base: &'a str,
    /// Accepted `aud` values (compared exactly, ignoring one trailing `/`).
    pub audiences: &'a [String],
    /// Current Unix time.
    pub now: i64,
}

/// Checks signature (against `keys`: kid -> uncompressed P-256 point), `exp`/`nbf` with
/// [`LEEWAY_SECS`], issuer and audience. Principal liveness is the caller's job.
pub fn validate(
    token: &str,
    keys: &HashMap<String, Vec<u8>>,
    expect: &Expectations<'_>,
) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three segments"));
    };
    let header: Header = decode_part(h)?;
    if header.alg != "ES256" {
        return Err(TokenError::Algorithm(header.alg));
    }
    let kid = header.kid.ok_or(TokenError::Malformed("no kid"))?;
    let point = keys
        .get(&kid)
        .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed("signature base64"))?;
    let signed_len = h.len() + 1 + p.len();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(&token.as_bytes()[..signed_len], &sig)
        .map_err(|_| TokenError::Signature)?;
    let claims: Claims = decode_part(p)?;
    if claims.exp + LEEWAY_SECS <= expect.now {
        return Err(TokenError::Expired);
    }
    if claims.nbf - LEEWAY_SECS > expect.now {
        return Err(TokenError::NotYetValid);
    }
    let expected_iss = format!(
        "{}/{}/v2.0",
        expect.issuer_base.trim_end_matches('/'),
        claims.tid
    );
    if claims.iss != expected_iss {
        return Err(TokenError::Issuer(claims.iss));
    }
    let aud = claims.aud.trim_end_matches('/');
    if !expect
        .audiences
        .iter()
        .any(|a| a.trim_end_matches('/') == aud)
    {
        return Err(TokenError::Audience(claims.aud));
    }
    Ok(claims)
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::signing::jwk_public_point;

    fn claims(now: i64) -> Claims {
        Claims {
            aud: "https://vault.azure.net".into(),
            iss: "https://127.0.0.1:1/t1/v2.0".into(),
            tid: "t1".into(),
            oid: "o".into(),
            appid: "a".into(),
            azp: "a".into(),
            sub: "o".into(),
            idtyp: "app".into(),
            iat: now,
            nbf: now,
            exp: now + 3600,
            xms_mirid: None,
            ver: "2.0".into(),
            uti: "u".into(),
            xms_trusted_svc: false,
        }
    }

    #[test]
    fn sign_then_validate_and_each_rejection() {
        let key = SigningKey::generate().unwrap();
        let mut keys = HashMap::new();
        keys.insert(key.kid().to_string(), jwk_public_point(key.jwk()).unwrap());
        let now = unix_now();
        let auds = vec!["https://vault.azure.net".to_string()];
        let expect = Expectations {
            issuer_base: "https://127.0.0.1:1",
            audiences: &auds,
            now,
        };
        let token = sign(&key, &claims(now)).unwrap();
        assert_eq!(validate(&token, &keys, &expect).unwrap(), claims(now));
        assert_eq!(peek_kid(&token).unwrap(), key.kid());

        let later = Expectations {
            now: now + 3600 + LEEWAY_SECS,
            ..expect.clone()
        };
        assert_eq!(validate(&token, &keys, &later), Err(TokenError::Expired));
        let earlier = Expectations {
            now: now - LEEWAY_SECS - 1,
            ..expect.clone()
        };
        assert_eq!(
            validate(&token, &keys, &earlier),
            Err(TokenError::NotYetValid)
        );
        let other_iss = Expectations {
            issuer_base: "https://evil",
            ..expect.clone()
        };
        assert!(matches!(
            validate(&token, &keys, &other_iss),
            Err(TokenError::Issuer(_))
        ));
        let other_aud = vec!["https://management.azure.com".to_string()];
        let wrong_aud = Expectations {
            audiences: &other_aud,
            ..expect.clone()
        };
        assert!(matches!(
            validate(&token, &keys, &wrong_aud),
            Err(TokenError::Audience(_))
        ));

        // Tampered payload: signature must fail.
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut c = claims(now);
        c.oid = "someone-else".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert_eq!(
            validate(&parts.join("."), &keys, &expect),
            Err(TokenError::Signature)
        );

        // A different key with the same kid must fail.
        let other = SigningKey::generate().unwrap();
        let mut wrong = HashMap::new();
        wrong.insert(
            key.kid().to_string(),
            jwk_public_point(other.jwk()).unwrap(),
        );
        assert_eq!(
            validate(&token, &wrong, &expect),
            Err(TokenError::Signature)
        );
        assert!(matches!(
            validate(&token, &HashMap::new(), &expect),
            Err(TokenError::UnknownKey(_))
        ));
        assert!(validate("a.b", &keys, &expect).is_err());
    }
}
