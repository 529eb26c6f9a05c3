//! `idlab bench`: idserver side by side with etcd and with Redis and Sentinel, each a 3-node
//! system in the same lab shape (a host per node, a client host), the same workload
//! from the same Rust client process, rounds in alternating order so drift hits all systems
//! alike, reported as ratios against idserver.
//!
//! The workload: `clients` concurrent sessions writing unique keys for a fixed time, each
//! write counted once acknowledged as the system promises (idserver: its mode's replica
//! acknowledgements; etcd: a create-if-absent transaction, committed by a majority; Redis: `SET`
//! then `WAIT 1`); acknowledged writes per second and latency p50/p99/p99.9.

mod cpu;
pub mod etcd;
pub mod failover;
pub mod hosts;
pub mod html;

pub use hosts::remove_dead_scratch;
pub mod sentinel;
pub mod window;

use crate::cluster::{LabCluster, NodeConfig};
use crate::error::{Error, Result};
use crate::scenario::Mode;
use etcd::{EtcdCluster, EtcdWriter, Timings};
use hosts::BenchHosts;
use idserver::client::{Client, ClientConfig};
use sentinel::{SentinelCluster, SentinelWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nodes of every system.
const NODES: u32 = 3;
/// Longest a system may take to elect and answer.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A system under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// idserver in whitepaper mode (acknowledged after one replica).
    Idserver,
    /// idserver in strict mode (acknowledged by a majority).
    IdserverStrict,
    /// etcd, three members, its default timings (heartbeat 100 ms, election 1,000 ms).
    Etcd,
    /// etcd, three members, tuned timings (heartbeat 10 ms, election 100 ms).
    EtcdTuned,
    /// Redis, a primary and two replicas, three Sentinels; `SET` + `WAIT 1`.
    Sentinel,
}

impl System {
    /// Every system, in the order tables list them.
    pub const ALL: [System; 5] = [
        System::Idserver,
        System::IdserverStrict,
        System::Etcd,
        System::EtcdTuned,
        System::Sentinel,
    ];

    /// As `--systems` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            System::Idserver => "idserver",
            System::IdserverStrict => "idserver-strict",
            System::Etcd => "etcd",
            System::EtcdTuned => "etcd-tuned",
            System::Sentinel => "sentinel",
        }
    }

    /// The system `name` spells.
    pub fn parse(name: &str) -> std::result::Result<System, String> {
        System::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = System::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown system `{name}`, expected one of {}",
                    known.join(", ")
                )
            })
    }
}

/// What the sessions of a measurement do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Create new keys (acknowledged as the system promises).
    Create,
    /// Look up keys created before (each system's default read: idserver from the server the
    /// client is bound to, etcd linearizable, Redis from the primary).
    Lookup,
}

impl Workload {
    /// As the tables spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Lookup => "lookup",
        }
    }
}

/// Keys created before the lookups of each system, and looked up at random.
const LOOKUP_KEYS: u64 = 200;
/// Sessions made ready for reading acknowledged writes back (tried one after another).
const READ_BACK_TRIES: usize = 8;
/// Sessions creating them.
const SEED_SESSIONS: u64 = 20;
/// Clients loading the system while the inconsistency window is sampled.
const WINDOW_LOAD_CLIENTS: u32 = 8;

/// The conditions of every link in the lab (each host's link to the lab's switch, both ways)
/// while a system is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// No delay, no loss.
    Plain,
    /// 10 ± 2 ms on every link (one way; host to host crosses two links).
    Delay,
    /// 5% of packets lost on every link.
    Loss,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 3] = [Profile::Plain, Profile::Delay, Profile::Loss];

    /// As `--profile` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Plain => "plain",
            Profile::Delay => "delay",
            Profile::Loss => "loss",
        }
    }

    /// The profile `name` spells.
    pub fn parse(name: &str) -> std::result::Result<Profile, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| format!("unknown profile `{name}`, expected one of plain, delay, loss"))
    }

    fn conditions(self) -> netns::LinkConditions {
        match self {
            Profile::Plain => netns::LinkConditions::default(),
            Profile::Delay => netns::LinkConditions {
                latency_ms: 10,
                jitter_ms: 2,
                ..Default::default()
            },
            Profile::Loss => netns::LinkConditions {
                loss_pct: 5.0,
                ..Default::default()
            },
        }
    }

    /// Sets every link of `lab` to this profile's conditions.
    fn apply(self, lab: &netns::Lab) -> Result<()> {
        if self == Profile::Plain {
            return Ok(());
        }
        for host in lab.hosts() {
            lab.set_link(host.name(), netns::Direction::Both, self.conditions())?;
        }
        Ok(())
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The systems, each started afresh in every round.
    pub systems: Vec<System>,
    /// Concurrent clients, one measurement each.
    pub clients: Vec<u32>,
    /// Length of each measurement.
    pub seconds: f64,
    /// Rounds (each in a different order of the systems).
    pub rounds: u32,
    /// Leader crashes per system, spread over the rounds (0: none).
    pub failovers: u32,
    /// The links' conditions.
    pub profile: Profile,
    /// The idserver binary.
    pub idserver: PathBuf,
}

