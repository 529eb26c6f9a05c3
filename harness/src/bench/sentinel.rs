//! Redis with Sentinel as a 3-host system in a lab: a primary and two replicas (Debian's
//! `redis-server`, configured as `idserver` configures its own: append-only file, `everysec`),
//! and a Sentinel on each host (`redis-server --sentinel`, quorum 2). Clients find the primary
//! through the Sentinels, as Sentinel's documentation says, and count a write as acknowledged
//! once `WAIT 1` says a replica has it: what an acknowledgement means in idserver's whitepaper
//! mode.

use crate::cluster::HostRuntime;
use crate::error::{Error, Result};
use netns::{Host, Lab};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The Redis port on every host.
const REDIS_PORT: u16 = 6379;
/// The Sentinel port on every host.
const SENTINEL_PORT: u16 = 26379;
/// The name the Sentinels monitor the primary by.
const MASTER_NAME: &str = "bench";
/// Longest the replicas may take to attach and the Sentinels to agree on the primary.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest `WAIT` waits for a replica (ms).
pub const WAIT_TIMEOUT_MS: u64 = 1_000;

/// A running Redis-with-Sentinel system. Dropping it kills its processes and removes its lab.
pub struct SentinelCluster {
    children: Vec<Child>,
    dir: PathBuf,
    client: HostRuntime,
    hosts: Vec<Host>,
    // Dropped last: the namespaces go once every process and runtime in them is gone.
    _lab: Lab,
}

impl SentinelCluster {
    /// Starts `nodes` hosts, each with Redis and a Sentinel, the first host's Redis the
    /// primary, and waits until every replica is online (synced) and a Sentinel names the primary.
    pub async fn start(nodes: u32) -> Result<SentinelCluster> {
        let mut lab = Lab::create()?;
        let mut hosts = Vec::new();
        for i in 1..=nodes {
            hosts.push(lab.add_host(&format!("n{i}"))?);
        }
        let client = HostRuntime::start(&lab.add_host("client")?, 2)?;
        let dir = std::env::temp_dir().join(format!("idlab-bench-{}", lab.id()));
        let mut cluster = SentinelCluster {
            children: Vec::new(),
            dir,
            client,
            hosts,
            _lab: lab,
        };
        let primary = cluster.hosts[0].addr();
        for i in 0..cluster.hosts.len() {
            let host = cluster.hosts[i].clone();
            let data = cluster.dir.join(host.name());
            std::fs::create_dir_all(&data)
                .map_err(|e| Error::Setup(format!("failed to create {}: {e}", data.display())))?;
            let mut redis = host.command("redis-server");
            redis
                .args(["--port", &REDIS_PORT.to_string(), "--bind", "0.0.0.0"])
                .args(["--protected-mode", "no"])
                .args(["--appendonly", "yes", "--appendfsync", "everysec"])
                // Tuned as idserver tunes its own (a replica's first sync at once among it).
                .args(idserver::store::tuning_args())
                .arg("--dir")
                .arg(&data)
                .arg("--logfile")
                .arg(data.join("redis.log"));
            if i > 0 {
                redis.args(["--replicaof", &primary.to_string(), &REDIS_PORT.to_string()]);
            }
            cluster.spawn(redis)?;
            // A Sentinel rewrites its configuration file: one of its own per host.
            let conf = data.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {SENTINEL_PORT}\nbind 0.0.0.0\nprotected-mode no\ndir {}\n\
                     logfile {}\nsentinel monitor {MASTER_NAME} {primary} {REDIS_PORT} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n",
                    data.display(),
                    data.join("sentinel.log").display()
                ),
            )
            .map_err(|e| Error::Setup(format!("failed to write {}: {e}", conf.display())))?;
            let mut sentinel = host.command("redis-server");
            sentinel.arg(&conf).arg("--sentinel");
            cluster.spawn(sentinel)?;
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    fn spawn(&mut self, mut command: std::process::Command) -> Result<()> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Setup(format!("failed to start redis-server: {e}")))?;
        self.children.push(child);
        Ok(())
    }

    /// The client host's runtime.
    pub fn client(&self) -> &tokio::runtime::Handle {
        self.client.handle()
    }

    /// Every Sentinel's address.
    pub fn sentinels(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| format!("{}:{SENTINEL_PORT}", h.addr()))
            .collect()
    }

    async fn wait_ready(&self) -> Result<()> {
        let sentinels = self.sentinels();
        let replicas = self.hosts.len() - 1;
        let ready = self.client().spawn(async move {
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Ok(primary) = primary_of(&sentinels).await {
                    if online_replicas(&primary).await.unwrap_or(0) >= replicas {
                        return Ok(());
                    }
                }
                if Instant::now() >= deadline {
                    return Err(Error::Setup(format!(
                        "Redis with Sentinel was not ready within {READY_TIMEOUT:?} (a Sentinel \
                         naming the primary, {replicas} replicas online)"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        ready
            .await
            .map_err(|e| Error::Setup(format!("the readiness check died: {e}")))?
    }
}

impl Drop for SentinelCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The primary's `host:port` as the first Sentinel that answers names it.
pub async fn primary_of(sentinels: &[String]) -> std::result::Result<String, String> {
    let mut last = String::from("no Sentinel");
    for sentinel in sentinels {
        let asked = async {
            let client =
                redis::Client::open(format!("redis://{sentinel}/")).map_err(|e| e.to_string())?;
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(MASTER_NAME)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            addr.map(|(host, port)| format!("{host}:{port}"))
                .ok_or_else(|| format!("{sentinel} knows no primary"))
        };
        match tokio::time::timeout(Duration::from_secs(1), asked).await {
            Ok(Ok(primary)) => return Ok(primary),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("{sentinel} did not answer"),
        }
    }
    Err(last)
}

async fn online_replicas(primary: &str) -> std::result::Result<usize, String> {
    let client = redis::Client::open(format!("redis://{primary}/")).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    // `slave0:ip=…,port=…,state=online,…`: synced and streaming (not still loading a snapshot).
    Ok(info
        .lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .count())
}

/// A client of the primary the Sentinels name: `SET` then `WAIT 1`.
pub struct SentinelWriter {
    conn: redis::aio::MultiplexedConnection,
}

impl SentinelWriter {
    /// Asks the Sentinels for the primary and connects to it.
    pub async fn connect(sentinels: &[String]) -> std::result::Result<SentinelWriter, String> {
        let primary = primary_of(sentinels).await?;
        let client =
            redis::Client::open(format!("redis://{primary}/")).map_err(|e| e.to_string())?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        Ok(SentinelWriter { conn })
    }

    /// Writes `key`; acknowledged once a replica has it.
    pub async fn write(&mut self, key: &str) -> std::result::Result<(), String> {
        let (_, replicas): ((), u64) = redis::pipe()
            .cmd("SET")
            .arg(key)
            .arg("bench")
            .cmd("WAIT")
            .arg(1)
            .arg(WAIT_TIMEOUT_MS)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| e.to_string())?;
        if replicas >= 1 {
            Ok(())
        } else {
            Err("no replica acknowledged the write".into())
        }
    }
}
