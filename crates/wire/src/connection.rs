//! Framing over a byte stream (TLS in production, TCP only when explicitly insecure).
//!
//! A MongoDB message announces its own length in its first four bytes. The connection
//! reads exactly that many bytes into a buffer, after checking the length is plausible
//! (at least a header, at most [`MAX_MESSAGE_SIZE`], and at most the connection's current
//! limit: [`crate::message::MAX_PRE_AUTH_MESSAGE_SIZE`] before authentication) so a client
//! cannot make the server allocate or wait for an absurd amount. The buffer only grows as
//! bytes actually arrive, and shrinks back once a large message has been taken out of it.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::message::{HEADER_LEN, MAX_MESSAGE_SIZE};

/// Why reading a frame failed. Any of these ends the connection: once a length is wrong,
/// the stream cannot be re-synchronised.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("message length {0} is out of range [16, 48000000]")]
    BadLength(i64),
    #[error("connection closed in the middle of a message")]
    Truncated,
    #[error("message length {len} exceeds this connection's limit of {max}")]
    TooLarge { len: usize, max: usize },
}

/// The read buffer's capacity when a connection opens.
const INITIAL_CAPACITY: usize = 16 * 1024;
/// A read buffer grown past this (by a large message) is replaced by a fresh one of
/// [`INITIAL_CAPACITY`] once the message is taken out: an idle connection that once
/// received a 40 MB insert must not keep 40 MB reserved. Below it, nothing is reallocated.
pub const RETAINED_CAPACITY: usize = 64 * 1024;

/// How [`Connection::read_frame_polling`] came by its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polling {
    /// No polling was asked for: the task waited as usual.
    Off,
    /// The frame (or the end of the stream) arrived while the task was polling.
    Found,
    /// Polling ended (budget spent, or `keep_polling` said stop) and the task waited.
    Slept,
}

/// A framed connection.
pub struct Connection<S> {
    stream: S,
    buffer: BytesMut,
    /// Longest message accepted now (header included); never above [`MAX_MESSAGE_SIZE`].
    max_message: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Connection<S> {
        Connection {
            stream,
            buffer: BytesMut::with_capacity(INITIAL_CAPACITY),
            max_message: MAX_MESSAGE_SIZE,
        }
    }

    /// Sets the longest message accepted from now on (capped at [`MAX_MESSAGE_SIZE`]).
    /// A longer one ends the connection as soon as its length is read: its body is
    /// never read nor buffered.
    pub fn set_max_message(&mut self, max: usize) {
        self.max_message = max.min(MAX_MESSAGE_SIZE);
    }

