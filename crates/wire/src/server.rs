//! The accept loop, per-connection tasks, the connection limit and graceful shutdown.
//!
//! One task per connection reads a frame, decodes it, runs the command and writes the
//! reply; commands on one connection are strictly sequential, as the protocol requires.
//! The server stops accepting and closes every connection on [`Server::shutdown`]; the
//! availability gate ([`Server::make_inaccessible`]) closes every connection too but
//! keeps accepting, so clients learn why they cannot work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bson::Document;
use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use crate::backend::Db;
use crate::client::Client;
use crate::cmd;
use crate::connection::{Connection, Polling};
use crate::cursor::Registry;
use crate::error::{CommandError, Error, ProtocolError};
use crate::message::{self, Incoming, Request, opcode};
use crate::state::ClusterState;
use crate::tls::Stream;

/// How the server is started.
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// TLS configuration (see [`crate::tls::server_config`]). Required unless
    /// `insecure_plaintext` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Accept plaintext connections. Off by default; only for tests and local tooling.
    pub insecure_plaintext: bool,
    /// The database to serve; `None` starts the server Inaccessible (see
    /// [`ServerConfig::inaccessible`]) until [`Server::make_ready`].
    pub db: Option<Db>,
    /// The reason reported while started without a database.
    pub initial_reason: String,
    /// Created (SCRAM-SHA-256, role `root` on admin) at start when it does not exist yet.
    pub admin_user: Option<(String, Zeroizing<String>)>,
    /// Connections beyond this are closed right after accept.
    pub max_connections: usize,
    /// Cursors unused for this long are closed.
    pub cursor_idle_timeout: Duration,
    /// Commands slower than this are logged (redacted).
    pub slow_op_threshold: Duration,
    /// How long a client may take to complete its TLS handshake (the whole handshake,
    /// however slowly its bytes trickle in).
    pub tls_handshake_timeout: Duration,
    /// A connection that has not authenticated this long after it opened (or after it
    /// logged out, or since its last `hello`) is closed. Until it authenticates it may
    /// send only messages of up to [`message::MAX_PRE_AUTH_MESSAGE_SIZE`] and only the
    /// handshake and authentication commands. Each `hello`/`isMaster` restarts the clock
    /// because drivers' monitoring connections never authenticate (the SDAM spec forbids
    /// it): they send `hello` every `heartbeatFrequencyMS` (10 s by default) for as long
    /// as the client lives. A SASL exchange or anything else does not.
    pub pre_auth_timeout: Duration,
    /// An authenticated connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Open cursors one user may hold at once (all their connections together); one more
    /// is refused with `2 BadValue`.
    pub max_cursors_per_user: usize,
    /// How often documents past their TTL index's `expireAfterSeconds` are deleted
    /// (MongoDB's TTL monitor runs every 60 s).
    pub ttl_monitor_interval: Duration,
    /// After replying to a connection that has the server to itself, how long its task
    /// keeps polling for the next request before its thread may sleep
    /// ([`Connection::read_frame_polling`]); zero turns polling off.
    pub idle_poll: Duration,
}

impl ServerConfig {
    /// A TLS server with defaults: 1000 connections, 10-minute cursor timeout, 100 ms slow-op.
    pub fn new(listen: SocketAddr, db: Db, tls: Arc<rustls::ServerConfig>) -> ServerConfig {
        ServerConfig {
            db: Some(db),
            ..ServerConfig::inaccessible(listen, tls, String::new())
        }
    }

    /// A TLS server that starts Inaccessible with `reason` (the node process listens
    /// before its keys are unwrapped); [`Server::make_ready`] opens it for business.
    pub fn inaccessible(
        listen: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        reason: String,
    ) -> ServerConfig {
        ServerConfig {
            listen,
            tls: Some(tls),
            insecure_plaintext: false,
            db: None,
            initial_reason: reason,
            admin_user: None,
            max_connections: 1000,
            cursor_idle_timeout: Duration::from_secs(600),
            slow_op_threshold: Duration::from_millis(100),
            tls_handshake_timeout: Duration::from_secs(10),
            pre_auth_timeout: DEFAULT_PRE_AUTH_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_cursors_per_user: DEFAULT_MAX_CURSORS_PER_USER,
            ttl_monitor_interval: Duration::from_secs(60),
            idle_poll: DEFAULT_IDLE_POLL,
        }
    }
}

