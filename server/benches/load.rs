//! Write throughput and latency of a real 3-node cluster on loopback (default timings,
//! `--min-acks 1`), and the time of a full sync.
//!
//! `cargo bench --bench load [-- SYNC_ACCOUNTS] [--only PHASE] [--seconds S] [--syncs N]`:
//! SYNC_ACCOUNTS defaults to 1,000,000 (0 skips phase 4); `--only one|many|password|sync` runs
//! one phase; `--seconds` sets the length of phases 1 to 3 (default 3, 5 and 3 s); `--syncs`
//! how many full syncs phase 4 times (default 3, each into a fresh node; their medians are
//! printed too); `--same-priority` keeps the syncing node at normal priority (by default it
//! runs at idle priority, `SCHED_IDLE`, standing in for a machine of its own);
//! `--node-threads N` starts the nodes with `--worker-threads N` (default 1: the three nodes,
//! their Redis and this load generator share the machine's cores; 0 leaves idserver's default
//! of one per CPU); `--plaintext` runs the nodes with `--insecure-plaintext` (by default they
//! run with credentials: TLS and sealed datagrams), to measure what security costs; the
//! environment variable `LOAD_IDSERVER` names another `idserver` binary to measure (to compare
//! two builds side by side); `--metrics` has every node serve `--metrics-listen` and scrapes
//! each every second (to measure what metrics cost); `--redis-containers` gives each node a
//! Redis in a container instead of its own child process (the lab's image and engine, through
//! testcontainers; on a unix socket in a host directory, as the child's is, so the two differ
//! by the container alone; phase 4 is skipped). Phases:
//! 1. one client, creates without a password, one at a time: latency p50/p99, creates/s;
//! 2. 64 concurrent clients for 5 s: acked creates/s, latency p50/p99;
//! 3. 8 clients creating with passwords (argon2id) for 3 s: creates/s;
//! 4. fill to SYNC_ACCOUNTS accounts, replace a follower by a fresh node and time its full
//!    sync, while one client measures the coordinator's write latency before and during it;
//!    repeated `--syncs` times.

#[path = "../tests/common/cluster.rs"]
mod cluster;

use cluster::Cluster;
use idserver::client::Client;
use idserver::store::{child_processes, idle_priority};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const IDSERVER: &str = env!("CARGO_BIN_EXE_idserver");

/// Redis containers for the nodes (`--redis-containers`), each on a unix socket in a
/// directory of this host.
struct RedisStores {
    kit: harness::containers::RedisContainers,
    containers: Vec<harness::containers::RedisContainer>,
    urls: Vec<String>,
    _dirs: Vec<tempfile::TempDir>,
}

impl RedisStores {
    async fn start(n: usize) -> RedisStores {
        let redis_server =
            harness::containers::host_redis_server().expect("redis-server is installed");
        let work = std::path::PathBuf::from("target/idlab/docker");
        let kit = harness::containers::RedisContainers::prepare(&work, &redis_server)
            .expect("a Docker engine and the Redis image (needs root and docker.io)");
        let run = format!("load-bench-{}", std::process::id());
        let (mut containers, mut urls, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let (container, url) = kit
                .start_on_socket(&run, &format!("{run}-{i}"), dir.path())
                .await
                .expect("a Redis container");
            containers.push(container);
            urls.push(url);
            dirs.push(dir);
        }
        RedisStores {
            kit,
            containers,
            urls,
            _dirs: dirs,
        }
    }

