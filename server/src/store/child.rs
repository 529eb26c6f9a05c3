//! The `redis-server` a node starts for itself when no `--redis` is given: private unix socket
//! and data in the node's data directory, append-only file on, and tied to the node's life.
//!
//! The child gets PR_SET_PDEATHSIG (SIGKILL), so it dies even when the node is killed with
//! SIGKILL. The kernel sends that signal when the *thread* that forked the child exits, so every
//! child is forked from one thread that lives as long as the process. A child left behind
//! anyway (its pid file names a live redis-server working in our data directory) is killed at
//! the next start.

use crate::error::{Error, Result};
use crate::limits::REDIS_START_TIMEOUT_MS;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The process ids of `pid`'s child processes (of all its threads).
pub fn child_processes(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    tasks
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Puts thread or process `tid` (0: the calling thread) at idle priority (`SCHED_IDLE`): it
/// runs only when nothing else wants the core. One that has just exited is left alone.
pub fn idle_priority(tid: i32) {
    let param = nix::libc::sched_param { sched_priority: 0 };
    // SAFETY: plain integers and a pointer to a live sched_param.
    unsafe { nix::libc::sched_setscheduler(tid, nix::libc::SCHED_IDLE, &param) };
}

/// Most entries a hash of the node's own Redis keeps packed (`hash-max-listpack-entries`).
pub const HASH_PACKED_ENTRIES_MAX: usize = 512;
/// Longest field or value a packed hash holds (`hash-max-listpack-value`): an account record
/// with a password hash and a long real name still fits.
pub const HASH_PACKED_VALUE_BYTES_MAX: usize = 1024;

/// How a node's Redis is tuned for its work, whoever starts it (the node itself, or the lab in
/// a container): `redis-server` arguments besides where it listens, its directory and its
/// append-only file.
pub fn tuning_args() -> Vec<String> {
    [
        // A full sync streams a snapshot at once rather than waiting for more replicas.
        "--repl-diskless-sync-delay",
        "0",
        "--save",
        "",
        // Per-command latency histograms cost a few percent of Redis's time per write.
        "--latency-tracking",
        "no",
        // Snapshots (append-only file rewrites, full syncs) are made often and read once:
        // compressing them costs more CPU than the bytes it saves on a local disk or link.
        "--rdbcompression",
        "no",
        // The directory's hashes (accounts, logins, request results; a few dozen to a few
        // hundred short entries each) stay packed: cheaper to write and far cheaper to
        // snapshot and load than hash tables.
        "--hash-max-listpack-entries",
        &HASH_PACKED_ENTRIES_MAX.to_string(),
        "--hash-max-listpack-value",
        &HASH_PACKED_VALUE_BYTES_MAX.to_string(),
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

/// Longest unix socket path the kernel accepts (sun_path less its terminating NUL).
const UNIX_SOCKET_PATH_BYTES_MAX: usize = 107;
const POLL_INTERVAL_MS: u64 = 10;
const STOP_TIMEOUT_MS: u64 = 10_000;

/// A running `redis-server` owned by this process.
#[derive(Debug)]
pub struct RedisChild {
    child: Option<Child>,
    socket: PathBuf,
    data_dir: PathBuf,
    redis_bin: String,
    appendfsync: String,
}

impl RedisChild {
    /// Starts `redis-server` (the binary `redis_bin`) on a unix socket in `data_dir`, with its
    /// append-only file there fsynced by `appendfsync` (`always`, `everysec` or `no`), and waits
    /// until it answers.
    pub async fn start(data_dir: &Path, redis_bin: &str, appendfsync: &str) -> Result<RedisChild> {
        let mut this = RedisChild {
            child: None,
            socket: PathBuf::new(),
            data_dir: data_dir.to_path_buf(),
            redis_bin: redis_bin.to_string(),
            appendfsync: appendfsync.to_string(),
        };
        this.spawn(false).await?;
        Ok(this)
    }

    /// A scratch `redis-server` in `data_dir` holding the RDB snapshot file `rdb` (append-only
    /// file off), to copy from.
    pub async fn start_on_snapshot(
        data_dir: &Path,
        redis_bin: &str,
        rdb: &Path,
    ) -> Result<RedisChild> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::io(format!("failed to create {}", data_dir.display()), e))?;
        place_snapshot(data_dir, rdb)?;
        let mut this = RedisChild {
            child: None,
            socket: PathBuf::new(),
            data_dir: data_dir.to_path_buf(),
            redis_bin: redis_bin.to_string(),
            appendfsync: "no".to_string(),
        };
        this.spawn(true).await?;
        Ok(this)
    }

    /// Replaces the database with the RDB snapshot file `rdb` (a full sync): stops Redis, puts
    /// the snapshot in place of its files, starts it on the snapshot, and turns the append-only
    /// file back on (Redis rewrites it from the loaded data in the background).
    pub async fn restart_on_snapshot(&mut self, rdb: &Path) -> Result<()> {
        if let Some(child) = self.child.take() {
            tokio::task::spawn_blocking(move || terminate(child))
                .await
                .map_err(|e| Error::RedisChild(format!("failed to stop redis-server: {e}")))??;
        }
        place_snapshot(&self.data_dir, rdb)?;
        self.spawn(true).await?;
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendonly")
            .arg("yes")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn spawn(&mut self, from_snapshot: bool) -> Result<()> {
        let (data_dir, redis_bin, appendfsync) = (
            self.data_dir.clone(),
            self.redis_bin.clone(),
            self.appendfsync.clone(),
        );
        let data_dir = data_dir.as_path();
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::io(format!("failed to create {}", data_dir.display()), e))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(|e| Error::io(format!("failed to resolve {}", data_dir.display()), e))?;
        let socket = data_dir.join("redis.sock");
        if socket.as_os_str().len() > UNIX_SOCKET_PATH_BYTES_MAX {
            return Err(Error::Config(format!(
                "--data-dir {} is too long for a unix socket path ({} bytes at most)",
                data_dir.display(),
                UNIX_SOCKET_PATH_BYTES_MAX - "/redis.sock".len()
            )));
        }
        let pid_file = data_dir.join("redis.pid");
        kill_stale(&pid_file, &data_dir)?;
        let _ = std::fs::remove_file(&socket);

        let mut cmd = Command::new(&redis_bin);
        cmd.arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--dir")
            .arg(&data_dir)
            .arg("--pidfile")
            .arg(&pid_file)
            .arg("--logfile")
            .arg(data_dir.join("redis.log"))
            .arg("--daemonize")
            .arg("no")
            .arg("--appendonly")
            // Redis loads the snapshot only with the append-only file off.
            .arg(if from_snapshot { "no" } else { "yes" })
            .arg("--appendfsync")
            .arg(&appendfsync)
            .args(tuning_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls are made (prctl, getppid).
        unsafe {
            cmd.pre_exec(|| {
                // SIGKILL, not SIGTERM: Redis refuses SIGTERM while it writes its first
                // append-only file (after a full sync). A kill loses at most the writes Redis
                // had not written out yet (with `everysec`, it postpones that for up to two
                // seconds while a slow disk syncs): the node, started again, holds fewer
                // events than it applied and catches up from the others.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // The parent may have died before prctl took effect.
                if nix::unistd::getppid() == Pid::from_raw(1) {
                    return Err(std::io::Error::other("parent exited"));
                }
                Ok(())
            });
        }
        let child = spawn_from_lifetime_thread(cmd)
            .map_err(|e| Error::RedisChild(format!("failed to start {redis_bin}: {e}")))?;
        self.child = Some(child);
        self.socket = socket;
        self.data_dir = data_dir;
        self.wait_ready().await
    }

    /// If the child has exited (killed, crashed), starts it again on its own files (the
    /// append-only file holds every write it acknowledged) and returns how it had exited.
    pub async fn revive_if_exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        else {
            return Ok(None);
        };
        self.child = None;
        self.spawn(false).await?;
        Ok(Some(status))
    }

    /// The URL to reach it with.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The child's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Puts Redis's background processes (the fork that writes a snapshot for a full sync or
    /// rewrites the append-only file) at idle priority (`SCHED_IDLE`): they use the CPU only
    /// when nothing else wants it, so the node's live writes keep their latency while one
    /// runs.
    pub fn idle_background_work(&self) {
        if let Some(pid) = self.pid() {
            for fork in child_processes(pid) {
                idle_priority(fork as i32);
            }
        }
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_millis(REDIS_START_TIMEOUT_MS);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(Error::RedisChild(format!(
                    "redis-server exited with {status} at start; its log says:\n{}",
                    self.log_tail()
                )));
            }
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                    let pong: redis::RedisResult<String> =
                        redis::cmd("PING").query_async(&mut conn).await;
                    if pong.is_ok() {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(Error::RedisChild(format!(
                    "redis-server did not answer within {REDIS_START_TIMEOUT_MS} ms; its log says:\n{}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data_dir.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Stops it cleanly (SIGTERM: Redis flushes its append-only file) and waits for it.
    pub async fn stop(mut self) -> Result<()> {
        let Some(child) = self.child.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || terminate(child))
            .await
            .map_err(|e| Error::RedisChild(format!("failed to wait for redis-server: {e}")))?
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = terminate(child);
        }
    }
}

fn terminate(mut child: Child) -> Result<()> {
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(STOP_TIMEOUT_MS);
    let mut asked = started;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if Instant::now() < deadline => {
                // Redis refuses SIGTERM while it writes its first append-only file (after a
                // full sync) and does not retry when done: ask again.
                if asked.elapsed() >= Duration::from_millis(TERM_REPEAT_MS) {
                    let _ = kill(pid, Signal::SIGTERM);
                    asked = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::RedisChild(format!(
                    "redis-server {pid} ignored SIGTERM for {STOP_TIMEOUT_MS} ms and was killed"
                )));
            }
        }
    }
}

/// How often a `redis-server` that has not stopped is sent SIGTERM again.
const TERM_REPEAT_MS: u64 = 200;

/// Puts the snapshot file `rdb` in `data_dir` as the database Redis loads at start (moved if it
/// is on the same file system, else copied), and removes an append-only file that would take
/// precedence.
fn place_snapshot(data_dir: &Path, rdb: &Path) -> Result<()> {
    let io = |what: &str, e| Error::io(format!("failed to {what} in {}", data_dir.display()), e);
    let target = data_dir.join("dump.rdb");
    if std::fs::rename(rdb, &target).is_err() {
        let staged = data_dir.join("dump.rdb.incoming");
        std::fs::copy(rdb, &staged).map_err(|e| io("copy the snapshot", e))?;
        std::fs::rename(&staged, &target).map_err(|e| io("move the snapshot", e))?;
    }
    match std::fs::remove_dir_all(data_dir.join("appendonlydir")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io("remove the old append-only file", e))
        }
        _ => Ok(()),
    }
}

