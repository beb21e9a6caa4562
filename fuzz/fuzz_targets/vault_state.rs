//! The key vault's durable and imported formats. The first input byte picks one:
//! - 0–3, the state log: a log of 24 records is made once under a known key; the input cuts
//!   it short, flips bytes in it, or splices bytes into it, and the store opens the copy.
//!   A cut log must open with a prefix of the records (a torn tail is cut, nothing else is
//!   lost); a damaged log must either be refused or open with records that were written
//!   (never with altered ones).
//! - 4, JWK import: the rest is a JSON Web Key as a client sends it to `import`; a key the
//!   service accepts must decrypt what its public half encrypts.
//! - 5, unwrapKey: the rest is a ciphertext for a fixed RSA-2048 key; it is refused or
//!   opened, never a panic.
//! - 6, backup blobs and key records: the rest is opened as a sealed backup blob and parsed
//!   as a key record, as `restore` does.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use keyvault::crypto::{EncAlg, LoadedKey, generate_rsa, pkcs8_from_components};
use keyvault::jwk::{JsonWebKey, b64u_decode};
use keyvault::root_key::RootKeyExt;
use keyvault::store::Store;
use libfuzzer_sys::fuzz_target;
use sealed::MasterKey;

const ROOT: [u8; 32] = [9; 32];

struct Log {
    bytes: Vec<u8>,
    /// The file length after each record: a cut at or past `ends[i]` keeps record i.
    ends: Vec<usize>,
    records: BTreeMap<String, serde_json::Value>,
}

fn log() -> &'static Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = Store::open(dir.path(), &MasterKey::from_bytes(ROOT)).expect("open");
        let mut records = BTreeMap::new();
        let mut ends = Vec::new();
        for i in 0..24 {
            let id = format!("key/{i:02}");
            let value = serde_json::json!({"n": i, "pad": "x".repeat(i * 3)});
            store.put(&id, &value).expect("put");
            records.insert(id, value);
            ends.push(std::fs::metadata(dir.path().join("state.log")).expect("len").len() as usize);
        }
        drop(store);
        let bytes = std::fs::read(dir.path().join("state.log")).expect("read");
        Log { bytes, ends, records }
    })
}

fn rsa() -> &'static LoadedKey {
    static KEY: OnceLock<LoadedKey> = OnceLock::new();
    KEY.get_or_init(|| LoadedKey::from_pkcs8(&generate_rsa(2048).expect("rsa")).expect("load"))
}

fn state_log(mode: u8, rest: &[u8]) {
    let log = log();
    let mut bytes = log.bytes.clone();
    let at = |b: &[u8]| {
        let mut o = [0u8; 4];
        o.iter_mut().zip(b).for_each(|(o, i)| *o = *i);
        u32::from_le_bytes(o) as usize % (log.bytes.len() + 1)
    };
    let mut cut = None;
    match mode {
        0 => {
            let n = at(rest);
            bytes.truncate(n);
            cut = Some(n);
        }
        1 | 2 => {
            for e in rest.chunks_exact(5).take(8) {
                let i = at(&e[..4]) % log.bytes.len();
                bytes[i] ^= e[4].max(1);
            }
        }
        _ => {
            let i = at(rest);
            let tail = bytes.split_off(i);
            bytes.extend_from_slice(rest.get(4..).unwrap_or_default());
            bytes.extend(tail);
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("state.log"), &bytes).expect("write");
    let opened = Store::open(dir.path(), &MasterKey::from_bytes(ROOT));
    match (opened, cut) {
        (Ok((store, _)), cut) => {
            let live: Vec<(String, serde_json::Value)> = store.scan("").expect("scan");
            for (id, value) in &live {
                assert_eq!(log.records.get(id), Some(value), "record {id} was altered");
            }
            if let Some(n) = cut {
                let whole = log.ends.iter().filter(|end| **end <= n).count();
                assert_eq!(live.len(), whole, "a cut at {n} kept {} records", live.len());
            }
        }
        (Err(e), Some(n)) => panic!("a log cut at {n} (a torn tail) was refused: {e}"),
        (Err(_), None) => {}
    }
}

fn jwk_import(rest: &[u8]) {
    let Ok(jwk) = serde_json::from_slice::<JsonWebKey>(rest) else {
        return;
    };
    let field = |f: &Option<String>| f.as_deref().and_then(b64u_decode);
    let (Some(n), Some(e), Some(d), Some(p), Some(q), Some(dp), Some(dq), Some(qi)) = (
        field(&jwk.n),
        field(&jwk.e),
        field(&jwk.d),
        field(&jwk.p),
        field(&jwk.q),
        field(&jwk.dp),
        field(&jwk.dq),
        field(&jwk.qi),
    ) else {
        return;
    };
    let Ok(pkcs8) = pkcs8_from_components(&n, &e, &d, &p, &q, &dp, &dq, &qi) else {
        return;
    };
    let Ok(key) = LoadedKey::from_pkcs8(&pkcs8) else {
        return;
    };
    let sealed = key.encrypt(EncAlg::RsaOaep256, b"root dek").expect("encrypt");
    let opened = key.decrypt(EncAlg::RsaOaep256, &sealed).expect("decrypt");
    assert_eq!(&opened[..], b"root dek", "an accepted key does not round-trip");
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    match mode % 7 {
        m @ 0..=3 => state_log(m, rest),
        4 => jwk_import(rest),
        5 => {
            for alg in [EncAlg::RsaOaep, EncAlg::RsaOaep256, EncAlg::Rsa15] {
                let _ = rsa().decrypt(alg, rest);
            }
        }
        _ => {
            let sealer = MasterKey::from_bytes(ROOT).sealer(b"backup:tenant").expect("sealer");
            let _ = sealer.open(b"StrongroomKeyVaultKeyBackupV1", rest);
            let _ = serde_json::from_slice::<keyvault::model::KeyRecord>(rest);
        }
    }
});
