//! Shared harness for the wire integration tests: a real server (TLS, SCRAM-SHA-256,
//! docdb on the encrypted storage engine) on 127.0.0.1:0 in a temp dir.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

pub const ADMIN_USER: &str = "root";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// Opens the database in `dir` (the same root key every time, so a restart reopens it).
pub fn open_db(dir: &Path) -> wire::Db {
    open_db_with(dir, docdb::DbConfig::default())
}

/// [`open_db`] with explicit database settings (sort memory, temp-disk quota).
pub fn open_db_with(dir: &Path, config: docdb::DbConfig) -> wire::Db {
    let engine = storage::Engine::open(
        &dir.join("data"),
        storage::RootKey::from_bytes([42u8; 32]),
        storage::Options::default(),
    )
    .expect("open storage engine");
    docdb::Db::open_with(engine, config).expect("open docdb")
}

/// A running server with its CA and data directory.
pub struct TestServer {
    pub server: wire::Server,
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub dir: Arc<tempfile::TempDir>,
}

pub struct Options {
    pub cursor_idle_timeout: Duration,
    pub max_connections: usize,
    pub ttl_monitor_interval: Duration,
    pub idle_poll: Duration,
    pub tls_handshake_timeout: Duration,
    pub pre_auth_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_cursors_per_user: usize,
    pub db_config: docdb::DbConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cursor_idle_timeout: Duration::from_secs(600),
            max_connections: 1000,
            ttl_monitor_interval: Duration::from_secs(60),
            idle_poll: wire::DEFAULT_IDLE_POLL,
            tls_handshake_timeout: Duration::from_secs(10),
            pre_auth_timeout: wire::DEFAULT_PRE_AUTH_TIMEOUT,
            idle_timeout: wire::DEFAULT_IDLE_TIMEOUT,
            max_cursors_per_user: wire::DEFAULT_MAX_CURSORS_PER_USER,
            db_config: docdb::DbConfig::default(),
        }
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_in(
            Arc::new(tempfile::tempdir().expect("tempdir")),
            Options::default(),
        )
        .await
    }

    pub async fn start_with(opts: Options) -> TestServer {
        Self::start_in(Arc::new(tempfile::tempdir().expect("tempdir")), opts).await
    }

    /// Starts (or restarts) a server on the data in `dir`.
    pub async fn start_in(dir: Arc<tempfile::TempDir>, opts: Options) -> TestServer {
        let ca = pki::DevCa::load_or_create(&dir.path().join("ca")).expect("dev CA");
        let identity = ca.issue_server(&["localhost"]).expect("server cert");
        let tls = wire::tls::server_config(&identity).expect("tls config");
        let db = open_db_with(dir.path(), opts.db_config.clone());
        let mut config = wire::ServerConfig::new("127.0.0.1:0".parse().expect("addr"), db, tls);
        config.admin_user = Some((
            ADMIN_USER.to_string(),
            Zeroizing::new(ADMIN_PASSWORD.to_string()),
        ));
        config.cursor_idle_timeout = opts.cursor_idle_timeout;
        config.max_connections = opts.max_connections;
        config.ttl_monitor_interval = opts.ttl_monitor_interval;
        config.idle_poll = opts.idle_poll;
        config.tls_handshake_timeout = opts.tls_handshake_timeout;
        config.pre_auth_timeout = opts.pre_auth_timeout;
        config.idle_timeout = opts.idle_timeout;
        config.max_cursors_per_user = opts.max_cursors_per_user;
        let server = wire::Server::start(config).await.expect("start server");
        let addr = server.local_addr();
        TestServer {
            server,
            addr,
            ca_pem: ca.ca_pem().to_string(),
            ca_path: ca.ca_path(),
            dir,
        }
    }

    /// A connection string for the admin user over TLS.
    pub fn uri(&self) -> String {
        self.uri_for(ADMIN_USER, ADMIN_PASSWORD, "admin")
    }

    pub fn uri_for(&self, user: &str, password: &str, auth_db: &str) -> String {
        format!(
            "mongodb://{}:{}@127.0.0.1:{}/?tls=true&tlsCAFile={}&authSource={auth_db}&authMechanism=SCRAM-SHA-256&directConnection=true&serverSelectionTimeoutMS=5000",
            pct(user),
            pct(password),
            self.addr.port(),
            self.ca_path.display()
        )
    }

    pub async fn client(&self) -> mongodb::Client {
        mongodb::Client::with_uri_str(self.uri())
            .await
            .expect("client")
    }

    /// A driver client for `user` with a single connection, so every command it runs
    /// shares one server-side session state.
    pub async fn single_connection_client(
        &self,
        user: &str,
        password: &str,
        auth_db: &str,
    ) -> mongodb::Client {
        mongodb::Client::with_uri_str(format!(
            "{}&maxPoolSize=1",
            self.uri_for(user, password, auth_db)
        ))
        .await
        .expect("client")
    }

    /// A driver client that does not authenticate (one connection).
    pub async fn unauthenticated_client(&self) -> mongodb::Client {
        mongodb::Client::with_uri_str(format!(
            "mongodb://127.0.0.1:{}/?tls=true&tlsCAFile={}&directConnection=true&serverSelectionTimeoutMS=5000&maxPoolSize=1",
            self.addr.port(),
            self.ca_path.display()
        ))
        .await
        .expect("client")
    }

    pub async fn stop(self) -> Arc<tempfile::TempDir> {
        self.server.shutdown().await;
        self.dir
    }
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A raw TLS connection speaking bytes, for protocol-level tests.
pub struct RawClient {
    pub stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

impl RawClient {
    pub async fn connect(ts: &TestServer) -> RawClient {
        Self::try_connect(ts)
            .await
            .expect("TLS connection to the server")
    }

