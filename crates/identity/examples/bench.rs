//! Throughput/latency of the identity service. Run in release:
//!
//! `cargo run --release -p identity --example bench [iterations]`
//!
//! Starts a real server over HTTPS on loopback and prints a table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use identity::IdentitySelector;
use identity::client::{AdminClient, client_credentials_token, msi_token};
use identity::crypto::signing::{SigningKey, jwk_public_point};
use identity::token::{self, Claims, Expectations};

struct Row {
    name: String,
    ops: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
}

fn print(rows: &[Row]) {
    println!(
        "{:<48} {:>8} {:>12} {:>10} {:>10}",
        "operation", "ops", "ops/s", "p50 us", "p99 us"
    );
    for r in rows {
        let mut lat = r.lat.clone();
        lat.sort();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .map_or(0, |d| d.as_micros())
        };
        println!(
            "{:<48} {:>8} {:>12.0} {:>10} {:>10}",
            r.name,
            r.ops,
            r.ops as f64 / r.elapsed.as_secs_f64(),
            pct(0.5),
            pct(0.99)
        );
    }
}

async fn timed<F, Fut>(name: &str, n: usize, mut f: F) -> Row
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        lat.push(t.elapsed());
    }
    Row {
        name: name.into(),
        ops: n,
        elapsed: start.elapsed(),
        lat,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir()?;
    let ca = pki::DevCa::load_or_create(&dir.path().join("ca"))?;
    let tls = pki::server_config(&ca.issue_server(&["localhost", "127.0.0.1"])?, None)?;
    let server = identity::Server::start(identity::Config {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse()?,
        tls,
        public_url: None,
        token_lifetime: Duration::from_secs(3600),
    })
    .await?;
    let base = server.base_url();
    let creds = server.bootstrap()?.admin.ok_or("not fresh")?;
    let http = platform::https_client(ca.ca_pem(), None, platform::ClientOptions::default())?;
    let admin = AdminClient::new(&base, ca.ca_pem(), &creds)?;
    let mi = admin
        .create_managed_identity("s", "rg", "bench", "local")
        .await?;
    admin.attach("bench-cluster", &mi.id).await?;
    let secret = admin.issue_resource_secret("bench-cluster").await?;
    let mut rows = Vec::new();

    // In-process primitives.
    let key = SigningKey::generate()?;
    let now = token::unix_now();
    let claims = Claims {
        aud: "https://vault.azure.net".into(),
        iss: "https://x/t/v2.0".into(),
        tid: "t".into(),
        oid: "o".into(),
        appid: "a".into(),
        azp: "a".into(),
        sub: "o".into(),
        idtyp: "app".into(),
        iat: now,
        nbf: now,
        exp: now + 3600,
        xms_mirid: None,
        ver: "2.0".into(),
        uti: "u".into(),
        xms_trusted_svc: false,
    };
    let signed = token::sign(&key, &claims)?;
    rows.push(
        timed("ES256 sign (in-process)", n * 10, || async {
            assert!(token::sign(&key, &claims).is_ok())
        })
        .await,
    );
    let keys: HashMap<String, Vec<u8>> = [(
        key.kid().to_string(),
        jwk_public_point(key.jwk()).ok_or("jwk")?,
    )]
    .into();
    let auds = vec!["https://vault.azure.net".to_string()];
    let expect = Expectations {
        issuer_base: "https://x",
        audiences: &auds,
        now,
    };
    rows.push(
        timed("ES256 validate (in-process)", n * 10, || async {
            assert!(token::validate(&signed, &keys, &expect).is_ok());
        })
        .await,
    );

    // Over HTTPS (keep-alive).
    let scope = "https://vault.azure.net/.default";
    rows.push(
        timed("client_credentials token (HTTPS, 1 client)", n, || async {
            let r = client_credentials_token(
                &http,
                &base,
                &creds.tenant_id,
                &creds.client_id,
                &creds.client_secret,
                scope,
            )
            .await;
            assert!(r.is_ok(), "{:?}", r.err());
        })
        .await,
    );
    let sel = IdentitySelector::ClientId(mi.client_id.clone());
    rows.push(
        timed("MSI token (HTTPS, 1 client)", n, || async {
            let r = msi_token(&http, &base, &secret, &sel, "https://vault.azure.net").await;
            assert!(r.is_ok(), "{:?}", r.err());
        })
        .await,
    );

    // 8 concurrent clients.
    let start = Instant::now();
    let lat = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, base, creds, lat) = (http.clone(), base.clone(), creds.clone(), lat.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..n / 8 {
                let t = Instant::now();
                let r = client_credentials_token(
                    &http,
                    &base,
                    &creds.tenant_id,
                    &creds.client_id,
                    &creds.client_secret,
                    scope,
                )
                .await;
                assert!(r.is_ok(), "{:?}", r.err());
                lat.lock().push(t.elapsed());
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let lat = lat.lock().clone();
    rows.push(Row {
        name: "client_credentials token (HTTPS, 8 clients)".into(),
        ops: lat.len(),
        elapsed: start.elapsed(),
        lat,
    });

    let token = client_credentials_token(
        &http,
        &base,
        &creds.tenant_id,
        &creds.client_id,
        &creds.client_secret,
        scope,
    )
    .await?
    .token;
    let warm = identity::verify::Verifier::new(
        &base,
        ca.ca_pem(),
        vec!["https://vault.azure.net".into()],
    )?;
    warm.verify(&token).await?;
    rows.push(
        timed(
            "Verifier.verify (keys + liveness cached)",
            n * 10,
            || async {
                assert!(warm.verify(&token).await.is_ok());
            },
        )
        .await,
    );
    let cold = identity::verify::Verifier::new(
        &base,
        ca.ca_pem(),
        vec!["https://vault.azure.net".into()],
    )?
    .with_liveness_ttl(Duration::ZERO);
    rows.push(
        timed(
            "Verifier.verify (liveness over HTTPS each time)",
            n,
            || async {
                assert!(cold.verify(&token).await.is_ok());
            },
        )
        .await,
    );
    rows.push(
        timed(
            "admin PUT identity (fsync'd state write)",
            n / 10,
            || async {
                let name = format!("b-{}", uuid_like());
                assert!(
                    admin
                        .create_managed_identity("s", "rg", &name, "local")
                        .await
                        .is_ok()
                );
            },
        )
        .await,
    );
    print(&rows);
    server.shutdown().await;
    Ok(())
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}
