//! Token validation, as the key vault and the control plane run it on every request.
//! The first input byte picks one of two cases:
//! - even: the rest is a token string. The signing key is made fresh in this process, so
//!   no input can carry a valid signature: validation must refuse every one.
//! - odd: the rest is a JOSE header and a claims set (split at the first NUL byte), signed
//!   here with the real key (`KID` in the header stands for its key id, which no input can
//!   know). Whatever they hold, a token that validates has exactly the
//!   algorithm, key, lifetime, issuer and audience the validator was asked for.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use identity::crypto::signing::SigningKey;
use identity::token::{Expectations, LEEWAY_SECS, validate};
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "https://127.0.0.1:8443";
const NOW: i64 = 1_800_000_000;

struct Keys {
    signing: SigningKey,
    public: HashMap<String, Vec<u8>>,
    audiences: Vec<String>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signing = SigningKey::generate().expect("key");
        let jwk = signing.jwk();
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(&jwk.x).expect("x"));
        point.extend(URL_SAFE_NO_PAD.decode(&jwk.y).expect("y"));
        let public = HashMap::from([(signing.kid().to_string(), point)]);
        Keys {
            signing,
            public,
            audiences: vec!["https://vault.azure.net".into()],
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    let k = keys();
    let expect = Expectations {
        issuer_base: ISSUER,
        audiences: &k.audiences,
        now: NOW,
    };
    if mode % 2 == 0 {
        let token = String::from_utf8_lossy(rest);
        assert!(
            validate(&token, &k.public, &expect).is_err(),
            "a token not signed by the key was accepted"
        );
        return;
    }
    let (header, claims) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let header = String::from_utf8_lossy(header).replace("KID", k.signing.kid());
    let mut token = URL_SAFE_NO_PAD.encode(&header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let signature = k.signing.sign(token.as_bytes()).expect("sign");
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    if let Ok(c) = validate(&token, &k.public, &expect) {
        let header: serde_json::Value = serde_json::from_str(&header).expect("header parsed");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], k.signing.kid());
        assert!(c.exp + LEEWAY_SECS > NOW && c.nbf - LEEWAY_SECS <= NOW);
        assert_eq!(c.iss, format!("{ISSUER}/{}/v2.0", c.tid));
        assert_eq!(c.aud.trim_end_matches('/'), "https://vault.azure.net");
    }
});