    /// Connects, or `None` if the server closed the connection during the handshake.
    pub async fn try_connect(ts: &TestServer) -> Option<RawClient> {
        let config = pki::client_config(&ts.ca_pem).expect("client tls");
        let connector = tokio_rustls::TlsConnector::from(config);
        let tcp = tokio::net::TcpStream::connect(ts.addr)
            .await
            .expect("tcp connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let stream = connector.connect(name, tcp).await.ok()?;
        Some(RawClient { stream })
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// Reads one reply; `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<bson::Document> {
        use tokio::io::AsyncReadExt;
        let read = async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.ok()?;
            let n = i32::from_le_bytes(len) as usize;
            let mut frame = len.to_vec();
            frame.resize(n, 0);
            self.stream.read_exact(&mut frame[4..]).await.ok()?;
            Some(frame)
        };
        let frame = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("server answered or closed within 10s")?;
        let (_, doc) = wire::message::client::decode_reply(&frame).expect("decodable reply");
        Some(doc)
    }

    pub async fn command(&mut self, id: i32, body: bson::Document) -> Option<bson::Document> {
        self.send(&wire::message::client::op_msg(id, &body, &[], false))
            .await;
        self.recv().await
    }
}

/// A minimal SCRAM-SHA-256 client over a raw connection (ASCII passwords only).
pub async fn authenticate(raw: &mut RawClient, user: &str, password: &str) -> bson::Document {
    use aws_lc_rs::{digest, hmac, pbkdf2};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    let mut nonce_bytes = [0u8; 18];
    aws_lc_rs::rand::fill(&mut nonce_bytes).expect("rng");
    let nonce = B64.encode(nonce_bytes);
    let bare = format!("n={user},r={nonce}");
    let bin = |b: Vec<u8>| {
        bson::Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: b,
        })
    };
    let start = raw
        .command(
            100,
            bson::doc! {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": bin(format!("n,,{bare}").into_bytes()),
            "options": {"skipEmptyExchange": true}, "$db": "admin"},
        )
        .await
        .expect("saslStart reply");
    if start.get_f64("ok").unwrap_or(0.0) != 1.0 {
        return start;
    }
    let conversation_id = start.get_i32("conversationId").expect("conversationId");
    let server_first = String::from_utf8(
        start
            .get_binary_generic("payload")
            .expect("payload")
            .clone(),
    )
    .expect("utf8");
    let mut r = "";
    let mut s = "";
    let mut i = 0u32;
    for attr in server_first.split(',') {
        if let Some(v) = attr.strip_prefix("r=") {
            r = v;
        } else if let Some(v) = attr.strip_prefix("s=") {
            s = v;
        } else if let Some(v) = attr.strip_prefix("i=") {
            i = v.parse().expect("iterations");
        }
    }
    let salt = B64.decode(s).expect("salt");
    let mut salted = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(i).expect("nonzero"),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let client_key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &salted), b"Client Key");
    let stored = digest::digest(&digest::SHA256, client_key.as_ref());
    let without_proof = format!("c=biws,r={r}");
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let sig = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, stored.as_ref()),
        auth_message.as_bytes(),
    );
    let proof: Vec<u8> = client_key
        .as_ref()
        .iter()
        .zip(sig.as_ref())
        .map(|(a, b)| a ^ b)
        .collect();
    raw.command(
        101,
        bson::doc! {"saslContinue": 1, "conversationId": conversation_id,
        "payload": bin(format!("{without_proof},p={}", B64.encode(proof)).into_bytes()), "$db": "admin"},
    )
    .await
    .expect("saslContinue reply")
}

/// The server's error code of a failed command, `None` for any other kind of failure.
pub fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}