/// One measurement: a system, a number of clients, a round.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    /// The system.
    pub system: System,
    /// What the sessions did.
    pub workload: Workload,
    /// Concurrent clients.
    pub clients: u32,
    /// Which round (0-based).
    pub round: u32,
    /// Acknowledged writes.
    pub acked: u64,
    /// Writes that failed or were not acknowledged.
    pub failed: u64,
    /// How long the clients wrote.
    pub seconds: f64,
    /// Acknowledged writes per second.
    pub per_s: f64,
    /// Latency of acknowledged writes (ms).
    pub p50_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// 99.9th percentile (ms).
    pub p999_ms: f64,
    /// What the first failed write said.
    pub first_error: Option<String>,
    /// Latency at every percentile 0, 1, …, 100 (ms): the CDF the HTML report plots.
    pub percentiles_ms: Vec<f64>,
    /// CPU seconds the system's processes (all nodes, with their children) spent per thousand
    /// acknowledged writes.
    pub cpu_s_per_1000: f64,
}

/// A system's figures at one number of clients, over the rounds (medians).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The system.
    pub system: System,
    /// What the sessions did.
    pub workload: Workload,
    /// Concurrent clients.
    pub clients: u32,
    /// Median acknowledged writes per second.
    pub per_s: f64,
    /// Median p50 (ms).
    pub p50_ms: f64,
    /// Median p99 (ms).
    pub p99_ms: f64,
    /// Median p99.9 (ms).
    pub p999_ms: f64,
    /// Median CPU seconds per thousand acknowledged writes.
    pub cpu_s_per_1000: f64,
    /// `per_s` against idserver's at the same number of clients (None without idserver).
    pub ratio: Option<f64>,
}

/// A whole run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// When it started (ms since the epoch).
    pub start_ms: u64,
    /// The links' conditions throughout.
    pub profile: Profile,
    /// Every measurement, in the order taken.
    pub points: Vec<Point>,
    /// Medians and ratios.
    pub summary: Vec<Summary>,
    /// Every failover, in the order made.
    pub failovers: Vec<failover::Failover>,
    /// Failovers by system.
    pub failover_summary: Vec<FailoverSummary>,
    /// Every inconsistency-window measurement, in the order taken.
    pub windows: Vec<WindowPoint>,
    /// Windows by system, over every sampled write of every round.
    pub window_summary: Vec<WindowSummary>,
}

/// One inconsistency-window measurement: a system, a round.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WindowPoint {
    /// The system.
    pub system: System,
    /// Which round (0-based).
    pub round: u32,
    /// Clients loading the system meanwhile.
    pub load_clients: u32,
    /// Each sampled write's window, ms from its acknowledgement to the last node holding it.
    pub windows_ms: Vec<f64>,
    /// Sampled writes some node did not hold within 2 s.
    pub timed_out: u32,
    /// What went wrong first, if anything did.
    pub first_error: Option<String>,
}

/// A system's inconsistency window over every sampled write.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WindowSummary {
    /// The system.
    pub system: System,
    /// Sampled writes.
    pub samples: u64,
    /// Median window (ms).
    pub p50_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// The longest (ms).
    pub max_ms: f64,
    /// Sampled writes some node did not hold within 2 s.
    pub timed_out: u32,
    /// Window at every percentile 0, 1, …, 100 (ms): the CDF the HTML report plots.
    pub percentiles_ms: Vec<f64>,
}

