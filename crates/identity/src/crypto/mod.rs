//! Cryptographic building blocks, all from aws-lc-rs: salted hashes of client/resource
//! secrets and the ES256 key that signs every token. The master key and the sealing of
//! the signing key at rest are `sealed`'s ([`MASTER_KEY_FILE`], [`KEY_DOMAIN`]).

pub mod secret;
pub mod signing;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::Error;

/// File name of the master key inside the data dir.
pub const MASTER_KEY_FILE: &str = "master.key";

/// The HKDF salt the identity service has derived its keys with since its first release
/// (`sealed::MasterKey::derive_in`): existing state keeps opening.
pub const KEY_DOMAIN: &[u8] = b"strongroom-identity master-key v1";

/// Fills `out` with cryptographically secure random bytes.
pub(crate) fn random_bytes(out: &mut [u8]) -> Result<(), Error> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| Error::Crypto("random generator failed"))
}
