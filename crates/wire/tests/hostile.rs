//! Hostile clients against a running server (TLS on loopback): oversized frames before
//! login, un-negotiated and inflating `OP_COMPRESSED`, floods of idle and half-open
//! connections, slow-loris TLS handshakes, unauthenticated commands, connections that
//! never authenticate or go idle, and a cursor flood. Each gets a clean error or a closed
//! connection, the server stays up, and a well-behaved driver on the side (find by `_id`
//! in a loop) keeps its latency: its p99 without and during each attack is printed and
//! bounded.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use common::{ADMIN_PASSWORD, ADMIN_USER, Options, RawClient, TestServer, authenticate};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wire::compression::Compressor;
use wire::message::client::{compress, op_msg};
use wire::message::{HEADER_LEN, MAX_PRE_AUTH_MESSAGE_SIZE, opcode};

/// What the side client's p99 may reach during an attack: generous, for a loaded 2-core
/// CI machine running other tests at the same time (unloaded, it is about a millisecond).
const P99_BOUND: Duration = Duration::from_secs(1);

fn code(d: &Document) -> i32 {
    d.get_i32("code").unwrap_or(-1)
}

fn ok(d: &Document) -> bool {
    d.get_f64("ok").is_ok_and(|v| v == 1.0) || d.get_i32("ok").is_ok_and(|v| v == 1)
}

async fn authed(ts: &TestServer) -> RawClient {
    let mut c = RawClient::connect(ts).await;
    let r = authenticate(&mut c, ADMIN_USER, ADMIN_PASSWORD).await;
    assert!(ok(&r) && r.get_bool("done").unwrap_or(false), "auth: {r}");
    c
}

/// A command on a connection the server may have closed: `None` if it has.
async fn try_command(c: &mut RawClient, id: i32, body: Document) -> Option<Document> {
    c.stream
        .write_all(&op_msg(id, &body, &[], false))
        .await
        .ok()?;
    c.stream.flush().await.ok()?;
    c.recv().await
}

/// Waits until the server closes `c` (read returns 0 or fails); how long that took.
/// Panics if it is still open after `within`.
async fn closed_within(c: &mut RawClient, within: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match c.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or_else(|_| panic!("the server did not close the connection within {within:?}"));
    start.elapsed()
}

