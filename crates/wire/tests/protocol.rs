//! Protocol-level tests over raw TLS sockets: the legacy handshake, checksums, document
//! sequences, compression, bad input of every kind, the connection limit and the
//! availability gate. After each bad input the server must still answer, and a second
//! client connected all along must keep working.

mod common;

use std::time::Duration;

use bson::{Bson, Document, doc};
use common::{ADMIN_PASSWORD, ADMIN_USER, Options, RawClient, TestServer, authenticate};
use wire::compression::Compressor;
use wire::message::client::{compress, op_msg, op_query};
use wire::message::{HEADER_LEN, opcode};

/// `{a: {a: ... {}}}` nested `depth` levels, built in linear time.
fn nested_document(depth: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + 8 * depth);
    for i in 0..depth {
        out.extend_from_slice(&((5 + 8 * (depth - i)) as i32).to_le_bytes());
        out.push(3);
        out.extend_from_slice(b"a\0");
    }
    out.extend_from_slice(&[5, 0, 0, 0, 0]);
    out.resize(out.len() + depth, 0);
    out
}

fn ok(d: &Document) -> bool {
    d.get_f64("ok").map(|v| v == 1.0).unwrap_or(false)
        || d.get_i32("ok").map(|v| v == 1).unwrap_or(false)
}

fn code(d: &Document) -> i32 {
    d.get_i32("code").unwrap_or(-1)
}

/// Asserts `r` is an error reply `{ok: 0, errmsg, code, codeName}` with this code.
fn assert_refused(r: &Document, (code_num, code_name): (i32, &str), what: &str) {
    assert!(!ok(r), "{what}: {r}");
    assert_eq!(code(r), code_num, "{what}: {r}");
    assert_eq!(r.get_str("codeName").ok(), Some(code_name), "{what}: {r}");
    assert!(
        r.get_str("errmsg").is_ok_and(|m| !m.is_empty()),
        "{what}: {r}"
    );
}

/// MongoDB's `ProtocolError` (17): a message that cannot be decoded.
const PROTOCOL_ERROR: (i32, &str) = (17, "ProtocolError");

async fn ping(c: &mut RawClient) -> bool {
    match c.command(9000, doc! {"ping": 1, "$db": "admin"}).await {
        Some(d) => ok(&d),
        None => false,
    }
}

