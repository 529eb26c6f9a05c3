//! A cluster of real `idserver` processes on loopback, each with its own Redis, on a private
//! 127.a.b.0/24 so that parallel tests never meet. Shared by the tests and the benchmarks.

#![allow(dead_code)]

use idserver::client::{Client, ClientConfig};
use idserver::connection::Transport;
use idserver::core::Role;
use idserver::security::mint::{CredentialSet, NodeSpec};
use idserver::wire::StatusView;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const PORT: u16 = 5151;

/// A cluster of `idserver` processes on 127.a.b.1, 127.a.b.2, ... (killed on drop).
pub struct Cluster {
    pub net: [u8; 2],
    pub size: usize,
    pub name: String,
    pub dir: TempDir,
    pub nodes: Vec<Option<Child>>,
    pub extra_args: Vec<String>,
    /// The cluster's credentials (None: `--insecure-plaintext`).
    pub creds: Option<CredentialSet>,
    /// How its clients connect.
    pub transport: Transport,
    idserver: String,
}

impl Cluster {
    /// A cluster with fresh credentials (TLS, sealed datagrams), as users run one.
    pub fn new(idserver: &str, size: usize) -> Cluster {
        let mut cluster = Cluster::insecure(idserver, size);
        let nodes: Vec<NodeSpec> = (0..size)
            .map(|i| NodeSpec::at(format!("node{i}"), cluster.addr(i).ip()))
            .collect();
        let creds = CredentialSet::write(
            &cluster.dir.path().join("creds"),
            &cluster.name,
            &nodes,
            Duration::from_secs(24 * 3600),
        )
        .unwrap();
        cluster.transport = creds.client_transport().unwrap();
        cluster.creds = Some(creds);
        cluster
    }

    /// A cluster run with `--insecure-plaintext`.
    pub fn insecure(idserver: &str, size: usize) -> Cluster {
        let id = uuid::Uuid::new_v4();
        let bytes = id.as_bytes();
        Cluster {
            net: [bytes[0].clamp(1, 254), bytes[1]],
            size,
            name: format!("cl-{}", id.simple()),
            dir: tempfile::tempdir().unwrap(),
            nodes: (0..size).map(|_| None).collect(),
            extra_args: Vec::new(),
            creds: None,
            transport: Transport::InsecurePlaintext,
            idserver: idserver.to_string(),
        }
    }

    /// How node `i` connects to the others (its own certificate: a peer connection).
    pub fn peer_transport(&self, i: usize) -> Transport {
        match &self.creds {
            Some(creds) => Transport::Tls {
                connector: idserver::security::NodeTls::load(&creds.node(&format!("node{i}")).tls)
                    .unwrap()
                    .connector,
                server_name: None,
            },
            None => Transport::InsecurePlaintext,
        }
    }

    /// Node `i`'s credential flags.
    pub fn credential_args(&self, i: usize) -> Vec<String> {
        match &self.creds {
            Some(creds) => creds.node_args(&format!("node{i}")),
            None => vec!["--insecure-plaintext".to_string()],
        }
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((
            Ipv4Addr::new(127, self.net[0], self.net[1], i as u8 + 1),
            PORT,
        ))
    }

