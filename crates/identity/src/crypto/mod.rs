//! Cryptographic building blocks, all from aws-lc-rs: the service master key, sealing of
//! the signing key at rest, salted hashes of client/resource secrets, and the ES256 key
//! that signs every token.

pub mod master_key;
pub mod seal;
pub mod secret;
pub mod signing;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::Error;

/// Fills `out` with cryptographically secure random bytes.
pub(crate) fn random_bytes(out: &mut [u8]) -> Result<(), Error> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| Error::Crypto("random generator failed"))
}
