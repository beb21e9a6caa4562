//! Sealed state files: how Strongroom's services keep small durable state encrypted.
//!
//! The services (identity, key vault, control plane) each hold a little state — object
//! names, key URLs, hashed secrets, per-resource secrets — that must never sit on disk in
//! plaintext but is far too small for the storage engine. The pattern is the same
//! everywhere, so it lives here once:
//!
//! - [`MasterKey`]: 32 random bytes in a 0600 file, the service's stand-in for an HSM;
//!   purpose-specific keys are derived from it with HKDF-SHA256, so no two uses share a key.
//! - [`seal`] / [`open`]: AES-256-GCM with a random 96-bit nonce (state files are
//!   rewritten rarely, far below the random-nonce bound) and caller-chosen AAD.
//! - [`write_atomic`]: temporary file created with its final mode (0600 for secrets),
//!   fsync, rename, fsync of the directory — a crash leaves the old or the new file, never a
//!   torn one, and the bytes are never readable by anyone else, not even briefly. Every
//!   crate that writes a secrets file calls it (and [`sync_dir`]); there is no other copy.
//! - [`SealedJson`]: a serde value stored as one sealed file, with all of the above.
//! - [`Sealer`]: a derived key kept ready for many seals (the key vault's state log).
//!
//! Who uses it: the control plane (`master.key`, `clusters.sealed`, `service.sealed`,
//! `audit-head.sealed`), the identity service (`master.key`, its sealed signing key), the
//! key vault (`root.key`, its sealed state log), the audit log (`sync_dir`), pki
//! (`ca.key`), envelope (`wrapped-dek.json`) and the binary (`endpoints.json`,
//! credentials). It sits below `platform` (the HTTPS services' shared crate) because
//! `pki` writes through it and `platform` builds on `pki`.

use std::fs;
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the master key file is malformed ({len} bytes, expected 32)")]
    BadKeyFile { path: String, len: usize },
    /// Authentication failed: the file was altered, or sealed under another key.
    #[error("{path}: sealed data failed authentication (tampered with, or another master key)")]
    Tampered { path: String },
    #[error("{path}: {detail}")]
    Format { path: String, detail: String },
    #[error("the system random generator failed")]
    Random,
    /// A master key others can read would defeat sealing at rest: refused.
    #[error("{path}: permissions {mode:o} are too open; expected 0600")]
    KeyFileTooOpen { path: String, mode: u32 },
    /// The key is gone while state sealed under it exists: that state cannot be opened.
    #[error("{path}: missing while state sealed under it exists; that state cannot be opened")]
    MissingKey { path: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A service master key: 32 random bytes kept in a file only its owner can read.
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Loads the key at `path`, creating it (mode 0600, durably) when absent.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, Error> {
        match MasterKey::load(path) {
            Err(Error::MissingKey { .. }) => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                SystemRandom::new()
                    .fill(bytes.as_mut())
                    .map_err(|_| Error::Random)?;
                write_atomic(path, bytes.as_ref(), 0o600)?;
                Ok(MasterKey { bytes })
            }
            other => other,
        }
    }

    /// Loads the key at `path`, which must exist (the service has state sealed under it).
    /// A key file readable by group or others is refused.
    pub fn load(path: &Path) -> Result<MasterKey, Error> {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let mut file = match fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::MissingKey {
                    path: path.display().to_string(),
                });
            }
            Err(e) => return Err(io_error(path)(e)),
        };
        let mode = file
            .metadata()
            .map_err(io_error(path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::KeyFileTooOpen {
                path: path.display().to_string(),
                mode: mode & 0o777,
            });
        }
        let mut data = Zeroizing::new(Vec::with_capacity(33));
        file.read_to_end(&mut data).map_err(io_error(path))?;
        let bytes: [u8; 32] = data.as_slice().try_into().map_err(|_| Error::BadKeyFile {
            path: path.display().to_string(),
            len: data.len(),
        })?;
        Ok(MasterKey {
            bytes: Zeroizing::new(bytes),
        })
    }

    /// A key from raw bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// A key for one purpose: HKDF-SHA256(master, salt = "strongroom sealed v1", info = purpose).
    pub fn derive(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        self.derive_in(b"strongroom sealed v1", purpose.as_bytes())
    }

    /// A key for one purpose in a service's own derivation domain (the HKDF salt):
    /// HKDF-SHA256(master, salt = `domain`, info = `purpose`). The identity service
    /// (`"strongroom-identity master-key v1"`) and the key vault
    /// (`"strongroom-keyvault-v1"`) have sealed their state under their own domains since
    /// before they used this crate; deriving in the same domain keeps every file they
    /// wrote opening, byte for byte, with no migration.
    pub fn derive_in(&self, domain: &[u8], purpose: &[u8]) -> Zeroizing<[u8; 32]> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, domain);
        let prk = salt.extract(self.bytes.as_ref());
        let info = [purpose];
        let mut out = Zeroizing::new([0u8; 32]);
        // Expanding 32 bytes from SHA-256 cannot exceed HKDF's output limit.
        if let Ok(okm) = prk.expand(&info, hkdf::HKDF_SHA256) {
            let _ = okm.fill(out.as_mut());
        }
        out
    }
}