    async fn remove(self) {
        for container in self.containers {
            let _ = self.kit.remove(container).await;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn describe(name: &str, mut latencies_ms: Vec<f64>, elapsed: Duration) {
    latencies_ms.sort_by(f64::total_cmp);
    println!(
        "{name}: {} acked in {:.1} s = {:.0}/s; latency p50 {:.3} ms p99 {:.3} ms",
        latencies_ms.len(),
        elapsed.as_secs_f64(),
        latencies_ms.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies_ms, 0.5),
        percentile(&latencies_ms, 0.99)
    );
}

/// One client creating unique logins (`<prefix><n>`) while `go_on()` says so; latencies in ms.
async fn timed_creates(
    mut client: Client,
    prefix: String,
    password: Option<&'static str>,
    go_on: impl Fn() -> bool,
) -> Vec<f64> {
    let mut latencies = Vec::new();
    let mut n = 0u64;
    while go_on() {
        let begun = Instant::now();
        client
            .create(&format!("{prefix}{n}"), "", password)
            .await
            .expect("create");
        latencies.push(begun.elapsed().as_secs_f64() * 1000.0);
        n += 1;
    }
    latencies
}

/// `clients` clients creating unique logins (with `password`) for `duration`; latencies in ms.
async fn load(
    cluster: &Cluster,
    coordinator: usize,
    clients: usize,
    duration: Duration,
    prefix: &str,
    password: Option<&'static str>,
) -> (Vec<f64>, Duration) {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..clients {
        let client = cluster.client(&[coordinator]);
        let prefix = format!("{prefix}{t}-");
        tasks.spawn(timed_creates(client, prefix, password, move || {
            started.elapsed() < duration
        }));
    }
    let latencies = tasks.join_all().await.into_iter().flatten().collect();
    (latencies, started.elapsed())
}

/// Whether process `pid` has started a child process (the node its Redis).
fn has_children(pid: u32) -> bool {
    !child_processes(pid).is_empty()
}

/// Whether the Redis of node process `pid` has a fork at work (a snapshot or a rewrite).
fn redis_is_forked(pid: u32) -> bool {
    child_processes(pid).into_iter().any(has_children)
}

/// Puts process `pid`, its threads and its child processes at idle priority (`SCHED_IDLE`).
fn idle_with_children(pid: u32) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        if let Ok(tid) = task.file_name().to_string_lossy().parse() {
            idle_priority(tid);
        }
    }
    for child in child_processes(pid) {
        idle_with_children(child);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let only = option("--only");
    let idle_new_node = !args.iter().any(|a| a == "--same-priority");
    let seconds: Option<u64> = option("--seconds").map(|s| s.parse().expect("--seconds N"));
    let syncs: usize = option("--syncs").map_or(3, |s| s.parse().expect("--syncs N"));
    let node_threads: u16 =
        option("--node-threads").map_or(1, |s| s.parse().expect("--node-threads N"));
    let phase = |name: &str, default_s: u64| {
        let run = only.as_deref().is_none_or(|o| o == name);
        (run, Duration::from_secs(seconds.unwrap_or(default_s)))
    };
    let positional = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || !args[i - 1].starts_with("--")));
    let sync_accounts: u64 = match positional.map(|(_, a)| a.parse()).next() {
        _ if !phase("sync", 0).0 => 0,
        Some(n) => n.expect("SYNC_ACCOUNTS is a number"),
        None => 1_000_000,
    };
    // Another build's idserver, for side-by-side runs of two versions.
    let idserver = std::env::var("LOAD_IDSERVER").unwrap_or_else(|_| IDSERVER.to_string());
    let mut cluster = if args.iter().any(|a| a == "--plaintext") {
        Cluster::insecure(&idserver, 3)
    } else {
        Cluster::new(&idserver, 3)
    };
    if node_threads > 0 {
        cluster.extra_args = vec!["--worker-threads".into(), node_threads.to_string()];
    }
    // `--redis-containers`: a Redis container per node (kept until the end of the bench).
    let containers = if args.iter().any(|a| a == "--redis-containers") {
        Some(RedisStores::start(3).await)
    } else {
        None
    };
    // `--metrics`: each node serves /metrics, scraped every second while the bench runs
    // (Prometheus's default is every 15 s), to measure what it costs.
    let metrics = args.iter().any(|a| a == "--metrics");
    if metrics || containers.is_some() {
        for i in 0..3 {
            let mut extra = Vec::new();
            if metrics {
                extra.push("--metrics-listen".to_string());
                extra.push(format!("{}:9151", cluster.addr(i).ip()));
            }
            if let Some(stores) = &containers {
                extra.push("--redis".to_string());
                extra.push(stores.urls[i].clone());
            }
            cluster.start_with_args(i, &format!("node{i}"), &extra);
        }
    } else {
        cluster.start_all();
    }
    if metrics {
        let urls: Vec<String> = (0..3)
            .map(|i| format!("http://{}:9151/metrics", cluster.addr(i).ip()))
            .collect();
        std::thread::spawn(move || {
            let agent = ureq::Agent::new_with_defaults();
            loop {
                std::thread::sleep(Duration::from_secs(1));
                for url in &urls {
                    if let Ok(mut response) = agent.get(url).call() {
                        let _ = response.body_mut().read_to_string();
                    }
                }
            }
        });
    }
    let c = cluster.agreed(Duration::from_secs(10)).await;

    if let (true, length) = phase("one", 3) {
        let (lat, took) = load(&cluster, c, 1, length, "one", None).await;
        describe("1 client, creates", lat, took);
    }
    if let (true, length) = phase("many", 5) {
        let (lat, took) = load(&cluster, c, 64, length, "many", None).await;
        describe("64 clients, creates", lat, took);
    }
    if let (true, length) = phase("password", 3) {
        let (lat, took) = load(&cluster, c, 8, length, "pw", Some("s3cret")).await;
        describe("8 clients, creates with password", lat, took);
    }

    if let Some(stores) = containers {
        for i in 0..3 {
            cluster.kill(i);
        }
        stores.remove().await;
        return;
    }
    if sync_accounts == 0 {
        return;
    }
    let have = cluster.status(c).await.unwrap().accounts;
    let filled = Instant::now();
    cluster.fill(c, sync_accounts.saturating_sub(have)).await;
    println!(
        "filled to {} accounts in {:.1} s",
        cluster.status(c).await.unwrap().accounts,
        filled.elapsed().as_secs_f64()
    );

    let follower = (0..3).find(|i| *i != c).unwrap();
    let mut results = Vec::new();
    for round in 0..syncs {
        results.push(sync_once(&mut cluster, c, follower, round, idle_new_node).await);
        println!(
            "full sync of {sync_accounts} accounts: {}",
            results.last().unwrap()
        );
    }
    if syncs > 1 {
        let mut times: Vec<f64> = results.iter().map(|r| r.seconds).collect();
        let mut ratios: Vec<f64> = results.iter().map(SyncResult::p99_ratio).collect();
        times.sort_by(f64::total_cmp);
        ratios.sort_by(f64::total_cmp);
        println!(
            "median of {syncs} full syncs: {:.2} s, write p99 during/before {:.1}x",
            percentile(&times, 0.5),
            percentile(&ratios, 0.5)
        );
    }
}

