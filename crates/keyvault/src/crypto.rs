//! RSA key material on aws-lc-rs: generation, JWK import, BYOK unwrapping, and the
//! encrypt/decrypt/wrap/unwrap/sign/verify operations of the keys API.
//!
//! A [`LoadedKey`] keeps the parsed private key (aws-lc-rs frees and cleanses it on drop) so
//! the hot path (unwrapKey) never re-parses PKCS#8.

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::key_wrap::{AES_256, KeyEncryptionKey, KeyWrapPadded};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeyPair, KeyPairComponents, KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
    OaepPrivateDecryptingKey, OaepPublicEncryptingKey, Pkcs1PrivateDecryptingKey,
    Pkcs1PublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey, PublicKeyComponents,
};
use aws_lc_rs::signature::{self, KeyPair as _};
use zeroize::Zeroizing;

/// Why a cryptographic request failed (mapped to 400 BadParameter by the API layer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("unsupported key size {0}")]
    UnsupportedKeySize(u32),
    #[error("invalid key material")]
    InvalidKey,
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    #[error("the operation failed")]
    Failed,
}

/// Key encryption algorithms (`JsonWebKeyEncryptionAlgorithm`) supported for RSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncAlg {
    RsaOaep,
    RsaOaep256,
    Rsa15,
}

impl EncAlg {
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        match s {
            "RSA-OAEP" => Ok(EncAlg::RsaOaep),
            "RSA-OAEP-256" => Ok(EncAlg::RsaOaep256),
            "RSA1_5" => Ok(EncAlg::Rsa15),
            other => Err(CryptoError::UnsupportedAlgorithm(other.to_string())),
        }
    }
}

/// Signature algorithms (RSA only). The client sends the digest; the service pads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
}

impl SigAlg {
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        match s {
            "RS256" => Ok(SigAlg::Rs256),
            "RS384" => Ok(SigAlg::Rs384),
            "RS512" => Ok(SigAlg::Rs512),
            "PS256" => Ok(SigAlg::Ps256),
            "PS384" => Ok(SigAlg::Ps384),
            "PS512" => Ok(SigAlg::Ps512),
            other => Err(CryptoError::UnsupportedAlgorithm(other.to_string())),
        }
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            SigAlg::Rs256 | SigAlg::Ps256 => &digest::SHA256,
            SigAlg::Rs384 | SigAlg::Ps384 => &digest::SHA384,
            SigAlg::Rs512 | SigAlg::Ps512 => &digest::SHA512,
        }
    }

    fn encoding(self) -> &'static dyn signature::RsaEncoding {
        match self {
            SigAlg::Rs256 => &signature::RSA_PKCS1_SHA256,
            SigAlg::Rs384 => &signature::RSA_PKCS1_SHA384,
            SigAlg::Rs512 => &signature::RSA_PKCS1_SHA512,
            SigAlg::Ps256 => &signature::RSA_PSS_SHA256,
            SigAlg::Ps384 => &signature::RSA_PSS_SHA384,
            SigAlg::Ps512 => &signature::RSA_PSS_SHA512,
        }
    }

    fn verification(self) -> &'static signature::RsaParameters {
        match self {
            SigAlg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            SigAlg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            SigAlg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            SigAlg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            SigAlg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            SigAlg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
        }
    }
}

/// A parsed RSA private key ready for every operation.
pub struct LoadedKey {
    pair: KeyPair,
    oaep_dec: OaepPrivateDecryptingKey,
    pkcs1_dec: Pkcs1PrivateDecryptingKey,
    oaep_enc: OaepPublicEncryptingKey,
    pkcs1_enc: Pkcs1PublicEncryptingKey,
    n: Vec<u8>,
    e: Vec<u8>,
    bits: u32,
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadedKey(RSA-{})", self.bits)
    }
}

/// Generates a new RSA key of `bits` (2048/3072/4096); returns its PKCS#8 encoding.
pub fn generate_rsa(bits: u32) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        other => return Err(CryptoError::UnsupportedKeySize(other)),
    };
    let key = PrivateDecryptingKey::generate(size).map_err(|_| CryptoError::Failed)?;
    let der = key.as_der().map_err(|_| CryptoError::Failed)?;
    Ok(Zeroizing::new(der.as_ref().to_vec()))
}

