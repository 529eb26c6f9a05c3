//! Online backups of a node's directory to a file (`idclient --backup`), and restoring one
//! into an empty node (`idserver --restore`).
//!
//! A backup is a snapshot of the node's Redis taken over Redis's replication handshake (the
//! path full syncs use), with every write to that Redis held for the instant it forks
//! (`CLIENT PAUSE … WRITE`), so that the clock and account count read with it are those of
//! the snapshot. The file is the snapshot (an RDB) between a magic header and a trailer:
//!
//! ```text
//! "IDBACKUP" 0x01 | RDB bytes | CBOR BackupInfo | u32 LE length of the CBOR | "IDBACKUP"
//! ```
//!
//! A restore checks the file (magic, trailer, length, SHA-256, cluster name), loads it into
//! an empty node's Redis (its own, or `--redis`), counts the accounts one by one against the
//! trailer, gives the node a fresh node id (it is a new member, not the one backed up), and
//! waits until Redis's append-only file holds it.

use crate::connection::{Connection, Transport};
use crate::error::{Error, ErrorCode, Result};
use crate::limits::REPLY_FRAME_BYTES_MAX;
use crate::store::{RedisChild, Store};
use crate::wire::{decode, BackupInfo, Envelope, Reply, Request};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;

/// The file's first and last bytes.
const MAGIC: &[u8; 8] = b"IDBACKUP";
/// The format version after the first magic.
const VERSION: u8 = 1;
/// Bytes before the snapshot.
const HEAD_BYTES: u64 = MAGIC.len() as u64 + 1;
/// Bytes after the trailer's CBOR: its length and the magic.
const TAIL_BYTES: u64 = 4 + MAGIC.len() as u64;
/// Largest trailer accepted (a cluster name and a few numbers: far less).
const TRAILER_BYTES_MAX: u64 = 64 * 1024;
/// How long a restore waits for Redis's append-only file to hold the restored data.
const PERSIST_TIMEOUT: Duration = Duration::from_secs(600);
/// Time to connect to the node a backup is taken from.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Longest wait for the next piece of a backup.
const PIECE_TIMEOUT: Duration = Duration::from_secs(60);

