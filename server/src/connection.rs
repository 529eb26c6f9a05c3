//! A TCP stream, plain or TLS, read and written as frames. Framing rules live in
//! [`crate::wire`]; this file only moves bytes.

use crate::error::{Error, ErrorCode, Result};
use crate::limits::{FRAME_PREFIX_BYTES, IO_SLICE_BYTES};
use crate::wire::{frame_len, FrameError};
use bytes::{Buf, BytesMut};
use rustls::pki_types::ServerName;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A byte stream a connection runs over: plain TCP or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// How connections are made.
#[derive(Clone)]
pub enum Transport {
    /// Plain TCP: anyone on the path reads and changes everything. Only behind an
    /// `--insecure-plaintext` flag.
    InsecurePlaintext,
    /// TLS 1.3 through `connector` (which holds the CA to verify the server with, and for a
    /// node its own certificate).
    Tls {
        /// The TLS configuration.
        connector: tokio_rustls::TlsConnector,
        /// The name the server must prove; by default the host connected to.
        server_name: Option<ServerName<'static>>,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::InsecurePlaintext => f.write_str("InsecurePlaintext"),
            Transport::Tls { server_name, .. } => write!(f, "Tls({server_name:?})"),
        }
    }
}

/// How long a server waits on a client (see [`Connection::read_frame_within`]).
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// For a frame to begin.
    pub idle: std::time::Duration,
    /// For a frame to arrive whole.
    pub frame: std::time::Duration,
}