/// Kills a `redis-server` left running in `data_dir` by an earlier crash.
fn kill_stale(pid_file: &Path, data_dir: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return Ok(());
    };
    let _ = std::fs::remove_file(pid_file);
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Ok(());
    };
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let is_redis = std::fs::read_to_string(proc_dir.join("comm"))
        .map(|comm| comm.trim().starts_with("redis-server"))
        .unwrap_or(false);
    let in_our_dir = std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd == data_dir);
    if !(is_redis && in_our_dir) {
        return Ok(());
    }
    tracing::warn!(pid, dir = %data_dir.display(), "killing a stale redis-server left by an earlier run");
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_millis(STOP_TIMEOUT_MS);
    while is_running(&proc_dir) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
    }
    if is_running(&proc_dir) {
        return Err(Error::RedisChild(format!(
            "stale redis-server {pid} in {} would not die",
            data_dir.display()
        )));
    }
    Ok(())
}

/// Whether the process behind `/proc/<pid>` still runs (a zombie, dead but not yet reaped by its
/// parent, does not).
fn is_running(proc_dir: &Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name: "pid (comm) S ...".
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Forks `cmd` from a thread that never exits, so PR_SET_PDEATHSIG fires only when the whole
/// process dies, not when some runtime worker thread retires.
fn spawn_from_lifetime_thread(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("failed to start the child-spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .expect("spawner lock poisoned")
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("child-spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("child-spawner thread is gone"))?
}
