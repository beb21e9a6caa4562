//! wrapKey / unwrapKey throughput and latency through the HTTPS API (real identity + vault
//! servers in-process, keep-alive connections, one client per worker) next to raw aws-lc-rs
//! RSA-OAEP-256 on the same machine.
//!
//! Run: `cargo bench -p keyvault --bench wrap` (release). `BENCH_SECS` (default 3) sets the
//! duration of each cell; `BENCH_SIZES` (default `2048,3072,4096`) the key sizes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keyvault::crypto::{EncAlg, LoadedKey, generate_rsa};
use keyvault::jwk::b64u;
use serde_json::json;

const SUB: &str = "00000000-0000-0000-0000-0000000000bb";

struct Cell {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Mean throughput and median of the per-round percentiles.
fn merge(cells: &[Cell]) -> Cell {
    let n = cells.len() as f64;
    let mut p50: Vec<f64> = cells.iter().map(|c| c.p50_us).collect();
    let mut p99: Vec<f64> = cells.iter().map(|c| c.p99_us).collect();
    p50.sort_by(f64::total_cmp);
    p99.sort_by(f64::total_cmp);
    Cell {
        ops_per_sec: cells.iter().map(|c| c.ops_per_sec).sum::<f64>() / n,
        p50_us: p50[p50.len() / 2],
        p99_us: p99[p99.len() / 2],
    }
}

fn raw(key: &Arc<LoadedKey>, unwrap: bool, threads: usize, secs: f64) -> Cell {
    let cek = [0x11u8; 32];
    let ct = key.encrypt(EncAlg::RsaOaep256, &cek).expect("encrypt");
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let key = key.clone();
            let stop = stop.clone();
            let ct = ct.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if unwrap {
                        let _ = key.decrypt(EncAlg::RsaOaep256, &ct).expect("decrypt");
                    } else {
                        let _ = key.encrypt(EncAlg::RsaOaep256, &cek).expect("encrypt");
                    }
                    lat.push(t.elapsed().as_nanos() as u64);
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("join"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    Cell {
        ops_per_sec: all.len() as f64 / elapsed,
        p50_us: percentile(&all, 0.5),
        p99_us: percentile(&all, 0.99),
    }
}

async fn https(
    clients: &[reqwest::Client],
    token: &str,
    kid: &str,
    unwrap: bool,
    wrapped: &str,
    secs: f64,
) -> Cell {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let c = c.clone();
        let token = token.to_string();
        let (url, body) = if unwrap {
            (
                format!("{kid}/unwrapkey?api-version=7.5"),
                json!({"alg": "RSA-OAEP-256", "value": wrapped}),
            )
        } else {
            (
                format!("{kid}/wrapkey?api-version=7.5"),
                json!({"alg": "RSA-OAEP-256", "value": b64u(&[0x22u8; 32])}),
            )
        };
        let body = serde_json::to_vec(&body).expect("json");
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = c
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("send");
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.expect("body");
                lat.push(t.elapsed().as_nanos() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    Cell {
        ops_per_sec: all.len() as f64 / elapsed,
        p50_us: percentile(&all, 0.5),
        p99_us: percentile(&all, 0.99),
    }
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let sizes: Vec<u32> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![2048, 3072, 4096]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let root = tempfile::tempdir().expect("tempdir");
        let ca = pki::DevCa::load_or_create(&root.path().join("ca")).expect("ca");
        let ck = ca.issue_server(&["localhost", "127.0.0.1"]).expect("cert");
        let id = identity::Server::start(identity::Config {
            data_dir: root.path().join("id"),
            listen: "127.0.0.1:0".parse().expect("addr"),
            tls: pki::server_config(&ck, None).expect("tls"),
            public_url: None,
            token_lifetime: Duration::from_secs(3600),
        })
        .await
        .expect("identity");
        let boot = id.bootstrap().expect("bootstrap");
        let admin = boot.admin.expect("admin");
        let mut cfg = keyvault::Config::new(
            root.path().join("kv"),
            root.path().join("audit"),
            pki::server_config(&ck, Some(ca.ca_pem())).expect("tls"),
            id.base_url(),
            ca.ca_pem().to_string(),
        );
        cfg.admin_object_ids = vec![admin.object_id.clone()];
        let kv = keyvault::Server::start(cfg).await.expect("kv");
        let http = platform::https_client(ca.ca_pem(), None, platform::ClientOptions::default())
            .expect("http");
        let mgmt_tok = identity::client::client_credentials_token(&http, &id.base_url(), &admin.tenant_id, &admin.client_id, &admin.client_secret, "https://management.azure.com/.default").await.expect("token").token.to_string();
        let vault_tok = identity::client::client_credentials_token(&http, &id.base_url(), &admin.tenant_id, &admin.client_id, &admin.client_secret, "https://vault.azure.net/.default").await.expect("token").token.to_string();
        let tokens = Arc::new(keyvault::client::StaticToken(mgmt_tok));
        let c = keyvault::client::KeyVaultClient::new(ca.ca_pem(), tokens).expect("client");
        let mut spec = keyvault::client::VaultSpec::new(&admin.tenant_id);
        spec.location = "local".into();
        let vault = c.create_vault(&kv.mgmt_url(), SUB, "rg", "benchvault", &spec).await.expect("vault");
        c.assign_role(&kv.mgmt_url(), &vault.id, keyvault::authz::ROLE_KV_ADMINISTRATOR, &admin.object_id).await.expect("role");
        let data = keyvault::client::KeyVaultClient::new(ca.ca_pem(), Arc::new(keyvault::client::StaticToken(vault_tok.clone()))).expect("client");

        println!("wrapKey/unwrapKey, RSA-OAEP-256, {secs} s per cell, keep-alive HTTPS, client and server in one process on {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        println!("| key | op | clients | HTTPS ops/s | p50 ms | p99 ms | raw aws-lc-rs ops/s | raw p50 ms | HTTPS/raw |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for bits in sizes {
            let key = data
                .create_key(vault.base(), &format!("k{bits}"), &keyvault::client::CreateKeyOptions { key_size: bits, ..Default::default() })
                .await
                .expect("create");
            let (_, wrapped) = data.wrap_key(&key.kid, "RSA-OAEP-256", &[0x33u8; 32]).await.expect("wrap");
            let wrapped = b64u(&wrapped);
            let local = Arc::new(LoadedKey::from_pkcs8(&generate_rsa(bits).expect("gen")).expect("load"));
            for unwrap in [false, true] {
                for conc in [1usize, 8] {
                    let clients: Vec<reqwest::Client> = (0..conc)
                        .map(|_| keyvault::client::http_client(ca.ca_pem()).expect("http"))
                        .collect();
                    // Warm up connections and the token cache.
                    let _ = https(&clients, &vault_tok, &key.kid, unwrap, &wrapped, 0.3).await;
                    // Interleave HTTPS and raw rounds so load from other processes on the
                    // shared machine affects both sides alike.
                    let rounds = 4;
                    let (mut h_cells, mut r_cells) = (Vec::new(), Vec::new());
                    for _ in 0..rounds {
                        h_cells.push(https(&clients, &vault_tok, &key.kid, unwrap, &wrapped, secs / rounds as f64).await);
                        let l = local.clone();
                        let per = secs / rounds as f64;
                        r_cells.push(tokio::task::spawn_blocking(move || raw(&l, unwrap, conc, per)).await.expect("raw"));
                    }
                    let h = merge(&h_cells);
                    let r = merge(&r_cells);
                    println!(
                        "| RSA-{bits} | {} | {conc} | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.0}% |",
                        if unwrap { "unwrapKey" } else { "wrapKey" },
                        h.ops_per_sec,
                        h.p50_us / 1000.0,
                        h.p99_us / 1000.0,
                        r.ops_per_sec,
                        r.p50_us / 1000.0,
                        100.0 * h.ops_per_sec / r.ops_per_sec
                    );
                }
            }
        }
        kv.shutdown().await;
        id.shutdown().await;
    });
}