/// A derived key ready to seal and open many blobs (the key vault's state log seals one
/// per record): [`seal`] / [`open`] without rebuilding the cipher each time.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer { key: aead_key(key) }
    }

    /// [`seal`] under this key.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        seal_with(&self.key, aad, plaintext)
    }

    /// [`open`] under this key.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        open_with(&self.key, aad, sealed)
    }
}

/// Seals `plaintext` with AES-256-GCM: `nonce (12) ‖ ciphertext ‖ tag (16)`.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    seal_with(&aead_key(key), aad, plaintext)
}

fn seal_with(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::Random)?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
    out.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut body,
    )
    .map_err(|_| Error::Random)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens what [`seal`] produced; `None` when authentication fails.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    open_with(&aead_key(key), aad, sealed)
}

fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = Zeroizing::new(body.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .ok()?
        .len();
    buf.truncate(len);
    Some(buf)
}

fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    // AES_256_GCM takes exactly 32 bytes, which the type guarantees.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key"))
}

/// Replaces `path` with `bytes` atomically and durably, the file having exactly `mode`.
///
/// This is the one place the tree writes whole files that must survive a crash and must not
/// leak (master keys, CA private keys, `endpoints.json`, sealed state): the temporary file
/// is created next to `path` (same filesystem, so the rename is atomic) with `O_EXCL` and
/// `mode` from its first byte — never briefly readable under the process umask or a stale
/// temp file's permissions — then written, fsynced, given `mode` explicitly again (a umask
/// can only take bits away; this makes rewrites of an older, looser file tight too),
/// renamed over `path`, and the directory fsynced so the rename itself is durable. A crash
/// leaves the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    write_atomic_io(path, bytes, mode).map_err(io_error(path))
}

