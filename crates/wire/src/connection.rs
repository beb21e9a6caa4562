//! Framing over a byte stream (TLS in production, TCP only when explicitly insecure).
//!
//! A MongoDB message announces its own length in its first four bytes. The connection
//! reads exactly that many bytes into a buffer, after checking the length is plausible
//! (at least a header, at most [`MAX_MESSAGE_SIZE`]) so a client cannot make the server
//! allocate or wait for an absurd amount. The buffer only grows as bytes actually arrive.

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
}

/// A framed connection.
pub struct Connection<S> {
    stream: S,
    buffer: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Connection<S> {
        Connection {
            stream,
            buffer: BytesMut::with_capacity(16 * 1024),
        }
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
                if self.buffer.len() >= len {
                    let frame = self.buffer[..len].to_vec();
                    self.buffer.advance(len);
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
