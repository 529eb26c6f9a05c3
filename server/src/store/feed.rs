//! Loading a snapshot into a running Redis while it arrives: this node plays a one-shot Redis
//! master on a loopback port, the node's Redis is told to replicate from it
//! (`REPLICAOF 127.0.0.1 <port>`), and the snapshot's pieces are passed on as the body of a
//! diskless full resynchronisation. With `repl-diskless-load swapdb` Redis parses the snapshot
//! straight from the socket and keeps its old data until the new copy is complete, so a
//! snapshot cut short (or refused for its checksum) leaves the old data in place. Once loaded,
//! `REPLICAOF NO ONE` makes the Redis stand alone again.

use crate::connection::write_in_slices;
use crate::error::{Error, Result};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Longest the Redis may take to connect and ask for the snapshot.
const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Longest one connection to the feed may take to ask for the snapshot.
const CONNECTION_HANDSHAKE_TIMEOUT_MS: u64 = 2_000;
/// Longest the Redis may take to finish loading once the snapshot has been passed on.
const LOAD_TIMEOUT_MS: u64 = 120_000;
/// How often the loading Redis is asked whether it is done.
const LOAD_POLL_MS: u64 = 10;
/// Longest handshake command accepted (they are a few dozen bytes).
const HANDSHAKE_LINE_BYTES_MAX: usize = 1024;
/// Length of the end marker of a diskless transfer.
const EOF_MARK_BYTES: usize = 40;

/// A snapshot being fed into a Redis.
pub struct SnapshotFeed {
    stream: BufReader<TcpStream>,
    mark: String,
    control: redis::aio::MultiplexedConnection,
}

impl std::fmt::Debug for SnapshotFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotFeed")
    }
}

