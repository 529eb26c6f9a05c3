//! etcd as a 3-host system in a lab: a member per host (Debian's `etcd-server`), with etcd's
//! default timings (heartbeat 100 ms, election 1,000 ms) or tuned ones (10 / 100 ms). Clients
//! speak etcd's gRPC API through the `etcd-client` crate (the same Rust process and runtime as
//! every other system's clients). A create is what idserver's is: a transaction that puts the
//! key only if it does not exist yet, acknowledged once a majority committed it (Raft).
//!
//! etcd fsyncs its write-ahead log before it acknowledges; idserver's Redis (`everysec`) and
//! Sentinel's do not. So that the comparison weighs the protocols and not the disk, every
//! member's data directory is on a tmpfs (`/dev/shm`), where an fsync costs nothing.

use super::hosts::BenchHosts;
use crate::error::{Error, Result};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use std::path::Path;
use std::time::{Duration, Instant};

/// The client port on every host.
const CLIENT_PORT: u16 = 2379;
/// The peer port on every host.
const PEER_PORT: u16 = 2380;
/// Longest the members may take to elect a leader and take a write.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the members keep their data: a tmpfs (see the module's documentation).
const SCRATCH: &str = "/dev/shm";

/// etcd's Raft timings, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// `--heartbeat-interval`.
    pub heartbeat_ms: u64,
    /// `--election-timeout`.
    pub election_ms: u64,
}

impl Timings {
    /// etcd's defaults.
    pub const DEFAULT: Timings = Timings {
        heartbeat_ms: 100,
        election_ms: 1_000,
    };
    /// Tuned for a LAN, ten times faster.
    pub const TUNED: Timings = Timings {
        heartbeat_ms: 10,
        election_ms: 100,
    };
}

/// A running etcd cluster. Dropping it kills its members and removes its lab and data.
pub struct EtcdCluster {
    hosts: BenchHosts,
}

impl EtcdCluster {
    /// Its hosts and processes (to crash and restart one, to find its processes).
    pub fn hosts(&self) -> &BenchHosts {
        &self.hosts
    }

    /// As [`EtcdCluster::hosts`], to change them.
    pub fn hosts_mut(&mut self) -> &mut BenchHosts {
        &mut self.hosts
    }