/// One full sync's time and the coordinator's write latencies before and during it.
struct SyncResult {
    seconds: f64,
    /// Sorted latencies (ms).
    before: Vec<f64>,
    during: Vec<f64>,
}

impl SyncResult {
    fn p99_ratio(&self) -> f64 {
        percentile(&self.during, 0.99) / percentile(&self.before, 0.99)
    }
}

impl std::fmt::Display for SyncResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} s (node start to caught up); coordinator write latency p50/p99: before sync \
             {:.3}/{:.3} ms, during sync {:.3}/{:.3} ms ({} writes)",
            self.seconds,
            percentile(&self.before, 0.5),
            percentile(&self.before, 0.99),
            percentile(&self.during, 0.5),
            percentile(&self.during, 0.99),
            self.during.len()
        )
    }
}

/// Replaces `follower` by a fresh node and times its full sync while one client writes.
async fn sync_once(
    cluster: &mut Cluster,
    c: usize,
    follower: usize,
    round: usize,
    idle_new_node: bool,
) -> SyncResult {
    // Earlier work done first (append-only file rewrites after the fill or the last sync).
    let settling = Instant::now();
    while cluster
        .nodes
        .iter()
        .flatten()
        .any(|node| redis_is_forked(node.id()))
        && settling.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (before, _) = load(
        cluster,
        c,
        1,
        Duration::from_secs(2),
        &format!("before{round}-"),
        None,
    )
    .await;
    cluster.kill(follower);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let target = cluster.status(c).await.unwrap().clock;
    let sync_started = Instant::now();
    cluster.start_with_data(follower, &format!("fresh{round}"));
    // The new node stands in for a machine of its own: at idle priority (its Redis too, once
    // started) it uses what the coordinator being measured leaves of these two cores.
    let fresh_pid = cluster.nodes[follower].as_ref().map(|child| child.id());
    if let (Some(pid), true) = (fresh_pid, idle_new_node) {
        let started = Instant::now();
        while !has_children(pid) && started.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        idle_with_children(pid);
    }
    // One client keeps writing while the new node syncs.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let stop = stop.clone();
        let client = cluster.client(&[c]);
        tokio::spawn(timed_creates(
            client,
            format!("during{round}-"),
            None,
            move || !stop.load(Ordering::Relaxed),
        ))
    };
    let took = loop {
        if cluster
            .status(follower)
            .await
            .is_some_and(|s| s.clock >= target)
        {
            break sync_started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let mut during = probe.await.unwrap();
    let mut before = before;
    before.sort_by(f64::total_cmp);
    during.sort_by(f64::total_cmp);
    SyncResult {
        seconds: took.as_secs_f64(),
        before,
        during,
    }
}