impl SnapshotFeed {
    /// Makes the Redis at `url` replicate from this process and answers its handshake up to
    /// the start of the snapshot.
    pub async fn start(url: &str) -> Result<SnapshotFeed> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("failed to listen on loopback for a snapshot feed", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("failed to read the feed's port", e))?
            .port();
        let mut control = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        // The loopback port is open to every local process: only the connection that knows
        // this secret (our Redis, told it as its masterauth) gets the snapshot.
        let secret = random_hex();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-load")
            .arg("swapdb")
            .arg("masterauth")
            .arg(&secret)
            // Writes (the node's epoch) that reach it in the moment between a cut snapshot and
            // `REPLICAOF NO ONE` go to the old data it keeps instead of failing.
            .arg("replica-read-only")
            .arg("no")
            .query_async(&mut control)
            .await?;
        let _: () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(port)
            .query_async(&mut control)
            .await?;
        let handshake = async {
            loop {
                let (stream, peer) = listener
                    .accept()
                    .await
                    .map_err(|e| Error::io("the loading Redis did not connect", e))?;
                let _ = stream.set_nodelay(true);
                let mut stream = BufReader::new(stream);
                let one = Duration::from_millis(CONNECTION_HANDSHAKE_TIMEOUT_MS);
                match tokio::time::timeout(one, handshake(&mut stream, &secret)).await {
                    Ok(Ok(mark)) => return Ok::<_, Error>((stream, mark)),
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "refused a connection to the snapshot feed")
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "a connection to the snapshot feed stayed silent")
                    }
                }
            }
        };
        let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        let outcome = match tokio::time::timeout(timeout, handshake).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::RedisChild(format!(
                "the loading Redis did not ask for the snapshot within {HANDSHAKE_TIMEOUT_MS} ms"
            ))),
        };
        match outcome {
            Ok((stream, mark)) => Ok(SnapshotFeed {
                stream,
                mark,
                control,
            }),
            Err(e) => {
                stand_alone(&mut control).await;
                Err(e)
            }
        }
    }

    /// Passes the next piece on (waits while Redis is busy loading the previous ones).
    pub async fn piece(&mut self, data: &[u8]) -> Result<()> {
        write_in_slices(self.stream.get_mut(), data)
            .await
            .map_err(|e| Error::io("failed to pass a snapshot piece to Redis", e))
    }

    /// Ends the snapshot, waits until Redis has loaded it and makes Redis stand alone.
    pub async fn finish(mut self) -> Result<()> {
        let loaded = async {
            self.stream
                .get_mut()
                .write_all(self.mark.as_bytes())
                .await
                .map_err(|e| Error::io("failed to end the snapshot", e))?;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(LOAD_TIMEOUT_MS);
            loop {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut self.control)
                    .await?;
                if info.contains("master_link_status:up") {
                    return Ok(());
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(Error::RedisChild(format!(
                        "Redis did not load the snapshot within {LOAD_TIMEOUT_MS} ms"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(LOAD_POLL_MS)).await;
            }
        }
        .await;
        stand_alone(&mut self.control).await;
        loaded
    }

    /// Gives the snapshot up: Redis sees the transfer cut short and keeps its old data.
    pub async fn abandon(mut self) {
        drop(self.stream);
        stand_alone(&mut self.control).await;
    }
}

/// `REPLICAOF NO ONE` and forgets the feed's secret; logged if it fails (the Redis would stay
/// a read-only replica).
async fn stand_alone(control: &mut redis::aio::MultiplexedConnection) {
    let done: redis::RedisResult<()> = redis::pipe()
        .cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .ignore()
        .cmd("CONFIG")
        .arg("SET")
        .arg("masterauth")
        .arg("")
        .ignore()
        .query_async(control)
        .await;
    if let Err(e) = done {
        tracing::error!(error = %e, "failed to make the node's Redis stand alone after a snapshot");
    }
}

/// 40 random hex digits (a replication id, an end marker or a secret, as Redis makes them).
fn random_hex() -> String {
    let two = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    two[..EOF_MARK_BYTES].to_string()
}

/// Answers a replica's handshake (`PING`, `AUTH` with `secret`, `REPLCONF`, then `PSYNC` or
/// `SYNC`) and starts a diskless full resynchronisation; returns the transfer's end marker.
async fn handshake(stream: &mut BufReader<TcpStream>, secret: &str) -> Result<String> {
    let mark = random_hex();
    let mut authenticated = false;
    loop {
        let command = read_command(stream).await?;
        let name = command.first().map(|c| c.to_ascii_uppercase());
        let answer = match name.as_deref() {
            Some(b"PING") => "+PONG\r\n".to_string(),
            Some(b"AUTH") => {
                // `AUTH <password>` or `AUTH <user> <password>`.
                if command.last().map(Vec::as_slice) != Some(secret.as_bytes()) {
                    return Err(Error::RedisChild("wrong secret".into()));
                }
                authenticated = true;
                "+OK\r\n".to_string()
            }
            Some(b"REPLCONF") => "+OK\r\n".to_string(),
            Some(b"PSYNC") | Some(b"SYNC") if authenticated => {
                format!("+FULLRESYNC {} 0\r\n$EOF:{mark}\r\n", random_hex())
            }
            _ => {
                return Err(Error::RedisChild(format!(
                    "unexpected command: {:?}",
                    command
                        .iter()
                        .take(1)
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect::<Vec<_>>()
                )))
            }
        };
        stream
            .get_mut()
            .write_all(answer.as_bytes())
            .await
            .map_err(|e| Error::io("failed to answer the loading Redis", e))?;
        if answer.starts_with("+FULLRESYNC") {
            return Ok(mark);
        }
    }
}

/// One command as a replica sends it: a RESP array of bulk strings (or an inline command).
async fn read_command(stream: &mut BufReader<TcpStream>) -> Result<Vec<Vec<u8>>> {
    let line = read_line(stream).await?;
    let Some(count) = line.strip_prefix('*') else {
        return Ok(line
            .split_whitespace()
            .map(|word| word.as_bytes().to_vec())
            .collect());
    };
    let count: usize = count
        .parse()
        .map_err(|_| Error::RedisChild(format!("bad command header {line:?}")))?;
    let mut parts = Vec::with_capacity(count.min(16));
    for _ in 0..count {
        let header = read_line(stream).await?;
        let len: usize = header
            .strip_prefix('$')
            .and_then(|len| len.parse().ok())
            .filter(|len| *len <= HANDSHAKE_LINE_BYTES_MAX)
            .ok_or_else(|| Error::RedisChild(format!("bad argument header {header:?}")))?;
        let mut part = vec![0u8; len + 2];
        stream
            .read_exact(&mut part)
            .await
            .map_err(|e| Error::io("failed to read from the loading Redis", e))?;
        part.truncate(len);
        parts.push(part);
    }
    Ok(parts)
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> Result<String> {
    let mut line = Vec::new();
    let read = (&mut *stream)
        .take(HANDSHAKE_LINE_BYTES_MAX as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| Error::io("failed to read from the loading Redis", e))?;
    if read == 0 || !line.ends_with(b"\r\n") {
        return Err(Error::RedisChild(
            "the loading Redis closed the connection or sent an overlong line".into(),
        ));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| Error::RedisChild("a handshake line is not text".into()))
}
