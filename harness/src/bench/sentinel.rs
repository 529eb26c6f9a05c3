//! Redis with Sentinel as a 3-host system in a lab: a primary and two replicas (Debian's
//! `redis-server`, configured as `idserver` configures its own: append-only file, `everysec`),
//! and a Sentinel on each host (`redis-server --sentinel`, quorum 2). Clients find the primary
//! through the Sentinels, as Sentinel's documentation says, and count a write as acknowledged
//! once `WAIT 1` says a replica has it: what an acknowledgement means in idserver's whitepaper
//! mode.

use super::hosts::BenchHosts;
use crate::error::{Error, Result};
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
    hosts: BenchHosts,
}

impl SentinelCluster {
    /// Its hosts and processes (to crash and restart one, to find its processes).
    pub fn hosts(&self) -> &BenchHosts {
        &self.hosts
    }

    /// As [`SentinelCluster::hosts`], to change them.
    pub fn hosts_mut(&mut self) -> &mut BenchHosts {
        &mut self.hosts
    }

    /// Starts `nodes` hosts, each with Redis and a Sentinel, the first host's Redis the
    /// primary, and waits until every replica is online (synced) and a Sentinel names the primary.
    pub async fn start(nodes: u32) -> Result<SentinelCluster> {
        let mut hosts = BenchHosts::create(nodes, "sentinel", &std::env::temp_dir())?;
        let primary = hosts.hosts()[0].addr();
        for (i, host) in hosts.hosts().to_vec().into_iter().enumerate() {
            let data = hosts.data_dir(&host)?;
            let mut redis: Vec<String> = vec![
                "--port".into(),
                REDIS_PORT.to_string(),
                "--bind".into(),
                "0.0.0.0".into(),
                "--protected-mode".into(),
                "no".into(),
                "--appendonly".into(),
                "yes".into(),
                "--appendfsync".into(),
                "everysec".into(),
            ];
            // Tuned as idserver tunes its own (a replica's first sync at once among it).
            redis.extend(idserver::store::tuning_args());
            redis.extend([
                "--dir".into(),
                data.display().to_string(),
                "--logfile".into(),
                data.join("redis.log").display().to_string(),
            ]);
            if i > 0 {
                redis.extend([
                    "--replicaof".into(),
                    primary.to_string(),
                    REDIS_PORT.to_string(),
                ]);
            }
            hosts.spawn(i, "redis-server", redis, &data.join("redis.out"))?;
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
            hosts.spawn(
                i,
                "redis-server",
                [conf.into_os_string(), "--sentinel".into()],
                &data.join("sentinel.out"),
            )?;
        }
        let cluster = SentinelCluster { hosts };
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Every host's Redis, `host:port`.
    pub fn redis_addrs(&self) -> Vec<String> {
        self.hosts
            .hosts()
            .iter()
            .map(|h| format!("{}:{REDIS_PORT}", h.addr()))
            .collect()
    }

    /// Every Sentinel's `host:port`.
    pub fn sentinels(&self) -> Vec<String> {
        self.hosts
            .hosts()
            .iter()
            .map(|h| format!("{}:{SENTINEL_PORT}", h.addr()))
            .collect()
    }

    /// The host whose Redis the Sentinels of hosts `among` all name the primary (None while
    /// they do not agree, or name one outside `among`).
    pub async fn primary_among(&self, among: &[usize]) -> Option<usize> {
        let sentinels: Vec<String> = among.iter().map(|i| self.sentinels()[*i].clone()).collect();
        let addrs: Vec<String> = self
            .hosts
            .hosts()
            .iter()
            .map(|h| format!("{}:{REDIS_PORT}", h.addr()))
            .collect();
        let named = self
            .hosts
            .client()
            .spawn(async move {
                let mut named = Vec::new();
                for sentinel in &sentinels {
                    named.push(named_by(sentinel).await.ok()?);
                }
                Some(named)
            })
            .await
            .ok()??;
        let first = named.first()?;
        let primary = addrs.iter().position(|a| a == first)?;
        (named.iter().all(|n| n == first) && among.contains(&primary)).then_some(primary)
    }

    /// Whether every host is back: the Sentinels agree on a primary that streams to every
    /// replica, and each Sentinel knows the others and every replica (Sentinels find each
    /// other through the primary, every 2 s: until they do, none can reach a quorum).
    pub async fn whole(&self) -> bool {
        let all: Vec<usize> = (0..self.hosts.hosts().len()).collect();
        let Some(primary) = self.primary_among(&all).await else {
            return false;
        };
        let primary = format!("{}:{REDIS_PORT}", self.hosts.hosts()[primary].addr());
        let others = all.len() - 1;
        let sentinels = self.sentinels();
        self.hosts
            .client()
            .spawn(async move {
                if online_replicas(&primary).await.unwrap_or(0) < others {
                    return false;
                }
                for sentinel in &sentinels {
                    if !knows(sentinel, others).await.unwrap_or(false) {
                        return false;
                    }
                }
                true
            })
            .await
            .unwrap_or(false)
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.whole().await {
            if Instant::now() >= deadline {
                return Err(Error::Setup(format!(
                    "Redis with Sentinel was not ready within {READY_TIMEOUT:?} (the Sentinels \
                     agreeing on the primary and knowing each other, every replica online)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

/// The primary's `host:port` as the first Sentinel that answers names it.
pub async fn primary_of(sentinels: &[String]) -> std::result::Result<String, String> {
    let mut last = String::from("no Sentinel");
    for sentinel in sentinels {
        match named_by(sentinel).await {
            Ok(primary) => return Ok(primary),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The primary's `host:port` as `sentinel` names it.
pub async fn named_by(sentinel: &str) -> std::result::Result<String, String> {
    let asked = async {
        let mut conn = connect(sentinel).await?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER_NAME)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        addr.map(|(host, port)| format!("{host}:{port}"))
            .ok_or_else(|| format!("{sentinel} knows no primary"))
    };
    tokio::time::timeout(Duration::from_secs(1), asked)
        .await
        .unwrap_or_else(|_| Err(format!("{sentinel} did not answer")))
}

/// Whether `sentinel` knows `others` other Sentinels and as many replicas.
async fn knows(sentinel: &str, others: usize) -> std::result::Result<bool, String> {
    let mut conn = connect(sentinel).await?;
    let count = |what: &'static str| {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg(what).arg(MASTER_NAME);
        cmd
    };
    let sentinels: Vec<redis::Value> = count("SENTINELS")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let replicas: Vec<redis::Value> = count("REPLICAS")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(sentinels.len() >= others && replicas.len() >= others)
}

/// How many replicas the Redis at `primary` streams to (synced, not loading a snapshot).
pub async fn online_replicas(primary: &str) -> std::result::Result<usize, String> {
    let mut conn = connect(primary).await?;
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

/// A client of the primary the Sentinels name: `SET` then `WAIT 1`. After a failure it asks
/// the Sentinels again before the next write, as Sentinel's client guidelines say.
pub struct SentinelWriter {
    sentinels: Vec<String>,
    conn: Option<redis::aio::MultiplexedConnection>,
}

impl SentinelWriter {
    /// Asks the Sentinels for the primary and connects to it.
    pub async fn connect(sentinels: &[String]) -> std::result::Result<SentinelWriter, String> {
        let mut writer = SentinelWriter {
            sentinels: sentinels.to_vec(),
            conn: None,
        };
        writer.primary().await?;
        Ok(writer)
    }

    async fn primary(
        &mut self,
    ) -> std::result::Result<&mut redis::aio::MultiplexedConnection, String> {
        if self.conn.is_none() {
            let primary = primary_of(&self.sentinels).await?;
            self.conn = Some(connect(&primary).await?);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Writes `key`; acknowledged once a replica has it.
    pub async fn write(&mut self, key: &str) -> std::result::Result<(), String> {
        let conn = self.primary().await?;
        let written: redis::RedisResult<((), u64)> = redis::pipe()
            .cmd("SET")
            .arg(key)
            .arg("bench")
            .cmd("WAIT")
            .arg(1)
            .arg(WAIT_TIMEOUT_MS)
            .query_async(conn)
            .await;
        match written {
            Ok((_, replicas)) if replicas >= 1 => Ok(()),
            Ok(_) => Err("no replica acknowledged the write".into()),
            Err(e) => {
                // A primary gone, or demoted (READONLY): ask the Sentinels again.
                self.conn = None;
                Err(e.to_string())
            }
        }
    }

    /// Looks `key` up on the primary; Ok if found.
    pub async fn read(&mut self, key: &str) -> std::result::Result<(), String> {
        let conn = self.primary().await?;
        let found: redis::RedisResult<Option<Vec<u8>>> =
            redis::cmd("GET").arg(key).query_async(conn).await;
        match found {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(format!("{key} not found")),
            Err(e) => {
                self.conn = None;
                Err(e.to_string())
            }
        }
    }

    /// Which of `keys` the primary does not hold.
    pub async fn missing(&mut self, keys: &[String]) -> std::result::Result<Vec<String>, String> {
        let mut missing = Vec::new();
        for chunk in keys.chunks(1_000) {
            let conn = self.primary().await?;
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("EXISTS").arg(key);
            }
            let found: Vec<u8> = pipe.query_async(conn).await.map_err(|e| e.to_string())?;
            missing.extend(
                chunk
                    .iter()
                    .zip(found)
                    .filter(|(_, n)| *n == 0)
                    .map(|(k, _)| k.clone()),
            );
        }
        Ok(missing)
    }
}

pub(super) async fn connect(
    addr: &str,
) -> std::result::Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(format!("redis://{addr}/")).map_err(|e| e.to_string())?;
    let connected = tokio::time::timeout(
        Duration::from_secs(1),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| format!("{addr} did not answer"))?;
    connected.map_err(|e| e.to_string())
}