/// Builds PKCS#8 from JWK private components (all base64url-decoded, big-endian).
#[allow(clippy::too_many_arguments)]
pub fn pkcs8_from_components(
    n: &[u8],
    e: &[u8],
    d: &[u8],
    p: &[u8],
    q: &[u8],
    dp: &[u8],
    dq: &[u8],
    qi: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let strip = |b: &[u8]| -> Vec<u8> {
        let i = b
            .iter()
            .position(|&x| x != 0)
            .unwrap_or(b.len().saturating_sub(1));
        b[i..].to_vec()
    };
    let comps = KeyPairComponents {
        public_key: PublicKeyComponents {
            n: strip(n),
            e: strip(e),
        },
        d,
        p,
        q,
        dP: dp,
        dQ: dq,
        qInv: qi,
    };
    let pair = KeyPair::from_components(&comps).map_err(|_| CryptoError::InvalidKey)?;
    let der = pair.as_der().map_err(|_| CryptoError::InvalidKey)?;
    Ok(Zeroizing::new(der.as_ref().to_vec()))
}

impl LoadedKey {
    /// Parses PKCS#8 (RSA 2048..4096).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let pair = KeyPair::from_pkcs8(pkcs8).map_err(|_| CryptoError::InvalidKey)?;
        let dec = PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(|_| CryptoError::InvalidKey)?;
        let bits = dec.key_size_bits() as u32;
        if !(2048..=4096).contains(&bits) {
            return Err(CryptoError::UnsupportedKeySize(bits));
        }
        let public = dec.public_key();
        let oaep_enc =
            OaepPublicEncryptingKey::new(public.clone()).map_err(|_| CryptoError::InvalidKey)?;
        let pkcs1_enc =
            Pkcs1PublicEncryptingKey::new(public).map_err(|_| CryptoError::InvalidKey)?;
        let oaep_dec =
            OaepPrivateDecryptingKey::new(dec.clone()).map_err(|_| CryptoError::InvalidKey)?;
        let pkcs1_dec = Pkcs1PrivateDecryptingKey::new(dec).map_err(|_| CryptoError::InvalidKey)?;
        let n = pair
            .public_key()
            .modulus()
            .big_endian_without_leading_zero()
            .to_vec();
        let e = pair
            .public_key()
            .exponent()
            .big_endian_without_leading_zero()
            .to_vec();
        Ok(LoadedKey {
            pair,
            oaep_dec,
            pkcs1_dec,
            oaep_enc,
            pkcs1_enc,
            n,
            e,
            bits,
        })
    }

    pub fn modulus(&self) -> &[u8] {
        &self.n
    }

    pub fn exponent(&self) -> &[u8] {
        &self.e
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// encrypt / wrapKey.
    pub fn encrypt(&self, alg: EncAlg, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = vec![0u8; self.oaep_enc.ciphertext_size()];
        let len = match alg {
            EncAlg::RsaOaep | EncAlg::RsaOaep256 => {
                let a = if alg == EncAlg::RsaOaep {
                    &OAEP_SHA1_MGF1SHA1
                } else {
                    &OAEP_SHA256_MGF1SHA256
                };
                if plaintext.len() > self.oaep_enc.max_plaintext_size(a) {
                    return Err(CryptoError::InvalidInput("plaintext too long for the key"));
                }
                self.oaep_enc
                    .encrypt(a, plaintext, &mut out, None)
                    .map_err(|_| CryptoError::Failed)?
                    .len()
            }
            EncAlg::Rsa15 => {
                if plaintext.len() > self.pkcs1_enc.max_plaintext_size() {
                    return Err(CryptoError::InvalidInput("plaintext too long for the key"));
                }
                self.pkcs1_enc
                    .encrypt(plaintext, &mut out)
                    .map_err(|_| CryptoError::Failed)?
                    .len()
            }
        };
        out.truncate(len);
        Ok(out)
    }

    /// decrypt / unwrapKey.
    pub fn decrypt(
        &self,
        alg: EncAlg,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if ciphertext.len() != self.oaep_dec.key_size_bytes() {
            return Err(CryptoError::InvalidInput(
                "ciphertext length does not match the key",
            ));
        }
        let mut out = Zeroizing::new(vec![0u8; self.oaep_dec.min_output_size()]);
        let len = match alg {
            EncAlg::RsaOaep => self
                .oaep_dec
                .decrypt(&OAEP_SHA1_MGF1SHA1, ciphertext, &mut out, None)
                .map_err(|_| CryptoError::Failed)?
                .len(),
            EncAlg::RsaOaep256 => self
                .oaep_dec
                .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None)
                .map_err(|_| CryptoError::Failed)?
                .len(),
            EncAlg::Rsa15 => self
                .pkcs1_dec
                .decrypt(ciphertext, &mut out)
                .map_err(|_| CryptoError::Failed)?
                .len(),
        };
        out.truncate(len);
        Ok(out)
    }

    /// sign: `digest` must be the hash of the message for `alg`.
    pub fn sign(&self, alg: SigAlg, digest_bytes: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let d = digest::Digest::import_less_safe(digest_bytes, alg.digest_alg())
            .map_err(|_| CryptoError::InvalidInput("digest length does not match the algorithm"))?;
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign_digest(alg.encoding(), &d, &mut sig)
            .map_err(|_| CryptoError::Failed)?;
        Ok(sig)
    }

    /// verify: true when `sig` is a valid signature of `digest`.
    pub fn verify(
        &self,
        alg: SigAlg,
        digest_bytes: &[u8],
        sig: &[u8],
    ) -> Result<bool, CryptoError> {
        let d = digest::Digest::import_less_safe(digest_bytes, alg.digest_alg())
            .map_err(|_| CryptoError::InvalidInput("digest length does not match the algorithm"))?;
        let pk =
            signature::UnparsedPublicKey::new(alg.verification(), self.pair.public_key().as_ref());
        Ok(pk.verify_digest(&d, sig).is_ok())
    }
}

