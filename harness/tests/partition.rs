//! Whitepaper mode against strict mode under a real partition: three `idserver` processes (each
//! with its own Redis) in network namespaces of a lab, the coordinator cut off together with
//! one client. In neither mode does the isolated coordinator acknowledge anything: in strict
//! mode it has no majority, in whitepaper mode silence is no evidence that it is alone. No
//! acknowledged write is lost. Needs root.

use idserver::client::{Client, ClientConfig};
use idserver::connection::Transport;
use idserver::core::Role;
use idserver::security::mint::{CredentialSet, NodeSpec};
use idserver::wire::{Request, StatusView};
use idserver::ErrorCode;
use netns::{Host, Lab, PartitionMode};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The `idserver` binary the workspace built beside `idlab`.
fn idserver() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_BIN_EXE_idlab")).with_file_name("idserver")
}
const PORT: u16 = 5151;
const CLUSTER: &str = "partition-test";

struct LabCluster {
    nodes: Vec<std::process::Child>,
    lab: Lab,
    /// The nodes' data directories and logs, removed with the cluster.
    _dir: TempDir,
}

impl Drop for LabCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

impl LabCluster {
    fn start(mode: &str) -> LabCluster {
        LabCluster::start_with(mode, &[])
    }

    /// Starts the cluster with `args` added to every node's command line.
    fn start_with(mode: &str, args: &[&str]) -> LabCluster {
        let mut lab = Lab::create().expect("the partition tests run as root");
        for name in ["n1", "n2", "n3", "c1", "c2"] {
            lab.add_host(name).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        // Nodes run as users run them: with credentials minted for this cluster.
        let specs: Vec<NodeSpec> = (1..=3)
            .map(|i| {
                NodeSpec::at(
                    format!("n{i}"),
                    lab.host(&format!("n{i}")).unwrap().addr().into(),
                )
            })
            .collect();
        let creds = CredentialSet::write(
            &dir.path().join("credentials"),
            CLUSTER,
            &specs,
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let mut nodes = Vec::new();
        let peers: Vec<String> = (1..=3)
            .map(|i| format!("{}:{PORT}", lab.host(&format!("n{i}")).unwrap().addr()))
            .collect();
        for i in 1..=3 {
            let host = lab.host(&format!("n{i}")).unwrap();
            let log = std::fs::File::create(dir.path().join(format!("n{i}.log"))).unwrap();
            let node = host
                .command(idserver())
                .args([
                    "--listen",
                    &host.addr().to_string(),
                    "--numport",
                    &PORT.to_string(),
                ])
                .args([
                    "--cluster",
                    CLUSTER,
                    "--peers",
                    &peers.join(","),
                    "--mode",
                    mode,
                ])
                .args(args)
                .args(creds.node_args(&format!("n{i}")))
                .arg("--data-dir")
                .arg(dir.path().join(format!("n{i}")))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            nodes.push(node);
        }
        let mut cas = CAS.lock().unwrap();
        for i in 1..=3 {
            let addr = SocketAddr::from((lab.host(&format!("n{i}")).unwrap().addr(), PORT));
            cas.insert(addr, creds.ca());
        }
        LabCluster {
            nodes,
            lab,
            _dir: dir,
        }
    }

    fn addr(&self, node: &str) -> SocketAddr {
        SocketAddr::from((self.lab.host(node).unwrap().addr(), PORT))
    }
}

/// Runs `op` with a client in host `from` (its runtime's threads live in that namespace).
fn from_host<T: Send + 'static, F>(
    from: &Host,
    servers: Vec<SocketAddr>,
    retry_for_ms: u64,
    op: F,
) -> T
where
    F: FnOnce(Client) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>
        + Send
        + 'static,
{
    from.run_in(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(op(client_of(servers, retry_for_ms)))
    })
    .unwrap()
}

/// The CA of the cluster serving at each address (tests run in parallel, each lab with its own
/// addresses).
static CAS: std::sync::Mutex<std::collections::BTreeMap<SocketAddr, std::path::PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// A client of `servers` (made inside the host whose namespace it should use).
fn client_of(servers: Vec<SocketAddr>, retry_for_ms: u64) -> Client {
    let ca = CAS.lock().unwrap()[&servers[0]].clone();
    Client::new(ClientConfig {
        servers: servers.iter().map(|s| s.to_string()).collect(),
        cluster: CLUSTER.to_string(),
        connect_timeout_ms: 300,
        reply_timeout_ms: 3_000,
        retry_for_ms,
        transport: Transport::Tls {
            connector: idserver::security::tls::client_connector(&ca).unwrap(),
            server_name: None,
        },
    })
}

