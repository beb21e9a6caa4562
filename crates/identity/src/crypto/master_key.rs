//! The service master key: 32 random bytes in `master.key` (mode 0600) in the data dir.
//! It never leaves this process; everything secret at rest (the token-signing key) is
//! sealed under a key derived from it, so the state file alone reveals nothing.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aws_lc_rs::hkdf;
use zeroize::Zeroizing;

use crate::Error;

/// File name of the master key inside the data dir.
pub const FILE_NAME: &str = "master.key";
const LEN: usize = 32;

/// The master key bytes, wiped on drop. Debug output never shows them.
pub struct MasterKey(Zeroizing<[u8; LEN]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Loads `dir/master.key`, or creates it when `create` is true and it does not exist.
    /// A key readable by group or other is refused: it would defeat sealing at rest.
    pub fn load_or_create(dir: &Path, create: bool) -> Result<MasterKey, Error> {
        let path = dir.join(FILE_NAME);
        let err = |reason: String| Error::MasterKey {
            path: path.clone(),
            reason,
        };
        match std::fs::File::open(&path) {
            Ok(mut file) => {
                let mode = file
                    .metadata()
                    .map_err(|e| Error::io(&path, e))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(err(format!(
                        "permissions {:o} are too open; expected 0600",
                        mode & 0o777
                    )));
                }
                let mut bytes = Zeroizing::new(Vec::with_capacity(LEN + 1));
                file.read_to_end(&mut bytes)
                    .map_err(|e| Error::io(&path, e))?;
                if bytes.len() != LEN {
                    return Err(err(format!("expected {LEN} bytes, found {}", bytes.len())));
                }
                let mut key = Zeroizing::new([0u8; LEN]);
                key.copy_from_slice(&bytes);
                Ok(MasterKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut key = Zeroizing::new([0u8; LEN]);
                super::random_bytes(&mut key[..])?;
                sealed::write_atomic_io(&path, &key[..], 0o600).map_err(|e| Error::io(&path, e))?;
                Ok(MasterKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(err(
                "missing while the state file exists; sealed keys cannot be opened".into(),
            )),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Derives a 32-byte purpose-bound sub-key (HKDF-SHA256, `info` names the purpose), so
    /// the raw master key is never used directly as a cipher key.
    pub fn derive(&self, info: &[u8]) -> Result<Zeroizing<[u8; 32]>, Error> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"strongroom-identity master-key v1");
        let prk = salt.extract(&self.0[..]);
        let info = [info];
        let okm = prk
            .expand(&info, hkdf::HKDF_SHA256)
            .map_err(|_| Error::Crypto("hkdf expand"))?;
        let mut out = Zeroizing::new([0u8; 32]);
        okm.fill(&mut out[..])
            .map_err(|_| Error::Crypto("hkdf fill"))?;
        Ok(out)
    }
}
