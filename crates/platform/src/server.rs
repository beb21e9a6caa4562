//! The HTTPS accept loop every Strongroom service uses: TLS handshake with a timeout,
//! HTTP/1.1 or HTTP/2 (ALPN), the peer's address and client certificate handed to
//! handlers as a [`Peer`] request extension, and graceful shutdown that drains
//! in-flight requests for a bounded time.
//!
//! What a hostile client can hold is bounded by [`Limits`]: the TLS handshake must
//! finish within `tls_handshake_timeout` however slowly its bytes arrive; HTTP/1.1
//! request headers must arrive within `header_read_timeout` (hyper's timer, which also
//! runs while a keep-alive connection waits for its next request); a connection that
//! moves no byte for `idle_timeout` is closed (HTTP/2 included, where hyper has no idle
//! timeout of its own); an HTTP/2 connection carries at most `max_concurrent_streams`
//! requests at once (HTTP/1.1 serves one at a time); request headers are at most
//! `max_header_bytes`; and at most `max_connections` connections are served at once,
//! further clients waiting in the kernel's accept backlog. Request bodies are bounded
//! where they are read: axum's extractors refuse bodies over 2 MB by default, and the
//! key vault reads raw bodies through `http_body_util::Limited` (4 MiB).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What one client may hold of a server; [`Limits::default`] is what the services use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The whole TLS handshake (10 s).
    pub tls_handshake_timeout: Duration,
    /// An HTTP/1.1 request's headers, from when the connection starts waiting for them
    /// (30 s, hyper's own default once a timer is set). The clock runs while a keep-alive
    /// connection waits for its next request too, so an idle HTTP/1.1 connection is
    /// closed after this; clients notice the close before reusing a pooled connection,
    /// except in the instant it happens.
    pub header_read_timeout: Duration,
    /// A connection with no byte read or written for this long is closed, gracefully:
    /// a request being handled is finished first (60 s).
    pub idle_timeout: Duration,
    /// Connections served at once (1024); further clients wait in the accept backlog.
    pub max_connections: usize,
    /// Requests in flight on one HTTP/2 connection (64).
    pub max_concurrent_streams: u32,
    /// Size of a request's headers (64 KiB).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_concurrent_streams: 64,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Who is on the other end of a request's connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The client presented a certificate from the service CA naming it a first-party
    /// trusted service (see [`pki::TRUSTED_SERVICE_URI`]).
    pub trusted_service: bool,
}

/// A running HTTPS server.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `router` on an already bound `listener` with the default [`Limits`].
    pub fn serve(
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        router: Router,
    ) -> std::io::Result<Server> {
        Server::serve_with(listener, tls, router, Limits::default())
    }

    /// Serves `router` on an already bound `listener` within `limits`.
    pub fn serve_with(
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        router: Router,
        limits: Limits,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(tls),
            router,
            stop_rx,
            limits,
        ));
        Ok(Server { addr, stop, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish (bounded), and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "accept loop ended abnormally");
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) {
    let mut conns = JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // Requests and answers are small and latency-bound (a wrapKey, a token):
                    // never let Nagle hold a response's last segment for the peer's ACK.
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
                    }
                    let (acceptor, router, stop) = (acceptor.clone(), router.clone(), stop.clone());
                    conns.spawn(async move {
                        serve_connection(tcp, peer, acceptor, router, stop, limits).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
        // Wait for the cancellations, so that no connection still holds the service's
        // state (and, with it, a data-directory lock) when `shutdown` returns.
        while conns.join_next().await.is_some() {}
    }
}

async fn serve_connection(
    tcp: TcpStream,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) {
    let handshake = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp));
    let tls = match handshake.await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "TLS handshake timed out");
            return;
        }
    };
    let trusted_service = tls
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(pki::is_trusted_service);
    let peer = Peer {
        addr,
        trusted_service,
    };
    let activity = Arc::new(Activity::new());
    let busy = activity.clone();
    let service = router
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let busy = busy.clone();
                async move {
                    let _request = busy.begin();
                    next.run(req).await
                }
            },
        ))
        .layer(axum::Extension(peer));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let io = Tracked {
        inner: tls,
        activity: activity.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(conn);
    // Checked a few times per idle period: a connection is closed between
    // `idle_timeout` and 1.25 × `idle_timeout` after its last byte.
    let mut tick = tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%addr, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tick.tick() => {
                if activity.in_flight.load(Ordering::Relaxed) == 0
                    && activity.idle_for() >= limits.idle_timeout
                {
                    tracing::debug!(%addr, "closing idle connection");
                    conn.as_mut().graceful_shutdown();
                    // Nothing is in flight: the close only has to tell the client. An
                    // HTTP/2 client that never acknowledges the GOAWAY's PING would
                    // otherwise hold it open, so the wait is bounded.
                    let grace = limits.idle_timeout.min(DRAIN_TIMEOUT);
                    let _ = tokio::time::timeout(grace, conn.as_mut()).await;
                    return;
                }
            }
            _ = stop.changed() => break,
        }
    }
    // Finishes requests in flight (bounded by the accept loop's drain) and closes.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// When a connection last moved a byte, and how many of its requests are being
/// handled: a connection is idle when none is and no byte moved for the idle timeout
/// (a handler may take long without a byte on the wire).
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last read or write.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

/// A request being handled; see [`Activity`].
struct InFlight<'a>(&'a Activity);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// A stream that records its reads and writes in an [`Activity`].
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