    /// Starts a member on each of `nodes` hosts with `timings` and waits until the cluster
    /// takes a write.
    pub async fn start(nodes: u32, timings: Timings) -> Result<EtcdCluster> {
        let scratch = if Path::new(SCRATCH).is_dir() {
            Path::new(SCRATCH).to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let mut hosts = BenchHosts::create(nodes, "etcd", &scratch)?;
        let members: Vec<String> = hosts
            .hosts()
            .iter()
            .map(|h| format!("{}=http://{}:{PEER_PORT}", h.name(), h.addr()))
            .collect();
        let token = format!("idlab-bench-{}", std::process::id());
        for (i, host) in hosts.hosts().to_vec().into_iter().enumerate() {
            let data = hosts.data_dir(&host)?;
            let peer = format!("http://{}:{PEER_PORT}", host.addr());
            let client = format!("http://{}:{CLIENT_PORT}", host.addr());
            let args = [
                "--name".to_string(),
                host.name().to_string(),
                "--data-dir".into(),
                data.join("member").display().to_string(),
                "--listen-peer-urls".into(),
                peer.clone(),
                "--initial-advertise-peer-urls".into(),
                peer,
                "--listen-client-urls".into(),
                client.clone(),
                "--advertise-client-urls".into(),
                client,
                "--initial-cluster".into(),
                members.join(","),
                // (Once a member has data, it rejoins with it and these two are ignored.)
                "--initial-cluster-state".into(),
                "new".into(),
                "--initial-cluster-token".into(),
                token.clone(),
                "--heartbeat-interval".into(),
                timings.heartbeat_ms.to_string(),
                "--election-timeout".into(),
                timings.election_ms.to_string(),
            ];
            hosts.spawn(i, "etcd", args, &data.join("etcd.log"))?;
        }
        let cluster = EtcdCluster { hosts };
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.hosts
            .hosts()
            .iter()
            .map(|h| format!("http://{}:{CLIENT_PORT}", h.addr()))
            .collect()
    }

    /// The member all members `among` name their leader (None while they do not agree, or
    /// name one outside `among`).
    pub async fn leader_among(&self, among: &[usize]) -> Option<usize> {
        let endpoints: Vec<String> = among.iter().map(|i| self.endpoints()[*i].clone()).collect();
        let among = among.to_vec();
        self.hosts
            .client()
            .spawn(async move {
                // (member id, the leader it names) of each.
                let mut seen = Vec::new();
                for endpoint in &endpoints {
                    let (id, leader, _) = status_of(endpoint).await?;
                    seen.push((id, leader));
                }
                let leader = seen.first()?.1;
                let at = seen.iter().position(|(id, _)| *id == leader)?;
                seen.iter().all(|(_, l)| *l == leader).then_some(among[at])
            })
            .await
            .ok()?
    }

    /// Whether every member is back, names the same leader and has applied the same log
    /// index (caught up: the load is stopped meanwhile).
    pub async fn whole(&self) -> bool {
        let all: Vec<usize> = (0..self.hosts.hosts().len()).collect();
        if self.leader_among(&all).await.is_none() {
            return false;
        }
        let endpoints = self.endpoints();
        self.hosts
            .client()
            .spawn(async move {
                let mut applied = Vec::new();
                for endpoint in &endpoints {
                    applied.push(status_of(endpoint).await.map(|(_, _, index)| index));
                }
                applied.iter().all(|a| a.is_some() && *a == applied[0])
            })
            .await
            .unwrap_or(false)
    }

    async fn wait_ready(&self) -> Result<()> {
        let endpoints = self.endpoints();
        let ready = self.hosts.client().spawn(async move {
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                let tried = async {
                    let mut writer = EtcdWriter::connect(&endpoints, 0).await?;
                    writer.put("idlab-ready").await
                };
                let last = match tokio::time::timeout(Duration::from_secs(2), tried).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(e)) => e,
                    Err(_) => "no answer within 2 s".to_string(),
                };
                if Instant::now() >= deadline {
                    return Err(Error::Setup(format!(
                        "etcd did not take a write within {READY_TIMEOUT:?}: {last}"
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

/// What the member at `endpoint` says of itself: its id, the leader it names, its Raft index.
async fn status_of(endpoint: &str) -> Option<(u64, u64, u64)> {
    let asked = async {
        let mut client = Client::connect([endpoint], None).await.ok()?;
        let status = client.status().await.ok()?;
        Some((
            status.header()?.member_id(),
            status.leader(),
            status.raft_index(),
        ))
    };
    tokio::time::timeout(Duration::from_secs(1), asked)
        .await
        .ok()
        .flatten()
}

/// A client session of etcd: a gRPC channel to one member (a follower forwards writes to the
/// leader), sessions spread over the members. A request that fails, or takes longer than
/// [`REQUEST_TIMEOUT`] (a member whose leader died holds it until an election ends), moves
/// the session to the next member, as an etcd client does when its request context expires.
/// (`etcd-client`'s channel balanced over every member kept sending to a dead one for
/// seconds, which would have measured that crate rather than etcd.)
pub struct EtcdWriter {
    endpoints: Vec<String>,
    next: usize,
    client: Option<Client>,
}

/// Longest a request may take before the session moves to the next member.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

impl EtcdWriter {
    /// Connects to one of the members at `endpoints`, starting at member `first`.
    pub async fn connect(
        endpoints: &[String],
        first: usize,
    ) -> std::result::Result<EtcdWriter, String> {
        let mut writer = EtcdWriter {
            endpoints: endpoints.to_vec(),
            next: first,
            client: None,
        };
        writer.channel().await?;
        Ok(writer)
    }

    async fn channel(&mut self) -> std::result::Result<&mut Client, String> {
        if self.client.is_none() {
            let endpoint = &self.endpoints[self.next % self.endpoints.len()];
            self.next += 1;
            let connected =
                tokio::time::timeout(REQUEST_TIMEOUT, Client::connect([endpoint], None))
                    .await
                    .map_err(|_| format!("{endpoint} did not answer"))?;
            self.client = Some(connected.map_err(|e| e.to_string())?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Creates `key` (a transaction: put it only if it does not exist); acknowledged once a
    /// majority committed it.
    pub async fn write(&mut self, key: &str) -> std::result::Result<(), String> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, "bench", None)]);
        let client = self.channel().await?;
        let done = match tokio::time::timeout(REQUEST_TIMEOUT, client.txn(txn)).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                self.client = None;
                return Err(e.to_string());
            }
            Err(_) => {
                self.client = None;
                return Err(format!("no answer within {REQUEST_TIMEOUT:?}"));
            }
        };
        if done.succeeded() {
            Ok(())
        } else {
            Err(format!("{key} exists already"))
        }
    }

    /// Looks `key` up (etcd's default read: linearizable, through the leader); Ok if found.
    pub async fn read(&mut self, key: &str) -> std::result::Result<(), String> {
        let client = self.channel().await?;
        match tokio::time::timeout(REQUEST_TIMEOUT, client.get(key, None)).await {
            Ok(Ok(got)) if !got.kvs().is_empty() => Ok(()),
            Ok(Ok(_)) => Err(format!("{key} not found")),
            Ok(Err(e)) => {
                self.client = None;
                Err(e.to_string())
            }
            Err(_) => {
                self.client = None;
                Err(format!("no answer within {REQUEST_TIMEOUT:?}"))
            }
        }
    }

    /// Which of `keys` (all beginning with `prefix`) the cluster does not hold (a
    /// linearizable read).
    pub async fn missing(
        &mut self,
        prefix: &str,
        keys: &[String],
    ) -> std::result::Result<Vec<String>, String> {
        let options = GetOptions::new().with_prefix().with_keys_only();
        let client = self.channel().await?;
        let held = client.get(prefix, Some(options)).await;
        let held = held.map_err(|e| {
            self.client = None;
            e.to_string()
        })?;
        let held: std::collections::HashSet<&[u8]> = held.kvs().iter().map(|kv| kv.key()).collect();
        Ok(keys
            .iter()
            .filter(|k| !held.contains(k.as_bytes()))
            .cloned()
            .collect())
    }

    async fn put(&mut self, key: &str) -> std::result::Result<(), String> {
        let client = self.channel().await?;
        client
            .put(key, "ready", None)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}