/// One peer's stream with its read buffer.
pub struct Connection {
    stream: Box<dyn Stream>,
    buffer: BytesMut,
    frame_bytes_max: usize,
    last_used: Instant,
    /// When the first bytes of the frame now buffered arrived.
    frame_started: Option<Instant>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("buffered", &self.buffer.len())
            .field("frame_bytes_max", &self.frame_bytes_max)
            .finish()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) over `transport` within `timeout_ms` (TLS handshake
    /// included); replies larger than `frame_bytes_max` are refused.
    pub async fn connect(
        addr: &str,
        timeout_ms: u64,
        frame_bytes_max: usize,
        transport: &Transport,
    ) -> Result<Connection> {
        let timeout = std::time::Duration::from_millis(timeout_ms);
        let connect = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| Error::io(format!("failed to connect to {addr}"), e))?;
            let _ = stream.set_nodelay(true);
            Ok::<Box<dyn Stream>, Error>(match transport {
                Transport::InsecurePlaintext => Box::new(stream),
                Transport::Tls {
                    connector,
                    server_name,
                } => {
                    let name = match server_name {
                        Some(name) => name.clone(),
                        None => crate::security::tls::server_name_of(addr)?,
                    };
                    let tls = connector.connect(name, stream).await.map_err(|e| {
                        Error::refused(
                            ErrorCode::Unreachable,
                            format!("TLS handshake with {addr} failed: {e}"),
                        )
                    })?;
                    Box::new(tls)
                }
            })
        };
        let stream = tokio::time::timeout(timeout, connect).await.map_err(|_| {
            Error::refused(
                ErrorCode::Unreachable,
                format!("failed to connect to {addr} within {timeout_ms} ms"),
            )
        })??;
        Ok(Connection::over(stream, frame_bytes_max))
    }

    /// Wraps a plain TCP `stream`; frames announcing more than `frame_bytes_max` payload bytes
    /// are refused.
    pub fn new(stream: TcpStream, frame_bytes_max: usize) -> Self {
        // Small request/reply exchanges: Nagle would add up to 40 ms to each.
        let _ = stream.set_nodelay(true);
        Connection::over(Box::new(stream), frame_bytes_max)
    }

    /// Wraps any stream (Nagle already off on its socket).
    pub fn over(stream: Box<dyn Stream>, frame_bytes_max: usize) -> Self {
        Connection {
            stream,
            buffer: BytesMut::with_capacity(4096),
            frame_bytes_max,
            last_used: Instant::now(),
            frame_started: None,
        }
    }

    /// How long since a frame was last read or written whole.
    pub fn idle_for(&self) -> std::time::Duration {
        self.last_used.elapsed()
    }

    /// The next frame's payload, or `None` when the peer closed cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Vec<u8>>> {
        self.read_frame_within(None).await
    }

    /// As [`Connection::read_frame`], but with `limits` the wait ends in an error (kind
    /// `TimedOut`) when no frame begins within `idle` of the last one, or a frame begun does
    /// not arrive whole within `frame`.
    pub async fn read_frame_within(
        &mut self,
        limits: Option<ReadLimits>,
    ) -> Result<Option<Vec<u8>>> {
        loop {
            let framed = frame_len(&self.buffer, self.frame_bytes_max);
            if matches!(framed, Err(FrameError::TooLarge { .. })) && looks_like_tls(&self.buffer) {
                return Err(Error::refused(
                    ErrorCode::Unreachable,
                    "the other side speaks TLS and this connection is plain TCP: connect with \
                     TLS (idclient --tls-ca)",
                ));
            }
            if let Some(total) = framed? {
                let payload = self.buffer[FRAME_PREFIX_BYTES..total].to_vec();
                self.buffer.advance(total);
                self.last_used = Instant::now();
                self.frame_started = (!self.buffer.is_empty()).then_some(self.last_used);
                return Ok(Some(payload));
            }
            let mut slice = (&mut self.stream).take(IO_SLICE_BYTES as u64);
            let read = slice.read_buf(&mut self.buffer);
            let read = match limits {
                None => read.await,
                Some(limits) => {
                    // A frame's time counts from its first bytes: more that trickle in do
                    // not buy more.
                    let deadline = match self.frame_started {
                        None => self.last_used + limits.idle,
                        Some(started) => started + limits.frame,
                    };
                    match tokio::time::timeout_at(deadline, read).await {
                        Ok(read) => read,
                        Err(_) => Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            if self.frame_started.is_none() {
                                "idle for too long"
                            } else {
                                "a frame arrived too slowly"
                            },
                        )),
                    }
                }
            }
            .map_err(|e| Error::io("failed to read from connection", e))?;
            if self.frame_started.is_none() && !self.buffer.is_empty() {
                self.frame_started = Some(Instant::now());
            }
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
            .map_err(|e| Error::io("failed to write to connection", e))?;
        self.flush().await
    }

    /// Writes one whole frame, failing once the other end has taken nothing for `stall` (a
    /// peer that stops reading would otherwise hold the frame, and this task, for ever). A
    /// slow reader that keeps taking slices gets the whole frame, however long it is.
    pub async fn write_frame_within(&mut self, frame: &[u8], stall: Duration) -> Result<()> {
        let stalled = || {
            Error::io(
                "failed to write to connection",
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the other end read nothing for {} ms", stall.as_millis()),
                ),
            )
        };
        for slice in frame.chunks(IO_SLICE_BYTES) {
            tokio::time::timeout(stall, self.stream.write_all(slice))
                .await
                .map_err(|_| stalled())?
                .map_err(|e| Error::io("failed to write to connection", e))?;
        }
        tokio::time::timeout(stall, self.flush())
            .await
            .map_err(|_| stalled())?
    }

    /// TLS buffers what it encrypts: pushes it out.
    async fn flush(&mut self) -> Result<()> {
        self.stream
            .flush()
            .await
            .map_err(|e| Error::io("failed to write to connection", e))?;
        self.last_used = Instant::now();
        Ok(())
    }
}

/// Whether `buf` starts like a TLS record (handshake or alert, TLS 1.0 to 1.3): what a plain
/// TCP peer reads as a huge length prefix.
fn looks_like_tls(buf: &[u8]) -> bool {
    matches!(buf, [0x15 | 0x16, 0x03, 0x01..=0x04, ..])
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
