//! SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), server side, as MongoDB speaks it.
//!
//! What is stored per user is only what RFC 5802 calls the server's verifier: the salt,
//! the iteration count, `StoredKey = H(ClientKey)` and `ServerKey`. The password never
//! reaches storage; a stolen `system.users` does not let anyone log in (it would need the
//! `ClientKey`, which only the proof reveals, one exchange at a time).
//!
//! The conversation is two round trips: `client-first` -> `server-first` (salt, count,
//! combined nonce), then `client-final` (proof) -> `server-final` (server signature).
//! MongoDB drivers then send one empty message unless they asked for
//! `skipEmptyExchange`; [`Conversation`] handles both.

use std::num::NonZeroU32;

use aws_lc_rs::{digest, hmac, pbkdf2};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Iteration count for new credentials (MongoDB's default for SCRAM-SHA-256).
pub const DEFAULT_ITERATIONS: u32 = 15_000;
/// Salt length for new credentials (what MongoDB uses for SCRAM-SHA-256).
const SALT_LEN: usize = 28;
/// Random bytes in the server's part of the nonce.
const NONCE_LEN: usize = 24;

/// Why an exchange failed. Every variant is reported to the client as the same
/// `AuthenticationFailed`, so no detail about users or proofs leaks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("password cannot be prepared with SASLprep")]
    SaslPrep,
    #[error("nonce mismatch")]
    Nonce,
    #[error("invalid proof")]
    Proof,
    #[error("conversation is already finished")]
    Finished,
    #[error("random number generator failure")]
    Rng,
}

/// The SCRAM-SHA-256 verifier of one user (what `system.users` stores).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub iteration_count: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("iteration_count", &self.iteration_count)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Derives credentials for `password` with a fresh random salt.
    pub fn derive(password: &str, iterations: u32) -> Result<Credentials, ScramError> {
        let mut salt = vec![0u8; SALT_LEN];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| ScramError::Rng)?;
        Credentials::derive_with_salt(password, salt, iterations)
    }

    /// Derives credentials for `password` and `salt` (RFC 5802 section 3).
    pub fn derive_with_salt(
        password: &str,
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Credentials, ScramError> {
        let prepared = Zeroizing::new(
            stringprep::saslprep(password)
                .map_err(|_| ScramError::SaslPrep)?
                .into_owned(),
        );
        let iterations = NonZeroU32::new(iterations).ok_or(ScramError::Malformed("iterations"))?;
        let mut salted = Zeroizing::new([0u8; 32]);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            prepared.as_bytes(),
            salted.as_mut(),
        );
        let client_key = Zeroizing::new(hmac_sha256(salted.as_ref(), b"Client Key"));
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref())
            .as_ref()
            .to_vec();
        let server_key = Zeroizing::new(hmac_sha256(salted.as_ref(), b"Server Key").to_vec());
        Ok(Credentials {
            iteration_count: iterations.get(),
            salt,
            stored_key,
            server_key,
        })
    }

    /// Plausible-looking credentials for a user that does not exist, derived from a
    /// server secret so that the same name always gets the same salt: the exchange then
    /// fails at the proof, exactly like a wrong password, and probing cannot tell
    /// "no such user" from "wrong password".
    pub fn decoy(server_secret: &[u8], user: &str) -> Credentials {
        let salt =
            hmac_sha256(server_secret, format!("salt\0{user}").as_bytes())[..SALT_LEN].to_vec();
        let stored_key = hmac_sha256(server_secret, format!("stored\0{user}").as_bytes()).to_vec();
        let server_key = Zeroizing::new(
            hmac_sha256(server_secret, format!("server\0{user}").as_bytes()).to_vec(),
        );
        Credentials {
            iteration_count: DEFAULT_ITERATIONS,
            salt,
            stored_key,
            server_key,
        }
    }
}

/// The parsed `client-first-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub user: String,
    nonce: String,
    bare: String,
}