    pub fn peers(&self) -> String {
        (0..self.size)
            .map(|i| self.addr(i).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts node `i` with the data directory `data` (a fresh one simulates a new machine).
    pub fn start_with_data(&mut self, i: usize, data: &str) {
        self.start_with_args(i, data, &[]);
    }

    /// Starts node `i` with data directory `data` and flags `args` besides the cluster's.
    pub fn start_with_args(&mut self, i: usize, data: &str, args: &[String]) {
        let child = Command::new(&self.idserver)
            .args([
                "--listen",
                &self.addr(i).ip().to_string(),
                "--numport",
                &PORT.to_string(),
            ])
            .args(["--cluster", &self.name, "--peers", &self.peers()])
            .args(self.credential_args(i))
            .arg("--data-dir")
            .arg(self.dir.path().join(data))
            .args(&self.extra_args)
            .args(args)
            .stdout(Stdio::null())
            .stderr(self.log_file(data))
            .spawn()
            .unwrap();
        self.nodes[i] = Some(child);
    }

    /// Where node logs go: `$IDLAB_TEST_LOGS/<cluster>-<data>.log` when that is set (to keep
    /// them after a failure), else nowhere.
    fn log_file(&self, data: &str) -> Stdio {
        match std::env::var_os("IDLAB_TEST_LOGS") {
            Some(dir) => {
                let _ = std::fs::create_dir_all(&dir);
                let path = std::path::Path::new(&dir).join(format!("{}-{data}.log", self.name));
                std::fs::File::create(path).map_or(Stdio::null(), Stdio::from)
            }
            None => Stdio::null(),
        }
    }

    pub fn start(&mut self, i: usize) {
        self.start_with_data(i, &format!("node{i}"));
    }

    pub fn start_all(&mut self) {
        for i in 0..self.size {
            self.start(i);
        }
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends `signal` to node `i` (SIGSTOP / SIGCONT to pause and resume it).
    pub fn signal(&self, i: usize, signal: nix::sys::signal::Signal) {
        let child = self.nodes[i].as_ref().expect("node is running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    }

    pub fn client(&self, servers: &[usize]) -> Client {
        Client::new(ClientConfig {
            servers: servers.iter().map(|i| self.addr(*i).to_string()).collect(),
            cluster: self.name.clone(),
            transport: self.transport.clone(),
            ..ClientConfig::default()
        })
    }

    pub async fn status(&self, i: usize) -> Option<StatusView> {
        let mut client = Client::new(ClientConfig {
            servers: vec![self.addr(i).to_string()],
            cluster: self.name.clone(),
            connect_timeout_ms: 200,
            reply_timeout_ms: 500,
            retry_for_ms: 0,
            transport: self.transport.clone(),
        });
        client.status().await.ok()
    }

    /// Waits until every running node names the same coordinator (and it agrees); returns the
    /// coordinator's index.
    pub async fn agreed(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(c) = self.agreement().await {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "no agreement within {within:?}: {:#?}",
                self.statuses().await
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until every running node has applied the same clock; returns it.
    pub async fn converged(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let mut clocks = std::collections::BTreeSet::new();
            for i in (0..self.size).filter(|i| self.nodes[*i].is_some()) {
                clocks.insert(self.status(i).await.map(|s| s.clock));
            }
            if clocks.len() == 1 {
                if let Some(Some(clock)) = clocks.into_iter().next() {
                    return clock;
                }
            } else {
                assert!(
                    Instant::now() < deadline,
                    "clocks never converged: {clocks:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn agreement(&self) -> Option<usize> {
        let mut coordinator = None;
        for i in (0..self.size).filter(|i| self.nodes[*i].is_some()) {
            let status = self.status(i).await?;
            let named = status.coordinator_addr.clone()?;
            if status.role != Role::Coordinator && status.role != Role::Follower {
                return None;
            }
            match &coordinator {
                None => coordinator = Some(named),
                Some(c) if *c == named => {}
                Some(_) => return None,
            }
        }
        let c: SocketAddr = coordinator?.parse().ok()?;
        let index = (0..self.size).find(|i| self.addr(*i) == c)?;
        (self.status(index).await?.role == Role::Coordinator).then_some(index)
    }

    /// Creates `total` accounts (`fill0`, `fill1`, ...; no password) through node `at` with
    /// 64 concurrent clients.
    pub async fn fill(&self, at: usize, total: u64) {
        use std::sync::atomic::{AtomicU64, Ordering};
        let next = std::sync::Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let mut client = self.client(&[at]);
            let next = next.clone();
            tasks.spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    client
                        .create(&format!("fill{n}"), "Fill", None)
                        .await
                        .expect("fill");
                }
            });
        }
        tasks.join_all().await;
    }

    pub async fn statuses(&self) -> Vec<Option<StatusView>> {
        let mut out = Vec::new();
        for i in 0..self.size {
            out.push(self.status(i).await);
        }
        out
    }

    pub async fn rank(&self, i: usize) -> Option<u32> {
        self.status(i).await?.rank
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.size {
            self.kill(i);
        }
    }
}