/// Unwraps a BYOK `key_hsm` ciphertext (CKM_RSA_AES_KEY_WRAP): the first `kek.bits/8` bytes
/// are an AES-256 key encrypted to the key-exchange key with RSA-OAEP (SHA-256, or SHA-1 as
/// older tools use), followed by the target key's PKCS#8 wrapped with AES key wrap with
/// padding (RFC 5649). Returns the target PKCS#8.
pub fn byok_unwrap(kek: &LoadedKey, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let rsa_len = (kek.bits() / 8) as usize;
    if ciphertext.len() <= rsa_len + 8 {
        return Err(CryptoError::InvalidInput(
            "transfer blob ciphertext too short",
        ));
    }
    let (wrapped_aes, wrapped_target) = ciphertext.split_at(rsa_len);
    let aes = kek
        .decrypt(EncAlg::RsaOaep256, wrapped_aes)
        .or_else(|_| kek.decrypt(EncAlg::RsaOaep, wrapped_aes))?;
    if aes.len() != 32 {
        return Err(CryptoError::InvalidInput("transport key is not AES-256"));
    }
    let kwp = KeyEncryptionKey::new(&AES_256, &aes).map_err(|_| CryptoError::Failed)?;
    let mut out = Zeroizing::new(vec![0u8; wrapped_target.len()]);
    let len = kwp
        .unwrap_with_padding(wrapped_target, &mut out)
        .map_err(|_| CryptoError::InvalidInput("AES key unwrap failed"))?
        .len();
    out.truncate(len);
    Ok(out)
}

/// The sender side of [`byok_unwrap`] (what a BYOK tool does): wraps `target_pkcs8` for the
/// key-exchange key whose public modulus/exponent are `n`/`e`.
pub fn byok_wrap(n: &[u8], e: &[u8], target_pkcs8: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use aws_lc_rs::rand::SecureRandom;
    let kek = OaepPublicEncryptingKey::new(public_key_from_components(n, e)?)
        .map_err(|_| CryptoError::InvalidKey)?;
    let mut aes = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(aes.as_mut())
        .map_err(|_| CryptoError::Failed)?;
    let mut out = vec![0u8; kek.ciphertext_size()];
    let len = kek
        .encrypt(&OAEP_SHA256_MGF1SHA256, aes.as_ref(), &mut out, None)
        .map_err(|_| CryptoError::Failed)?
        .len();
    out.truncate(len);
    let kwp = KeyEncryptionKey::new(&AES_256, aes.as_ref()).map_err(|_| CryptoError::Failed)?;
    let mut buf = vec![0u8; target_pkcs8.len() + 16];
    let len = kwp
        .wrap_with_padding(target_pkcs8, &mut buf)
        .map_err(|_| CryptoError::Failed)?
        .len();
    out.extend_from_slice(&buf[..len]);
    Ok(out)
}