/// A driver connection doing find-by-`_id` in a loop, recording each round trip.
struct Bystander {
    samples: Arc<Mutex<Vec<Duration>>>,
    errors: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Bystander {
    async fn start(ts: &TestServer) -> Bystander {
        // Heartbeats every 500 ms keep its (unauthenticated) monitoring connection
        // within the short pre-auth timeouts some tests set.
        let uri = format!("{}&heartbeatFrequencyMS=500", ts.uri());
        let client = mongodb::Client::with_uri_str(uri).await.expect("client");
        let coll = client.database("side").collection::<Document>("c");
        coll.insert_one(doc! {"_id": 1, "v": "side"})
            .await
            .expect("insert");
        let samples = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (samples, errors, stop) = (samples.clone(), errors.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match coll.find_one(doc! {"_id": 1}).await {
                        Ok(Some(_)) => samples.lock().push(t.elapsed()),
                        Ok(None) | Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        Bystander {
            samples,
            errors,
            stop,
            task,
        }
    }

    fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.samples.lock())
    }

    /// Waits until at least `n` round trips were recorded since the last `take`.
    async fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.samples.lock().len() < n {
            assert!(Instant::now() < deadline, "the side client got no answers");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("bystander task");
        self.errors.load(Ordering::Relaxed)
    }
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// Runs `attack` while the side client works; prints and bounds its p99 with and
/// without the attack, and requires that it saw no error.
async fn with_bystander<F: Future>(ts: &TestServer, name: &str, attack: F) -> F::Output {
    let side = Bystander::start(ts).await;
    // Baseline: a fixed window of undisturbed round trips.
    side.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = side.take();
    let out = attack.await;
    side.wait_for(1).await;
    let during = side.take();
    let (n_base, n_during) = (baseline.len(), during.len());
    let (p_base, p_during) = (p99(baseline), p99(during));
    eprintln!(
        "{name}: side client p99 {p_base:?} without the attack ({n_base} reads), \
         {p_during:?} during it ({n_during} reads)"
    );
    assert_eq!(side.stop().await, 0, "{name}: the side client saw errors");
    assert!(
        p_during < P99_BOUND,
        "{name}: side client p99 {p_during:?} during the attack"
    );
    out
}

/// Resident memory of this process (the server runs in it), in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// A header announcing `len` bytes of `OP_MSG`, and nothing else.
fn header_only(len: i32) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&1i32.to_le_bytes());
    h.extend_from_slice(&0i32.to_le_bytes());
    h.extend_from_slice(&opcode::OP_MSG.to_le_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_48_mb_frame_before_login_is_closed_unread() {
    let ts = TestServer::start().await;
    let before = rss();
    let closed = with_bystander(&ts, "48 MB frames before login", async {
        let mut conns = Vec::new();
        for _ in 0..50 {
            let mut c = RawClient::connect(&ts).await;
            c.send(&header_only(48_000_000)).await;
            conns.push(c);
        }
        let mut slowest = Duration::ZERO;
        for c in &mut conns {
            // Nothing but the header was sent: closing now means the body was not awaited.
            slowest = slowest.max(closed_within(c, Duration::from_secs(5)).await);
        }
        slowest
    })
    .await;
    let grown = rss().saturating_sub(before);
    eprintln!(
        "48 MB frames before login: 50 connections closed (slowest {closed:?}); \
         resident memory grew by {} KiB",
        grown / 1024
    );
    // Allocating the declared lengths would take 50 × 48 MB = 2.4 GB; the bound leaves
    // room for the other tests of this binary, which run in the same process meanwhile.
    assert!(
        grown < 512 * 1024 * 1024,
        "resident memory grew by {grown} bytes"
    );
    // The limit is only for unauthenticated connections: after login a message over
    // 16 KiB is read as usual.
    let mut c = authed(&ts).await;
    let big = doc! {"ping": 1, "pad": "x".repeat(4 * MAX_PRE_AUTH_MESSAGE_SIZE), "$db": "admin"};
    let r = c.command(7, big).await.expect("reply");
    assert!(ok(&r), "{r}");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_handshake_and_authentication_run_before_login() {
    let ts = TestServer::start().await;
    with_bystander(&ts, "commands before login", async {
        let mut c = RawClient::connect(&ts).await;
        for (i, body) in [
            doc! {"find": "c", "filter": {}, "$db": "app"},
            doc! {"insert": "c", "documents": [{"a": 1}], "$db": "app"},
            doc! {"listDatabases": 1, "$db": "admin"},
            doc! {"serverStatus": 1, "$db": "admin"},
            doc! {"createUser": "eve", "pwd": "x", "roles": ["root"], "$db": "admin"},
            doc! {"getMore": 5i64, "collection": "c", "$db": "app"},
        ]
        .into_iter()
        .enumerate()
        {
            let r = c.command(i as i32, body.clone()).await.expect("reply");
            assert_eq!(
                (code(&r), r.get_str("codeName").ok()),
                (13, Some("Unauthorized")),
                "{body}: {r}"
            );
        }
        for body in [
            doc! {"hello": 1, "$db": "admin"},
            doc! {"isMaster": 1, "$db": "admin"},
            doc! {"ping": 1, "$db": "admin"},
            doc! {"buildInfo": 1, "$db": "admin"},
        ] {
            let r = c.command(50, body.clone()).await.expect("reply");
            assert!(ok(&r), "{body}: {r}");
        }
        // A message over the pre-auth limit closes the connection.
        let big = doc! {"ping": 1, "pad": "x".repeat(MAX_PRE_AUTH_MESSAGE_SIZE), "$db": "admin"};
        c.send(&op_msg(60, &big, &[], false)).await;
        closed_within(&mut c, Duration::from_secs(5)).await;
    })
    .await;
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_needs_negotiation_and_bombs_are_refused_before_inflating() {
    let ts = TestServer::start().await;
    with_bystander(&ts, "compression", async {
        let ping = op_msg(1, &doc! {"ping": 1, "$db": "admin"}, &[], false);

        // Not negotiated (before and after login): refused with ProtocolError.
        let mut c = RawClient::connect(&ts).await;
        c.send(&compress(&ping, Compressor::Zstd).expect("compress"))
            .await;
        let r = c.recv().await.expect("reply");
        assert_eq!(code(&r), 17, "{r}");
        let r = c
            .command(
                2,
                doc! {"hello": 1, "compression": ["zstd"], "$db": "admin"},
            )
            .await
            .expect("hello");
        assert!(ok(&r), "{r}");
        // Negotiated, but before login a message may not inflate past 16 KiB.
        let mut claims = compress(&ping, Compressor::Zstd).expect("compress");
        claims[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&1_000_000i32.to_le_bytes());
        c.send(&claims).await;
        let r = c.recv().await.expect("reply");
        assert_eq!(
            (code(&r), r.get_str("codeName").ok()),
            (2, Some("BadValue")),
            "{r}"
        );

        let mut c = authed(&ts).await;
        c.send(&compress(&ping, Compressor::Snappy).expect("compress"))
            .await;
        let r = c.recv().await.expect("reply");
        assert_eq!(code(&r), 17, "{r}");
        let r = c
            .command(
                3,
                doc! {"hello": 1, "compression": ["zstd", "zlib"], "$db": "admin"},
            )
            .await
            .expect("hello");
        assert!(ok(&r), "{r}");
        // Snappy was not among the agreed ones; zstd now works.
        c.send(&compress(&ping, Compressor::Snappy).expect("compress"))
            .await;
        assert_eq!(code(&c.recv().await.expect("reply")), 17);
        c.send(&compress(&ping, Compressor::Zstd).expect("compress"))
            .await;
        let r = c.recv().await.expect("reply");
        assert!(ok(&r), "{r}");

        // A tiny frame claiming 47 MB: refused before anything is allocated.
        let mut lie = compress(&ping, Compressor::Zstd).expect("compress");
        lie[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&47_000_000i32.to_le_bytes());
        c.send(&lie).await;
        let r = c.recv().await.expect("reply");
        assert_eq!(
            (code(&r), r.get_str("codeName").ok()),
            (2, Some("BadValue")),
            "{r}"
        );

        // A real bomb: 16 MB of zeros compresses to a few hundred bytes.
        let pad = Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![0u8; 16 * 1024 * 1024 - 100],
        });
        let bomb = compress(
            &op_msg(4, &doc! {"ping": 1, "pad": pad, "$db": "admin"}, &[], false),
            Compressor::Zstd,
        )
        .expect("compress");
        eprintln!(
            "compression bomb: {} bytes inflating to {} MiB",
            bomb.len(),
            16
        );
        c.send(&bomb).await;
        let r = c.recv().await.expect("reply");
        assert_eq!(
            (code(&r), r.get_str("codeName").ok()),
            (2, Some("BadValue")),
            "{r}"
        );

        // The connection is still usable.
        let r = c
            .command(5, doc! {"ping": 1, "$db": "admin"})
            .await
            .expect("reply");
        assert!(ok(&r), "{r}");
    })
    .await;
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_sequence_over_max_write_batch_size_is_refused() {
    let ts = TestServer::start().await;
    let mut c = authed(&ts).await;
    let docs: Vec<Document> = (0..100_001).map(|_| Document::new()).collect();
    let msg = op_msg(
        1,
        &doc! {"insert": "c", "$db": "app"},
        &[("documents", &docs)],
        false,
    );
    c.send(&msg).await;
    let r = c.recv().await.expect("reply");
    assert_eq!(
        (code(&r), r.get_str("codeName").ok()),
        (16, Some("InvalidLength")),
        "{r}"
    );
    let r = c
        .command(2, doc! {"ping": 1, "$db": "admin"})
        .await
        .expect("reply");
    assert!(ok(&r), "{r}");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_open_connections_are_bounded() {
    const LIMIT: usize = 100;
    const ATTACKERS: usize = 1500;
    let ts = TestServer::start_with(Options {
        max_connections: LIMIT,
        tls_handshake_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let (connected, all_closed) = with_bystander(&ts, "idle TCP and half-open TLS", async {
        let started = Instant::now();
        let mut socks = Vec::new();
        for i in 0..ATTACKERS {
            let Ok(Ok(mut s)) = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(ts.addr),
            )
            .await
            else {
                continue;
            };
            // Every third one starts a TLS record and stops (a half-open handshake).
            if i % 3 == 0 {
                let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
            }
            socks.push(s);
        }
        // Each is closed: at once beyond the limit, after the handshake timeout within it.
        let connected = socks.len();
        for s in &mut socks {
            let mut b = [0u8; 64];
            let remaining = Duration::from_secs(8).saturating_sub(started.elapsed());
            match tokio::time::timeout(remaining, s.read(&mut b)).await {
                Ok(Ok(_)) | Ok(Err(_)) => {}
                Err(_) => panic!("an idle connection stayed open past the handshake timeout"),
            }
        }
        (connected, started.elapsed())
    })
    .await;
    eprintln!(
        "idle TCP and half-open TLS: {ATTACKERS} connections, limit {LIMIT}: \
         {connected} connected, all closed by the server after {all_closed:?}"
    );
    // New clients are served again.
    let mut c = RawClient::connect(&ts).await;
    let r = c
        .command(1, doc! {"ping": 1, "$db": "admin"})
        .await
        .expect("reply");
    assert!(ok(&r), "{r}");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loris_tls_handshake_is_cut_at_the_timeout() {
    let ts = TestServer::start_with(Options {
        tls_handshake_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let took = with_bystander(&ts, "slow-loris TLS handshake", async {
        let mut s = tokio::net::TcpStream::connect(ts.addr).await.expect("tcp");
        // A ClientHello record announcing 512 bytes, sent one byte every 50 ms.
        let mut bytes = vec![
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        bytes.resize(517, 0x41);
        let started = Instant::now();
        for b in bytes {
            if s.write_all(&[b]).await.is_err() {
                break;
            }
            let mut buf = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "a trickled handshake outlived the 1 s handshake timeout"
            );
        }
        started.elapsed()
    })
    .await;
    eprintln!("slow-loris TLS handshake: closed after {took:?} (timeout 1 s)");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_do_not_authenticate_in_time_are_closed() {
    let ts = TestServer::start_with(Options {
        pre_auth_timeout: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    with_bystander(&ts, "pre-auth timeout", async {
        let started = Instant::now();
        // Silent, and busy with anything but the handshake: both closed.
        let mut silent = RawClient::connect(&ts).await;
        let mut pinging = RawClient::connect(&ts).await;
        let mut monitor = RawClient::connect(&ts).await;
        let mut pings_answered = 0;
        let mut monitor_answered = 0;
        while started.elapsed() < Duration::from_millis(3500) {
            if let Some(r) = try_command(&mut pinging, 1, doc! {"ping": 1, "$db": "admin"}).await
                && ok(&r)
            {
                pings_answered += 1;
            }
            // A monitoring connection's heartbeats keep it open (drivers never
            // authenticate those).
            let r = monitor
                .command(2, doc! {"hello": 1, "$db": "admin"})
                .await
                .expect("a heartbeating connection stays open");
            assert!(ok(&r), "{r}");
            monitor_answered += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(pings_answered > 0 && monitor_answered > 10);
        let waited = closed_within(&mut silent, Duration::from_secs(1)).await;
        eprintln!("pre-auth timeout: the silent connection was closed ({waited:?} after 3.5 s)");
        closed_within(&mut pinging, Duration::from_secs(1)).await;
        // Authenticating in time is what a driver does: the side client never noticed.
    })
    .await;
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_authenticated_connections_are_closed() {
    let ts = TestServer::start_with(Options {
        idle_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    with_bystander(&ts, "idle timeout", async {
        let mut idle = authed(&ts).await;
        let mut busy = authed(&ts).await;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(2500) {
            let r = busy
                .command(1, doc! {"ping": 1, "$db": "admin"})
                .await
                .expect("an active connection stays open");
            assert!(ok(&r), "{r}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let waited = closed_within(&mut idle, Duration::from_millis(500)).await;
        eprintln!("idle timeout: the idle connection was closed ({waited:?} after 2.5 s)");

        // A client that sends requests but never reads the replies: once the socket
        // buffers are full the server's write waits, and is given up at the same deadline.
        let mut big = authed(&ts).await;
        let pad = Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![7u8; 4 * 1024 * 1024],
        });
        let r = big
            .command(
                1,
                doc! {"insert": "big", "documents": [{"_id": 1, "pad": pad}], "$db": "app"},
            )
            .await
            .expect("insert");
        assert!(ok(&r), "{r}");
        let find = op_msg(
            2,
            &doc! {"find": "big", "filter": {"_id": 1}, "$db": "app"},
            &[],
            false,
        );
        for _ in 0..32 {
            if big.stream.write_all(&find).await.is_err() {
                break;
            }
        }
        let _ = big.stream.flush().await;
        // Past the deadline, the socket holds what the server managed to write before it
        // gave up (a few MB), then the close; not the 32 replies of 4 MiB.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut received = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let drained = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match big.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => received += n,
                }
            }
        })
        .await;
        assert!(
            drained.is_ok(),
            "a connection that does not read its replies stayed open ({received} bytes read)"
        );
        eprintln!(
            "idle timeout: a connection not reading its replies was closed with {} KiB of \
             128 MiB of replies delivered",
            received / 1024
        );
        assert!(received < 32 * 4 * 1024 * 1024);
    })
    .await;
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_flood_by_one_user_is_capped() {
    const CAP: usize = 20;
    let ts = TestServer::start_with(Options {
        max_cursors_per_user: CAP,
        ..Options::default()
    })
    .await;
    let mut c = authed(&ts).await;
    let docs: Vec<Document> = (0..5).map(|i| doc! {"_id": i}).collect();
    let r = c
        .command(1, doc! {"insert": "flood", "documents": docs, "$db": "app"})
        .await
        .expect("insert");
    assert!(ok(&r), "{r}");
    let (opened, refused) = with_bystander(&ts, "cursor flood", async {
        let mut opened = Vec::new();
        let mut refused = 0;
        for i in 0..500 {
            let r = c
                .command(
                    10 + i,
                    doc! {"find": "flood", "filter": {}, "batchSize": 1, "$db": "app"},
                )
                .await
                .expect("reply");
            if ok(&r) {
                let id = r
                    .get_document("cursor")
                    .and_then(|cur| cur.get_i64("id"))
                    .expect("cursor id");
                assert_ne!(id, 0);
                opened.push(id);
            } else {
                assert_eq!(
                    (code(&r), r.get_str("codeName").ok()),
                    (2, Some("BadValue")),
                    "{r}"
                );
                refused += 1;
            }
        }
        (opened, refused)
    })
    .await;
    eprintln!(
        "cursor flood: {} opened, {refused} refused (cap {CAP})",
        opened.len()
    );
    assert_eq!(opened.len(), CAP);
    assert_eq!(ts.server.open_cursors(), CAP);
    // Killing one frees a place.
    let r = c
        .command(
            1000,
            doc! {"killCursors": "flood", "cursors": [opened[0]], "$db": "app"},
        )
        .await
        .expect("killCursors");
    assert!(ok(&r), "{r}");
    let r = c
        .command(
            1001,
            doc! {"find": "flood", "filter": {}, "batchSize": 1, "$db": "app"},
        )
        .await
        .expect("find");
    assert!(ok(&r), "{r}");
    ts.stop().await;
}