/// [`ServerConfig::pre_auth_timeout`] by default: a driver authenticates within a few
/// round trips of connecting; 30 s is ample even over a slow link.
pub const DEFAULT_PRE_AUTH_TIMEOUT: Duration = Duration::from_secs(30);
/// [`ServerConfig::idle_timeout`] by default. MongoDB has none, and drivers keep pooled
/// connections idle indefinitely unless `maxIdleTimeMS` is set: an hour keeps forgotten
/// connections from piling up without surprising ordinary pools (pymongo checks an idle
/// socket before reusing it; set `maxIdleTimeMS` below this with other drivers).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// [`ServerConfig::max_cursors_per_user`] by default. An application holds a handful of
/// cursors per connection at most; 1,000 is far above that and still bounds what one
/// user can make the server keep.
pub const DEFAULT_MAX_CURSORS_PER_USER: usize = 1000;

/// [`ServerConfig::idle_poll`] by default: longer than a driver takes between a reply and
/// its next request in a closed loop (50-65 µs of client CPU here), short enough that a
/// client that pauses costs at most this much CPU per request.
pub const DEFAULT_IDLE_POLL: Duration = Duration::from_micros(150);

/// Counters for `serverStatus`.
#[derive(Default)]
pub(crate) struct Counters {
    pub current_connections: AtomicI64,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub insert: AtomicU64,
    pub query: AtomicU64,
    pub update: AtomicU64,
    pub delete: AtomicU64,
    pub getmore: AtomicU64,
    pub command: AtomicU64,
    /// Requests being handled right now, on every connection (a gauge).
    pub in_flight: AtomicUsize,
    /// The connection that started the most recent request.
    pub last_requester: AtomicI64,
    /// Requests that arrived while their connection polled for them (no wake-up).
    pub idle_poll_found: AtomicU64,
    /// Polls that ended without a request (budget spent, or another connection spoke),
    /// counted as they end; the connection then waits as usual.
    pub idle_poll_slept: AtomicU64,
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub state: RwLock<ClusterState>,
    /// Bumped to make every connection close (the gate turned Inaccessible).
    pub epoch: watch::Sender<u64>,
    pub cursors: Registry,
    pub next_connection_id: AtomicI64,
    pub counters: Counters,
    pub started: Instant,
    pub slow_op_threshold: Duration,
    pub tls: bool,
    pub max_connections: usize,
    /// Secret for decoy SCRAM salts of unknown users (random per process).
    pub scram_secret: Zeroizing<[u8; 32]>,
    pub listen: SocketAddr,
    pub idle_poll: Duration,
    /// The cluster's administrator and the users generation.
    pub users: crate::auth::directory::Directory,
    pub pre_auth_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Shared {
    pub fn db(&self) -> Result<Arc<Db>, CommandError> {
        self.state.read().db()
    }

    /// The current gate epoch (bumped each time the gate closes).
    pub fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept_task: tokio::task::JoinHandle<()>,
    reaper_task: tokio::task::JoinHandle<()>,
    ttl_task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds, creates the admin user if asked, and starts accepting connections.
    pub async fn start(config: ServerConfig) -> Result<Server, Error> {
        if config.tls.is_none() && !config.insecure_plaintext {
            return Err(Error::TlsRequired);
        }
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let mut secret = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(secret.as_mut()).map_err(|_| Error::Tls("random".into()))?;
        let state = match config.db {
            Some(db) => {
                let db = Arc::new(db);
                if let Some((user, password)) = &config.admin_user {
                    crate::auth::users::ensure_admin(db.clone(), user, password)
                        .await
                        .map_err(|e| Error::AdminUser(e.to_string()))?;
                }
                ClusterState::Ready(db)
            }
            None => ClusterState::Inaccessible {
                reason: config.initial_reason,
            },
        };
        let (epoch, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            epoch,
            cursors: Registry::new(config.cursor_idle_timeout, config.max_cursors_per_user),
            next_connection_id: AtomicI64::new(1),
            counters: Counters::default(),
            started: Instant::now(),
            slow_op_threshold: config.slow_op_threshold,
            tls: config.tls.is_some(),
            max_connections: config.max_connections,
            scram_secret: secret,
            listen: local_addr,
            idle_poll: config.idle_poll,
            users: Default::default(),
            pre_auth_timeout: config.pre_auth_timeout,
            idle_timeout: config.idle_timeout,
        });
        if let Some((user, _)) = &config.admin_user {
            shared.users.set_admin(user);
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let acceptor = config.tls.map(tokio_rustls::TlsAcceptor::from);
        let accept_task = tokio::spawn(accept_loop(
            listener,
            acceptor,
            shared.clone(),
            shutdown_rx.clone(),
            config.max_connections,
            config.tls_handshake_timeout,
        ));
        let reaper_task = tokio::spawn(reap_cursors(shared.clone(), shutdown_rx.clone()));
        let ttl_task = tokio::spawn(ttl_monitor(
            shared.clone(),
            shutdown_rx,
            config.ttl_monitor_interval,
        ));
        tracing::info!(addr = %local_addr, tls = shared.tls, "MongoDB wire server listening");
        Ok(Server {
            shared,
            local_addr,
            shutdown,
            accept_task,
            reaper_task,
            ttl_task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection and waits for their tasks to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.accept_task.await;
        let _ = self.reaper_task.await;
        let _ = self.ttl_task.await;
        self.shared.cursors.clear();
        tracing::info!(addr = %self.local_addr, "MongoDB wire server stopped");
    }

    /// Turns the gate to Inaccessible: drops the database handle and every cursor,
    /// closes every connection; from now on every command answers the reason. Commands
    /// already running finish on their own reference to the handle; use
    /// [`Server::make_inaccessible_and_release`] to wait until the last one is gone.
    pub fn make_inaccessible(&self, reason: String) {
        drop(self.take_handle(reason));
    }

    /// [`Server::make_inaccessible`], then waits (up to `timeout`) until no in-flight
    /// command holds the database any more, so the engine and its keys are really gone.
    /// Returns false if something still held it when the timeout expired.
    pub async fn make_inaccessible_and_release(&self, reason: String, timeout: Duration) -> bool {
        let Some(db) = self.take_handle(reason) else {
            return true;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        while Arc::strong_count(&db) > 1 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("database handle still in use after the gate closed");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(db);
        true
    }

    fn take_handle(&self, reason: String) -> Option<Arc<Db>> {
        tracing::warn!(reason = %reason, "cluster made inaccessible");
        let previous = std::mem::replace(
            &mut *self.shared.state.write(),
            ClusterState::Inaccessible { reason },
        );
        // The epoch goes first: cursors still being served are then refused re-entry
        // into the registry. Cursors may hold engine snapshots, so they go before the handle.
        self.shared.epoch.send_modify(|e| *e += 1);
        self.shared.cursors.clear();
        match previous {
            ClusterState::Ready(db) => Some(db),
            ClusterState::Inaccessible { .. } | ClusterState::Reopening { .. } => None,
        }
    }

    /// Takes the database out so the node can close its storage engine and open it again
    /// (after a storage failure made it read-only: `reason`), without closing connections:
    /// until [`Server::make_ready`] every command gets a retryable `InterruptedAtShutdown`
    /// naming `reason`. Cursors go (they read the engine being closed). Waits up to
    /// `timeout` for commands in flight to finish with the old handle, so none of them
    /// sees the engine close under it; false if one still held it at the deadline.
    /// Does nothing (true) unless the gate is Ready.
    pub async fn begin_reopen(&self, reason: String, timeout: Duration) -> bool {
        let db = {
            let mut state = self.shared.state.write();
            if !state.is_ready() {
                return true;
            }
            match std::mem::replace(&mut *state, ClusterState::Reopening { reason }) {
                ClusterState::Ready(db) => db,
                _ => return true,
            }
        };
        tracing::warn!("storage engine being reopened; commands get a retryable error");
        self.shared.cursors.clear();
        let deadline = tokio::time::Instant::now() + timeout;
        while Arc::strong_count(&db) > 1 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("database handle still in use when the reopen began");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Creates `admin.<user>` (SCRAM-SHA-256, role `root`) unless it exists. Fails while
    /// the gate is Inaccessible.
    pub async fn ensure_admin_user(
        &self,
        user: &str,
        password: &Zeroizing<String>,
    ) -> Result<(), Error> {
        self.shared.users.set_admin(user);
        let db = self.shared.db().map_err(|e| Error::AdminUser(e.errmsg))?;
        crate::auth::users::ensure_admin(db, user, password)
            .await
            .map_err(|e| Error::AdminUser(e.to_string()))
    }

    /// Resets the administrator's password (the management API's PATCH of
    /// `properties.administrator.password`): `admin.<user>` gets new SCRAM credentials.
    /// Open connections keep their authentication; new logins need the new password.
    /// Fails while the gate is Inaccessible.
    pub async fn reset_admin_password(
        &self,
        user: &str,
        password: &Zeroizing<String>,
    ) -> Result<(), Error> {
        self.shared.users.set_admin(user);
        let db = self
            .shared
            .db()
            .map_err(|e| Error::AdminPassword(e.errmsg))?;
        crate::auth::users::reset_admin_password(db, user, password)
            .await
            .map_err(|e| Error::AdminPassword(e.to_string()))?;
        self.shared.users.changed();
        Ok(())
    }

    /// Names the cluster's administrator (`admin.<user>`) without creating it (a restored
    /// cluster brings its administrator along): the MongoDB API may not drop or demote it.
    pub fn set_admin_user(&self, user: &str) {
        self.shared.users.set_admin(user);
    }

    /// Turns the gate back to Ready with a freshly opened database.
    pub fn make_ready(&self, db: Db) {
        *self.shared.state.write() = ClusterState::Ready(Arc::new(db));
        tracing::info!("cluster ready");
    }

    /// True while the gate is Ready.
    pub fn is_ready(&self) -> bool {
        self.shared.state.read().is_ready()
    }

    /// Number of open client connections.
    pub fn connection_count(&self) -> i64 {
        self.shared
            .counters
            .current_connections
            .load(Ordering::Relaxed)
    }

    /// Number of open cursors.
    pub fn open_cursors(&self) -> usize {
        self.shared.cursors.len()
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    max_connections: usize,
    handshake_timeout: Duration,
) {
    let limit = Arc::new(Semaphore::new(max_connections));
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            shared
                .counters
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, max_connections, "connection limit reached; closing");
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        let mut shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(socket));
                    let outcome = tokio::select! {
                        r = handshake => r,
                        _ = shutdown.changed() => return,
                    };
                    match outcome {
                        Ok(Ok(tls)) => serve(shared, tls, peer, shutdown).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve(shared, socket, peer, shutdown).await,
            }
        });
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

async fn reap_cursors(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let period = (shared.cursors.idle_timeout() / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {
                let n = shared.cursors.reap_idle();
                if n > 0 {
                    tracing::debug!(cursors = n, "closed idle cursors");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Deletes expired documents of TTL indexes, periodically, while the gate is Ready.
async fn ttl_monitor(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>, period: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let Ok(db) = shared.db() else { continue };
        let outcome =
            tokio::task::spawn_blocking(move || db.expire_ttl(bson::DateTime::now())).await;
        match outcome {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(documents = n, "TTL monitor removed expired documents"),
            Ok(Err(e)) => tracing::warn!(code = e.code, "TTL monitor pass failed"),
            Err(e) => tracing::warn!(error = %e, "TTL monitor task failed"),
        }
    }
}

/// What to do after a frame.
enum Outcome {
    Reply(Vec<u8>),
    NoReply,
    Close,
}

async fn serve<S: Stream>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut epoch = shared.epoch.subscribe();
    let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .current_connections
        .fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .total_connections
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(conn = id, %peer, "connection opened");
    let mut conn = Connection::new(stream);
    let mut client = Client::new(id, peer);
    let mut response_id: i32 = 1;
    // When the connection must have authenticated (while it has not), or when it has
    // been idle too long (once it has). The timer is reset lazily: it fires at the
    // deadline it was set to and is pushed back if the connection was active meanwhile,
    // so a request costs no timer operation.
    let mut unauthenticated_since = tokio::time::Instant::now();
    let mut last_request = unauthenticated_since;
    let timer = tokio::time::sleep_until(after(unauthenticated_since, shared.pre_auth_timeout));
    tokio::pin!(timer);
    loop {
        conn.set_max_message(if client.user.is_some() {
            message::MAX_MESSAGE_SIZE
        } else {
            message::MAX_PRE_AUTH_MESSAGE_SIZE
        });
        // Poll for the next request only after one this connection had to itself, only
        // while no other connection has started one since, and never while the engine
        // has flushes or compactions to do: their threads need the CPU a poll would take.
        let budget = if !shared.idle_poll.is_zero()
            && client.alone
            && !shared.db().is_ok_and(|db| db.maintenance_pending())
        {
            shared.idle_poll
        } else {
            Duration::ZERO
        };
        let counters = &shared.counters;
        let still_alone = || {
            counters.last_requester.load(Ordering::Relaxed) == id
                && counters.in_flight.load(Ordering::Relaxed) == 0
        };
        let slept = || {
            counters.idle_poll_slept.fetch_add(1, Ordering::Relaxed);
        };
        let (frame, polling) = tokio::select! {
            r = conn.read_frame_polling(budget, still_alone, slept) => r,
            _ = &mut timer => {
                let deadline = connection_deadline(&shared, &client, unauthenticated_since, last_request);
                if tokio::time::Instant::now() >= deadline {
                    if client.user.is_some() {
                        tracing::debug!(conn = id, "closing idle connection");
                    } else {
                        tracing::debug!(conn = id, "closing connection that did not authenticate in time");
                    }
                    break;
                }
                timer.as_mut().reset(deadline);
                continue;
            }
            _ = shutdown.changed() => break,
            _ = epoch.changed() => break,
        };
        if polling == Polling::Found && matches!(frame, Ok(Some(_))) {
            counters.idle_poll_found.fetch_add(1, Ordering::Relaxed);
        }
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(conn = id, error = %e, "closing connection on framing error");
                break;
            }
        };
        response_id = response_id.wrapping_add(1);
        // "Alone" needs both: with other clients active, their requests may be waiting
        // unread in their sockets while nothing else is in flight here, but then the
        // previous request came from one of them.
        let busy = shared.counters.in_flight.fetch_add(1, Ordering::AcqRel);
        let previous = shared.counters.last_requester.swap(id, Ordering::AcqRel);
        client.alone = busy == 0 && previous == id;
        let was_authenticated = client.user.is_some();
        let (outcome, heartbeat) = handle_frame(&shared, &mut client, &frame, response_id).await;
        shared.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
        last_request = tokio::time::Instant::now();
        if heartbeat && client.user.is_none() {
            // A monitoring connection's heartbeat (see `ServerConfig::pre_auth_timeout`);
            // the timer notices the later deadline when it fires.
            unauthenticated_since = last_request;
        }
        if client.user.is_some() != was_authenticated {
            // Logged in (the idle deadline applies) or out (the pre-auth clock restarts).
            unauthenticated_since = last_request;
            timer.as_mut().reset(connection_deadline(
                &shared,
                &client,
                unauthenticated_since,
                last_request,
            ));
        }
        match outcome {
            Outcome::Reply(bytes) => {
                // A client that stops reading must not hold up shutdown or the gate, nor
                // keep its reply (up to 48 MB) past the deadline an idle client gets.
                let deadline =
                    connection_deadline(&shared, &client, unauthenticated_since, last_request);
                let written = tokio::select! {
                    r = tokio::time::timeout_at(deadline, conn.write_frame(&bytes)) => r,
                    _ = shutdown.changed() => break,
                    _ = epoch.changed() => break,
                };
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(conn = id, error = %e, "write failed");
                        break;
                    }
                    Err(_) => {
                        tracing::debug!(
                            conn = id,
                            "closing connection that does not read its replies"
                        );
                        break;
                    }
                }
            }
            Outcome::NoReply => {}
            Outcome::Close => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.shutdown()).await;
    // A connection's logical sessions outlive it in MongoDB (they time out); its
    // cursors stay too, bounded by the idle timeout.
    shared
        .counters
        .current_connections
        .fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(conn = id, "connection closed");
}

/// When a connection is closed unless it does something: [`ServerConfig::pre_auth_timeout`]
/// after it opened or logged out while it is unauthenticated,
/// [`ServerConfig::idle_timeout`] after its last request once it has authenticated.
fn connection_deadline(
    shared: &Shared,
    client: &Client,
    unauthenticated_since: tokio::time::Instant,
    last_request: tokio::time::Instant,
) -> tokio::time::Instant {
    match client.user {
        None => after(unauthenticated_since, shared.pre_auth_timeout),
        Some(_) => after(last_request, shared.idle_timeout),
    }
}

/// `t + d`, saturating at about thirty years for "never" (`Duration::MAX`).
fn after(t: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(30 * 365 * 24 * 3600))
}

/// Handles one frame; the flag tells whether it was a `hello`/`isMaster` (a heartbeat).
async fn handle_frame(
    shared: &Arc<Shared>,
    client: &mut Client,
    frame: &[u8],
    response_id: i32,
) -> (Outcome, bool) {
    // Before authentication, messages are small (the connection enforces it) and
    // decompress to no more; compression only with what `hello` negotiated.
    let limits = message::Limits {
        max_message: if client.user.is_some() {
            message::MAX_MESSAGE_SIZE
        } else {
            message::MAX_PRE_AUTH_MESSAGE_SIZE
        },
        compressors: &client.compressors,
    };
    let incoming = match message::decode_within(frame, &limits) {
        Ok(i) => i,
        Err(e) => return (protocol_error_reply(frame, e, response_id), false),
    };
    let Incoming {
        header,
        request,
        compressor,
    } = incoming;
    let first_key = match &request {
        Request::Msg(msg) => msg.body.keys().next(),
        Request::Query(query) => query
            .query
            .get_document("$query")
            .unwrap_or(&query.query)
            .keys()
            .next(),
    };
    let heartbeat =
        first_key.is_some_and(|k| matches!(k.as_str(), "hello" | "isMaster" | "ismaster"));
    let outcome = match request {
        Request::Msg(msg) => {
            let more_to_come = msg.more_to_come();
            let reply = match msg.body.get("$db") {
                Some(bson::Bson::String(db)) => {
                    let db = db.clone();
                    cmd::execute(shared, client, db, msg.body).await
                }
                _ => cmd::Reply::Doc(
                    CommandError::new(
                        crate::error::code::location(40571),
                        "OP_MSG requests require a $db argument",
                    )
                    .to_document(),
                ),
            };
            if more_to_come {
                return (Outcome::NoReply, heartbeat);
            }
            // A reply is compressed exactly when its request was: clients never compress
            // the handshake and authentication commands, so their replies stay plain too.
            let encoded = match &reply {
                cmd::Reply::Doc(d) => {
                    message::encode_msg(response_id, header.request_id, d, compressor)
                }
                cmd::Reply::Raw(r) => {
                    message::encode_msg_raw(response_id, header.request_id, r, compressor)
                }
            };
            encode_or_error(encoded, |d| {
                message::encode_msg(response_id, header.request_id, d, None)
            })
        }
        Request::Query(query) => {
            let reply = legacy_query(shared, client, query).await;
            encode_or_error(
                message::encode_reply(response_id, header.request_id, &reply, None),
                |d| message::encode_reply(response_id, header.request_id, d, None),
            )
        }
    };
    (outcome, heartbeat)
}

fn encode_or_error(
    encoded: Result<Vec<u8>, ProtocolError>,
    fallback: impl Fn(&Document) -> Result<Vec<u8>, ProtocolError>,
) -> Outcome {
    match encoded {
        Ok(bytes) => Outcome::Reply(bytes),
        Err(e) => {
            let err = CommandError::new(
                crate::error::code::BSON_OBJECT_TOO_LARGE,
                format!("reply could not be sent: {e}"),
            );
            match fallback(&err.to_document()) {
                Ok(bytes) => Outcome::Reply(bytes),
                Err(_) => Outcome::Close,
            }
        }
    }
}

/// A legacy `OP_QUERY`: only the handshake (`hello`/`isMaster` on `<db>.$cmd`) is served,
/// as in MongoDB 5.1+; anything else gets `UnsupportedOpQueryCommand` (352).
async fn legacy_query(
    shared: &Arc<Shared>,
    client: &mut Client,
    query: message::OpQuery,
) -> Document {
    let Some(db) = query.full_collection_name.strip_suffix(".$cmd") else {
        return CommandError::new(
            crate::error::code::UNSUPPORTED_OP_QUERY_COMMAND,
            "OP_QUERY is no longer supported for queries; use OP_MSG",
        )
        .to_document();
    };
    let mut body = query.query;
    // Drivers may wrap the command as {$query: {...}, $readPreference: ...}.
    if let Ok(inner) = body.get_document("$query") {
        body = inner.clone();
    }
    let name = body.keys().next().cloned().unwrap_or_default();
    if !matches!(name.as_str(), "hello" | "isMaster" | "ismaster") {
        return CommandError::new(
            crate::error::code::UNSUPPORTED_OP_QUERY_COMMAND,
            format!(
                "Unsupported OP_QUERY command: {}. The client driver may require an upgrade.",
                truncate(&name, 64)
            ),
        )
        .to_document();
    }
    cmd::execute(shared, client, db.to_string(), body)
        .await
        .into_document()
}

fn protocol_error_reply(frame: &[u8], e: ProtocolError, response_id: i32) -> Outcome {
    tracing::debug!(error = %e, "invalid message");
    let Ok(header) = message::Header::parse(frame) else {
        return Outcome::Close;
    };
    match e {
        // Bytes we cannot interpret at all, or a sender that asked for no reply: close.
        ProtocolError::UnknownOpcode(_) => return Outcome::Close,
        _ if header.op_code == opcode::OP_MSG
            && frame.len() >= 20
            && u32::from_le_bytes([frame[16], frame[17], frame[18], frame[19]])
                & message::msg_flags::MORE_TO_COME
                != 0 =>
        {
            return Outcome::Close;
        }
        _ => {}
    }
    let err = CommandError::from(e).to_document();
    let encoded = if header.op_code == opcode::OP_QUERY {
        message::encode_reply(response_id, header.request_id, &err, None)
    } else {
        message::encode_msg(response_id, header.request_id, &err, None)
    };
    match encoded {
        Ok(bytes) => Outcome::Reply(bytes),
        Err(_) => Outcome::Close,
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
