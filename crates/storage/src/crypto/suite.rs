//! Cipher suites. Only AES-256-GCM exists in a normal build; the null suite is compiled in
//! solely with the `bench-null-cipher` feature so a benchmark can measure what encryption
//! costs. A file whose header names a suite this build does not know is reported as
//! corruption, so a null-cipher file can never be read (or written) by a product build.

/// The cipher suite recorded in every file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CipherSuite {
    /// AES-256-GCM from aws-lc-rs, 96-bit nonce = block counter, 128-bit tag.
    Aes256Gcm,
    /// No encryption and no authentication. Benchmarks only.
    #[cfg(feature = "bench-null-cipher")]
    Null,
}

impl CipherSuite {
    pub(crate) fn id(self) -> u8 {
        match self {
            CipherSuite::Aes256Gcm => 1,
            #[cfg(feature = "bench-null-cipher")]
            CipherSuite::Null => 0xEE,
        }
    }

    pub(crate) fn from_id(id: u8) -> Option<CipherSuite> {
        match id {
            1 => Some(CipherSuite::Aes256Gcm),
            #[cfg(feature = "bench-null-cipher")]
            0xEE => Some(CipherSuite::Null),
            _ => None,
        }
    }
}
