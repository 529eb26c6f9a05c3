//! A cluster in a lab: one host namespace per node running `idserver` (which starts its own
//! `redis-server` in the same namespace, or uses a Redis container that is a host of its own,
//! `n1-redis`), or all nodes on one host (ports apart), and a `client` host for the workload.
//! Nodes start as the README tells users: the default listen address, `--peers` naming every
//! member. Knows how to start, signal and query nodes; knows nothing of scenarios.
//!
//! With a hosts file ([`NodeConfig::hosts`]) the nodes run on real hosts instead, each driven
//! by its `idlab agent` over SSH ([`crate::remote`]); clients and probes run here, on the
//! control node.

use crate::containers::{RedisContainer, RedisContainers, REDIS_PORT};
use crate::error::{Error, Result};
use crate::history::{now_ms, NodeView, Sample, SeenEvents};
use crate::limits::{
    CREDENTIALS_VALID_S, MCAST_GROUP, NODE_PORT, ONE_HOST_NAME, POLL_EVENTS_EVERY, POLL_STATUS_MS,
    PROBE_CONNECT_MS, PROBE_REPLY_MS, ROGUE_HOST_NAME, STOP_WAIT_MS,
};
use crate::network::Net;
use crate::remote::protocol::{Reply, Request, Sig, Target};
use crate::remote::RemoteHosts;
use crate::rogue::RogueKit;
use crate::scenario::{Discovery, Layout, Mode, RedisMode, Security};
use idserver::client::{Client, ClientConfig};
use idserver::connection::Transport;
use idserver::event::LoggedEvent;
use idserver::security::mint::{CredentialSet, NodeSpec};
use idserver::wire::StatusView;
use netns::{Host, Lab};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How every node of the cluster is started.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The `idserver` binary.
    pub idserver: PathBuf,
    /// The previous release's `idserver`, if given (nodes of a `build = "previous"` scenario
    /// start from it).
    pub previous_idserver: Option<PathBuf>,
    /// Which build nodes start from.
    pub build: crate::scenario::Build,
    /// `--cluster`.
    pub cluster: String,
    /// `--mode`.
    pub mode: Mode,
    /// `--min-acks`, if not the server's default.
    pub min_acks: Option<u32>,
    /// Peers list or multicast.
    pub discovery: Discovery,
    /// A host per node, or one for all.
    pub layout: Layout,
    /// Credentials minted for the run, or `--insecure-plaintext`.
    pub security: Security,
    /// Add the `rogue` host (no credentials of the cluster).
    pub rogue: bool,
    /// How many nodes.
    pub nodes: u32,
    /// How many client hosts.
    pub client_hosts: u32,
    /// Keep each node's data directory in the evidence at teardown.
    pub keep_data: bool,
    /// Where each node's Redis runs.
    pub redis: RedisMode,
    /// The engine and image, when Redis runs in containers.
    pub containers: Option<Arc<RedisContainers>>,
    /// The hosts to run the nodes on over SSH, prepared for the whole run (None: the local
    /// lab's namespaces).
    pub hosts: Option<Arc<RemoteHosts>>,
}

impl NodeConfig {
    /// `nodes` nodes of the current build in `mode`, a host each, `--peers`, the run's
    /// credentials, their own Redis, one client host: a cluster as the README starts one.
    pub fn plain(idserver: PathBuf, cluster: &str, mode: Mode, nodes: u32) -> NodeConfig {
        NodeConfig {
            idserver,
            previous_idserver: None,
            build: crate::scenario::Build::Current,
            cluster: cluster.to_string(),
            mode,
            min_acks: None,
            discovery: Discovery::Peers,
            layout: Layout::Hosts,
            security: Security::Tls,
            rogue: false,
            nodes,
            client_hosts: 1,
            keep_data: false,
            redis: RedisMode::Process,
            containers: None,
            hosts: None,
        }
    }
}

/// Where a node's process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Never started.
    New,
    /// Running.
    Running,
    /// Stopped with SIGSTOP.
    Paused,
    /// Exited (killed, stopped, or on its own).
    Down,
}

/// A tokio runtime whose threads live in one host's network namespace: sockets its tasks make
/// belong to that host.
pub struct HostRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostRuntime {
    /// Starts a runtime with `workers` threads inside `host`.
    pub fn start(host: &Host, workers: usize) -> Result<HostRuntime> {
        let path = format!("/run/netns/{}", host.ns());
        let ns = std::fs::File::open(&path)
            .map_err(|e| Error::Setup(format!("failed to open {path}: {e}")))?;
        Self::spawn(&format!("rt-{}", host.name()), Some(ns), workers)
    }

    /// Starts a runtime with `workers` threads in this process's own namespace (the control
    /// node of a run over SSH).
    pub fn here(workers: usize) -> Result<HostRuntime> {
        Self::spawn("rt-control", None, workers)
    }