/// A system's failovers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailoverSummary {
    /// The system.
    pub system: System,
    /// Leader crashes.
    pub kills: u32,
    /// Median and 99th percentile from the kill to the first acknowledged write (ms), over
    /// the failovers that had one.
    pub first_ack_p50_ms: f64,
    /// 99th percentile of the same.
    pub first_ack_p99_ms: f64,
    /// Median from the kill to the survivors' agreement (ms).
    pub agreed_p50_ms: f64,
    /// Failovers with no acknowledged write, or no agreement, within the timeout.
    pub stuck: u32,
    /// Writes acknowledged across the failovers.
    pub acked: u64,
    /// Acknowledged writes lost across them.
    pub lost: u64,
}

/// A running system and how to make its writers.
enum Running {
    Idserver(Box<LabCluster>),
    Etcd(Box<EtcdCluster>),
    Sentinel(Box<SentinelCluster>),
}

impl Running {
    async fn start(system: System, idserver: &Path, evidence: &Path) -> Result<Running> {
        match system {
            System::Idserver | System::IdserverStrict => {
                let mode = if system == System::Idserver {
                    Mode::Whitepaper
                } else {
                    Mode::Strict
                };
                let mut cluster = LabCluster::create(
                    NodeConfig::plain(idserver.to_path_buf(), "idlab-bench", mode, NODES),
                    evidence,
                )?;
                for i in 0..cluster.len() {
                    cluster.start(i)?;
                }
                wait_agreed(&cluster).await?;
                Ok(Running::Idserver(Box::new(cluster)))
            }
            System::Etcd | System::EtcdTuned => {
                let timings = if system == System::Etcd {
                    Timings::DEFAULT
                } else {
                    Timings::TUNED
                };
                Ok(Running::Etcd(Box::new(
                    EtcdCluster::start(NODES, timings).await?,
                )))
            }
            System::Sentinel => Ok(Running::Sentinel(Box::new(
                SentinelCluster::start(NODES).await?,
            ))),
        }
    }

    /// The hosts and processes of a system the bench starts itself (all but idserver).
    fn hosts(&self) -> Option<&BenchHosts> {
        match self {
            Running::Idserver(_) => None,
            Running::Etcd(cluster) => Some(cluster.hosts()),
            Running::Sentinel(cluster) => Some(cluster.hosts()),
        }
    }

    /// The lab the system runs in.
    fn lab(&self) -> &netns::Lab {
        match (self, self.hosts()) {
            (Running::Idserver(cluster), _) => {
                cluster.lab().expect("bench clusters run in the local lab")
            }
            (_, Some(hosts)) => hosts.lab(),
            (_, None) => unreachable!("every other system has bench hosts"),
        }
    }

    /// The ids of the system's processes (their children count with them).
    fn pids(&self) -> Vec<u32> {
        match self {
            Running::Idserver(cluster) => (0..cluster.len())
                .filter_map(|i| Some(cluster.pid(i).ok()?.as_raw() as u32))
                .collect(),
            _ => self.hosts().map(BenchHosts::pids).unwrap_or_default(),
        }
    }

    /// The client host's runtime: every client of the system runs there.
    fn runtime(&self) -> &tokio::runtime::Handle {
        match (self, self.hosts()) {
            (Running::Idserver(cluster), _) => cluster.client(0),
            (_, Some(hosts)) => hosts.client(),
            (_, None) => unreachable!("every other system has bench hosts"),
        }
    }

    /// How to read each node's own copy (for the inconsistency window).
    fn replicas(&self) -> Vec<window::Replica> {
        match self {
            Running::Idserver(cluster) => (0..cluster.len())
                .map(|i| {
                    window::Replica::Idserver(Box::new(ClientConfig {
                        servers: vec![cluster.addr(i).to_string()],
                        cluster: cluster.cluster_name().to_string(),
                        transport: cluster.transport().clone(),
                        retry_for_ms: 0,
                        ..ClientConfig::default()
                    }))
                })
                .collect(),
            Running::Etcd(cluster) => cluster
                .endpoints()
                .into_iter()
                .map(window::Replica::Etcd)
                .collect(),
            Running::Sentinel(cluster) => cluster
                .redis_addrs()
                .into_iter()
                .map(window::Replica::Redis)
                .collect(),
        }
    }