async fn authed(ts: &TestServer) -> RawClient {
    let mut c = RawClient::connect(ts).await;
    let r = authenticate(&mut c, ADMIN_USER, ADMIN_PASSWORD).await;
    assert!(ok(&r) && r.get_bool("done").unwrap_or(false), "auth: {r}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_op_query_handshake_gets_op_reply() {
    let ts = TestServer::start().await;
    let mut c = RawClient::connect(&ts).await;
    c.send(&op_query(
        1,
        "admin",
        &doc! {"isMaster": 1, "helloOk": true, "client": {"driver": {"name": "raw"}}},
    ))
    .await;
    let r = c.recv().await.expect("reply");
    assert!(ok(&r), "{r}");
    assert_eq!(r.get_bool("ismaster").ok(), Some(true));
    assert_eq!(r.get_bool("helloOk").ok(), Some(true));
    assert_eq!(r.get_i32("maxWireVersion").ok(), Some(21));
    // Wrapped in $query (older drivers with read preference).
    c.send(&op_query(2, "admin", &doc! {"$query": {"hello": 1}}))
        .await;
    assert_eq!(
        c.recv()
            .await
            .expect("reply")
            .get_bool("isWritablePrimary")
            .ok(),
        Some(true)
    );
    // Anything but the handshake over OP_QUERY is refused (as MongoDB 5.1+ does).
    c.send(&op_query(3, "app", &doc! {"find": "c"})).await;
    assert_eq!(code(&c.recv().await.expect("reply")), 352);
    assert!(ping(&mut c).await);
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_gates_commands_and_unknown_commands_are_59() {
    let ts = TestServer::start().await;
    let mut c = RawClient::connect(&ts).await;
    let r = c
        .command(1, doc! {"find": "c", "$db": "app"})
        .await
        .expect("reply");
    assert_eq!(code(&r), 13);
    assert_eq!(r.get_str("codeName").ok(), Some("Unauthorized"));
    assert_eq!(
        r.get_str("errmsg").ok(),
        Some("command find requires authentication")
    );
    let r = c
        .command(2, doc! {"frobnicate": 1, "$db": "app"})
        .await
        .expect("reply");
    assert_eq!(code(&r), 59);
    assert_eq!(
        r.get_str("errmsg").ok(),
        Some("no such command: 'frobnicate'")
    );
    let r = c.command(3, doc! {"ping": 1}).await.expect("reply");
    assert_eq!(code(&r), 40571, "missing $db: {r}");
    let r = authenticate(&mut c, ADMIN_USER, "nope").await;
    assert_eq!(code(&r), 18, "{r}");
    let r = authenticate(&mut c, ADMIN_USER, ADMIN_PASSWORD).await;
    assert!(ok(&r), "{r}");
    let r = c
        .command(4, doc! {"find": "c", "$db": "app"})
        .await
        .expect("reply");
    assert!(ok(&r), "{r}");
    let r = c
        .command(5, doc! {"connectionStatus": 1, "$db": "admin"})
        .await
        .expect("reply");
    assert_eq!(
        r.get_document("authInfo")
            .and_then(|a| a.get_array("authenticatedUsers"))
            .map(|u| u.len())
            .ok(),
        Some(1)
    );
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_sequences_checksums_and_more_to_come() {
    let ts = TestServer::start().await;
    let mut c = authed(&ts).await;
    let docs: Vec<Document> = (0..5).map(|i| doc! {"_id": i}).collect();
    c.send(&op_msg(
        10,
        &doc! {"insert": "seq", "$db": "app"},
        &[("documents", &docs)],
        true,
    ))
    .await;
    let r = c.recv().await.expect("reply");
    assert!(ok(&r), "{r}");
    assert_eq!(r.get_i32("n").ok(), Some(5));
    // Fire-and-forget (moreToCome): no reply, but the write happens.
    let mut msg = op_msg(
        11,
        &doc! {"insert": "seq", "$db": "app", "writeConcern": {"w": 0}},
        &[("documents", &[doc! {"_id": 99}])],
        false,
    );
    msg[16] |= 2;
    c.send(&msg).await;
    let r = c
        .command(12, doc! {"count": "seq", "$db": "app"})
        .await
        .expect("reply");
    assert_eq!(
        r.get_i32("n").ok().map(i64::from).or(r.get_i64("n").ok()),
        Some(6)
    );
    // A corrupted checksum is refused; the connection keeps working.
    let mut bad = op_msg(13, &doc! {"ping": 1, "$db": "admin"}, &[], true);
    let n = bad.len();
    bad[n - 2] ^= 0x55;
    c.send(&bad).await;
    let r = c.recv().await.expect("error reply");
    assert_refused(&r, PROTOCOL_ERROR, "corrupted checksum");
    assert!(
        r.get_str("errmsg").unwrap_or("").contains("checksum"),
        "{r}"
    );
    assert!(ping(&mut c).await);
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_is_negotiated_and_every_compressor_round_trips() {
    let ts = TestServer::start().await;
    let mut c = authed(&ts).await;
    let r = c
        .command(
            1,
            doc! {"hello": 1, "compression": ["zstd", "lz4", "snappy", "zlib"], "$db": "admin"},
        )
        .await
        .expect("hello");
    let agreed: Vec<&str> = r
        .get_array("compression")
        .expect("compression")
        .iter()
        .filter_map(Bson::as_str)
        .collect();
    assert_eq!(agreed, vec!["zstd", "snappy", "zlib"]);
    for (i, comp) in Compressor::ALL.into_iter().enumerate() {
        let docs: Vec<Document> = (0..50)
            .map(|j| doc! {"c": comp.name(), "j": j, "pad": "p".repeat(200)})
            .collect();
        let msg = op_msg(
            20 + i as i32,
            &doc! {"insert": "z", "$db": "app"},
            &[("documents", &docs)],
            false,
        );
        c.send(&compress(&msg, comp).expect("compress")).await;
        // The reply comes back compressed the same way (decode_reply handles it).
        let mut len = [0u8; 4];
        use tokio::io::AsyncReadExt;
        c.stream.read_exact(&mut len).await.expect("len");
        let mut frame = len.to_vec();
        frame.resize(i32::from_le_bytes(len) as usize, 0);
        c.stream.read_exact(&mut frame[4..]).await.expect("frame");
        let op = i32::from_le_bytes([frame[12], frame[13], frame[14], frame[15]]);
        assert_eq!(op, opcode::OP_COMPRESSED);
        assert_eq!(frame[HEADER_LEN + 8], comp.id());
        let (_, reply) = wire::message::client::decode_reply(&frame).expect("reply");
        assert_eq!(reply.get_i32("n").ok(), Some(50), "{reply}");
    }
    let r = c
        .command(40, doc! {"count": "z", "$db": "app"})
        .await
        .expect("count");
    assert_eq!(
        r.get_i32("n").ok().map(i64::from).or(r.get_i64("n").ok()),
        Some(150)
    );
    ts.stop().await;
}

/// Each bad input gets an error reply or a closed connection; the server stays up and
/// a bystander connected all along keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_takes_the_server_down() {
    let ts = TestServer::start().await;
    let mut bystander = authed(&ts).await;
    let ping_doc = doc! {"ping": 1, "$db": "admin"};

    // 1. Length below the header size: closed.
    let mut c = RawClient::connect(&ts).await;
    c.send(&8i32.to_le_bytes()).await;
    c.send(&[0u8; 8]).await;
    assert!(c.recv().await.is_none(), "tiny length must close");

    // 2. Length above 48 MB: closed without reading it.
    let mut c = RawClient::connect(&ts).await;
    let mut huge = op_msg(1, &ping_doc, &[], false);
    huge[0..4].copy_from_slice(&(64_000_000i32).to_le_bytes());
    c.send(&huge).await;
    assert!(c.recv().await.is_none(), "oversized length must close");

    // 3. Truncated message, then the client goes away.
    let mut c = RawClient::connect(&ts).await;
    let full = op_msg(2, &ping_doc, &[], false);
    c.send(&full[..full.len() - 5]).await;
    drop(c);

    // 4. Header length disagrees with the body's BSON length: error reply, still usable.
    //    (Authenticated, with compression negotiated: before login only small messages
    //    are read at all, and compression needs `hello` to have agreed on it.)
    let mut c = authed(&ts).await;
    let r = c
        .command(
            2,
            doc! {"hello": 1, "compression": ["zstd"], "$db": "admin"},
        )
        .await
        .expect("hello");
    assert!(ok(&r), "{r}");
    let mut lying = op_msg(3, &ping_doc, &[], false);
    lying[21] = lying[21].wrapping_add(40);
    c.send(&lying).await;
    let r = c.recv().await.expect("error reply");
    assert_refused(&r, PROTOCOL_ERROR, "lying BSON length");
    assert!(ping(&mut c).await);

    // 5. Invalid BSON (bad element type) in the body.
    let mut garbage = op_msg(4, &doc! {"ping": 1, "x": 5, "$db": "admin"}, &[], false);
    let pos = garbage.windows(2).position(|w| w == b"x\0").expect("x") - 1;
    garbage[pos] = 0x7E;
    c.send(&garbage).await;
    let r = c.recv().await.expect("error reply");
    assert_refused(&r, PROTOCOL_ERROR, "bad element type");
    assert!(ping(&mut c).await);

    // 6. Unknown opcode: closed.
    let mut c2 = RawClient::connect(&ts).await;
    let mut unknown = op_msg(5, &ping_doc, &[], false);
    unknown[12..16].copy_from_slice(&2010i32.to_le_bytes());
    c2.send(&unknown).await;
    assert!(c2.recv().await.is_none(), "unknown opcode must close");

    // 7. Deeply nested documents: 200 levels (over the limit) and 500 000 levels (a
    //    stack-overflow attempt) are both refused with an error.
    for depth in [200usize, 500_000] {
        let nested = nested_document(depth);
        // body = {ping: 1, $db: "admin", n: <nested>}
        let head = doc! {"ping": 1, "$db": "admin"}.to_vec().expect("bson");
        let mut body = head[..head.len() - 1].to_vec();
        body.push(3);
        body.extend_from_slice(b"n\0");
        body.extend_from_slice(&nested);
        body.push(0);
        let len = body.len() as i32;
        body[0..4].copy_from_slice(&len.to_le_bytes());
        let mut msg = Vec::new();
        msg.extend_from_slice(&((HEADER_LEN + 5 + body.len()) as i32).to_le_bytes());
        msg.extend_from_slice(&7i32.to_le_bytes());
        msg.extend_from_slice(&0i32.to_le_bytes());
        msg.extend_from_slice(&opcode::OP_MSG.to_le_bytes());
        msg.extend_from_slice(&0u32.to_le_bytes());
        msg.push(0);
        msg.extend_from_slice(&body);
        c.send(&msg).await;
        let r = c.recv().await.expect("error reply");
        assert_refused(&r, (15, "Overflow"), &format!("depth {depth}"));
        assert!(ping(&mut c).await);
    }

    // 8. Unknown section kind and unknown required flag bits.
    let mut kind = op_msg(8, &ping_doc, &[], false);
    kind[20] = 7;
    c.send(&kind).await;
    assert_refused(
        &c.recv().await.expect("error reply"),
        PROTOCOL_ERROR,
        "section kind 7",
    );
    let mut flags = op_msg(9, &ping_doc, &[], false);
    flags[16] |= 1 << 4;
    c.send(&flags).await;
    assert_refused(
        &c.recv().await.expect("error reply"),
        PROTOCOL_ERROR,
        "unknown required flag",
    );

    // 9. A compressed message that lies about its size, and a bogus compressor id.
    let lie = compress(&op_msg(10, &ping_doc, &[], false), Compressor::Zstd).expect("compress");
    // A size the message cannot inflate to (under the ratio cap): the decompressor finds
    // the lie.
    let mut lie2 = lie.clone();
    lie2[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&4096i32.to_le_bytes());
    c.send(&lie2).await;
    assert_refused(
        &c.recv().await.expect("error reply"),
        PROTOCOL_ERROR,
        "lying uncompressed size",
    );
    // A size past the ratio cap is refused before anything is inflated (docs/wire.md,
    // "Limits").
    lie2[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&1_000_000i32.to_le_bytes());
    c.send(&lie2).await;
    assert_refused(
        &c.recv().await.expect("error reply"),
        (2, "BadValue"),
        "uncompressed size past the ratio cap",
    );
    let mut bogus = lie.clone();
    bogus[HEADER_LEN + 8] = 42;
    c.send(&bogus).await;
    assert_refused(
        &c.recv().await.expect("error reply"),
        PROTOCOL_ERROR,
        "compressor id 42",
    );
    assert!(ping(&mut c).await);

    // The bystander never noticed.
    assert!(ping(&mut bystander).await);
    let r = bystander
        .command(
            50,
            doc! {"insert": "still", "documents": [{"ok": true}], "$db": "app"},
        )
        .await
        .expect("reply");
    assert!(ok(&r), "{r}");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_closes_extra_connections() {
    let ts = TestServer::start_with(Options {
        max_connections: 2,
        ..Options::default()
    })
    .await;
    let mut a = RawClient::connect(&ts).await;
    let mut b = RawClient::connect(&ts).await;
    assert!(ping(&mut a).await && ping(&mut b).await);
    // The third TCP connection is closed before (or during) the TLS handshake.
    let config = pki::client_config(&ts.ca_pem).expect("tls");
    let tcp = tokio::net::TcpStream::connect(ts.addr).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let third = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await;
    if let Ok(stream) = third {
        let mut c = RawClient { stream };
        assert!(!ping(&mut c).await, "third connection must not be served");
    }
    drop(a);
    // Once a slot frees up, new connections are served again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(mut c) = RawClient::try_connect(&ts).await
            && ping(&mut c).await
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ping(&mut b).await);
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inaccessible_gate_closes_connections_and_explains_why() {
    let ts = TestServer::start().await;
    let mut c = authed(&ts).await;
    let r = c
        .command(
            1,
            doc! {"insert": "g", "documents": [{"_id": 1}], "$db": "app"},
        )
        .await
        .expect("insert");
    assert!(ok(&r));
    ts.server
        .make_inaccessible("KeyDisabled: the key 'cmk' is disabled in vault 'v1'".to_string());
    assert!(!ts.server.is_ready());
    assert!(c.recv().await.is_none(), "open connections are closed");
    let mut n = RawClient::connect(&ts).await;
    for body in [
        doc! {"hello": 1, "$db": "admin"},
        doc! {"ping": 1, "$db": "admin"},
        doc! {"find": "g", "$db": "app"},
    ] {
        let r = n.command(2, body).await.expect("error reply");
        assert_eq!(code(&r), 50000, "{r}");
        assert_eq!(r.get_str("codeName").ok(), Some("ClusterInaccessible"));
        assert_eq!(
            r.get_str("errmsg").ok(),
            Some("cluster is Inaccessible: KeyDisabled: the key 'cmk' is disabled in vault 'v1'")
        );
    }
    // The handle was released: the data directory can be opened again right away.
    let db = common::open_db(ts.dir.path());
    ts.server.make_ready(db);
    let mut c = authed(&ts).await;
    let r = c
        .command(3, doc! {"find": "g", "$db": "app"})
        .await
        .expect("find");
    assert_eq!(
        r.get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .map(|b| b.len())
            .ok(),
        Some(1),
        "{r}"
    );
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speculative_authentication_in_hello_and_transactions_refused() {
    let ts = TestServer::start().await;
    let mut c = RawClient::connect(&ts).await;
    let payload = bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: b"n,,n=root,r=abcdefghijklmnop".to_vec(),
    };
    let r = c
        .command(
            1,
            doc! {"hello": 1, "saslSupportedMechs": "admin.root",
            "speculativeAuthenticate": {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": payload, "db": "admin"},
            "$db": "admin"},
        )
        .await
        .expect("hello");
    let mechs: Vec<&str> = r
        .get_array("saslSupportedMechs")
        .expect("mechs")
        .iter()
        .filter_map(Bson::as_str)
        .collect();
    assert_eq!(mechs, vec!["SCRAM-SHA-256"]);
    let spec = r
        .get_document("speculativeAuthenticate")
        .expect("speculative reply");
    let first = String::from_utf8(spec.get_binary_generic("payload").expect("payload").clone())
        .expect("utf8");
    assert!(
        first.starts_with("r=abcdefghijklmnop") && first.contains(",i=15000"),
        "{first}"
    );
    // An unsupported mechanism is declined (the driver then falls back to saslStart).
    let r = c
        .command(2, doc! {"hello": 1, "speculativeAuthenticate": {"saslStart": 1, "mechanism": "SCRAM-SHA-1", "payload": bson::Binary{subtype: bson::spec::BinarySubtype::Generic, bytes: vec![]}, "db": "admin"}, "$db": "admin"})
        .await
        .expect("hello");
    assert!(r.get("speculativeAuthenticate").is_none());
    let mut c = authed(&ts).await;
    let r = c
        .command(3, doc! {"insert": "t", "documents": [{"a": 1}], "txnNumber": 1i64, "startTransaction": true, "autocommit": false, "$db": "app"})
        .await
        .expect("reply");
    assert_eq!(code(&r), 20, "{r}");
    ts.stop().await;
}

/// The node process's flow: listen Inaccessible before the keys are unwrapped, open the
/// database later, create the administrator, then lock again and wait for the release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_inaccessible_opens_later_and_releases_the_handle_on_lock() {
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
    let ca = pki::DevCa::load_or_create(&dir.path().join("ca")).expect("ca");
    let tls =
        wire::tls::server_config(&ca.issue_server(&["localhost"]).expect("cert")).expect("tls");
    let config = wire::ServerConfig::inaccessible(
        "127.0.0.1:0".parse().expect("addr"),
        tls,
        "Pending: keys not unwrapped yet".into(),
    );
    let server = wire::Server::start(config).await.expect("start");
    let ts = TestServer {
        addr: server.local_addr(),
        server,
        ca_pem: ca.ca_pem().to_string(),
        ca_path: ca.ca_path(),
        dir,
    };
    let mut c = RawClient::connect(&ts).await;
    let r = c
        .command(1, doc! {"hello": 1, "$db": "admin"})
        .await
        .expect("reply");
    assert_eq!(
        r.get_str("errmsg").ok(),
        Some("cluster is Inaccessible: Pending: keys not unwrapped yet")
    );
    // No database behind the gate yet: the admin user cannot be created, and says why.
    match ts
        .server
        .ensure_admin_user(
            ADMIN_USER,
            &zeroize::Zeroizing::new(ADMIN_PASSWORD.to_string()),
        )
        .await
    {
        Err(wire::Error::AdminUser(why)) => assert!(why.contains("Inaccessible"), "{why}"),
        other => panic!("expected an AdminUser error while Pending, got {other:?}"),
    }

    ts.server.make_ready(common::open_db(ts.dir.path()));
    ts.server
        .ensure_admin_user(
            ADMIN_USER,
            &zeroize::Zeroizing::new(ADMIN_PASSWORD.to_string()),
        )
        .await
        .expect("admin user");
    let mut c = authed(&ts).await;
    let r = c
        .command(
            2,
            doc! {"insert": "n", "documents": [{"_id": 1}, {"_id": 2}, {"_id": 3}], "$db": "app"},
        )
        .await
        .expect("insert");
    assert!(ok(&r), "{r}");
    // An open cursor at lock time must not keep the engine alive.
    let r = c
        .command(3, doc! {"find": "n", "batchSize": 1, "$db": "app"})
        .await
        .expect("find");
    assert_ne!(
        r.get_document("cursor")
            .and_then(|c| c.get_i64("id"))
            .unwrap_or(0),
        0
    );
    assert_eq!(ts.server.open_cursors(), 1);
    let released = ts
        .server
        .make_inaccessible_and_release("KeyDeleted: gone".into(), Duration::from_secs(10))
        .await;
    assert!(released, "the database handle was not released");
    assert_eq!(ts.server.open_cursors(), 0);
    // The engine is really closed: the same directory opens again at once.
    ts.server.make_ready(common::open_db(ts.dir.path()));
    let mut c = authed(&ts).await;
    let r = c
        .command(4, doc! {"count": "n", "$db": "app"})
        .await
        .expect("count");
    assert_eq!(
        r.get_i32("n").ok().map(i64::from).or(r.get_i64("n").ok()),
        Some(3)
    );
    ts.stop().await;
}

/// TLS is the default: no TLS config is refused unless explicitly insecure, and a TLS
/// listener does not speak plaintext MongoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_unless_explicitly_insecure() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = wire::ServerConfig::inaccessible(
        "127.0.0.1:0".parse().expect("addr"),
        wire::tls::server_config(
            &pki::DevCa::load_or_create(&dir.path().join("ca"))
                .expect("ca")
                .issue_server(&["localhost"])
                .expect("cert"),
        )
        .expect("tls"),
        "Pending".into(),
    );
    config.tls = None;
    assert!(matches!(
        wire::Server::start(config).await,
        Err(wire::Error::TlsRequired)
    ));

    // A plaintext OP_MSG sent to the TLS listener gets no MongoDB reply.
    let ts = TestServer::start().await;
    let mut tcp = tokio::net::TcpStream::connect(ts.addr).await.expect("tcp");
    tcp.write_all(&op_msg(1, &doc! {"ping": 1, "$db": "admin"}, &[], false))
        .await
        .expect("write");
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("server reacts")
        .unwrap_or(0);
    // Either closed, or a TLS alert (content type 21) — never an OP_MSG reply.
    assert!(
        n == 0 || buf[0] == 21,
        "plaintext got a non-TLS answer: {:?}",
        &buf[..n]
    );

    // With the explicit flag, plaintext works.
    let mut config = wire::ServerConfig::new(
        "127.0.0.1:0".parse().expect("addr"),
        common::open_db(dir.path()),
        wire::tls::server_config(
            &pki::DevCa::load_or_create(&dir.path().join("ca"))
                .expect("ca")
                .issue_server(&["localhost"])
                .expect("cert"),
        )
        .expect("tls"),
    );
    config.tls = None;
    config.insecure_plaintext = true;
    let plain = wire::Server::start(config).await.expect("insecure server");
    let mut tcp = tokio::net::TcpStream::connect(plain.local_addr())
        .await
        .expect("tcp");
    tcp.write_all(&op_msg(2, &doc! {"ping": 1, "$db": "admin"}, &[], false))
        .await
        .expect("write");
    let mut len = [0u8; 4];
    tcp.read_exact(&mut len).await.expect("reply length");
    let mut frame = len.to_vec();
    frame.resize(i32::from_le_bytes(len) as usize, 0);
    tcp.read_exact(&mut frame[4..]).await.expect("reply");
    let (_, reply) = wire::message::client::decode_reply(&frame).expect("decode");
    assert!(ok(&reply), "{reply}");
    plain.shutdown().await;
    ts.stop().await;
}
