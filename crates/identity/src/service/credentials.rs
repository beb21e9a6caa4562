//! Client credentials handed out once, and their 0600 JSON file form.

use std::path::Path;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::Error;

/// Client credentials returned exactly once, when a principal or secret is created.
#[derive(Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub tenant_id: String,
    pub client_id: String,
    pub object_id: String,
    #[serde(
        serialize_with = "serialize_secret",
        deserialize_with = "deserialize_secret"
    )]
    pub client_secret: Zeroizing<String>,
}

fn deserialize_secret<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Zeroizing<String>, D::Error> {
    <String as serde::Deserialize>::deserialize(d).map(Zeroizing::new)
}

impl Credentials {
    /// Writes the credentials as JSON to `path` with mode 0600 (atomically: tmp, fsync,
    /// rename), for `strongroom up` to hand to operators and the control plane.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let json = Zeroizing::new(
            serde_json::to_vec_pretty(self).map_err(|e| Error::InvalidInput(e.to_string()))?,
        );
        sealed::write_atomic_io(path, &json, 0o600).map_err(|e| Error::io(path, e))
    }

    /// Reads credentials written by [`Credentials::save`].
    pub fn load(path: &Path) -> Result<Credentials, Error> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))
    }
}

fn serialize_secret<S: serde::Serializer>(v: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("object_id", &self.object_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}