fn damaged(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Config(format!(
        "{} is not a usable idserver backup: {why}",
        path.display()
    ))
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

/// Takes a backup from the node at `addr` (on a connection with a node certificate) into the
/// file `out`: written beside it and renamed once complete and checked, so a failed backup
/// leaves no file behind. Returns what it holds.
pub async fn fetch(
    addr: &str,
    cluster: &str,
    transport: &Transport,
    out: &Path,
) -> Result<BackupInfo> {
    let partial = partial_path(out);
    let fetched = fetch_into(addr, cluster, transport, &partial).await;
    match fetched {
        Ok(info) => {
            std::fs::rename(&partial, out).map_err(io(format!(
                "failed to rename {} to {}",
                partial.display(),
                out.display()
            )))?;
            Ok(info)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

async fn fetch_into(
    addr: &str,
    cluster: &str,
    transport: &Transport,
    path: &Path,
) -> Result<BackupInfo> {
    let mut file =
        std::fs::File::create(path).map_err(io(format!("failed to create {}", path.display())))?;
    let mut conn =
        Connection::connect(addr, CONNECT_TIMEOUT_MS, REPLY_FRAME_BYTES_MAX, transport).await?;
    let frame = crate::client::request_frame(cluster, 1, 0, &Request::Backup, false)?;
    conn.write_frame(&frame).await?;
    file.write_all(MAGIC)
        .and_then(|()| file.write_all(&[VERSION]))
        .map_err(io(format!("failed to write {}", path.display())))?;
    let mut sha256 = Sha256::new();
    let mut bytes = 0u64;
    let info = loop {
        let payload = tokio::time::timeout(PIECE_TIMEOUT, conn.read_frame())
            .await
            .map_err(|_| {
                Error::refused(
                    ErrorCode::Unreachable,
                    format!("{addr} sent no backup data for {PIECE_TIMEOUT:?}"),
                )
            })??
            .ok_or_else(|| {
                Error::refused(
                    ErrorCode::Unreachable,
                    format!("{addr} closed the connection before the backup's end"),
                )
            })?;
        let envelope: Envelope<Reply> = decode(&payload)?;
        match envelope.body {
            Reply::BackupPiece { data } => {
                sha256.update(&data);
                bytes += data.len() as u64;
                file.write_all(&data)
                    .map_err(io(format!("failed to write {}", path.display())))?;
            }
            Reply::BackupDone(info) => break info,
            Reply::Error(e) => return Err(Error::refused(e.code, e.message)),
            other => {
                return Err(Error::refused(
                    ErrorCode::BadFrame,
                    format!("unexpected reply to a backup: {other:?}"),
                ))
            }
        }
    };
    if info.bytes != bytes || info.sha256.as_slice() != sha256.finalize().as_slice() {
        return Err(Error::refused(
            ErrorCode::BadFrame,
            format!(
                "the backup arrived damaged: {bytes} bytes received, {} sent, checksums differ",
                info.bytes
            ),
        ));
    }
    if info.cluster != cluster {
        return Err(Error::refused(
            ErrorCode::WrongCluster,
            format!("{addr} sent a backup of cluster {:?}", info.cluster),
        ));
    }
    let mut trailer = Vec::new();
    ciborium::into_writer(&info, &mut trailer)
        .map_err(|e| Error::Config(format!("failed to encode the backup trailer: {e}")))?;
    file.write_all(&trailer)
        .and_then(|()| file.write_all(&(trailer.len() as u32).to_le_bytes()))
        .and_then(|()| file.write_all(MAGIC))
        .and_then(|()| file.sync_all())
        .map_err(io(format!("failed to write {}", path.display())))?;
    Ok(info)
}

/// Reads and checks a backup file's frame and trailer (not yet its checksum); returns the
/// trailer.
pub fn read_info(path: &Path) -> Result<BackupInfo> {
    let mut file =
        std::fs::File::open(path).map_err(io(format!("failed to open {}", path.display())))?;
    let len = file
        .metadata()
        .map_err(io(format!("failed to read {}", path.display())))?
        .len();
    if len < HEAD_BYTES + TAIL_BYTES {
        return Err(damaged(path, format!("{len} bytes is too short")));
    }
    let mut head = [0u8; HEAD_BYTES as usize];
    file.read_exact(&mut head)
        .map_err(io(format!("failed to read {}", path.display())))?;
    if &head[..MAGIC.len()] != MAGIC {
        return Err(damaged(path, "it does not start with IDBACKUP"));
    }
    if head[MAGIC.len()] != VERSION {
        return Err(damaged(
            path,
            format!(
                "format version {} (this idserver reads {VERSION})",
                head[MAGIC.len()]
            ),
        ));
    }
    let mut tail = [0u8; TAIL_BYTES as usize];
    file.seek(SeekFrom::End(-(TAIL_BYTES as i64)))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(io(format!("failed to read {}", path.display())))?;
    if &tail[4..] != MAGIC {
        return Err(damaged(path, "it does not end with IDBACKUP (cut short?)"));
    }
    let trailer_len = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
    if trailer_len > TRAILER_BYTES_MAX || trailer_len > len - HEAD_BYTES - TAIL_BYTES {
        return Err(damaged(path, format!("trailer length {trailer_len}")));
    }
    let mut trailer = vec![0u8; trailer_len as usize];
    file.seek(SeekFrom::End(-((TAIL_BYTES + trailer_len) as i64)))
        .and_then(|_| file.read_exact(&mut trailer))
        .map_err(io(format!("failed to read {}", path.display())))?;
    let info: BackupInfo = ciborium::from_reader(trailer.as_slice())
        .map_err(|e| damaged(path, format!("unreadable trailer: {e}")))?;
    let snapshot = len - HEAD_BYTES - TAIL_BYTES - trailer_len;
    if snapshot != info.bytes {
        return Err(damaged(
            path,
            format!(
                "it holds {snapshot} snapshot bytes, its trailer says {}",
                info.bytes
            ),
        ));
    }
    Ok(info)
}

/// Copies the snapshot out of the backup file `path` into `rdb`, checking its SHA-256.
fn extract(path: &Path, info: &BackupInfo, rdb: &Path) -> Result<()> {
    let mut file =
        std::fs::File::open(path).map_err(io(format!("failed to open {}", path.display())))?;
    file.seek(SeekFrom::Start(HEAD_BYTES))
        .map_err(io(format!("failed to read {}", path.display())))?;
    let mut out =
        std::fs::File::create(rdb).map_err(io(format!("failed to create {}", rdb.display())))?;
    let mut sha256 = Sha256::new();
    let mut left = info.bytes;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = buf.len().min(left as usize);
        file.read_exact(&mut buf[..want])
            .map_err(io(format!("failed to read {}", path.display())))?;
        sha256.update(&buf[..want]);
        out.write_all(&buf[..want])
            .map_err(io(format!("failed to write {}", rdb.display())))?;
        left -= want as u64;
    }
    if sha256.finalize().as_slice() != info.sha256.as_slice() {
        let _ = std::fs::remove_file(rdb);
        return Err(damaged(path, "its SHA-256 does not match (damaged)"));
    }
    out.sync_all()
        .map_err(io(format!("failed to write {}", rdb.display())))
}

/// Where and how to restore.
#[derive(Debug, Clone)]
pub struct RestoreTarget {
    /// The node's cluster (`--cluster`): the backup must be of it.
    pub cluster: String,
    /// The node's data directory (its own Redis's files, and scratch space).
    pub data_dir: PathBuf,
    /// An existing Redis to restore into instead of the node's own.
    pub redis_url: Option<String>,
    /// The `redis-server` binary.
    pub redis_bin: String,
    /// The own Redis's append-only-file fsync policy.
    pub appendfsync: String,
}

/// Restores the backup file `path` into `target`, which must hold no data; returns the
/// backup's trailer and the node id the restored node will have.
pub async fn restore(path: &Path, target: &RestoreTarget) -> Result<(BackupInfo, Uuid)> {
    let info = read_info(path)?;
    if info.cluster != target.cluster {
        return Err(Error::Config(format!(
            "{} is a backup of cluster {:?}; this node is of cluster {:?} (--cluster)",
            path.display(),
            info.cluster,
            target.cluster
        )));
    }
    std::fs::create_dir_all(&target.data_dir).map_err(io(format!(
        "failed to create {}",
        target.data_dir.display()
    )))?;
    let rdb = target.data_dir.join("restore.rdb");
    extract(path, &info, &rdb)?;
    let restored = load(&rdb, &info, target).await;
    let _ = std::fs::remove_file(&rdb);
    restored.map(|node_id| (info, node_id))
}

/// Loads the checked snapshot `rdb` into the target's Redis and checks what it holds.
async fn load(rdb: &Path, info: &BackupInfo, target: &RestoreTarget) -> Result<Uuid> {
    let not_empty = |what: &str, keys: u64| {
        Error::Config(format!(
            "{what} holds data ({keys} keys): a backup is restored only into an empty node"
        ))
    };
    match &target.redis_url {
        None => {
            let mut redis =
                RedisChild::start(&target.data_dir, &target.redis_bin, &target.appendfsync).await?;
            let store = Store::connect(&redis.url()).await?;
            store.check_version().await?;
            let keys = store.keys().await?;
            if keys > 0 {
                let shown = format!("--data-dir {}", target.data_dir.display());
                redis.stop().await?;
                return Err(not_empty(&shown, keys));
            }
            redis.restart_on_snapshot(rdb).await?;
            // The store's connection went with the old process: it reconnects on first use.
            store.wait_ready(Duration::from_secs(10)).await?;
            let checked = check_and_claim(&store, info, &target.cluster).await;
            let persisted = match &checked {
                Ok(_) => store.wait_persisted(PERSIST_TIMEOUT).await,
                Err(_) => Ok(true),
            };
            redis.stop().await?;
            let node_id = checked?;
            if !persisted? {
                return Err(Error::RedisChild(format!(
                    "Redis did not write its append-only file within {PERSIST_TIMEOUT:?}"
                )));
            }
            Ok(node_id)
        }
        Some(url) => {
            let store = Store::connect(url).await?;
            store.check_version().await?;
            let keys = store.keys().await?;
            if keys > 0 {
                return Err(not_empty(
                    &format!("the Redis at {}", crate::store::redact_url(url)),
                    keys,
                ));
            }
            let scratch_dir = target.data_dir.join("restore-scratch");
            let scratch =
                RedisChild::start_on_snapshot(&scratch_dir, &target.redis_bin, rdb).await?;
            let copied = store.replace_from(&scratch.url()).await;
            scratch.stop().await?;
            let _ = std::fs::remove_dir_all(&scratch_dir);
            copied?;
            check_and_claim(&store, info, &target.cluster).await
        }
    }
}

/// Checks the loaded data against the trailer (cluster, clock, accounts counted one by one)
/// and gives it a fresh node id.
async fn check_and_claim(store: &Store, info: &BackupInfo, cluster: &str) -> Result<Uuid> {
    let fresh = Uuid::new_v4();
    let claimed = store.claim(cluster, fresh).await?;
    let clock = store.clock().await?;
    let counted = store.count_logins().await?;
    let counter = store.count().await?;
    if clock != info.clock || counted != info.accounts || counter != info.accounts {
        return Err(Error::Config(format!(
            "the restored data does not match the backup: clock {clock} (backup: {}), {counted} \
             accounts counted and {counter} recorded (backup: {})",
            info.clock, info.accounts
        )));
    }
    if claimed != fresh {
        // The backed-up node's id came with the data: this node is another member.
        store.set_node_id(fresh).await?;
    }
    Ok(fresh)
}
