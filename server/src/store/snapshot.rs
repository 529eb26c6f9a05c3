//! A full copy of a Redis database as an RDB, taken over Redis's own replication handshake
//! (`SYNC`, as `redis-cli --rdb` does): Redis forks and streams a fresh snapshot over the
//! connection as the fork writes it (diskless), so the database is not blocked and its disk is
//! neither written nor read. Works the same for a
//! Redis in a container. The snapshot is read in pieces, so it can be shipped as it is made.

use crate::error::{Error, Result};
use crate::limits::IO_SLICE_BYTES;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Length of the end marker of a diskless transfer (`$EOF:<40 bytes>`).
const EOF_MARK_BYTES: usize = 40;
/// Longest Redis may take to start sending a snapshot.
const SNAPSHOT_START_TIMEOUT_MS: u64 = 30_000;

/// A snapshot of a Redis being received over its replication handshake, read piece by piece
/// so that it can be shipped while Redis is still writing it.
pub struct RdbStream {
    reader: tokio::io::BufReader<Box<dyn AsyncReadWrite>>,
    /// Bytes still to come (`$<len>` transfers), or the end marker (diskless transfers, whose
    /// length is unknown until the marker arrives).
    end: End,
    /// Read but not yet handed out (the last EOF_MARK_BYTES may be the marker).
    held: Vec<u8>,
    done: bool,
}

trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}

enum End {
    Remaining(usize),
    Mark(Vec<u8>),
}

impl RdbStream {
    /// Asks the Redis at `url` (`unix:///path` or `redis://host:port[/db]`) for a snapshot and
    /// reads the transfer's header.
    pub async fn open(url: &str) -> Result<RdbStream> {
        let stream: Box<dyn AsyncReadWrite> = if let Some(path) = url
            .strip_prefix("unix://")
            .or_else(|| url.strip_prefix("redis+unix://"))
        {
            Box::new(tokio::net::UnixStream::connect(path).await.map_err(|e| {
                Error::io(
                    format!("failed to connect to {}", super::redact_url(url)),
                    e,
                )
            })?)
        } else {
            let rest = url.strip_prefix("redis://").unwrap_or(url);
            let host_port = rest
                .rsplit('@')
                .next()
                .unwrap_or(rest)
                .split('/')
                .next()
                .unwrap_or(rest);
            Box::new(
                tokio::net::TcpStream::connect(host_port)
                    .await
                    .map_err(|e| {
                        Error::io(
                            format!("failed to connect to {}", super::redact_url(url)),
                            e,
                        )
                    })?,
            )
        };
        let timeout = Duration::from_millis(SNAPSHOT_START_TIMEOUT_MS);
        tokio::time::timeout(timeout, start(stream))
            .await
            .map_err(|_| {
                Error::RedisChild(format!(
                    "{url} did not start a snapshot within {SNAPSHOT_START_TIMEOUT_MS} ms"
                ))
            })?
    }

    /// The next piece of at most `max` bytes (`None` after the last one).
    pub async fn next_piece(&mut self, max: usize) -> Result<Option<Vec<u8>>> {
        let fail = |e: std::io::Error| Error::io("failed to read a snapshot", e);
        if self.done {
            return Ok(None);
        }
        match &mut self.end {
            End::Remaining(0) => {
                self.done = true;
                Ok(None)
            }
            End::Remaining(left) => {
                let mut piece = vec![0u8; max.min(*left)];
                self.reader.read_exact(&mut piece).await.map_err(fail)?;
                *left -= piece.len();
                Ok(Some(piece))
            }
            End::Mark(mark) => {
                let mut chunk = vec![0u8; IO_SLICE_BYTES];
                while self.held.len() < max + EOF_MARK_BYTES {
                    if self.held.ends_with(mark) {
                        self.held.truncate(self.held.len() - EOF_MARK_BYTES);
                        self.done = true;
                        return Ok(Some(std::mem::take(&mut self.held)));
                    }
                    let read = self.reader.read(&mut chunk).await.map_err(fail)?;
                    if read == 0 {
                        return Err(Error::RedisChild(
                            "snapshot ended before its end marker".into(),
                        ));
                    }
                    self.held.extend_from_slice(&chunk[..read]);
                }
                // The held bytes go on past `max` by at least the marker's length: the first
                // `max` cannot be part of the marker.
                let rest = self.held.split_off(max);
                Ok(Some(std::mem::replace(&mut self.held, rest)))
            }
        }
    }
}

async fn start(stream: Box<dyn AsyncReadWrite>) -> Result<RdbStream> {
    let fail = |e: std::io::Error| Error::io("failed to take a snapshot over SYNC", e);
    let mut reader = tokio::io::BufReader::new(stream);
    // `capa eof`: this side takes a snapshot of unknown length, so Redis streams it from its
    // fork without writing it to disk first; `rdb-only`: no command stream after it (Redis 7;
    // an older one refuses it and sends the stream, which is never read).
    for (command, required) in [
        (&b"REPLCONF capa eof\r\n"[..], true),
        (&b"REPLCONF rdb-only 1\r\n"[..], false),
    ] {
        reader.get_mut().write_all(command).await.map_err(fail)?;
        let answer = read_line(&mut reader).await?;
        if required && answer != "+OK" {
            return Err(Error::RedisChild(format!(
                "Redis refused {:?}: {answer}",
                String::from_utf8_lossy(command).trim_end()
            )));
        }
    }
    reader
        .get_mut()
        .write_all(b"SYNC\r\n")
        .await
        .map_err(fail)?;
    // Redis sends newlines to keep the link alive while it prepares the snapshot.
    let mut byte = [0u8; 1];
    loop {
        reader.read_exact(&mut byte).await.map_err(fail)?;
        match byte[0] {
            b'\n' | b'\r' => continue,
            b'$' => break,
            b'-' => {
                let line = read_line(&mut reader).await?;
                return Err(Error::RedisChild(format!("Redis refused SYNC: {line}")));
            }
            other => {
                return Err(Error::RedisChild(format!(
                    "unexpected byte {other:#x} before the snapshot"
                )))
            }
        }
    }
    let header = read_line(&mut reader).await?;
    let end = if let Some(mark) = header.strip_prefix("EOF:") {
        if mark.len() != EOF_MARK_BYTES {
            return Err(Error::RedisChild(format!(
                "bad snapshot end marker {header:?}"
            )));
        }
        End::Mark(mark.as_bytes().to_vec())
    } else {
        End::Remaining(
            header
                .parse()
                .map_err(|_| Error::RedisChild(format!("bad snapshot length {header:?}")))?,
        )
    };
    Ok(RdbStream {
        reader,
        end,
        held: Vec::new(),
        done: false,
    })
}

async fn read_line<R: AsyncRead + Unpin>(reader: &mut R) -> Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        reader
            .read_exact(&mut byte)
            .await
            .map_err(|e| Error::io("failed to read the snapshot header", e))?;
        line.push(byte[0]);
        if line.len() > 1024 {
            return Err(Error::RedisChild("snapshot header too long".into()));
        }
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| Error::RedisChild("snapshot header is not text".into()))
}