    /// The inconsistency window under load: [`WINDOW_LOAD_CLIENTS`] clients create keys for
    /// `length` while a sampling writer measures the window of its writes.
    async fn windows(&self, length: Duration, tag: &str) -> Result<window::Windows> {
        let until = Instant::now() + length;
        let sampling = self.runtime().spawn(window::sample(
            self.session(),
            self.replicas(),
            format!("{tag}-w-"),
            until,
        ));
        let none = Arc::new(Vec::new());
        self.measure(
            Workload::Create,
            WINDOW_LOAD_CLIENTS,
            length,
            &format!("{tag}-l"),
            &none,
        )
        .await?;
        sampling
            .await
            .map_err(|e| Error::Setup(format!("the window's sampling writer died: {e}")))
    }

    /// What a new client session needs.
    fn session(&self) -> Session {
        match self {
            Running::Idserver(cluster) => Session::Idserver(Box::new(ClientConfig {
                servers: (0..cluster.len())
                    .map(|i| cluster.addr(i).to_string())
                    .collect(),
                cluster: cluster.cluster_name().to_string(),
                transport: cluster.transport().clone(),
                ..ClientConfig::default()
            })),
            Running::Etcd(cluster) => Session::Etcd(cluster.endpoints(), rand::random()),
            Running::Sentinel(cluster) => Session::Sentinel(cluster.sentinels()),
        }
    }

