//! `OP_COMPRESSED` codecs: snappy (raw block format), zlib and zstd, as MongoDB defines
//! them (compressor ids 1, 2, 3). A client lists the compressors it can use in `hello`;
//! the server answers with the ones it supports, in the client's order of preference.
//!
//! Decompression is bounded by the `uncompressedSize` the sender declared, itself bounded
//! by the maximum message size, so a small hostile payload cannot expand without limit.

use std::io::Read;

use crate::error::ProtocolError;

/// A supported compressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compressor {
    Snappy,
    Zlib,
    Zstd,
}

impl Compressor {
    /// Every compressor this server implements.
    pub const ALL: [Compressor; 3] = [Compressor::Snappy, Compressor::Zlib, Compressor::Zstd];

    /// The name used in `hello`'s `compression` array.
    pub fn name(self) -> &'static str {
        match self {
            Compressor::Snappy => "snappy",
            Compressor::Zlib => "zlib",
            Compressor::Zstd => "zstd",
        }
    }

    pub fn from_name(name: &str) -> Option<Compressor> {
        Compressor::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The id byte carried in `OP_COMPRESSED`.
    pub fn id(self) -> u8 {
        match self {
            Compressor::Snappy => 1,
            Compressor::Zlib => 2,
            Compressor::Zstd => 3,
        }
    }

    pub fn from_id(id: u8) -> Result<Compressor, ProtocolError> {
        match id {
            1 => Ok(Compressor::Snappy),
            2 => Ok(Compressor::Zlib),
            3 => Ok(Compressor::Zstd),
            other => Err(ProtocolError::UnsupportedCompressor(other)),
        }
    }

    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        match self {
            Compressor::Snappy => snap::raw::Encoder::new()
                .compress_vec(data)
                .map_err(|e| ProtocolError::Compression(e.to_string())),
            Compressor::Zlib => {
                use std::io::Write;
                let mut enc =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
                enc.write_all(data)
                    .map_err(|e| ProtocolError::Compression(e.to_string()))?;
                enc.finish()
                    .map_err(|e| ProtocolError::Compression(e.to_string()))
            }
            Compressor::Zstd => {
                zstd::bulk::compress(data, 3).map_err(|e| ProtocolError::Compression(e.to_string()))
            }
        }
    }

    /// Decompresses `data`, which must expand to exactly `expected` bytes.
    pub fn decompress(self, data: &[u8], expected: usize) -> Result<Vec<u8>, ProtocolError> {
        let bad = |e: String| ProtocolError::Compression(e);
        let out = match self {
            Compressor::Snappy => {
                let len = snap::raw::decompress_len(data).map_err(|e| bad(e.to_string()))?;
                if len != expected {
                    return Err(bad(format!(
                        "snappy payload expands to {len} bytes, header says {expected}"
                    )));
                }
                snap::raw::Decoder::new()
                    .decompress_vec(data)
                    .map_err(|e| bad(e.to_string()))?
            }
            Compressor::Zlib => {
                let mut out = Vec::with_capacity(expected.min(1 << 20));
                flate2::read::ZlibDecoder::new(data)
                    .take(expected as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| bad(e.to_string()))?;
                out
            }
            Compressor::Zstd => {
                zstd::bulk::decompress(data, expected).map_err(|e| bad(e.to_string()))?
            }
        };
        if out.len() != expected {
            return Err(bad(format!(
                "payload expands to {} bytes, header says {expected}",
                out.len()
            )));
        }
        Ok(out)
    }
}

/// The compressors to agree on, given the names a client offered (its order wins).
pub fn negotiate(offered: &[String]) -> Vec<Compressor> {
    let mut out = Vec::new();
    for name in offered {
        if let Some(c) = Compressor::from_name(name)
            && !out.contains(&c)
        {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lying_uncompressed_size_is_rejected() {
        for c in Compressor::ALL {
            let data = vec![7u8; 10_000];
            let z = c.compress(&data).expect("compress");
            assert!(
                c.decompress(&z, 100).is_err(),
                "{c:?} accepted a short size"
            );
            assert!(
                c.decompress(&z, 20_000).is_err(),
                "{c:?} accepted a long size"
            );
            assert_eq!(c.decompress(&z, 10_000).expect("exact"), data);
        }
    }

    #[test]
    fn negotiation_keeps_client_order_and_drops_unknown() {
        let got = negotiate(&["zstd".into(), "lz4".into(), "zlib".into(), "zstd".into()]);
        assert_eq!(got, vec![Compressor::Zstd, Compressor::Zlib]);
    }
}
