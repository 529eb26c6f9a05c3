//! A TCP stream read and written as frames. Framing rules live in [`crate::wire`]; this file
//! only moves bytes.

use crate::error::{Error, ErrorCode, Result};
use crate::limits::{FRAME_PREFIX_BYTES, IO_SLICE_BYTES};
use crate::wire::{frame_len, FrameError};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// One peer's stream with its read buffer.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
    frame_bytes_max: usize,
}

impl Connection {
    /// Connects to `addr` (`host:port`) within `timeout_ms`; replies larger than
    /// `frame_bytes_max` are refused.
    pub async fn connect(
        addr: &str,
        timeout_ms: u64,
        frame_bytes_max: usize,
    ) -> Result<Connection> {
        let timeout = std::time::Duration::from_millis(timeout_ms);
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                Error::refused(
                    ErrorCode::Unreachable,
                    format!("failed to connect to {addr} within {timeout_ms} ms"),
                )
            })?
            .map_err(|e| Error::io(format!("failed to connect to {addr}"), e))?;
        Ok(Connection::new(stream, frame_bytes_max))
    }

    /// Wraps `stream`; frames announcing more than `frame_bytes_max` payload bytes are refused.
    pub fn new(stream: TcpStream, frame_bytes_max: usize) -> Self {
        // Small request/reply exchanges: Nagle would add up to 40 ms to each.
        let _ = stream.set_nodelay(true);
        Connection {
            stream,
            buffer: BytesMut::with_capacity(4096),
            frame_bytes_max,
        }
    }

    /// The next frame's payload, or `None` when the peer closed cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(total) = frame_len(&self.buffer, self.frame_bytes_max)? {
                let payload = self.buffer[FRAME_PREFIX_BYTES..total].to_vec();
                self.buffer.advance(total);
                return Ok(Some(payload));
            }
            let read = (&mut self.stream)
                .take(IO_SLICE_BYTES as u64)
                .read_buf(&mut self.buffer)
                .await
                .map_err(|e| Error::io("failed to read from connection", e))?;
            if read == 0 {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated {
                        bytes: self.buffer.len(),
                    }
                    .into())
                };
            }
        }
    }

    /// Writes one whole frame (prefix included).
    pub async fn write_frame(&mut self, frame: &[u8]) -> Result<()> {
        write_in_slices(&mut self.stream, frame)
            .await
            .map_err(|e| Error::io("failed to write to connection", e))
    }
}

/// Writes `data` at most IO_SLICE_BYTES per system call.
pub async fn write_in_slices<W: AsyncWrite + Unpin>(
    to: &mut W,
    data: &[u8],
) -> std::io::Result<()> {
    for slice in data.chunks(IO_SLICE_BYTES) {
        to.write_all(slice).await?;
    }
    Ok(())
}