/// Parses `gs2-header client-first-message-bare`.
pub fn parse_client_first(payload: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(payload).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let (cbind, rest) = text
        .split_once(',')
        .ok_or(ScramError::Malformed("gs2 header"))?;
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("gs2 channel binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("gs2 header"))?;
    if !authzid.is_empty() && !authzid.starts_with("a=") {
        return Err(ScramError::Malformed("authzid"));
    }
    let mut user = None;
    let mut nonce = None;
    for (i, attr) in bare.split(',').enumerate() {
        match (i, attr.split_at_checked(2)) {
            (0, Some(("m=", _))) => return Err(ScramError::Malformed("mandatory extension")),
            (0, Some(("n=", v))) => user = Some(unescape_name(v)?),
            (1, Some(("r=", v))) if !v.is_empty() => nonce = Some(v.to_string()),
            _ => {}
        }
    }
    Ok(ClientFirst {
        user: user.ok_or(ScramError::Malformed("missing user name"))?,
        nonce: nonce.ok_or(ScramError::Malformed("missing nonce"))?,
        bare: bare.to_string(),
    })
}

fn unescape_name(v: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("user name escape")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

enum State {
    AwaitingClientFinal {
        client_first_bare: String,
        server_first: String,
        nonce: String,
        credentials: Credentials,
    },
    AwaitingEmpty,
    Done,
    /// A step failed; the conversation cannot continue.
    Failed,
}

/// One server-side SCRAM-SHA-256 exchange.
pub struct Conversation {
    user: String,
    state: State,
}

/// What to send back after a step.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    pub payload: Vec<u8>,
    pub done: bool,
}

impl Conversation {
    /// Starts an exchange with `credentials` (real or [`Credentials::decoy`]) and returns
    /// it with the `server-first-message`. `server_nonce` is drawn at random unless given
    /// (tests pass RFC vectors).
    pub fn start(
        client_first: ClientFirst,
        credentials: Credentials,
        server_nonce: Option<&str>,
    ) -> Result<(Conversation, Vec<u8>), ScramError> {
        let suffix = match server_nonce {
            Some(s) => s.to_string(),
            None => {
                let mut raw = [0u8; NONCE_LEN];
                aws_lc_rs::rand::fill(&mut raw).map_err(|_| ScramError::Rng)?;
                B64.encode(raw)
            }
        };
        let nonce = format!("{}{}", client_first.nonce, suffix);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credentials.salt),
            credentials.iteration_count
        );
        let payload = server_first.as_bytes().to_vec();
        Ok((
            Conversation {
                user: client_first.user,
                state: State::AwaitingClientFinal {
                    client_first_bare: client_first.bare,
                    server_first,
                    nonce,
                    credentials,
                },
            },
            payload,
        ))
    }

    /// The user name the client claimed.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// True once the client proved its identity (the proof verified).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::AwaitingEmpty | State::Done)
    }

    /// Processes the next client message. With `skip_empty_exchange`, the server-final
    /// message already reports `done`.
    pub fn step(&mut self, payload: &[u8], skip_empty_exchange: bool) -> Result<Step, ScramError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::AwaitingClientFinal {
                client_first_bare,
                server_first,
                nonce,
                credentials,
            } => {
                let text =
                    std::str::from_utf8(payload).map_err(|_| ScramError::Malformed("not UTF-8"))?;
                let (without_proof, proof) = text
                    .rsplit_once(",p=")
                    .ok_or(ScramError::Malformed("missing proof"))?;
                let mut got_nonce = None;
                let mut got_cbind = None;
                for attr in without_proof.split(',') {
                    if let Some(v) = attr.strip_prefix("c=") {
                        got_cbind = Some(v);
                    } else if let Some(v) = attr.strip_prefix("r=") {
                        got_nonce = Some(v);
                    }
                }
                // The channel-binding attribute must echo the gs2 header without binding.
                match got_cbind {
                    Some("biws") | Some("eSws") => {}
                    _ => return Err(ScramError::ChannelBinding),
                }
                if got_nonce != Some(nonce.as_str()) {
                    return Err(ScramError::Nonce);
                }
                let proof = B64
                    .decode(proof)
                    .map_err(|_| ScramError::Malformed("proof is not base64"))?;
                if proof.len() != 32 {
                    return Err(ScramError::Proof);
                }
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let client_signature =
                    hmac_sha256(&credentials.stored_key, auth_message.as_bytes());
                let client_key: Zeroizing<Vec<u8>> = Zeroizing::new(
                    proof
                        .iter()
                        .zip(client_signature.iter())
                        .map(|(a, b)| a ^ b)
                        .collect(),
                );
                let computed = digest::digest(&digest::SHA256, &client_key);
                if !bool::from(computed.as_ref().ct_eq(&credentials.stored_key)) {
                    return Err(ScramError::Proof);
                }
                let server_signature =
                    hmac_sha256(&credentials.server_key, auth_message.as_bytes());
                let payload = format!("v={}", B64.encode(server_signature)).into_bytes();
                self.state = if skip_empty_exchange {
                    State::Done
                } else {
                    State::AwaitingEmpty
                };
                Ok(Step {
                    payload,
                    done: skip_empty_exchange,
                })
            }
            State::AwaitingEmpty => {
                self.state = State::Done;
                Ok(Step {
                    payload: Vec::new(),
                    done: true,
                })
            }
            State::Done => {
                self.state = State::Done;
                Err(ScramError::Finished)
            }
            State::Failed => Err(ScramError::Finished),
        }
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    #[test]
    fn rfc7677_test_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let creds = Credentials::derive_with_salt("pencil", salt, 4096).expect("derive");
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").expect("parse");
        assert_eq!(first.user, "user");
        let (mut conv, server_first) =
            Conversation::start(first, creds, Some("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"))
                .expect("start");
        assert_eq!(
            String::from_utf8(server_first).expect("utf8"),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let step = conv
            .step(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                false,
            )
            .expect("final");
        assert_eq!(
            String::from_utf8(step.payload).expect("utf8"),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(!step.done);
        assert!(conv.is_authenticated());
        assert!(conv.step(b"", false).expect("empty").done);
        assert_eq!(conv.step(b"", false), Err(ScramError::Finished));
    }

    #[test]
    fn wrong_proof_and_wrong_nonce_fail() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let creds = Credentials::derive_with_salt("pencil", salt, 4096).expect("derive");
        let first = parse_client_first(b"n,,n=user,r=abc").expect("parse");
        let (mut conv, _) =
            Conversation::start(first.clone(), creds.clone(), Some("def")).expect("start");
        let bad = format!("c=biws,r=abcdef,p={}", B64.encode([0u8; 32]));
        assert_eq!(conv.step(bad.as_bytes(), true), Err(ScramError::Proof));
        assert!(!conv.is_authenticated());
        let (mut conv, _) = Conversation::start(first, creds, Some("def")).expect("start");
        let bad = format!("c=biws,r=abcXXX,p={}", B64.encode([0u8; 32]));
        assert_eq!(conv.step(bad.as_bytes(), true), Err(ScramError::Nonce));
    }

    #[test]
    fn saslprep_maps_equivalent_passwords_to_the_same_key() {
        // U+00AD (soft hyphen) is mapped to nothing; U+2168 (roman nine) to "IX" (NFKC).
        let a = Credentials::derive_with_salt("I\u{00AD}X", vec![1; 16], 4096).expect("a");
        let b = Credentials::derive_with_salt("IX", vec![1; 16], 4096).expect("b");
        let c = Credentials::derive_with_salt("\u{2168}", vec![1; 16], 4096).expect("c");
        assert_eq!(a.stored_key, b.stored_key);
        assert_eq!(b.stored_key, c.stored_key);
        // Prohibited characters are refused.
        assert_eq!(
            Credentials::derive_with_salt("a\u{0007}", vec![1; 16], 4096).err(),
            Some(ScramError::SaslPrep)
        );
    }

    #[test]
    fn client_first_parsing() {
        let f = parse_client_first(b"n,,n=a=2Cb=3Dc,r=xyz").expect("escaped");
        assert_eq!(f.user, "a,b=c");
        assert_eq!(
            parse_client_first(b"p=tls-unique,,n=u,r=x"),
            Err(ScramError::ChannelBinding)
        );
        assert!(parse_client_first(b"n,,n=u").is_err());
        assert!(parse_client_first(b"n,,n=a=ZZ,r=x").is_err());
    }

    #[test]
    fn decoys_are_stable_per_user() {
        let a = Credentials::decoy(b"secret", "ghost");
        let b = Credentials::decoy(b"secret", "ghost");
        let c = Credentials::decoy(b"secret", "other");
        assert_eq!(a.salt, b.salt);
        assert_ne!(a.salt, c.salt);
    }
}