/// An RSA public key from its modulus and exponent (big-endian), via a DER SPKI.
pub fn public_key_from_components(n: &[u8], e: &[u8]) -> Result<PublicEncryptingKey, CryptoError> {
    let rsa_pub = der::seq(&[der::uint(n), der::uint(e)]);
    let alg = der::seq(&[
        // OID 1.2.840.113549.1.1.1 rsaEncryption, NULL parameters
        vec![
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
        ],
        vec![0x05, 0x00],
    ]);
    let mut bits = vec![0u8];
    bits.extend_from_slice(&rsa_pub);
    let spki = der::seq(&[alg, der::tlv(0x03, &bits)]);
    PublicEncryptingKey::from_der(&spki).map_err(|_| CryptoError::InvalidKey)
}

/// The private components of an RSA key (JWK field names), e.g. to export a locally
/// generated key for import. Zeroized on drop.
pub struct RsaComponents {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub d: Zeroizing<Vec<u8>>,
    pub p: Zeroizing<Vec<u8>>,
    pub q: Zeroizing<Vec<u8>>,
    pub dp: Zeroizing<Vec<u8>>,
    pub dq: Zeroizing<Vec<u8>>,
    pub qi: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for RsaComponents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaComponents(RSA-{})", self.n.len() * 8)
    }
}

/// Parses PKCS#8 `PrivateKeyInfo` wrapping a PKCS#1 `RSAPrivateKey`.
pub fn rsa_components(pkcs8: &[u8]) -> Result<RsaComponents, CryptoError> {
    let bad = || CryptoError::InvalidKey;
    let (outer, _) = der::read(pkcs8, 0x30).ok_or_else(bad)?;
    let (_version, rest) = der::read(outer, 0x02).ok_or_else(bad)?;
    let (_alg, rest) = der::read(rest, 0x30).ok_or_else(bad)?;
    let (octets, _) = der::read(rest, 0x04).ok_or_else(bad)?;
    let (rsa, _) = der::read(octets, 0x30).ok_or_else(bad)?;
    let mut ints = Vec::with_capacity(9);
    let mut cur = rsa;
    for _ in 0..9 {
        let (v, rest) = der::read(cur, 0x02).ok_or_else(bad)?;
        let i = v
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(v.len().saturating_sub(1));
        ints.push(Zeroizing::new(v[i..].to_vec()));
        cur = rest;
    }
    let mut it = ints.into_iter().skip(1);
    let mut next = || it.next().ok_or_else(bad);
    Ok(RsaComponents {
        n: next()?.to_vec(),
        e: next()?.to_vec(),
        d: next()?,
        p: next()?,
        q: next()?,
        dp: next()?,
        dq: next()?,
        qi: next()?,
    })
}