    /// What the read buffer holds reserved right now (for tests and diagnostics).
    pub fn buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// Reads one complete message (header included). `Ok(None)` is a clean close between
    /// messages.
    pub async fn read_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        loop {
            if self.buffer.len() >= 4 {
                let len = i32::from_le_bytes([
                    self.buffer[0],
                    self.buffer[1],
                    self.buffer[2],
                    self.buffer[3],
                ]);
                if len < HEADER_LEN as i32 || len as usize > MAX_MESSAGE_SIZE {
                    return Err(FrameError::BadLength(len as i64));
                }
                let len = len as usize;
                if len > self.max_message {
                    return Err(FrameError::TooLarge {
                        len,
                        max: self.max_message,
                    });
                }
                if self.buffer.len() >= len {
                    let frame = self.buffer[..len].to_vec();
                    // Measured before the frame is consumed: afterwards `capacity` counts
                    // only what lies past it, not the allocation still held.
                    let held = self.buffer.capacity();
                    self.buffer.advance(len);
                    if held > RETAINED_CAPACITY {
                        self.shrink();
                    }
                    return Ok(Some(frame));
                }
                // Reserve for the rest of this message, but never more than what is
                // needed; large messages arrive in many reads anyway.
                let want = (len - self.buffer.len()).min(4 * 1024 * 1024);
                self.buffer.reserve(want);
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    /// Gives a buffer grown by a large message back to the allocator, keeping any bytes
    /// of the next message already read.
    fn shrink(&mut self) {
        let rest = self.buffer.split();
        let mut fresh = BytesMut::with_capacity(INITIAL_CAPACITY.max(rest.len()));
        fresh.extend_from_slice(&rest);
        self.buffer = fresh;
    }

    /// [`Connection::read_frame`], but for up to `budget` the task keeps polling for the
    /// frame (yielding to every other ready task in between) instead of letting its
    /// worker thread sleep, for as long as `keep_polling` holds.
    ///
    /// Why: a thread that sleeps in `epoll_wait` between a client's requests is woken
    /// through the scheduler, and on a virtual machine by an inter-processor interrupt
    /// that exits to the hypervisor on both sides. Here, polling took a single-client
    /// point read's round trip from about 160 µs to about 80 µs (docs/benchmarks.md, Run
    /// 13); the server's own work for the read is about 10 µs.
    /// While the worker polls, the request's arrival needs no wake-up at all. Each turn
    /// of the loop costs one `epoll_wait` with a zero timeout: a yielded task runs again
    /// only after the runtime has polled its I/O driver without blocking, and after
    /// every other task that became ready. ScyllaDB's reactor does the same before it
    /// sleeps (`--idle-poll-time-us`, 200 µs by default). The price is CPU: up to
    /// `budget` of one core after each reply, which is why the server asks for it only
    /// when a connection has it to itself. `gave_up` runs when polling ends without a
    /// frame, before the task waits.
    pub async fn read_frame_polling(
        &mut self,
        budget: Duration,
        keep_polling: impl Fn() -> bool,
        gave_up: impl FnOnce(),
    ) -> (Result<Option<Vec<u8>>, FrameError>, Polling) {
        let mut read = pin!(self.read_frame());
        if budget.is_zero() {
            return (read.await, Polling::Off);
        }
        let until = Instant::now() + budget;
        loop {
            if let Poll::Ready(r) = poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await {
                return (r, Polling::Found);
            }
            if !keep_polling() || Instant::now() >= until {
                gave_up();
                return (read.await, Polling::Slept);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Writes one encoded message and flushes it.
    pub async fn write_frame(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Closes the write side (TLS close_notify, TCP FIN).
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use tokio::io::{AsyncWriteExt, DuplexStream, duplex};

    use super::*;

    /// The smallest well-formed frame: a header announcing its own 16 bytes.
    const FRAME: [u8; 16] = [16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0x07, 0, 0];

    fn pair() -> (Connection<DuplexStream>, DuplexStream) {
        let (server, client) = duplex(1024);
        (Connection::new(server), client)
    }

    /// Writes [`FRAME`] to `peer` after `delay`, keeping `peer` open until then.
    fn write_after(mut peer: DuplexStream, delay: Duration) {
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            peer.write_all(&FRAME).await.expect("write");
            peer
        });
    }

    // The runtime has one thread: the peer can only write if polling yields to it.
    #[tokio::test(flavor = "current_thread")]
    async fn polling_yields_to_other_tasks_and_finds_the_frame() {
        let (mut conn, mut peer) = pair();
        let writer = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            peer.write_all(&FRAME).await.expect("write");
            peer
        });
        let (frame, polling) = conn
            .read_frame_polling(Duration::from_secs(30), || true, || panic!("gave up"))
            .await;
        assert_eq!(frame.expect("read").as_deref(), Some(&FRAME[..]));
        assert_eq!(polling, Polling::Found);
        drop(writer.await.expect("writer"));
    }

    /// A frame of `len` bytes: a header announcing it, then zeros.
    fn frame_of(len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[0..4].copy_from_slice(&(len as i32).to_le_bytes());
        f[12..16].copy_from_slice(&2013i32.to_le_bytes());
        f
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_buffer_shrinks_after_a_large_frame() {
        let (server, mut peer) = duplex(64 * 1024);
        let mut conn = Connection::new(server);
        let big = frame_of(3 * 1024 * 1024);
        let writer = tokio::spawn(async move {
            peer.write_all(&big).await.expect("write");
            peer.write_all(&FRAME).await.expect("write");
            peer
        });
        let frame = conn.read_frame().await.expect("read").expect("frame");
        assert_eq!(frame.len(), 3 * 1024 * 1024);
        // `try_reclaim` succeeds without allocating only if the old allocation is
        // still held.
        assert!(
            !conn.buffer.try_reclaim(1024 * 1024),
            "the large frame's buffer is still held"
        );
        assert!(conn.buffer_capacity() <= RETAINED_CAPACITY);
        // Bytes of the next frame that arrived with the large one are kept.
        let next = conn.read_frame().await.expect("read").expect("frame");
        assert_eq!(next, FRAME);
        drop(writer.await.expect("writer"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_frame_over_the_connection_limit_ends_it_before_its_body() {
        let (mut conn, mut peer) = pair();
        conn.set_max_message(16 * 1024);
        // Only the length is sent: the error must come without waiting for the body.
        peer.write_all(&48_000_000i32.to_le_bytes())
            .await
            .expect("write");
        let err = conn.read_frame().await.expect_err("too large");
        assert!(
            matches!(
                err,
                FrameError::TooLarge {
                    len: 48_000_000,
                    max: 16_384
                }
            ),
            "{err:?}"
        );
        assert!(conn.buffer_capacity() <= RETAINED_CAPACITY);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_spent_budget_waits_for_the_frame() {
        let (mut conn, peer) = pair();
        write_after(peer, Duration::from_millis(50));
        let gave_up = Cell::new(false);
        let (frame, polling) = conn
            .read_frame_polling(Duration::from_millis(1), || true, || gave_up.set(true))
            .await;
        assert!(gave_up.get());
        assert_eq!(frame.expect("read").as_deref(), Some(&FRAME[..]));
        assert_eq!(polling, Polling::Slept);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn polling_stops_at_the_first_no() {
        let (mut conn, peer) = pair();
        write_after(peer, Duration::from_millis(20));
        let asked = Cell::new(0);
        let (frame, polling) = conn
            .read_frame_polling(
                Duration::from_secs(30),
                || {
                    asked.set(asked.get() + 1);
                    false
                },
                || {},
            )
            .await;
        assert_eq!(frame.expect("read").as_deref(), Some(&FRAME[..]));
        assert_eq!(polling, Polling::Slept);
        assert_eq!(asked.get(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_budget_is_a_plain_read_and_a_close_ends_a_poll() {
        let (mut conn, mut peer) = pair();
        peer.write_all(&FRAME).await.expect("write");
        let (frame, polling) = conn
            .read_frame_polling(Duration::ZERO, || true, || panic!("gave up"))
            .await;
        assert_eq!(frame.expect("read").as_deref(), Some(&FRAME[..]));
        assert_eq!(polling, Polling::Off);

        // Half a frame, then the peer goes away: the poll reports the truncation.
        peer.write_all(&FRAME[..6]).await.expect("write");
        drop(peer);
        let (frame, polling) = conn
            .read_frame_polling(Duration::from_secs(30), || true, || panic!("gave up"))
            .await;
        assert!(matches!(frame, Err(FrameError::Truncated)), "{frame:?}");
        assert_eq!(polling, Polling::Found);
    }
}