    fn spawn(name: &str, ns: Option<std::fs::File>, workers: usize) -> Result<HostRuntime> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let entered = match &ns {
                    Some(ns) => nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| format!("failed to enter the namespace: {e}")),
                    None => Ok(()),
                };
                let made = entered.and_then(|()| {
                    // Worker threads are spawned from this thread, so they inherit its
                    // namespace.
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(workers)
                        .enable_all()
                        .build()
                        .map_err(|e| format!("failed to build a runtime: {e}"))
                });
                match made {
                    Ok(runtime) => {
                        let _ = handle_tx.send(Ok(runtime.handle().clone()));
                        let _ = stop_rx.recv();
                        runtime.shutdown_timeout(Duration::from_millis(500));
                    }
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| Error::Setup(format!("failed to start a thread: {e}")))?;
        let handle = handle_rx
            .recv()
            .map_err(|_| Error::Setup("the runtime thread died".into()))?
            .map_err(Error::Setup)?;
        Ok(HostRuntime {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The runtime's handle (spawn work into the host with it).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for HostRuntime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Node {
    /// Its namespace in the local lab (None on a remote host).
    host: Option<Host>,
    /// Its address on the cluster network.
    addr: Ipv4Addr,
    runtime: HostRuntime,
    /// Its process, in the local lab.
    child: Option<Child>,
    /// Its process's pid on its remote host, while it runs.
    remote_pid: Option<u32>,
    /// Its credentials' flags (paths on its host).
    cred_args: Vec<String>,
    /// Its host's clock minus the control node's (ms; 0 in the local lab).
    clock_offset_ms: i64,
    state: NodeState,
    data_dir: PathBuf,
    /// The `idserver` it runs (the previous build's until upgraded).
    binary: PathBuf,
    /// The pid of the node's Redis while it is stopped (SIGSTOP) by `pause-redis` (0 for a
    /// frozen container).
    redis_paused: Option<i32>,
    /// Its Redis container and the lab host that is the container's network, in container
    /// mode (from [`LabCluster::start_stores`] on).
    store: Option<(RedisContainer, Host)>,
}

impl Node {
    /// The node's process is gone. A Redis it started dies with it; a container lives on.
    fn went_down(&mut self) {
        self.child = None;
        self.remote_pid = None;
        self.state = NodeState::Down;
        if self.store.is_none() {
            self.redis_paused = None;
        }
    }
}

/// A running lab with its nodes.
pub struct LabCluster {
    nodes: Vec<Node>,
    clients: Vec<HostRuntime>,
    config: NodeConfig,
    data_root: PathBuf,
    evidence: PathBuf,
    samples: Arc<Mutex<Vec<Sample>>>,
    seen: Arc<Mutex<Vec<SeenEvents>>>,
    pollers: Vec<tokio::task::JoinHandle<()>>,
    /// The run's credentials (None: plaintext).
    creds: Option<CredentialSet>,
    /// How clients connect.
    transport: Transport,
    /// The `rogue` host's runtime and credentials of its own, if the run has one.
    rogue: Option<(HostRuntime, Arc<RogueKit>)>,
    /// The hosts of a run over SSH.
    remote: Option<Arc<RemoteHosts>>,
    // Dropped last: the namespaces go once every process and runtime in them is gone.
    lab: Option<Lab>,
}

impl LabCluster {
    /// Makes the lab (hosts `n1`..`nN` and `client`) and starts the status pollers; no node
    /// runs yet. Node logs go to `evidence/nodes/`. With [`NodeConfig::hosts`], uses the
    /// remote hosts instead, reset for this scenario (see [`crate::remote`]).
    pub fn create(config: NodeConfig, evidence: &Path) -> Result<LabCluster> {
        std::fs::create_dir_all(evidence.join("nodes"))
            .map_err(|e| Error::Setup(format!("failed to create {}: {e}", evidence.display())))?;
        if let Some(hosts) = config.hosts.clone() {
            return Self::create_remote(config, hosts, evidence);
        }
        let mut lab = Lab::create()?;
        let data_root = std::env::temp_dir().join(format!("idlab-{}", lab.id()));
        let first_binary = match (config.build, &config.previous_idserver) {
            (crate::scenario::Build::Current, _) => config.idserver.clone(),
            (crate::scenario::Build::Previous, Some(previous)) => previous.clone(),
            (crate::scenario::Build::Previous, None) => {
                return Err(Error::Setup(
                    "this scenario starts its nodes from the previous build: give it with \
                     `idlab run --previous-idserver PATH` (scripts/lab builds it)"
                        .into(),
                ))
            }
        };
        if config.redis == RedisMode::Container && config.containers.is_none() {
            return Err(Error::Setup(
                "Redis in containers needs the lab's Docker engine and image (idlab run prepares \
                 them)"
                    .into(),
            ));
        }
        let mut nodes = Vec::new();
        let shared = match config.layout {
            Layout::OneHost => Some(lab.add_host(ONE_HOST_NAME)?),
            Layout::Hosts => None,
        };
        for i in 1..=config.nodes {
            let host = match &shared {
                Some(host) => host.clone(),
                None => lab.add_host(&format!("n{i}"))?,
            };
            let runtime = HostRuntime::start(&host, 1)?;
            nodes.push(Node {
                addr: host.addr(),
                host: Some(host),
                runtime,
                child: None,
                remote_pid: None,
                cred_args: Vec::new(),
                clock_offset_ms: 0,
                state: NodeState::New,
                redis_paused: None,
                store: None,
                data_dir: data_root.join(format!("n{i}")),
                binary: first_binary.clone(),
            });
        }
        let mut clients = Vec::new();
        for c in 0..config.client_hosts.max(1) {
            let host = lab.add_host(&client_host_name(c))?;
            clients.push(HostRuntime::start(&host, 2)?);
        }
        let creds = match config.security {
            Security::InsecurePlaintext => None,
            Security::Tls => Some(mint(&data_root, &config.cluster, &nodes)?),
        };
        if let Some(creds) = &creds {
            for (i, node) in nodes.iter_mut().enumerate() {
                node.cred_args = creds.node_args(&format!("n{}", i + 1));
            }
        }
        let rogue = if config.rogue {
            let host = lab.add_host(ROGUE_HOST_NAME)?;
            let kit = RogueKit::mint(
                &data_root.join("rogue"),
                &config.cluster,
                host.addr().into(),
                creds.as_ref().map(|c| c.ca()).as_deref(),
            )?;
            Some((HostRuntime::start(&host, 1)?, Arc::new(kit)))
        } else {
            None
        };
        Self::assemble(
            config,
            nodes,
            clients,
            creds,
            rogue,
            None,
            Some(lab),
            data_root,
            evidence,
        )
    }

    /// A cluster on the prepared `remote` hosts, reset first, each given the scenario's
    /// credentials; clients and probes run here.
    fn create_remote(
        config: NodeConfig,
        remote: Arc<RemoteHosts>,
        evidence: &Path,
    ) -> Result<LabCluster> {
        if let Some(what) = crate::remote::lab_only(
            config.layout,
            config.discovery,
            config.redis,
            config.rogue,
            config.build,
            config.client_hosts,
        ) {
            return Err(Error::Setup(format!(
                "the SSH backend does not run {what}: run this scenario in the local lab"
            )));
        }
        if config.nodes as usize > remote.len() {
            return Err(Error::Setup(format!(
                "this scenario needs {} hosts; the run prepared {}",
                config.nodes,
                remote.len()
            )));
        }
        remote.reset()?;
        // The run's credentials: with the SSH connections' sockets, removed with them.
        let data_root = remote
            .control_dir()
            .join(format!("scenario-{}", crate::history::now_ms()));
        let mut nodes = Vec::new();
        for i in 0..config.nodes as usize {
            nodes.push(Node {
                host: None,
                addr: remote.address(i),
                runtime: HostRuntime::here(1)?,
                child: None,
                remote_pid: None,
                cred_args: Vec::new(),
                clock_offset_ms: remote.agent(i).clock().offset_ms.round() as i64,
                state: NodeState::New,
                redis_paused: None,
                store: None,
                data_dir: PathBuf::from(format!(
                    "{}/{}",
                    remote.dir(i),
                    crate::remote::agent::NODE_DATA
                )),
                binary: PathBuf::from(format!("{}/bin/idserver", remote.dir(i))),
            });
        }
        let creds = match config.security {
            Security::InsecurePlaintext => None,
            Security::Tls => Some(mint(&data_root, &config.cluster, &nodes)?),
        };
        if let Some(creds) = &creds {
            for (i, node) in nodes.iter_mut().enumerate() {
                let files = creds.node(&format!("n{}", i + 1));
                let installed = remote.install_credentials(
                    i,
                    &[
                        ("cert.pem", &files.tls.cert),
                        ("key.pem", &files.tls.key),
                        ("ca.pem", &files.tls.ca),
                        ("cluster.key", &files.cluster_key),
                    ],
                )?;
                node.cred_args = ["--tls-cert", "--tls-key", "--tls-ca", "--cluster-key-file"]
                    .iter()
                    .zip(installed)
                    .flat_map(|(flag, path)| [flag.to_string(), path])
                    .collect();
            }
        }
        let clients = vec![HostRuntime::here(2)?];
        Self::assemble(
            config,
            nodes,
            clients,
            creds,
            None,
            Some(remote),
            None,
            data_root,
            evidence,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        config: NodeConfig,
        nodes: Vec<Node>,
        clients: Vec<HostRuntime>,
        creds: Option<CredentialSet>,
        rogue: Option<(HostRuntime, Arc<RogueKit>)>,
        remote: Option<Arc<RemoteHosts>>,
        lab: Option<Lab>,
        data_root: PathBuf,
        evidence: &Path,
    ) -> Result<LabCluster> {
        let count = nodes.len();
        let transport = match &creds {
            None => Transport::InsecurePlaintext,
            Some(creds) => creds
                .client_transport()
                .map_err(|e| Error::Setup(format!("failed to load the run's CA: {e}")))?,
        };
        let mut cluster = LabCluster {
            creds,
            transport,
            rogue,
            nodes,
            clients,
            config,
            data_root,
            evidence: evidence.to_path_buf(),
            samples: Arc::new(Mutex::new(Vec::new())),
            seen: Arc::new(Mutex::new(vec![SeenEvents::new(); count])),
            pollers: Vec::new(),
            remote,
            lab,
        };
        cluster.start_pollers();
        Ok(cluster)
    }

    /// The `rogue` host's runtime and kit.
    pub fn rogue(&self) -> Result<(tokio::runtime::Handle, Arc<RogueKit>)> {
        let (runtime, kit) = self.rogue.as_ref().ok_or_else(|| {
            Error::Step("this run has no rogue host (no `rogue` step was parsed)".into())
        })?;
        Ok((runtime.handle().clone(), kit.clone()))
    }

    /// How clients connect to the nodes.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The run's credentials, if nodes run with them.
    pub fn credentials(&self) -> Option<&CredentialSet> {
        self.creds.as_ref()
    }

    /// A client for node `i` alone, quick to give up (status and event probes).
    fn probe_client(&self, i: usize) -> Client {
        Client::new(ClientConfig {
            servers: vec![self.addr(i).to_string()],
            cluster: self.config.cluster.clone(),
            connect_timeout_ms: PROBE_CONNECT_MS,
            reply_timeout_ms: PROBE_REPLY_MS,
            retry_for_ms: 0,
            transport: self.transport.clone(),
        })
    }

    /// The local lab (None on remote hosts).
    pub fn lab(&self) -> Option<&Lab> {
        self.lab.as_ref()
    }

    /// The network, for faults.
    pub fn net(&self) -> Net<'_> {
        match (&self.lab, &self.remote) {
            (Some(lab), _) => Net::Lab(lab),
            (None, Some(remote)) => Net::Remote(remote),
            (None, None) => unreachable!("a cluster has a lab or remote hosts"),
        }
    }

    /// The remote hosts of a run over SSH.
    pub fn remote(&self) -> Option<&RemoteHosts> {
        self.remote.as_deref()
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s name (`n1` for 0).
    pub fn name(&self, i: usize) -> String {
        format!("n{}", i + 1)
    }

    /// Node `i`'s serving address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        let port = match self.config.layout {
            Layout::Hosts => NODE_PORT,
            Layout::OneHost => NODE_PORT + i as u16,
        };
        SocketAddr::from((self.nodes[i].addr, port))
    }

    /// The node serving at `addr`, if any.
    pub fn index_of(&self, addr: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|i| self.addr(*i).to_string() == addr)
    }

    /// The node's host in the local lab.
    pub fn host(&self, i: usize) -> Result<&Host> {
        self.nodes[i].host.as_ref().ok_or_else(|| {
            Error::Step(format!(
                "{} runs on a remote host, not in the local lab",
                self.name(i)
            ))
        })
    }

    /// Client host `c`'s runtime (0: `client`).
    pub fn client(&self, c: u32) -> &tokio::runtime::Handle {
        self.clients[c as usize].handle()
    }

    /// The cluster name nodes run with.
    pub fn cluster_name(&self) -> &str {
        &self.config.cluster
    }

    /// Node `i`'s state, refreshed for nodes that exited on their own.
    pub fn state(&mut self, i: usize) -> NodeState {
        let node = &mut self.nodes[i];
        if let Some(child) = &mut node.child {
            if let Ok(Some(_)) = child.try_wait() {
                node.went_down();
            }
        }
        if let (Some(pid), Some(remote)) = (node.remote_pid, &self.remote) {
            let agent = remote.agent(i);
            if agent.take_exit(pid) || agent.is_gone() {
                node.went_down();
            }
        }
        node.state
    }

    /// Nodes that are running (not paused, not down, their Redis not paused nor cut off from
    /// them).
    pub fn live(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| {
                self.state(*i) == NodeState::Running
                    && !self.redis_paused(*i)
                    && !self.redis_cut_off(*i)
            })
            .collect()
    }

    /// Whether a partition separates node `i` from its Redis container.
    pub fn redis_cut_off(&self, i: usize) -> bool {
        self.nodes[i]
            .store
            .as_ref()
            .is_some_and(|(_, redis)| self.net().is_cut(&self.name(i), redis.name()))
    }

    /// The status samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples lock").clone()
    }

    /// Events each node was seen to apply.
    pub fn seen_events(&self) -> Vec<SeenEvents> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// Starts node `i` (first start or restart on its data).
    pub fn start(&mut self, i: usize) -> Result<()> {
        match self.state(i) {
            NodeState::Running | NodeState::Paused => {
                return Err(Error::Step(format!("{} is already running", self.name(i))))
            }
            NodeState::New | NodeState::Down => {}
        }
        let name = self.name(i);
        let log_path = self.evidence.join("nodes").join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::Setup(format!("failed to open {}: {e}", log_path.display())))?;
        let addr = self.nodes[i].addr.to_string();
        let port = self.addr(i).port();
        let peers: Vec<String> = (0..self.nodes.len())
            .map(|j| self.addr(j).to_string())
            .collect();
        let node = &self.nodes[i];
        // No --listen: the default (0.0.0.0), so the node finds its own --peers entry by port
        // and interface address, as on a user's hosts.
        let mut args: Vec<String> = vec![
            "--numport".into(),
            port.to_string(),
            "--cluster".into(),
            self.config.cluster.clone(),
            "--mode".into(),
            self.config.mode.as_str().into(),
            "--data-dir".into(),
            node.data_dir.display().to_string(),
        ];
        match self.config.discovery {
            Discovery::Peers => args.extend(["--peers".into(), peers.join(",")]),
            Discovery::Multicast => args.extend([
                "--mcast".into(),
                MCAST_GROUP.into(),
                "--mcast-if".into(),
                addr,
                "--cluster-size".into(),
                self.nodes.len().to_string(),
            ]),
        }
        if let Some(k) = self.config.min_acks {
            args.extend(["--min-acks".into(), k.to_string()]);
        }
        if let Some((_, redis)) = &node.store {
            args.extend([
                "--redis".into(),
                format!("redis://{}:{REDIS_PORT}/0", redis.addr()),
            ]);
        }
        if self.creds.is_some() {
            args.extend(node.cred_args.iter().cloned());
        } else {
            args.push("--insecure-plaintext".into());
        }
        if let Some(remote) = &self.remote {
            let started = remote.agent(i).request(Request::StartNode {
                program: node.binary.display().to_string(),
                args,
                log: "node.log".into(),
            })?;
            let Reply::Started { pid } = started else {
                return Err(Error::Step(format!(
                    "{name}: the agent answered a start with {started:?}"
                )));
            };
            let node = &mut self.nodes[i];
            node.remote_pid = Some(pid);
            node.state = NodeState::Running;
            return Ok(());
        }
        let host = self.host(i)?;
        let mut cmd = host.command(&node.binary);
        cmd.args(&args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                Error::Setup(format!(
                    "failed to start {}: {e}",
                    self.nodes[i].binary.display()
                ))
            })?;
        let node = &mut self.nodes[i];
        node.child = Some(child);
        node.state = NodeState::Running;
        Ok(())
    }

    /// Node `i` runs the current build from its next start on; returns the binary it ran.
    pub fn upgrade_binary(&mut self, i: usize) -> PathBuf {
        std::mem::replace(&mut self.nodes[i].binary, self.config.idserver.clone())
    }

    /// How an operator connects: with node `i`'s certificate (a certificate of the run's CA),
    /// as `idclient --tls-cert --tls-key` does; plaintext if the run has no credentials.
    pub fn operator_transport(&self, i: usize) -> Result<Transport> {
        match &self.creds {
            None => Ok(Transport::InsecurePlaintext),
            Some(creds) => {
                let tls = idserver::security::NodeTls::load(&creds.node(&self.name(i)).tls)
                    .map_err(|e| {
                        Error::Setup(format!(
                            "failed to load {}'s certificate: {e}",
                            self.name(i)
                        ))
                    })?;
                Ok(Transport::Tls {
                    connector: tls.connector,
                    server_name: None,
                })
            }
        }
    }

    /// Node `i`'s process id (an error if it is not running); on a remote host, the id
    /// there.
    pub fn pid(&self, i: usize) -> Result<Pid> {
        let node = &self.nodes[i];
        node.child
            .as_ref()
            .map(|c| c.id())
            .or(node.remote_pid)
            .map(|pid| Pid::from_raw(pid as i32))
            .ok_or_else(|| Error::Step(format!("{} is not running", self.name(i))))
    }

    /// SIGKILL to node `i`; its Redis dies with it.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        self.pid(i)?;
        if let Some(remote) = &self.remote {
            remote.agent(i).request(Request::KillNode)?;
            self.remote_went_down(i);
            return Ok(());
        }
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.went_down();
        Ok(())
    }

    /// Node `i` on a remote host was killed or stopped by the lab: the agent said so before it
    /// answered, and that word is taken (a later node with the same pid is another process).
    fn remote_went_down(&mut self, i: usize) {
        if let (Some(pid), Some(remote)) = (self.nodes[i].remote_pid, &self.remote) {
            remote.agent(i).take_exit(pid);
        }
        self.nodes[i].went_down();
    }

    /// SIGSTOP to node `i`.
    pub fn pause(&mut self, i: usize) -> Result<()> {
        self.transition(i, NodeState::Running, Signal::SIGSTOP, NodeState::Paused)
    }

    /// SIGCONT to node `i`.
    pub fn resume(&mut self, i: usize) -> Result<()> {
        self.transition(i, NodeState::Paused, Signal::SIGCONT, NodeState::Running)
    }

    /// Sends `signal` to node `i` if it is in state `from`; it is then in state `to`.
    fn transition(
        &mut self,
        i: usize,
        from: NodeState,
        signal: Signal,
        to: NodeState,
    ) -> Result<()> {
        if self.state(i) != from {
            return Err(Error::Step(format!(
                "{} is {:?}, not {from:?}",
                self.name(i),
                self.state(i)
            )));
        }
        self.signal(i, signal)?;
        self.nodes[i].state = to;
        Ok(())
    }

    fn signal(&self, i: usize, signal: Signal) -> Result<()> {
        if let Some(remote) = &self.remote {
            self.pid(i)?;
            remote.agent(i).request(Request::Signal {
                target: Target::Node,
                signal: sig(signal)?,
            })?;
            return Ok(());
        }
        kill(self.pid(i)?, signal)
            .map_err(|e| Error::Step(format!("failed to send {signal} to {}: {e}", self.name(i))))
    }

    /// SIGTERM to node `i`, waiting for it to exit (SIGKILL after a while).
    pub fn stop(&mut self, i: usize) -> Result<()> {
        if let Some(remote) = &self.remote {
            self.pid(i)?;
            remote.agent(i).request(Request::StopNode {
                wait_ms: STOP_WAIT_MS,
            })?;
            self.remote_went_down(i);
            return Ok(());
        }
        if self.state(i) == NodeState::Paused {
            self.signal(i, Signal::SIGCONT)?;
        }
        self.signal(i, Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_millis(STOP_WAIT_MS);
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        node.went_down();
        Ok(())
    }

    /// SIGKILL to node `i`'s Redis alone. A container is started again at once on its data
    /// (as an orchestrator would), its host moved into the container's new namespace.
    pub fn kill_redis(&mut self, i: usize) -> Result<()> {
        if let Some(kit) = self.config.containers.clone() {
            let node = &mut self.nodes[i];
            if let Some((container, host)) = &node.store {
                let pid = kit.kill_and_restart(container)?;
                let name = host.name().to_string();
                node.redis_paused = None;
                if let Some(lab) = &mut self.lab {
                    lab.reattach_host(&name, pid)?;
                }
                return Ok(());
            }
        }
        let pid = self.redis_pid(i)?;
        self.nodes[i].redis_paused = None;
        self.signal_redis(i, pid, Signal::SIGKILL)
    }

    /// SIGSTOP to node `i`'s Redis alone (a container: the cgroup freezer): it hangs (the node
    /// itself runs on).
    pub fn pause_redis(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].redis_paused.is_some() {
            return Err(Error::Step(format!(
                "{}'s Redis is already paused",
                self.name(i)
            )));
        }
        if let (Some(kit), Some((container, _))) = (&self.config.containers, &self.nodes[i].store) {
            kit.pause(container)?;
            self.nodes[i].redis_paused = Some(0);
            return Ok(());
        }
        let pid = self.redis_pid(i)?;
        self.signal_redis(i, pid, Signal::SIGSTOP)?;
        self.nodes[i].redis_paused = Some(pid);
        Ok(())
    }

    /// SIGCONT to node `i`'s Redis paused by [`LabCluster::pause_redis`] (a container:
    /// thawed).
    pub fn resume_redis(&mut self, i: usize) -> Result<()> {
        let pid = self.nodes[i]
            .redis_paused
            .take()
            .ok_or_else(|| Error::Step(format!("{}'s Redis is not paused", self.name(i))))?;
        if let (Some(kit), Some((container, _))) = (&self.config.containers, &self.nodes[i].store) {
            return kit.unpause(container);
        }
        self.signal_redis(i, pid, Signal::SIGCONT)
    }

    /// Starts each node's Redis container and makes it a host of the lab (`n1-redis`, …);
    /// nothing in process mode.
    pub async fn start_stores(&mut self) -> Result<()> {
        let Some(kit) = self.config.containers.clone() else {
            return Ok(());
        };
        if self.config.redis != RedisMode::Container {
            return Ok(());
        }
        let Some(lab) = &self.lab else {
            return Err(Error::Setup(
                "Redis in containers runs in the local lab only".into(),
            ));
        };
        let run = lab.id().to_string();
        // All at once: a container takes a few hundred milliseconds to start.
        let mut starting = tokio::task::JoinSet::new();
        for i in 0..self.nodes.len() {
            let kit = kit.clone();
            let name = format!("{run}-{}-redis", self.name(i));
            let (run, data) = (run.clone(), self.nodes[i].data_dir.join("redis"));
            starting.spawn(async move { (i, kit.start(&run, &name, &data).await) });
        }
        // On an error the containers started go with the lab: those not yet a node's store
        // are removed as they are dropped, the others by the run's label at teardown.
        let mut started = Vec::new();
        while let Some(joined) = starting.join_next().await {
            let (i, container) =
                joined.map_err(|e| Error::Setup(format!("a container start failed: {e}")))?;
            started.push((i, container?));
        }
        started.sort_by_key(|(i, _)| *i);
        for (i, container) in started {
            let pid = kit.pid(&container)?;
            let name = format!("{}-redis", self.name(i));
            let lab = self.lab.as_mut().expect("checked above");
            let host = lab.attach_host(&name, pid)?;
            self.nodes[i].store = Some((container, host));
        }
        Ok(())
    }

    /// Removes the Redis containers (through testcontainers); [`LabCluster::teardown`] removes
    /// whatever is left by the run's label.
    pub async fn remove_stores(&mut self) {
        let Some(kit) = self.config.containers.clone() else {
            return;
        };
        let mut removing = tokio::task::JoinSet::new();
        for i in 0..self.nodes.len() {
            if let Some((container, _)) = &self.nodes[i].store {
                self.save_redis_log(i, &kit.logs(container).unwrap_or_default());
            }
            if let Some((container, _)) = self.nodes[i].store.take() {
                let kit = kit.clone();
                removing.spawn(async move { kit.remove(container).await });
            }
        }
        while let Some(removed) = removing.join_next().await {
            if let Ok(Err(e)) = removed {
                eprintln!("idlab: failed to remove a Redis container: {e}");
            }
        }
    }

    /// Whether the nodes' Redis run in containers.
    pub fn has_containers(&self) -> bool {
        self.nodes.iter().any(|n| n.store.is_some())
    }

    /// The lab host of node `i`'s Redis container.
    pub fn redis_host(&self, i: usize) -> Result<&Host> {
        self.nodes[i].store.as_ref().map(|(_, h)| h).ok_or_else(|| {
            Error::Step(format!(
                "{}'s Redis is not a host of the lab: only Redis in containers is (redis = \
                 \"container\")",
                self.name(i)
            ))
        })
    }

    /// The node whose host (or name) is `name`.
    pub fn index_of_name(&self, name: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|i| self.name(*i) == name)
    }

    /// Cuts node `i` off from every other host; its Redis container (if any) stays on its
    /// side, as a Redis on the node's own host would.
    pub fn isolate(&self, i: usize, mode: netns::PartitionMode) -> Result<()> {
        let name = self.name(i);
        match (&self.nodes[i].store, &self.lab) {
            (Some((_, redis)), Some(lab)) => {
                let side = vec![name, redis.name().to_string()];
                let rest: Vec<String> = lab
                    .hosts()
                    .iter()
                    .map(|h| h.name().to_string())
                    .filter(|h| !side.contains(h))
                    .collect();
                Ok(lab.split(&[side, rest], mode)?)
            }
            _ => self.net().isolate(&name, mode),
        }
    }

    fn save_redis_log(&self, i: usize, text: &str) {
        let _ = std::fs::write(
            self.evidence
                .join("nodes")
                .join(format!("n{}-redis.log", i + 1)),
            text,
        );
    }

    /// Whether node `i`'s Redis is paused.
    pub fn redis_paused(&self, i: usize) -> bool {
        self.nodes[i].redis_paused.is_some()
    }

    /// The pid of node `i`'s Redis (from its pid file).
    fn redis_pid(&self, i: usize) -> Result<i32> {
        if self.remote.is_some() {
            // The agent finds it on its host; 0 stands for "the node's Redis".
            return Ok(0);
        }
        let pid_file = self.nodes[i].data_dir.join("redis.pid");
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| Error::Step(format!("{} has no running Redis", self.name(i))))
    }

    fn signal_redis(&self, i: usize, pid: i32, signal: Signal) -> Result<()> {
        if let Some(remote) = &self.remote {
            remote.agent(i).request(Request::Signal {
                target: Target::Redis,
                signal: sig(signal)?,
            })?;
            return Ok(());
        }
        kill(Pid::from_raw(pid), signal).map_err(|e| {
            Error::Step(format!(
                "failed to send {signal} to {}'s Redis: {e}",
                self.name(i)
            ))
        })
    }

    /// Node `i`'s status, asked from inside its own host (so partitions do not hide it).
    pub async fn status(&self, i: usize) -> Option<StatusView> {
        let mut client = self.probe_client(i);
        self.nodes[i]
            .runtime
            .handle()
            .spawn(async move { client.status().await.ok() })
            .await
            .ok()
            .flatten()
    }

    /// Statuses of the given nodes, asked at once.
    pub async fn statuses(&self, nodes: &[usize]) -> Vec<(usize, Option<StatusView>)> {
        let asks: Vec<_> = nodes
            .iter()
            .map(|&i| {
                let mut client = self.probe_client(i);
                (
                    i,
                    self.nodes[i]
                        .runtime
                        .handle()
                        .spawn(async move { client.status().await.ok() }),
                )
            })
            .collect();
        let mut out = Vec::new();
        for (i, ask) in asks {
            out.push((i, ask.await.ok().flatten()));
        }
        out
    }

    /// Node `i`'s whole retained event log (times on the control node's clock).
    pub async fn events(&self, i: usize) -> Option<Vec<LoggedEvent>> {
        let client = self.probe_client(i);
        let offset = self.nodes[i].clock_offset_ms;
        self.nodes[i]
            .runtime
            .handle()
            .spawn(async move {
                let mut client = client;
                fetch_events(&mut client, 0, offset).await
            })
            .await
            .ok()
            .flatten()
    }

    /// Collects the events node `i` applied since those already seen (before a kill, so that
    /// what it applied in its last moments is not missed by the poller).
    pub async fn collect_events(&self, i: usize) {
        let since = self.seen.lock().expect("seen lock")[i]
            .keys()
            .next_back()
            .map_or(0, |(clock, _)| *clock);
        let client = self.probe_client(i);
        let offset = self.nodes[i].clock_offset_ms;
        let fetched = self.nodes[i]
            .runtime
            .handle()
            .spawn(async move {
                let mut client = client;
                fetch_events(&mut client, since, offset).await
            })
            .await
            .ok()
            .flatten();
        if let Some(events) = fetched {
            let mut seen = self.seen.lock().expect("seen lock");
            for e in events {
                seen[i]
                    .entry((e.event.clock, e.event.request_id))
                    .or_insert(e);
            }
        }
    }

    fn start_pollers(&mut self) {
        for i in 0..self.nodes.len() {
            let client = self.probe_client(i);
            let samples = self.samples.clone();
            let seen = self.seen.clone();
            let offset = self.nodes[i].clock_offset_ms;
            let poller = self.nodes[i]
                .runtime
                .handle()
                .spawn(poll(i, client, offset, samples, seen));
            self.pollers.push(poller);
        }
    }

    /// Stops everything and copies each Redis log into the evidence.
    pub fn teardown(&mut self) {
        for poller in self.pollers.drain(..) {
            poller.abort();
        }
        if self.config.hosts.is_some() {
            if let Some(remote) = self.remote.take() {
                for i in 0..self.nodes.len() {
                    for (path, out) in [
                        ("node.log".to_string(), format!("n{}.log", i + 1)),
                        (
                            format!("{}/redis.log", crate::remote::agent::NODE_DATA),
                            format!("n{}-redis.log", i + 1),
                        ),
                    ] {
                        let read = remote.agent(i).request(Request::Read {
                            path,
                            max_bytes: REMOTE_LOG_MAX,
                        });
                        if let Ok(Reply::Text { text }) = read {
                            let _ = std::fs::write(self.evidence.join("nodes").join(out), text);
                        }
                    }
                    self.nodes[i].went_down();
                }
                // Each agent kills its node and Redis and removes its rules and files (the
                // last scenario's are removed when the run ends and the agents with it).
                if let Err(e) = remote.reset() {
                    eprintln!("idlab: failed to reset the hosts after the scenario: {e}");
                }
            }
            let _ = std::fs::remove_dir_all(&self.data_root);
            return;
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
            node.went_down();
        }
        if let Some(kit) = self
            .config
            .containers
            .as_ref()
            .filter(|_| self.config.redis == RedisMode::Container)
        {
            for i in 0..self.nodes.len() {
                if let Some((container, _)) = &self.nodes[i].store {
                    self.save_redis_log(i, &kit.logs(container).unwrap_or_default());
                }
            }
            // Whatever the run started, by its label: also after a failed step or a panic.
            let run = self.lab.as_ref().map_or("", |lab| lab.id());
            if let Err(e) = kit.remove_run(run) {
                eprintln!("idlab: failed to remove the run's Redis containers: {e}");
            }
            for node in &mut self.nodes {
                node.store = None;
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let _ = std::fs::copy(
                node.data_dir.join("redis.log"),
                self.evidence
                    .join("nodes")
                    .join(format!("n{}-redis.log", i + 1)),
            );
            // Redis may still be writing for a moment after its parent died.
            if let Ok(pid) = std::fs::read_to_string(node.data_dir.join("redis.pid")) {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        if self.config.keep_data && self.data_root.exists() {
            let _ = std::process::Command::new("cp")
                .arg("-a")
                .arg(&self.data_root)
                .arg(self.evidence.join("data"))
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.data_root);
    }
}

impl Drop for LabCluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Removes the data directories (`idlab-idl-<pid>-<n>`: nodes' Redis files, credentials) of
/// local runs whose process is gone; what it removed.
pub fn remove_dead_data_roots() -> Vec<String> {
    crate::leftovers::remove_dead(&std::env::temp_dir(), "data directory", |name| {
        crate::leftovers::lab_pid(name.strip_prefix("idlab-")?)
    })
}

/// The longest end of a remote node's log copied into the evidence.
const REMOTE_LOG_MAX: u64 = 8 << 20;

/// The protocol's name for `signal`.
fn sig(signal: Signal) -> Result<Sig> {
    Ok(match signal {
        Signal::SIGSTOP => Sig::Stop,
        Signal::SIGCONT => Sig::Cont,
        Signal::SIGKILL => Sig::Kill,
        Signal::SIGTERM => Sig::Term,
        other => return Err(Error::Step(format!("the agent sends no {other}"))),
    })
}

/// The lab name of client host `c`: `client`, `client2`, …
pub fn client_host_name(c: u32) -> String {
    if c == 0 {
        "client".into()
    } else {
        format!("client{}", c + 1)
    }
}

/// A fresh CA, a certificate per node naming its host's address, and a cluster key, in
/// `data_root/credentials` (removed with the run's data).
fn mint(data_root: &Path, cluster: &str, nodes: &[Node]) -> Result<CredentialSet> {
    let specs: Vec<NodeSpec> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| NodeSpec::at(format!("n{}", i + 1), node.addr.into()))
        .collect();
    CredentialSet::write(
        &data_root.join("credentials"),
        cluster,
        &specs,
        Duration::from_secs(CREDENTIALS_VALID_S),
    )
    .map_err(|e| Error::Setup(format!("failed to mint the run's credentials: {e}")))
}

/// Every event after `since` (the client pages), the times it was applied moved to the
/// control node's clock (the node's host runs `offset_ms` ahead of it).
async fn fetch_events(client: &mut Client, since: u64, offset_ms: i64) -> Option<Vec<LoggedEvent>> {
    let mut all = client.events(since, u32::MAX).await.ok()?;
    for e in &mut all {
        e.applied_ms = e.applied_ms.saturating_add_signed(-offset_ms);
    }
    Some(all)
}

/// Samples node `i`'s status every [`POLL_STATUS_MS`] and collects the events it applies.
async fn poll(
    i: usize,
    mut client: Client,
    offset_ms: i64,
    samples: Arc<Mutex<Vec<Sample>>>,
    seen: Arc<Mutex<Vec<SeenEvents>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(POLL_STATUS_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0u32;
    let mut since = 0u64;
    loop {
        tick.tick().await;
        let status = client.status().await.ok().map(NodeView::from);
        let clock = status.as_ref().map(|s| s.clock);
        samples.lock().expect("samples lock").push(Sample {
            at_ms: now_ms(),
            node: i,
            status,
        });
        round += 1;
        let Some(clock) = clock else { continue };
        // A node that dropped a tail or lost its last writes starts again below its old clock.
        since = since.min(clock);
        if round % POLL_EVENTS_EVERY == 0 && clock > since {
            if let Some(events) = fetch_events(&mut client, since, offset_ms).await {
                if let Some(last) = events.last() {
                    since = last.event.clock;
                }
                let mut seen = seen.lock().expect("seen lock");
                for e in events {
                    seen[i]
                        .entry((e.event.clock, e.event.request_id))
                        .or_insert(e);
                }
            }
        }
    }
}