/// Minimal DER helpers for the few structures this crate builds or reads.
mod der {
    pub fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(bytes.len() - 1);
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(body);
        out
    }

    pub fn seq(items: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &items.concat())
    }

    /// Unsigned big-endian integer.
    pub fn uint(v: &[u8]) -> Vec<u8> {
        let i = v
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(v.len().saturating_sub(1));
        let mut body = Vec::with_capacity(v.len() + 1);
        if v.get(i).is_some_and(|b| b & 0x80 != 0) {
            body.push(0);
        }
        body.extend_from_slice(&v[i..]);
        tlv(0x02, &body)
    }

    /// Reads one TLV with `tag`; returns (contents, rest).
    pub fn read(buf: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        if *buf.first()? != tag {
            return None;
        }
        let first = *buf.get(1)?;
        let (len, hdr) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for b in buf.get(2..2 + n)? {
                len = (len << 8) | *b as usize;
            }
            (len, 2 + n)
        };
        let body = buf.get(hdr..hdr + len)?;
        Some((body, &buf[hdr + len..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_all_algorithms() {
        let pk = generate_rsa(2048).unwrap();
        let k = LoadedKey::from_pkcs8(&pk).unwrap();
        assert_eq!(k.bits(), 2048);
        assert_eq!(k.exponent(), &[1, 0, 1]);
        let cek = [0x42u8; 32];
        for alg in [EncAlg::RsaOaep, EncAlg::RsaOaep256, EncAlg::Rsa15] {
            let ct = k.encrypt(alg, &cek).unwrap();
            assert_eq!(ct.len(), 256);
            assert_eq!(&k.decrypt(alg, &ct).unwrap()[..], &cek);
        }
        let ct = k.encrypt(EncAlg::RsaOaep256, &cek).unwrap();
        assert!(k.decrypt(EncAlg::RsaOaep, &ct).is_err());
    }

    #[test]
    fn sign_verify_digest() {
        let pk = generate_rsa(2048).unwrap();
        let k = LoadedKey::from_pkcs8(&pk).unwrap();
        let msg = b"message";
        for (alg, d) in [
            (SigAlg::Rs256, &digest::SHA256),
            (SigAlg::Ps384, &digest::SHA384),
            (SigAlg::Rs512, &digest::SHA512),
        ] {
            let dg = digest::digest(d, msg);
            let sig = k.sign(alg, dg.as_ref()).unwrap();
            assert!(k.verify(alg, dg.as_ref(), &sig).unwrap());
            let other = digest::digest(d, b"other");
            assert!(!k.verify(alg, other.as_ref(), &sig).unwrap());
        }
        // RS256 signature over the digest verifies as a normal message signature.
        let dg = digest::digest(&digest::SHA256, msg);
        let sig = k.sign(SigAlg::Rs256, dg.as_ref()).unwrap();
        signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            k.pair.public_key().as_ref(),
        )
        .verify(msg, &sig)
        .unwrap();
        assert!(k.sign(SigAlg::Rs256, &[0u8; 20]).is_err());
    }

    #[test]
    fn byok_roundtrip() {
        let kek = LoadedKey::from_pkcs8(&generate_rsa(2048).unwrap()).unwrap();
        let target = generate_rsa(2048).unwrap();
        let blob = byok_wrap(kek.modulus(), kek.exponent(), &target).unwrap();
        let got = byok_unwrap(&kek, &blob).unwrap();
        assert_eq!(&got[..], &target[..]);
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(byok_unwrap(&kek, &bad).is_err());
    }

    #[test]
    fn components_roundtrip() {
        let pk = generate_rsa(2048).unwrap();
        let k = LoadedKey::from_pkcs8(&pk).unwrap();
        let c = rsa_components(&pk).unwrap();
        assert_eq!(c.n, k.modulus());
        assert_eq!(c.e, k.exponent());
        let again =
            pkcs8_from_components(&c.n, &c.e, &c.d, &c.p, &c.q, &c.dp, &c.dq, &c.qi).unwrap();
        let k2 = LoadedKey::from_pkcs8(&again).unwrap();
        let ct = k.encrypt(EncAlg::RsaOaep256, b"secret").unwrap();
        assert_eq!(&k2.decrypt(EncAlg::RsaOaep256, &ct).unwrap()[..], b"secret");
        // Encrypting with a key rebuilt from (n, e) decrypts with the private key.
        let pubk =
            OaepPublicEncryptingKey::new(public_key_from_components(&c.n, &c.e).unwrap()).unwrap();
        let mut out = vec![0u8; pubk.ciphertext_size()];
        let ct = pubk
            .encrypt(&OAEP_SHA256_MGF1SHA256, b"x", &mut out, None)
            .unwrap()
            .to_vec();
        assert_eq!(&k.decrypt(EncAlg::RsaOaep256, &ct).unwrap()[..], b"x");
        assert!(matches!(
            generate_rsa(1024),
            Err(CryptoError::UnsupportedKeySize(1024))
        ));
    }
}
