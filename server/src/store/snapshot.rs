//! A full copy of a Redis database as an RDB, taken over Redis's own replication handshake
//! (`SYNC`, as `redis-cli --rdb` does): Redis forks and streams a fresh snapshot over the
//! connection, so the database is not blocked and its disk is not read. Works the same for a
//! Redis in a container.

use crate::error::{Error, Result};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Length of the end marker of a diskless transfer (`$EOF:<40 bytes>`).
const EOF_MARK_BYTES: usize = 40;
/// Longest a snapshot transfer may take.
const SNAPSHOT_TIMEOUT_MS: u64 = 120_000;

/// Takes a snapshot of the Redis at `url` (`unix:///path` or `redis://host:port[/db]`).
pub async fn fetch_rdb(url: &str) -> Result<Vec<u8>> {
    let timeout = Duration::from_millis(SNAPSHOT_TIMEOUT_MS);
    let transfer = async {
        if let Some(path) = url
            .strip_prefix("unix://")
            .or_else(|| url.strip_prefix("redis+unix://"))
        {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| Error::io(format!("failed to connect to {url}"), e))?;
            sync(stream).await
        } else {
            let rest = url.strip_prefix("redis://").unwrap_or(url);
            let host_port = rest
                .rsplit('@')
                .next()
                .unwrap_or(rest)
                .split('/')
                .next()
                .unwrap_or(rest);
            let stream = tokio::net::TcpStream::connect(host_port)
                .await
                .map_err(|e| Error::io(format!("failed to connect to {url}"), e))?;
            sync(stream).await
        }
    };
    tokio::time::timeout(timeout, transfer).await.map_err(|_| {
        Error::RedisChild(format!(
            "snapshot of {url} took over {SNAPSHOT_TIMEOUT_MS} ms"
        ))
    })?
}

async fn sync<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> Result<Vec<u8>> {
    let fail = |e: std::io::Error| Error::io("failed to take a snapshot over SYNC", e);
    stream.write_all(b"SYNC\r\n").await.map_err(fail)?;
    let mut reader = tokio::io::BufReader::new(stream);
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
    if let Some(mark) = header.strip_prefix("EOF:") {
        let mark = mark.as_bytes();
        if mark.len() != EOF_MARK_BYTES {
            return Err(Error::RedisChild(format!(
                "bad snapshot end marker {header:?}"
            )));
        }
        let mut data = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let read = reader.read(&mut chunk).await.map_err(fail)?;
            if read == 0 {
                return Err(Error::RedisChild(
                    "snapshot ended before its end marker".into(),
                ));
            }
            data.extend_from_slice(&chunk[..read]);
            if data.ends_with(mark) {
                data.truncate(data.len() - EOF_MARK_BYTES);
                return Ok(data);
            }
        }
    }
    let len: usize = header
        .parse()
        .map_err(|_| Error::RedisChild(format!("bad snapshot length {header:?}")))?;
    let mut data = vec![0u8; len];
    reader.read_exact(&mut data).await.map_err(fail)?;
    Ok(data)
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