    /// `clients` sessions doing `workload` for `length`: creating keys `<tag>-<session>-<n>`,
    /// or looking up keys of `existing` at random.
    async fn measure(
        &self,
        workload: Workload,
        clients: u32,
        length: Duration,
        tag: &str,
        existing: &Arc<Vec<String>>,
    ) -> Result<Written> {
        let mut tasks = Vec::new();
        for c in 0..clients {
            let prefix = format!("{tag}-{c}-");
            let session = self.session();
            let existing = existing.clone();
            let until = Instant::now() + length;
            tasks.push(self.runtime().spawn(async move {
                // A session that cannot connect yet (a lost first packet) tries again.
                let (mut failed, mut first_error) = (0, None);
                while Instant::now() < until {
                    match session.clone().open().await {
                        Ok(writer) => {
                            let (l, f, e) =
                                timed(until, workload, &prefix, &existing, writer).await;
                            return (l, failed + f, first_error.or(e));
                        }
                        Err(e) => {
                            failed += 1;
                            first_error.get_or_insert(e);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                (Vec::new(), failed, first_error)
            }));
        }
        let (mut latencies, mut failed, mut first_error) = (Vec::new(), 0, None);
        for task in tasks {
            let (l, f, e) = task
                .await
                .map_err(|e| Error::Setup(format!("a bench client died: {e}")))?;
            latencies.extend(l);
            failed += f;
            first_error = first_error.or(e);
        }
        Ok((latencies, failed, first_error))
    }

    /// The node the system's clients write through (coordinator, leader, primary) as the
    /// nodes `among` agree on it; None while they do not, or name one outside `among`.
    async fn leader_among(&self, among: &[usize]) -> Option<usize> {
        match self {
            Running::Idserver(cluster) => {
                let statuses = cluster.statuses(among).await;
                crate::conditions::agreed_coordinator(cluster, &statuses)
                    .filter(|c| among.contains(c))
            }
            Running::Etcd(cluster) => cluster.leader_among(among).await,
            Running::Sentinel(cluster) => cluster.primary_among(among).await,
        }
    }

    /// Whether every node is back, caught up (the load is stopped meanwhile) and the system
    /// agrees on its leader: the next crash must not meet a node still catching up.
    async fn whole(&self) -> bool {
        match self {
            Running::Idserver(cluster) => {
                let all: Vec<usize> = (0..cluster.len()).collect();
                let statuses = cluster.statuses(&all).await;
                let clocks: Vec<Option<u64>> = statuses
                    .iter()
                    .map(|(_, s)| s.as_ref().map(|s| s.clock))
                    .collect();
                crate::conditions::agreed_coordinator(cluster, &statuses).is_some()
                    && clocks.iter().all(|c| c.is_some() && *c == clocks[0])
            }
            Running::Etcd(cluster) => cluster.whole().await,
            Running::Sentinel(cluster) => cluster.whole().await,
        }
    }

    /// Node `i`'s host crashes: SIGKILL to the system's processes there.
    fn kill(&mut self, i: usize) -> Result<()> {
        match self {
            Running::Idserver(cluster) => cluster.kill(i),
            Running::Etcd(cluster) => {
                cluster.hosts_mut().kill(i);
                Ok(())
            }
            Running::Sentinel(cluster) => {
                cluster.hosts_mut().kill(i);
                Ok(())
            }
        }
    }

    /// Node `i` starts again on its data (a former Redis primary as first started: the
    /// Sentinels make it a replica of the new one).
    fn restart(&mut self, i: usize) -> Result<()> {
        match self {
            Running::Idserver(cluster) => cluster.start(i),
            Running::Etcd(cluster) => cluster.hosts_mut().restart(i),
            Running::Sentinel(cluster) => cluster.hosts_mut().restart(i),
        }
    }

    /// Which of `keys` (acknowledged writes, all beginning with `prefix`) the system does not
    /// hold, as a client reads it now.
    /// Tries for up to [`READY_TIMEOUT`]: a client may first pick a node that is down (etcd's
    /// balanced channel does).
    async fn missing(&self, prefix: &str, keys: Vec<String>) -> Result<Vec<String>> {
        // A session per try: an etcd session starts at a member picked at random.
        let sessions: Vec<Session> = (0..READ_BACK_TRIES).map(|_| self.session()).collect();
        let prefix = prefix.to_string();
        self.runtime()
            .spawn(async move {
                let deadline = Instant::now() + READY_TIMEOUT;
                let mut sessions = sessions.into_iter().cycle();
                loop {
                    let session = sessions.next().expect("a cycle never ends");
                    match session.missing(&prefix, &keys).await {
                        Ok(missing) => return Ok(missing),
                        Err(e) if Instant::now() >= deadline => return Err(e),
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
            .await
            .map_err(|e| Error::Setup(format!("the read of acknowledged writes died: {e}")))?
            .map_err(|e| Error::Setup(format!("failed to read acknowledged writes back: {e}")))
    }
}

impl Running {
    /// Creates [`LOOKUP_KEYS`] keys `<tag>-<session>-<n>` through [`SEED_SESSIONS`] sessions at
    /// once (so that slow links do not make it long), for the lookups; returns those
    /// acknowledged.
    async fn seed(&self, tag: &str) -> Result<Vec<String>> {
        let mut tasks = Vec::new();
        for session_n in 0..SEED_SESSIONS {
            let session = self.session();
            let prefix = format!("{tag}-{session_n}-");
            tasks.push(self.runtime().spawn(async move {
                let mut writer = session.open().await?;
                let mut made = Vec::new();
                for n in 0..LOOKUP_KEYS / SEED_SESSIONS {
                    let key = format!("{prefix}{n}");
                    if writer.write(&key).await.is_ok() {
                        made.push(key);
                    }
                }
                Ok::<_, String>(made)
            }));
        }
        let mut made = Vec::new();
        for task in tasks {
            let keys = task
                .await
                .map_err(|e| Error::Setup(format!("a seeding client died: {e}")))?
                .map_err(|e| Error::Setup(format!("failed to create keys to look up: {e}")))?;
            made.extend(keys);
        }
        Ok(made)
    }
}

/// What opening a client session of a system takes.
#[derive(Clone)]
enum Session {
    Idserver(Box<ClientConfig>),
    /// The members, and which one the session starts with.
    Etcd(Vec<String>, usize),
    Sentinel(Vec<String>),
}

impl Session {
    async fn open(self) -> std::result::Result<Writer, String> {
        Ok(match self {
            Session::Idserver(config) => Writer::Idserver(Box::new(Client::new(*config))),
            Session::Etcd(endpoints, first) => {
                Writer::Etcd(Box::new(EtcdWriter::connect(&endpoints, first).await?))
            }
            Session::Sentinel(sentinels) => {
                Writer::Sentinel(SentinelWriter::connect(&sentinels).await?)
            }
        })
    }

    async fn missing(
        self,
        prefix: &str,
        keys: &[String],
    ) -> std::result::Result<Vec<String>, String> {
        let writer = self.open().await?;
        match writer {
            Writer::Idserver(mut client) => {
                let mut missing = Vec::new();
                for key in keys {
                    match client.lookup(key).await {
                        Ok(_) => {}
                        Err(e) if e.code() == idserver::ErrorCode::NotFound => {
                            missing.push(key.clone())
                        }
                        Err(e) => return Err(format!("lookup {key}: {e}")),
                    }
                }
                Ok(missing)
            }
            Writer::Etcd(mut writer) => writer.missing(prefix, keys).await,
            Writer::Sentinel(mut writer) => writer.missing(keys).await,
        }
    }
}

/// One client session of a system.
enum Writer {
    Idserver(Box<Client>),
    Etcd(Box<EtcdWriter>),
    Sentinel(SentinelWriter),
}

impl Writer {
    /// Writes `key`; Ok once acknowledged as the system promises.
    async fn write(&mut self, key: &str) -> std::result::Result<(), String> {
        match self {
            Writer::Idserver(client) => client
                .create(key, "", None)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Writer::Etcd(writer) => writer.write(key).await,
            Writer::Sentinel(writer) => writer.write(key).await,
        }
    }

    /// Looks `key` up; Ok if found.
    async fn read(&mut self, key: &str) -> std::result::Result<(), String> {
        match self {
            Writer::Idserver(client) => client
                .lookup(key)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Writer::Etcd(writer) => writer.read(key).await,
            Writer::Sentinel(writer) => writer.read(key).await,
        }
    }
}

/// Creates `<prefix><n>` one after another, or looks up keys of `existing` at random, until
/// `until`; the latencies (ms) of the operations that succeeded and the count of
/// the others.
async fn timed(
    until: Instant,
    workload: Workload,
    prefix: &str,
    existing: &[String],
    mut writer: Writer,
) -> Written {
    let (mut latencies, mut failed, mut first_error) = (Vec::new(), 0u64, None);
    let mut n = 0u64;
    while Instant::now() < until {
        let sent = Instant::now();
        let done = match workload {
            Workload::Create => {
                let key = format!("{prefix}{n}");
                n += 1;
                writer.write(&key).await
            }
            Workload::Lookup if existing.is_empty() => Err("no key to look up".to_string()),
            Workload::Lookup => {
                let key = &existing[rand::random::<usize>() % existing.len()];
                writer.read(key).await
            }
        };
        match done {
            Ok(()) => latencies.push(sent.elapsed().as_secs_f64() * 1000.0),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    (latencies, failed, first_error)
}

/// Latencies (ms) of acknowledged writes, how many failed, the first failure.
type Written = (Vec<f64>, u64, Option<String>);

/// Waits until every node names the same coordinator and that node calls itself one.
async fn wait_agreed(cluster: &LabCluster) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let all: Vec<usize> = (0..cluster.len()).collect();
    while crate::conditions::agreed_coordinator(cluster, &cluster.statuses(&all).await).is_none() {
        if Instant::now() >= deadline {
            return Err(Error::Setup(format!(
                "idserver did not elect a coordinator within {READY_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(&values, 0.5)
}

/// Runs the bench: in round r the systems go in the order rotated by r; each is started, measured
/// at every number of clients, and stopped. `progress` hears a line per measurement.
pub async fn run(
    options: &BenchOptions,
    evidence: &Path,
    progress: &dyn Fn(&str),
) -> Result<BenchReport> {
    let start_ms = crate::history::now_ms();
    let mut points = Vec::new();
    let mut failovers = Vec::new();
    let mut windows = Vec::new();
    let length = Duration::from_secs_f64(options.seconds);
    for round in 0..options.rounds {
        let mut order = options.systems.clone();
        let len = order.len().max(1);
        order.rotate_left(round as usize % len);
        for system in order {
            let mut running = Running::start(system, &options.idserver, evidence).await?;
            // (Setup, on plain links: under loss a session's first connection may time out.)
            let seeded = Arc::new(running.seed(&format!("s{start_ms}-{round}")).await?);
            options.profile.apply(running.lab())?;
            let measurements = options
                .clients
                .iter()
                .flat_map(|c| [(Workload::Create, *c), (Workload::Lookup, *c)]);
            for (workload, clients) in measurements {
                let tag = format!("b{start_ms}-{round}-{}-{clients}", system.as_str());
                let began = Instant::now();
                let cpu_before = cpu::seconds(&running.pids());
                let (mut latencies, failed, first_error) = running
                    .measure(workload, clients, length, &tag, &seeded)
                    .await?;
                let cpu = cpu::seconds(&running.pids()) - cpu_before;
                let seconds = began.elapsed().as_secs_f64();
                latencies.sort_by(f64::total_cmp);
                let point = Point {
                    system,
                    workload,
                    clients,
                    round,
                    acked: latencies.len() as u64,
                    failed,
                    seconds,
                    per_s: latencies.len() as f64 / seconds,
                    p50_ms: percentile(&latencies, 0.5),
                    p99_ms: percentile(&latencies, 0.99),
                    p999_ms: percentile(&latencies, 0.999),
                    first_error,
                    percentiles_ms: (0..=100)
                        .map(|p| percentile(&latencies, f64::from(p) / 100.0))
                        .collect(),
                    cpu_s_per_1000: cpu * 1000.0 / latencies.len().max(1) as f64,
                };
                progress(&format!(
                    "round {} {:<16} {:<6} {:>3} clients: {:>8.0} /s  p50 {:.2} ms  p99 {:.2} ms{}",
                    round + 1,
                    system.as_str(),
                    workload.as_str(),
                    clients,
                    point.per_s,
                    point.p50_ms,
                    point.p99_ms,
                    if failed > 0 {
                        format!(
                            "  ({failed} failed, first: {})",
                            point.first_error.as_deref().unwrap_or("?")
                        )
                    } else {
                        String::new()
                    }
                ));
                points.push(point);
            }
            let tag = format!("w{start_ms}-{round}-{}", system.as_str());
            let found = running.windows(length, &tag).await?;
            let mut sorted = found.windows_ms.clone();
            sorted.sort_by(f64::total_cmp);
            progress(&format!(
                "round {} {:<16} window {:>3} writes: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms{}{}",
                round + 1,
                system.as_str(),
                sorted.len(),
                percentile(&sorted, 0.5),
                percentile(&sorted, 0.99),
                sorted.last().copied().unwrap_or(0.0),
                if found.timed_out > 0 {
                    format!("  ({} timed out)", found.timed_out)
                } else {
                    String::new()
                },
                found
                    .first_error
                    .as_ref()
                    .map_or(String::new(), |e| format!("  (first error: {e})"))
            ));
            windows.push(WindowPoint {
                system,
                round,
                load_clients: WINDOW_LOAD_CLIENTS,
                windows_ms: found.windows_ms,
                timed_out: found.timed_out,
                first_error: found.first_error,
            });
            // Spread over the rounds: `failovers` in all per system.
            let kills = options.failovers / options.rounds
                + u32::from(round < options.failovers % options.rounds);
            if kills > 0 {
                let tag = format!("f{start_ms}-{round}-{}", system.as_str());
                let made = failover::failovers(&mut running, system, kills, &tag, progress).await?;
                failovers.extend(made);
            }
            drop(running);
        }
    }
    let summary = summarise(options, &points);
    let failover_summary = options
        .systems
        .iter()
        .map(|&system| summarise_failovers(system, &failovers))
        .filter(|s| s.kills > 0)
        .collect();
    let window_summary = options
        .systems
        .iter()
        .map(|&system| summarise_windows(system, &windows))
        .filter(|s| s.samples > 0 || s.timed_out > 0)
        .collect();
    Ok(BenchReport {
        start_ms,
        profile: options.profile,
        points,
        summary,
        failovers,
        failover_summary,
        windows,
        window_summary,
    })
}

fn summarise_windows(system: System, windows: &[WindowPoint]) -> WindowSummary {
    let of = windows.iter().filter(|w| w.system == system);
    let mut all: Vec<f64> = of
        .clone()
        .flat_map(|w| w.windows_ms.iter().copied())
        .collect();
    all.sort_by(f64::total_cmp);
    WindowSummary {
        system,
        samples: all.len() as u64,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
        max_ms: all.last().copied().unwrap_or(0.0),
        timed_out: of.map(|w| w.timed_out).sum(),
        percentiles_ms: (0..=100)
            .map(|p| percentile(&all, f64::from(p) / 100.0))
            .collect(),
    }
}

fn summarise_failovers(system: System, failovers: &[failover::Failover]) -> FailoverSummary {
    let of: Vec<&failover::Failover> = failovers.iter().filter(|f| f.system == system).collect();
    let mut first: Vec<f64> = of.iter().filter_map(|f| f.first_ack_ms).collect();
    first.sort_by(f64::total_cmp);
    FailoverSummary {
        system,
        kills: of.len() as u32,
        first_ack_p50_ms: percentile(&first, 0.5),
        first_ack_p99_ms: percentile(&first, 0.99),
        agreed_p50_ms: median(of.iter().filter_map(|f| f.agreed_ms).collect()),
        stuck: of
            .iter()
            .filter(|f| f.first_ack_ms.is_none() || f.agreed_ms.is_none())
            .count() as u32,
        acked: of.iter().map(|f| f.acked).sum(),
        lost: of.iter().map(|f| f.lost.len() as u64).sum(),
    }
}

fn summarise(options: &BenchOptions, points: &[Point]) -> Vec<Summary> {
    let mut summary = Vec::new();
    let cases = [Workload::Create, Workload::Lookup]
        .into_iter()
        .flat_map(|w| options.clients.iter().map(move |c| (w, *c)));
    for (workload, clients) in cases {
        let of = |system: System, f: fn(&Point) -> f64| {
            median(
                points
                    .iter()
                    .filter(|p| {
                        p.system == system && p.clients == clients && p.workload == workload
                    })
                    .map(f)
                    .collect(),
            )
        };
        let base = options
            .systems
            .contains(&System::Idserver)
            .then(|| of(System::Idserver, |p| p.per_s));
        for &system in &options.systems {
            let per_s = of(system, |p| p.per_s);
            summary.push(Summary {
                system,
                workload,
                clients,
                per_s,
                p50_ms: of(system, |p| p.p50_ms),
                p99_ms: of(system, |p| p.p99_ms),
                p999_ms: of(system, |p| p.p999_ms),
                cpu_s_per_1000: of(system, |p| p.cpu_s_per_1000),
                ratio: base.filter(|b| *b > 0.0).map(|b| per_s / b),
            });
        }
    }
    summary
}

/// The terminal table: a row per system and number of clients.
pub fn table(report: &BenchReport) -> String {
    let mut out = format!(
        "{:<16} {:<7} {:>7} {:>10} {:>9} {:>9} {:>9} {:>11} {:>11}\n",
        "system",
        "op",
        "clients",
        "per s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "vs idserver",
        "cpu s/1000"
    );
    for s in &report.summary {
        out.push_str(&format!(
            "{:<16} {:<7} {:>7} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>11} {:>11.3}\n",
            s.system.as_str(),
            s.workload.as_str(),
            s.clients,
            s.per_s,
            s.p50_ms,
            s.p99_ms,
            s.p999_ms,
            s.ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            s.cpu_s_per_1000
        ));
    }
    if !report.window_summary.is_empty() {
        out.push_str(&format!(
            "\n{:<16} {:>7} {:>10} {:>10} {:>10} {:>9}\n",
            "window", "writes", "p50 ms", "p99 ms", "max ms", "timed out"
        ));
        for w in &report.window_summary {
            out.push_str(&format!(
                "{:<16} {:>7} {:>10.2} {:>10.2} {:>10.2} {:>9}\n",
                w.system.as_str(),
                w.samples,
                w.p50_ms,
                w.p99_ms,
                w.max_ms,
                w.timed_out
            ));
        }
    }
    if !report.failover_summary.is_empty() {
        out.push_str(&format!(
            "\n{:<16} {:>5} {:>14} {:>14} {:>14} {:>6} {:>9} {:>6}\n",
            "failover",
            "kills",
            "1st ack p50",
            "1st ack p99",
            "agreed p50",
            "stuck",
            "acked",
            "lost"
        ));
        for f in &report.failover_summary {
            out.push_str(&format!(
                "{:<16} {:>5} {:>11.0} ms {:>11.0} ms {:>11.0} ms {:>6} {:>9} {:>6}\n",
                f.system.as_str(),
                f.kills,
                f.first_ack_p50_ms,
                f.first_ack_p99_ms,
                f.agreed_p50_ms,
                f.stuck,
                f.acked,
                f.lost
            ));
        }
    }
    out
}