fn status(from: &Host, node: SocketAddr) -> Option<StatusView> {
    from_host(from, vec![node], 0, |mut c| {
        Box::pin(async move { c.status().await.ok() })
    })
}

/// The node every reachable node (seen from `from`) names as coordinator.
fn agreed(from: &Host, nodes: &[SocketAddr]) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let named: Vec<Option<String>> = nodes
            .iter()
            .map(|n| {
                status(from, *n).and_then(|s| {
                    (s.role == Role::Coordinator || s.role == Role::Follower)
                        .then_some(s.coordinator_addr)
                        .flatten()
                })
            })
            .collect();
        if let Some(Some(first)) = named.first() {
            if named.iter().all(|n| n.as_ref() == Some(first)) {
                return first.parse().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "no agreement: {named:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Tries `count` creates through `server` for about `for_ms`; returns the acknowledged logins.
fn write_burst(from: &Host, server: SocketAddr, prefix: &'static str, for_ms: u64) -> Vec<String> {
    from_host(from, vec![server], 0, move |mut c| {
        Box::pin(async move {
            let mut acked = Vec::new();
            let until = Instant::now() + Duration::from_millis(for_ms);
            let mut n = 0;
            while Instant::now() < until {
                let login = format!("{prefix}{n}");
                n += 1;
                if c.create(&login, "", None).await.is_ok() {
                    acked.push(login);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acked
        })
    })
}

fn present_everywhere(from: &Host, nodes: &[SocketAddr], login: &str) -> Vec<bool> {
    nodes
        .iter()
        .map(|n| {
            let login = login.to_string();
            from_host(from, vec![*n], 2_000, move |mut c| {
                Box::pin(async move { c.lookup(&login).await.map_err(|e| e.code()) })
            })
        })
        .map(|r| match r {
            Ok(_) => true,
            Err(ErrorCode::NotFound) => false,
            Err(code) => panic!("lookup failed: {code}"),
        })
        .collect()
}

/// Partitions {coordinator, c1} from {the others, c2}, writes on both sides, heals; returns
/// (acked on the coordinator's side, acked on the majority side, nodes, old coordinator's name).
fn partition_and_write(
    cluster: &LabCluster,
) -> (Vec<String>, Vec<String>, Vec<SocketAddr>, String) {
    let (c1, c2) = (
        cluster.lab.host("c1").unwrap(),
        cluster.lab.host("c2").unwrap(),
    );
    let nodes: Vec<SocketAddr> = ["n1", "n2", "n3"].iter().map(|n| cluster.addr(n)).collect();
    let old = agreed(c1, &nodes);
    let old_name = ["n1", "n2", "n3"]
        .iter()
        .find(|n| cluster.addr(n) == old)
        .unwrap()
        .to_string();
    let others: Vec<String> = ["n1", "n2", "n3"]
        .iter()
        .filter(|n| **n != old_name)
        .map(|n| n.to_string())
        .collect();
    let mut majority_side = others.clone();
    majority_side.push("c2".into());
    cluster
        .lab
        .split(
            &[vec![old_name.clone(), "c1".into()], majority_side],
            PartitionMode::Drop,
        )
        .unwrap();
    let majority_nodes: Vec<SocketAddr> = others.iter().map(|n| cluster.addr(n)).collect();
    // Both sides write for 1.5 s; the majority side's client follows its new coordinator.
    let minority = {
        let c1 = c1.clone();
        std::thread::spawn(move || write_burst(&c1, old, "minority", 1_500))
    };
    // The majority side elects a successor (until then it may still name the old one).
    let deadline = Instant::now() + Duration::from_secs(10);
    let new = loop {
        let named = agreed(c2, &majority_nodes);
        if named != old {
            break named;
        }
        assert!(
            Instant::now() < deadline,
            "the majority side never elected a successor"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let majority_acked = write_burst(c2, new, "majority", 1_000);
    let minority_acked = minority.join().unwrap();
    cluster.lab.heal().unwrap();
    // After healing: one coordinator, one history.
    std::thread::sleep(Duration::from_millis(500));
    agreed(c1, &nodes);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let clocks: Vec<Option<u64>> = nodes
            .iter()
            .map(|n| status(c1, *n).map(|s| s.clock))
            .collect();
        if clocks.iter().all(|c| c.is_some() && *c == clocks[0]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "histories never converged: {clocks:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (minority_acked, majority_acked, nodes, old_name)
}

/// Whitepaper mode, the coordinator cut off with one client: before issue 14 it declared the
/// others dead after 200 ms and acknowledged its client's writes alone (62 in one run), all
/// dropped at the heal. Silence is no evidence of being alone: it now steps down and
/// acknowledges nothing, while the majority side elects and writes. (With one follower on its
/// side it still acknowledges, by the whitepaper's rule: scenario `whitepaper-partition-window`.)
#[test]
fn whitepaper_mode_an_isolated_coordinator_acknowledges_nothing_alone() {
    let cluster = LabCluster::start("whitepaper");
    let (minority, majority, nodes, _) = partition_and_write(&cluster);
    let c1 = cluster.lab.host("c1").unwrap();
    assert_eq!(
        minority,
        Vec::<String>::new(),
        "the isolated coordinator acknowledged writes on its own"
    );
    assert!(!majority.is_empty(), "the majority side wrote");
    for login in &majority {
        assert_eq!(
            present_everywhere(c1, &nodes, login),
            vec![true; 3],
            "{login} survives"
        );
    }
}

#[test]
fn strict_mode_acknowledges_nothing_without_a_majority_and_loses_nothing() {
    let cluster = LabCluster::start("strict");
    let (minority, majority, nodes, _) = partition_and_write(&cluster);
    let c1 = cluster.lab.host("c1").unwrap();
    assert!(
        minority.is_empty(),
        "the isolated coordinator acknowledged {minority:?}"
    );
    assert!(!majority.is_empty(), "the majority side took writes");
    for login in &majority {
        assert_eq!(
            present_everywhere(c1, &nodes, login),
            vec![true; 3],
            "{login} survives"
        );
    }
}

/// Raft's no-op entry, in strict mode: a successor must commit an event of its own epoch
/// before it answers from its state. The coordinator's packets to the other nodes are dropped
/// (it still hears them a little while) and it applies, unacknowledged, a delete of `victim`
/// and then a create of `victim` with request id R. The others elect a successor, which lacks
/// both; a retry of R there is refused `login_exists` (the old account), a definite answer.
/// Then the successor is cut off and the old coordinator meets the third node again. Without
/// the successor's epoch-opening event the old coordinator's log is the more up to date (same
/// epoch, longer), it wins, and R's create takes effect after R was refused: the history the
/// lab's `linearizable` check rejected in CI.
#[test]
fn strict_mode_a_write_refused_by_a_successor_never_takes_effect_later() {
    // The old coordinator must apply both writes before its lease runs out (it hears no
    // acks): usually it does; when the lab was slower than the lease, a new cluster tries again.
    for _ in 0..5 {
        if refused_write_stayed_refused() {
            return;
        }
    }
    panic!("the old coordinator stepped down before applying the writes, five times");
}

/// One try of the test above; false if the old coordinator stepped down too early.
fn refused_write_stayed_refused() -> bool {
    // Heartbeats at 50 ms give a 150 ms lease: room for the cut to take effect and both writes
    // to arrive.
    let cluster = LabCluster::start_with("strict", &["--heartbeat-ms", "50"]);
    let (c1, c2) = (
        cluster.lab.host("c1").unwrap(),
        cluster.lab.host("c2").unwrap(),
    );
    let names = ["n1", "n2", "n3"];
    let nodes: Vec<SocketAddr> = names.iter().map(|n| cluster.addr(n)).collect();
    let name_of = |addr: SocketAddr| {
        names
            .iter()
            .find(|n| cluster.addr(n) == addr)
            .unwrap()
            .to_string()
    };
    // Past the start-up elections: the same coordinator half a second apart.
    let mut old = agreed(c1, &nodes);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let again = agreed(c1, &nodes);
        if again == old {
            break;
        }
        old = again;
    }
    let victim = from_host(c1, vec![old], 2_000, |mut c| {
        Box::pin(async move { c.create("victim", "", None).await.unwrap() })
    });
    let settled = status(c1, old).unwrap().clock;
    let old_name = name_of(old);
    let others: Vec<String> = names
        .iter()
        .filter(|n| **n != old_name)
        .map(|n| n.to_string())
        .collect();
    let create = Request::Create {
        login: "victim".into(),
        real_name: "second".into(),
        password: None,
        request_id: uuid::Uuid::new_v4(),
    };
    // Applied by the old coordinator, received by no one else. The clients connect first:
    // both writes must arrive before the old coordinator's lease runs out.
    let (connected_tx, connected) = std::sync::mpsc::channel();
    let (go_tx, go) = tokio::sync::oneshot::channel::<()>();
    let unacknowledged = {
        let (c1, create) = (c1.clone(), create.clone());
        std::thread::spawn(move || {
            from_host(&c1, vec![old], 0, move |mut deleter| {
                Box::pin(async move {
                    let mut creator = client_of(vec![old], 0);
                    let _ = deleter.status().await;
                    let _ = creator.status().await;
                    let _ = connected_tx.send(());
                    let _ = go.await;
                    let delete = tokio::spawn(async move { deleter.delete("victim", None).await });
                    // The create goes once the delete is applied (else it is refused there);
                    // if that never happens, this try is repeated (see below).
                    let applied = async {
                        while creator.status().await.ok().map(|s| s.clock) != Some(settled + 1) {
                            tokio::task::yield_now().await;
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), applied).await;
                    let created = creator.call_new(create).await;
                    (delete.await.unwrap().is_ok(), created.is_ok())
                })
            })
        })
    };
    connected.recv().unwrap();
    let to: Vec<&str> = others.iter().map(String::as_str).collect();
    cluster
        .lab
        .cut_to(&old_name, &to, PartitionMode::Drop)
        .unwrap();
    go_tx.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    while status(c1, old).map(|s| s.clock) != Some(settled + 2) {
        if Instant::now() > deadline {
            eprintln!(
                "the old coordinator stepped down before applying both writes ({:?} of {settled}); again",
                status(c1, old).map(|s| (s.clock, s.role))
            );
            let _ = unacknowledged.join();
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let majority_nodes: Vec<SocketAddr> = others.iter().map(|n| cluster.addr(n)).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let successor = loop {
        let named = agreed(c2, &majority_nodes);
        if named != old {
            break named;
        }
        assert!(Instant::now() < deadline, "no successor was elected");
        std::thread::sleep(Duration::from_millis(20));
    };
    let retry = {
        let create = create.clone();
        from_host(c2, vec![successor], 0, move |mut c| {
            Box::pin(async move { c.call(create).await.map_err(|e| e.code()) })
        })
    };
    assert_eq!(
        retry.err(),
        Some(ErrorCode::LoginExists),
        "the successor holds the first account"
    );
    assert_eq!(
        unacknowledged.join().unwrap(),
        (false, false),
        "writes no majority held were acknowledged"
    );
    // The successor is cut off; the old coordinator and the third node meet again.
    let successor_name = name_of(successor);
    let third = others
        .iter()
        .find(|n| **n != successor_name)
        .unwrap()
        .clone();
    cluster
        .lab
        .isolate(&successor_name, PartitionMode::Drop)
        .unwrap();
    cluster.lab.mend(&old_name, &third).unwrap();
    let pair = [old, cluster.addr(&third)];
    let deadline = Instant::now() + Duration::from_secs(10);
    let coordinator = loop {
        let named = agreed(c1, &pair);
        if named != successor && status(c1, named).is_some_and(|s| s.role == Role::Coordinator) {
            break named;
        }
        assert!(Instant::now() < deadline, "the pair never elected");
        std::thread::sleep(Duration::from_millis(20));
    };
    let after = from_host(c1, vec![coordinator], 2_000, |mut c| {
        Box::pin(async move { c.lookup("victim").await.map_err(|e| e.code()) })
    });
    cluster.lab.heal().unwrap();
    assert_eq!(
        after.map(|a| a.uuid),
        Ok(victim),
        "the create refused as login_exists took effect under {}",
        name_of(coordinator)
    );
    true
}