/// [`write_atomic`] for callers with their own error type: the same steps, `io::Error` out.
pub fn write_atomic_io(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    // A name no other writer (thread or process) uses, so `create_new` never meets a stale
    // file whose permissions it would inherit; a crash may leave one behind, 0600 like the
    // file it was to replace.
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes temporary files a crashed [`write_atomic`] of `path` left behind, returning how
/// many. Call it only while nothing else writes `path` (when a service opens its state).
pub fn remove_stale_temps(path: &Path) -> std::io::Result<usize> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(0);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let prefix = prefix.as_encoded_bytes().to_vec();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let bytes = file_name.as_encoded_bytes();
        if bytes.starts_with(&prefix) && bytes.ends_with(b".tmp") {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// fsyncs a directory, so that a file created, renamed or removed in it stays so after a
/// crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// A serde value kept in one sealed file: `magic ‖ seal(json)` with the magic as AAD.
pub struct SealedJson<T> {
    path: PathBuf,
    key: Zeroizing<[u8; 32]>,
    magic: &'static [u8],
    _value: PhantomData<fn() -> T>,
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> SealedJson<T> {
    /// `magic` names the file kind and version (for example `b"SRCTL1"`); it is checked on
    /// load and bound into the authentication tag, so files of one kind can't stand in for
    /// another.
    pub fn new(path: impl Into<PathBuf>, master: &MasterKey, magic: &'static [u8]) -> Self {
        let purpose = String::from_utf8_lossy(magic).into_owned();
        SealedJson {
            path: path.into(),
            key: master.derive(&purpose),
            magic,
            _value: PhantomData,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored value, or `None` if the file does not exist.
    pub fn load(&self) -> Result<Option<T>, Error> {
        let data = match fs::read(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&self.path)(e)),
        };
        let path = self.path.display().to_string();
        let Some(body) = data.strip_prefix(self.magic) else {
            return Err(Error::Format {
                path,
                detail: "not a sealed state file of this kind".into(),
            });
        };
        let json =
            open(&self.key, self.magic, body).ok_or(Error::Tampered { path: path.clone() })?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| Error::Format {
                path,
                detail: e.to_string(),
            })
    }

    pub fn store(&self, value: &T) -> Result<(), Error> {
        let json = Zeroizing::new(serde_json::to_vec(value).map_err(|e| Error::Format {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        })?);
        let mut out = self.magic.to_vec();
        out.extend_from_slice(&seal(&self.key, self.magic, &json)?);
        write_atomic(&self.path, &out, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct State {
        names: Vec<String>,
    }

    #[test]
    fn sealed_json_round_trips_and_hides_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
        let file = SealedJson::<State>::new(dir.path().join("state"), &master, b"TEST1");
        assert_eq!(file.load().unwrap(), None);
        let state = State {
            names: vec!["canary-5f2e".into()],
        };
        file.store(&state).unwrap();
        assert_eq!(file.load().unwrap(), Some(state));
        let raw = fs::read(file.path()).unwrap();
        assert!(!raw.windows(11).any(|w| w == b"canary-5f2e"));
    }

    #[test]
    fn tampering_and_foreign_keys_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
        let file = SealedJson::<State>::new(dir.path().join("state"), &master, b"TEST1");
        file.store(&State { names: vec![] }).unwrap();
        let mut raw = fs::read(file.path()).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        fs::write(file.path(), &raw).unwrap();
        assert!(matches!(file.load(), Err(Error::Tampered { .. })));

        file.store(&State { names: vec![] }).unwrap();
        let other = MasterKey::load_or_create(&dir.path().join("other.key")).unwrap();
        let foreign = SealedJson::<State>::new(dir.path().join("state"), &other, b"TEST1");
        assert!(matches!(foreign.load(), Err(Error::Tampered { .. })));
        let wrong_kind = SealedJson::<State>::new(dir.path().join("state"), &master, b"OTHER");
        assert!(matches!(wrong_kind.load(), Err(Error::Format { .. })));
    }

    #[test]
    fn write_atomic_sets_the_mode_on_every_write_and_leaves_no_temp() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.json");
        // An older, world-readable file is tightened by the rewrite, not inherited.
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&path, b"newer", 0o600).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Public files keep the mode they ask for.
        let public = dir.path().join("ca.pem");
        write_atomic(&public, b"cert", 0o644).unwrap();
        assert_eq!(
            fs::metadata(&public).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // What a crash between create and rename would leave: found and removed.
        let stale = dir.path().join(".secret.json.4242.7.tmp");
        fs::write(&stale, b"torn").unwrap();
        assert_eq!(remove_stale_temps(&path).unwrap(), 1);
        assert!(!stale.exists());
        assert_eq!(fs::read(&path).unwrap(), b"newer");
    }

    #[test]
    fn write_atomic_temp_file_is_private_from_its_first_byte() {
        use std::os::unix::fs::PermissionsExt;
        // Watch the directory from another thread while many rewrites run: every temp file
        // seen must already be 0600 (it was created so, not chmod'ed later).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let dir = dir.path().to_path_buf();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for e in fs::read_dir(&dir).unwrap().flatten() {
                        if let Ok(m) = e.metadata() {
                            assert_eq!(
                                m.permissions().mode() & 0o077,
                                0,
                                "{:?} readable by others",
                                e.file_name()
                            );
                            seen += 1;
                        }
                    }
                }
                seen
            })
        };
        for i in 0..300u32 {
            write_atomic(&path, &i.to_le_bytes(), 0o600).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(watcher.join().unwrap() > 0);
    }

    #[test]
    fn the_master_key_persists_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let a = MasterKey::load_or_create(&path).unwrap().derive("x");
        let b = MasterKey::load_or_create(&path).unwrap().derive("x");
        assert_eq!(*a, *b);
        assert_ne!(*a, *MasterKey::load_or_create(&path).unwrap().derive("y"));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o077, 0);
        fs::write(&path, b"short").unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(Error::BadKeyFile { .. })
        ));
    }

    #[test]
    fn a_master_key_others_can_read_or_a_missing_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        assert!(matches!(
            MasterKey::load(&path),
            Err(Error::MissingKey { .. })
        ));
        let key = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(MasterKey::load(&path).unwrap().derive("p"), key.derive("p"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(Error::KeyFileTooOpen { mode: 0o644, .. })
        ));
    }

    #[test]
    fn derive_is_derive_in_the_sealed_domain() {
        let key = MasterKey::from_bytes([1u8; 32]);
        assert_eq!(
            key.derive("purpose"),
            key.derive_in(b"strongroom sealed v1", b"purpose")
        );
        assert_ne!(
            key.derive_in(b"strongroom-keyvault-v1", b"purpose"),
            key.derive("purpose")
        );
        let sealer = Sealer::new(&key.derive("purpose"));
        let blob = sealer.seal(b"aad", b"text").unwrap();
        assert_eq!(
            &open(&key.derive("purpose"), b"aad", &blob).unwrap()[..],
            b"text"
        );
        assert!(sealer.open(b"other", &blob).is_none());
    }
}
