//! Replication across real `idserver` processes with real Redis: one order everywhere, acked
//! writes surviving a kill -9 of the coordinator, idempotent retries after failover,
//! read-your-writes through any server, and a full sync of a late node.

mod common;

use common::calls_of;
use common::cluster::Cluster;
use idserver::client::Client;
use idserver::core::Role;
use idserver::event::LoggedEvent;
use idserver::wire::{Reply, Request};
use idserver::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

const IDSERVER: &str = env!("CARGO_BIN_EXE_idserver");
const SETTLE: Duration = Duration::from_secs(10);

async fn events_of(cluster: &Cluster, i: usize) -> Vec<LoggedEvent> {
    cluster.client(&[i]).events(0, 1_000_000).await.unwrap()
}

/// Waits until every running node has applied the same clock; returns it.
async fn converged(cluster: &Cluster) -> u64 {
    cluster.converged(SETTLE).await
}

/// Every node's log is the same events in strict clock order 1, 2, 3, ...
async fn assert_same_history(cluster: &Cluster, nodes: &[usize]) -> Vec<LoggedEvent> {
    let first = events_of(cluster, nodes[0]).await;
    for (expected, logged) in (1..).zip(&first) {
        assert_eq!(
            logged.event.clock, expected,
            "a gap or reordering in the log"
        );
    }
    for i in &nodes[1..] {
        let other: Vec<_> = events_of(cluster, *i)
            .await
            .into_iter()
            .map(|l| l.event)
            .collect();
        let mine: Vec<_> = first.iter().map(|l| l.event.clone()).collect();
        assert_eq!(
            other, mine,
            "node {i}'s history differs from node {}'s",
            nodes[0]
        );
    }
    first
}

#[tokio::test]
async fn writes_through_any_server_reach_every_node_in_one_order() {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    cluster.agreed(SETTLE).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..3 {
        let mut client = cluster.client(&[i]);
        tasks.spawn(async move {
            for n in 0..20 {
                client.create(&format!("u{i}-{n}"), "", None).await.unwrap();
            }
            client
                .modify(&format!("u{i}-0"), &format!("renamed{i}"), None)
                .await
                .unwrap();
            client.delete(&format!("u{i}-1"), None).await.unwrap();
        });
    }
    tasks.join_all().await;
    let clock = converged(&cluster).await;
    assert_eq!(clock, 3 * 22);
    let history = assert_same_history(&cluster, &[0, 1, 2]).await;
    let origins: BTreeSet<u32> = history.iter().map(|l| l.event.origin_rank).collect();
    assert_eq!(origins.len(), 1, "only the coordinator makes events");
    let mut users = Vec::new();
    for i in 0..3 {
        users.push(cluster.client(&[i]).users().await.unwrap());
    }
    assert_eq!(users[0].len(), 3 * 19);
    assert!(users.iter().all(|u| *u == users[0]));
}

#[tokio::test]
async fn a_client_reads_its_own_writes_through_any_server() {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let c = cluster.agreed(SETTLE).await;
    for follower in (0..3).filter(|i| *i != c) {
        let mut client = cluster.client(&[follower]);
        for n in 0..30 {
            let login = format!("ryw{follower}-{n}");
            let uuid = client.create(&login, "", None).await.unwrap();
            assert_eq!(
                client.lookup(&login).await.unwrap().uuid,
                uuid,
                "read-your-writes"
            );
            let before = client.session_clock();
            client.users().await.unwrap();
            assert!(client.session_clock() >= before, "monotonic reads");
        }
    }
}

#[tokio::test]
async fn every_acknowledged_write_survives_a_coordinator_kill() {
    acknowledged_writes_survive_a_coordinator_kill("whitepaper").await;
}

#[tokio::test]
async fn every_acknowledged_write_survives_a_coordinator_kill_in_strict_mode() {
    acknowledged_writes_survive_a_coordinator_kill("strict").await;
}

async fn acknowledged_writes_survive_a_coordinator_kill(mode: &str) {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.extra_args = vec!["--mode".into(), mode.into()];
    cluster.start_all();
    let old = cluster.agreed(SETTLE).await;
    let tasks = start_writers(&cluster, 1_500);
    tokio::time::sleep(Duration::from_millis(400)).await;
    cluster.kill(old);
    let acked: BTreeMap<String, Uuid> = tasks.join_all().await.into_iter().flatten().collect();
    assert!(acked.len() > 50, "the load made progress: {}", acked.len());
    cluster.agreed(SETTLE).await;
    converged(&cluster).await;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    assert_same_history(&cluster, &survivors).await;
    assert_acked_stored(&cluster, &acked, &survivors).await;
}

/// Four clients, each knowing every server (failing over by itself), create accounts for
/// `for_ms`; each returns the ones acknowledged, by login.
fn start_writers(cluster: &Cluster, for_ms: u64) -> tokio::task::JoinSet<BTreeMap<String, Uuid>> {
    let stop_at = Instant::now() + Duration::from_millis(for_ms);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..4 {
        let mut client = cluster.client(&[(w + 1) % 3, (w + 2) % 3, w % 3]);
        tasks.spawn(async move {
            let mut acked = BTreeMap::new();
            let mut n = 0;
            while Instant::now() < stop_at {
                let login = format!("w{w}-{n}");
                n += 1;
                if let Ok(uuid) = client.create(&login, "", None).await {
                    acked.insert(login, uuid);
                }
            }
            acked
        });
    }
    tasks
}

/// Every acknowledged write is on each of `nodes` under its UUID, and no UUID is there twice.
async fn assert_acked_stored(cluster: &Cluster, acked: &BTreeMap<String, Uuid>, nodes: &[usize]) {
    for i in nodes {
        let all = cluster.client(&[*i]).all().await.unwrap();
        let stored: BTreeMap<&str, Uuid> = all.iter().map(|a| (a.login.as_str(), a.uuid)).collect();
        let uuids: BTreeSet<Uuid> = all.iter().map(|a| a.uuid).collect();
        assert_eq!(uuids.len(), all.len(), "no UUID issued twice");
        for (login, uuid) in acked {
            assert_eq!(
                stored.get(login.as_str()),
                Some(uuid),
                "acknowledged {login} lost on node {i}"
            );
        }
    }
}

#[tokio::test]
async fn a_retry_after_failover_gets_the_first_result() {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let old = cluster.agreed(SETTLE).await;
    let create = Request::Create {
        login: "once".into(),
        real_name: "Once".into(),
        password: None,
        request_id: Uuid::new_v4(),
    };
    let mut client = cluster.client(&[old]);
    let Reply::Created { uuid } = client.call(create.clone()).await.unwrap() else {
        panic!("not created")
    };
    cluster.kill(old);
    cluster.agreed(SETTLE).await;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let mut retry = cluster.client(&survivors);
    assert_eq!(retry.call(create).await.unwrap(), Reply::Created { uuid });
    converged(&cluster).await;
    for i in survivors {
        let users = cluster.client(&[i]).users().await.unwrap();
        assert_eq!(users, vec!["once"]);
        assert_eq!(
            cluster.status(i).await.unwrap().clock,
            1,
            "the retry made no event"
        );
    }
}

#[tokio::test]
async fn a_strict_coordinator_reads_a_write_only_once_a_majority_holds_it() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.extra_args = vec!["--mode".into(), "strict".into()];
    cluster.start_all();
    let c = cluster.agreed(SETTLE).await;
    // The followers keep answering heartbeats but cannot apply (their Redis is stopped), so
    // nothing the coordinator writes now is acknowledged until they resume.
    let redis_of = |i: usize| {
        let pid = std::fs::read_to_string(
            cluster
                .dir
                .path()
                .join(format!("node{i}"))
                .join("redis.pid"),
        )
        .unwrap();
        Pid::from_raw(pid.trim().parse().unwrap())
    };
    let followers: Vec<Pid> = (0..3).filter(|i| *i != c).map(redis_of).collect();
    // (Clock 1 is the coordinator's epoch-opening event.)
    let opened = converged(&cluster).await;
    for pid in &followers {
        kill(*pid, Signal::SIGSTOP).unwrap();
    }
    let mut writer = cluster.client(&[c]);
    let write = tokio::spawn(async move { writer.create("pending", "", None).await });
    // Applied on the coordinator (not acknowledged: nothing answers yet).
    let deadline = Instant::now() + SETTLE;
    while cluster.status(c).await.map(|s| s.clock) != Some(opened + 1) {
        assert!(Instant::now() < deadline, "the write was never applied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut reader = cluster.client(&[c]);
    let read = tokio::spawn(async move { reader.lookup("pending").await });
    // Long enough for an unguarded read to be answered many times over.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answered_early = read.is_finished();
    for pid in &followers {
        kill(*pid, Signal::SIGCONT).unwrap();
    }
    assert!(
        !answered_early,
        "the coordinator answered a read of a write no majority held: {:?}",
        read.await
    );
    let uuid = write
        .await
        .unwrap()
        .expect("acknowledged once the followers resumed");
    assert_eq!(read.await.unwrap().expect("read once committed").uuid, uuid);
}

/// How many field lookups (`HGET`, `HEXISTS`) the Redis of node `i` has served.
async fn field_lookups(cluster: &Cluster, i: usize) -> u64 {
    let sock = cluster
        .dir
        .path()
        .join(format!("node{i}"))
        .join("redis.sock");
    let url = format!("unix://{}", sock.display());
    calls_of(&url, "hget").await + calls_of(&url, "hexists").await
}

#[tokio::test]
async fn a_write_sent_fresh_is_not_looked_up_and_every_later_attempt_is() {
    let mut cluster = Cluster::new(IDSERVER, 1);
    cluster.start_all();
    let node = cluster.agreed(SETTLE).await;
    let create = Request::Create {
        login: "fresh".into(),
        real_name: String::new(),
        password: None,
        request_id: Uuid::new_v4(),
    };
    let mut client = cluster.client(&[node]);
    let before = field_lookups(&cluster, node).await;
    let Reply::Created { uuid } = client.call_new(create.clone()).await.unwrap() else {
        panic!("not created")
    };
    let after_fresh = field_lookups(&cluster, node).await;
    assert_eq!(after_fresh - before, 1, "only the login was looked up");

    // The same request again, as a retry: its first result, found by its request id.
    assert_eq!(
        client.call(create.clone()).await.unwrap(),
        Reply::Created { uuid }
    );
    let after_retry = field_lookups(&cluster, node).await;
    assert!(after_retry - after_fresh > 1, "the retry was not looked up");

    // A client whose first server does not answer: its attempt at the next one is a retry
    // (the first may have reached a server), so it finds the first result as well.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let mut failing_over = Client::new(idserver::client::ClientConfig {
        servers: vec![dead_addr, cluster.addr(node).to_string()],
        cluster: cluster.name.clone(),
        transport: cluster.transport.clone(),
        ..Default::default()
    });
    assert_eq!(
        failing_over.call_new(create).await.unwrap(),
        Reply::Created { uuid }
    );
    assert!(field_lookups(&cluster, node).await - after_retry > 1);
    assert_eq!(cluster.status(node).await.unwrap().clock, 1, "created once");
}

#[tokio::test]
async fn a_late_node_full_syncs_100k_accounts_and_serves_them() {
    const ACCOUNTS: usize = 100_000;
    const CLIENTS: usize = 64;
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start(0);
    cluster.start(1);
    let c = cluster.agreed(SETTLE).await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..CLIENTS {
        let mut client = cluster.client(&[c]);
        tasks.spawn(async move {
            for n in (t..ACCOUNTS).step_by(CLIENTS) {
                client
                    .create(&format!("bulk{n}"), "Bulk User", None)
                    .await
                    .unwrap();
            }
        });
    }
    tasks.join_all().await;
    let clock = converged(&cluster).await;
    assert_eq!(clock, ACCOUNTS as u64);

    cluster.start_with_data(2, "late");
    cluster.agreed(SETTLE).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.status(2).await.map(|s| s.clock) != Some(clock) {
        assert!(Instant::now() < deadline, "the late node never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = cluster.status(2).await.unwrap();
    assert_eq!(status.accounts, ACCOUNTS as u64);
    let mut late: Client = cluster.client(&[2]);
    assert_eq!(
        late.lookup("bulk99999").await.unwrap().real_name,
        "Bulk User"
    );
    let uuid = late.create("after-sync", "", None).await.unwrap();
    assert_eq!(
        cluster
            .client(&[c])
            .lookup("after-sync")
            .await
            .unwrap()
            .uuid,
        uuid
    );

    // Its Redis killed right after the sync comes back (restarted by the node on its
    // append-only file) with the snapshot and what followed: the sync counted as done only
    // once that file held it.
    let late_dir = cluster.dir.path().join("late");
    let pid_file = late_dir.join("redis.pid");
    let read_pid = || -> i32 {
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let killed = read_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let url = format!("unix://{}", late_dir.join("redis.sock").display());
    let deadline = Instant::now() + Duration::from_secs(10);
    let stored = loop {
        assert!(
            Instant::now() < deadline,
            "the node did not restart its Redis"
        );
        if std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() != killed.to_string()) {
            if let Ok(store) = idserver::store::Store::connect(&url).await {
                if let Ok(clock) = store.clock().await {
                    break clock;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        stored > clock,
        "the restarted Redis came back at clock {stored}, before the sync's {clock} and the write after it"
    );

    // Killed right after the sync (its Redis may still be writing its first append-only
    // file, when Redis ignores SIGTERM), the node still takes its Redis with it.
    let redis = read_pid();
    cluster.kill(2);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read(format!("/proc/{redis}/cmdline")).is_ok_and(|c| !c.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the late node's redis-server outlived it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `request` as a peer of the cluster over a fresh connection; returns the reply.
async fn as_peer(cluster: &Cluster, i: usize, request: Request) -> Reply {
    use idserver::wire::{decode, encode, Envelope};
    // With the certificate of the other node: a peer connection.
    let other = (i + 1) % cluster.size;
    let mut conn = idserver::connection::Connection::connect(
        &cluster.addr(i).to_string(),
        1_000,
        16 << 20,
        &cluster.peer_transport(other),
    )
    .await
    .unwrap();
    let frame = encode(&Envelope::new(&cluster.name, 1, request), 16 << 20).unwrap();
    conn.write_frame(&frame).await.unwrap();
    let payload = conn.read_frame().await.unwrap().unwrap();
    let reply: Envelope<Reply> = decode(&payload).unwrap();
    reply.body
}

/// Two nodes that hold accounts kept0 to kept19: the cluster, the coordinator's and the
/// follower's index, the clock and the follower's epoch.
async fn two_nodes_keeping_20() -> (Cluster, usize, usize, u64, u64) {
    let mut cluster = Cluster::new(IDSERVER, 2);
    cluster.start_all();
    let c = cluster.agreed(SETTLE).await;
    let mut client = cluster.client(&[c]);
    for n in 0..20 {
        client.create(&format!("kept{n}"), "", None).await.unwrap();
    }
    let clock = converged(&cluster).await;
    let follower = 1 - c;
    let epoch = cluster.status(follower).await.unwrap().epoch;
    (cluster, c, follower, clock, epoch)
}

#[tokio::test]
async fn a_snapshot_that_does_not_check_out_is_refused_and_changes_nothing() {
    let (cluster, c, follower, clock, epoch) = two_nodes_keeping_20().await;
    let mut client = cluster.client(&[c]);
    let piece = |offset: u64, data: &[u8], sha256: Option<Vec<u8>>| Request::Snapshot {
        epoch,
        offset,
        sha256: sha256.map(serde_bytes::ByteBuf::from),
        data: serde_bytes::ByteBuf::from(data.to_vec()),
    };
    let refused = |reply: &Reply, what: &str| match reply {
        Reply::Error(e) => assert!(e.message.contains(what), "{e:?}"),
        other => panic!("expected a refusal about {what:?}, got {other:?}"),
    };

    // A piece that does not continue the snapshot.
    let first = as_peer(&cluster, follower, piece(0, b"REDIS0010", None)).await;
    assert!(matches!(first, Reply::Replicated { .. }), "{first:?}");
    let gap = as_peer(&cluster, follower, piece(100, b"more", None)).await;
    refused(&gap, "does not continue");
    // A piece without its beginning (the gap dropped the snapshot).
    let orphan = as_peer(&cluster, follower, piece(9, b"more", Some(vec![0; 32]))).await;
    refused(&orphan, "without its beginning");
    // A whole snapshot whose checksum is wrong.
    as_peer(&cluster, follower, piece(0, b"REDIS0010", None)).await;
    let wrong = as_peer(&cluster, follower, piece(9, b"garbage", Some(vec![0; 32]))).await;
    refused(&wrong, "checksum");

    // The follower still holds and serves everything, and follows on.
    let status = cluster.status(follower).await.unwrap();
    assert_eq!((status.clock, status.accounts), (clock, 20));
    client.create("after", "", None).await.unwrap();
    assert_eq!(converged(&cluster).await, clock + 1);
    let found = cluster.client(&[follower]).lookup("kept7").await.unwrap();
    assert_eq!(found.login, "kept7");
    // A snapshot that stops arriving: the events that come next replace it.
    let started = as_peer(&cluster, follower, piece(0, b"REDIS0010", None)).await;
    assert!(matches!(started, Reply::Replicated { .. }), "{started:?}");
    client.create("after-stale", "", None).await.unwrap();
    assert_eq!(converged(&cluster).await, clock + 2);
    let status = cluster.status(follower).await.unwrap();
    assert_eq!(status.accounts, 22);
    let leftover = std::fs::read_dir(cluster.dir.path().join(format!("node{follower}")))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains("incoming"));
    assert!(!leftover, "a refused snapshot left its file behind");
}

/// A coordinator that dies in the middle of sending a snapshot: the replica's Redis, blocked
/// reading the rest of it, is let go as soon as the replica stands for election, so the
/// replica takes over with the data it had. (Before, the replica hung on its own Redis, in
/// elections and status alike, until Redis's own 60 s replication timeout.)
#[tokio::test]
async fn a_snapshot_cut_by_its_senders_death_is_given_up() {
    let (mut cluster, c, follower, clock, epoch) = two_nodes_keeping_20().await;
    // The coordinator dies; the beginning of a snapshot, as it would have sent it, arrives at
    // the follower before the follower notices, and nothing more.
    cluster.kill(c);
    let started = as_peer(
        &cluster,
        follower,
        Request::Snapshot {
            epoch,
            offset: 0,
            sha256: None,
            data: serde_bytes::ByteBuf::from(b"REDIS0010".to_vec()),
        },
    )
    .await;
    assert!(matches!(started, Reply::Replicated { .. }), "{started:?}");

    // The survivor stands for election (which gives the snapshot up) but, hearing nobody, does
    // not coordinate alone: the dead node fell silent, it did not leave. Its Redis answers
    // (no longer blocked on the rest of the snapshot) with the data from before.
    let deadline = tokio::time::Instant::now() + SETTLE;
    let status = loop {
        // No answer while its Redis still waits for the rest of the snapshot.
        let status = cluster.status(follower).await;
        if status.as_ref().is_some_and(|s| s.failed_rounds > 0)
            || tokio::time::Instant::now() > deadline
        {
            break status.expect("the survivor answers once the snapshot is given up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.failed_rounds > 0, "{status:?}");
    assert_eq!(
        status.last_failure.as_deref(),
        Some("nobody answered (not known to be alone)")
    );
    assert_eq!((status.clock, status.accounts), (clock, 20));
    // The dead node comes back: the pair elect, and the survivor's data is whole.
    cluster.start(c);
    cluster.agreed(SETTLE).await;
    let status = cluster.status(follower).await.unwrap();
    assert!(status.epoch > epoch, "{status:?}");
    let found = cluster.client(&[follower]).lookup("kept7").await.unwrap();
    assert_eq!(found.login, "kept7");
}

/// The coordinator's Redis hangs (stopped, not dead): the node keeps still and refuses
/// requests, the others elect one of themselves and take the writes; once its Redis answers
/// again, the node follows the new coordinator and catches up.
#[tokio::test]
async fn a_coordinator_whose_redis_hangs_gives_way_and_comes_back_as_a_follower() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let c = cluster.agreed(SETTLE).await;
    let mut client = cluster.client(&[0, 1, 2]);
    for n in 0..10 {
        client
            .create(&format!("before{n}"), "", None)
            .await
            .unwrap();
    }
    let epoch = cluster.status(c).await.unwrap().epoch;
    let pid_file = cluster
        .dir
        .path()
        .join(format!("node{c}"))
        .join("redis.pid");
    let redis = Pid::from_raw(
        std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );
    kill(redis, Signal::SIGSTOP).unwrap();
    struct Resume(Pid);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = kill(self.0, Signal::SIGCONT);
        }
    }
    let resume = Resume(redis);

    // The other two agree on a coordinator of a later epoch among themselves.
    let others: Vec<usize> = (0..3).filter(|i| *i != c).collect();
    let deadline = Instant::now() + SETTLE;
    let successor = loop {
        let mut named = BTreeSet::new();
        for i in &others {
            let status = cluster.status(*i).await;
            named.insert(status.and_then(|s| (s.epoch > epoch).then_some(s.coordinator_addr)?));
        }
        let agreed = match (named.len(), named.first()) {
            (1, Some(Some(addr))) => others
                .iter()
                .copied()
                .find(|i| cluster.addr(*i).to_string() == *addr),
            _ => None,
        };
        if let Some(successor) = agreed {
            break successor;
        }
        assert!(
            Instant::now() < deadline,
            "no successor: {:#?}",
            cluster.statuses().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The hung node refuses (so clients go elsewhere) and writes go on.
    assert!(cluster.status(c).await.is_none());
    for n in 0..10 {
        client
            .create(&format!("during{n}"), "", None)
            .await
            .unwrap();
    }

    drop(resume);
    assert_eq!(cluster.agreed(SETTLE).await, successor);
    let clock = converged(&cluster).await;
    let status = cluster.status(c).await.unwrap();
    assert_eq!((status.role.as_str(), status.clock), ("follower", clock));
    assert_eq!(status.accounts, 20);
    let found = cluster.client(&[c]).lookup("during9").await.unwrap();
    assert_eq!(found.login, "during9");
}

/// The coordinator's Redis comes back from a crash without its last writes (with `appendfsync
/// everysec`, Redis answers a write before writing it out while the previous second's fsync
/// still runs, up to two seconds). The replicas hold those events and the clients were told
/// they succeeded: the coordinator applies them again from memory before it makes anything
/// else, instead of giving their clocks to new writes (which would make the replicas drop
/// them as divergent).
#[tokio::test]
async fn a_coordinator_whose_redis_comes_back_without_its_last_writes_makes_them_again() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let c = cluster.agreed(SETTLE).await;
    let mut client = cluster.client(&[0, 1, 2]);
    for n in 0..10 {
        client.create(&format!("kept{n}"), "", None).await.unwrap();
    }
    let data = cluster.dir.path().join(format!("node{c}"));
    let incr = std::fs::read_dir(data.join("appendonlydir"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .expect("the append-only file's increment");
    // (Redis writes what it applied out before it next sleeps: well within this.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kept_bytes = std::fs::metadata(&incr).unwrap().len();
    for n in 0..10 {
        client.create(&format!("lost{n}"), "", None).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = cluster.status(c).await.unwrap();

    // Its Redis stopped, its file cut back to before the last ten writes, and killed: the node
    // starts it again on that file.
    let pid_file = data.join("redis.pid");
    let redis = Pid::from_raw(
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );
    kill(redis, Signal::SIGSTOP).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&incr)
        .unwrap()
        .set_len(kept_bytes)
        .unwrap();
    kill(redis, Signal::SIGKILL).unwrap();

    for n in 0..10 {
        client.create(&format!("after{n}"), "", None).await.unwrap();
    }
    let clock = converged(&cluster).await;
    assert_eq!(clock, before.clock + 10, "no event was made twice");
    for i in 0..3 {
        let status = cluster.status(i).await.unwrap();
        assert_eq!(status.accounts, 30, "node {i}: {status:?}");
        for n in 0..10 {
            let found = cluster.client(&[i]).lookup(&format!("lost{n}")).await;
            assert!(found.is_ok(), "node {i} lost lost{n}: {found:?}");
        }
    }
    assert_same_history(&cluster, &[0, 1, 2]).await;
}

/// In strict mode every coordinator's epoch begins with an `open` event that every node holds;
/// whitepaper mode makes none.
#[tokio::test]
async fn a_strict_coordinator_opens_each_epoch_with_an_event_every_node_holds() {
    use idserver::event::Change;
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.extra_args = vec!["--mode".into(), "strict".into()];
    cluster.start_all();
    let first = cluster.agreed(SETTLE).await;
    cluster
        .client(&[first])
        .create("a", "", None)
        .await
        .unwrap();
    converged(&cluster).await;
    cluster.kill(first);
    let second = cluster.agreed(SETTLE).await;
    let epoch = cluster.status(second).await.unwrap().epoch;
    cluster
        .client(&[second])
        .create("b", "", None)
        .await
        .unwrap();
    converged(&cluster).await;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != first).collect();
    let history = assert_same_history(&cluster, &survivors).await;
    let opens: Vec<u64> = history
        .iter()
        .filter(|l| l.event.change == Change::Open)
        .map(|l| l.event.epoch)
        .collect();
    assert_eq!(opens.last(), Some(&epoch), "the new epoch was opened");
    assert!(
        opens.len() >= 2,
        "both coordinators opened theirs: {opens:?}"
    );
    // Each open comes before anything else of its epoch.
    for (i, logged) in history.iter().enumerate() {
        let opened_before = history[..=i]
            .iter()
            .any(|l| l.event.change == Change::Open && l.event.epoch == logged.event.epoch);
        assert!(
            opened_before,
            "event {} before its epoch's open",
            logged.event.clock
        );
    }
    let kinds: Vec<&str> = history.iter().map(|l| l.event.change.kind()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "create").count(),
        2,
        "{kinds:?}"
    );

    let mut plain = Cluster::new(IDSERVER, 3);
    plain.start_all();
    let c = plain.agreed(SETTLE).await;
    plain.client(&[c]).create("a", "", None).await.unwrap();
    converged(&plain).await;
    let events = events_of(&plain, c).await;
    assert_eq!(
        events.len(),
        1,
        "whitepaper mode logs only the write: {events:?}"
    );
}

/// The coordinator sends a batch to its replicas while its own Redis writes it. If that write
/// fails after the events went out, the coordinator must apply those very events before it
/// makes any other (else it would give their clocks to other events): here its Redis refuses
/// writes (out of memory) until the test lifts the limit; meanwhile a replica holds the event
/// the coordinator lacks, and afterwards the write succeeds with one history everywhere.
#[tokio::test]
async fn events_sent_before_the_coordinator_could_store_them_are_stored_after_all() {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let c = cluster.agreed(SETTLE).await;
    cluster
        .client(&[c])
        .create("before", "", None)
        .await
        .unwrap();
    converged(&cluster).await;
    let sock = cluster
        .dir
        .path()
        .join(format!("node{c}"))
        .join("redis.sock");
    let mut redis = common::redis_conn(&format!("unix://{}", sock.display())).await;
    let limit = |bytes: &str| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .to_owned()
    };
    let _: () = limit("1").query_async(&mut redis).await.unwrap();
    let mut client = cluster.client(&[c]);
    // A lone write is first tried in one round trip, decided and written together: refused,
    // nothing sent. The next write reads first, so its events go out before its own write.
    let refused = client.create("refused", "", None).await;
    assert!(refused.is_err(), "{refused:?}");
    let write = tokio::spawn(async move { client.create("sent-first", "", None).await });
    let coordinator_clock = cluster.status(c).await.unwrap().clock;
    let deadline = Instant::now() + SETTLE;
    let ahead = loop {
        let followers = (0..3).filter(|i| *i != c);
        let mut ahead = None;
        for i in followers {
            if cluster
                .status(i)
                .await
                .is_some_and(|s| s.clock > coordinator_clock)
            {
                ahead = Some(i);
            }
        }
        if let Some(i) = ahead {
            break i;
        }
        assert!(Instant::now() < deadline, "no replica got the event first");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        cluster.status(c).await.unwrap().clock,
        coordinator_clock,
        "the coordinator's Redis refuses writes"
    );
    let _: () = limit("0").query_async(&mut redis).await.unwrap();
    let uuid = write
        .await
        .unwrap()
        .expect("stored once the Redis takes writes again");
    converged(&cluster).await;
    let history = assert_same_history(&cluster, &[0, 1, 2]).await;
    assert_eq!(history.len(), 2, "one event per create: {history:?}");
    let held = cluster.client(&[ahead]).lookup("sent-first").await.unwrap();
    assert_eq!(held.uuid, uuid);
}

#[tokio::test]
async fn a_step_down_under_load_hands_over_and_loses_no_acknowledged_write() {
    step_down_under_load("whitepaper").await;
}

#[tokio::test]
async fn a_step_down_under_load_hands_over_and_loses_no_acknowledged_write_in_strict_mode() {
    step_down_under_load("strict").await;
}

/// `idclient --step-down`'s request while four clients write: the coordinator hands over to
/// a follower, every node agrees on it, the old one follows, and every acknowledged write is
/// on every node in one history. Refused without a node certificate and by a follower.
async fn step_down_under_load(mode: &str) {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.extra_args = vec!["--mode".into(), mode.into()];
    cluster.start_all();
    let old = cluster.agreed(SETTLE).await;
    let follower = (old + 1) % 3;
    let operator = |i: usize| {
        Client::new(idserver::client::ClientConfig {
            servers: vec![cluster.addr(i).to_string()],
            cluster: cluster.name.clone(),
            transport: cluster.peer_transport(follower),
            retry_for_ms: 0,
            ..idserver::client::ClientConfig::default()
        })
    };
    let refused = cluster.client(&[old]).step_down().await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Forbidden, "{refused}");
    let refused = operator(follower).step_down().await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Unavailable, "{refused}");
    assert!(
        refused.to_string().contains("not the coordinator"),
        "{refused}"
    );

    let tasks = start_writers(&cluster, 1_200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (successor, clock) = operator(old).step_down().await.unwrap();
    assert_ne!(successor, cluster.addr(old).to_string());
    assert!(clock > 0, "writes were decided before the hand-over");
    let acked: BTreeMap<String, Uuid> = tasks.join_all().await.into_iter().flatten().collect();
    assert!(acked.len() > 50, "the load made progress: {}", acked.len());
    let now = cluster.agreed(SETTLE).await;
    assert_eq!(cluster.addr(now).to_string(), successor);
    assert_eq!(cluster.status(old).await.unwrap().role, Role::Follower);
    converged(&cluster).await;
    assert_same_history(&cluster, &[0, 1, 2]).await;
    assert_acked_stored(&cluster, &acked, &[0, 1, 2]).await;
}

/// A backup taken from a follower while clients write is consistent: restoring it finds the
/// clock and the accounts (counted one by one) its trailer names.
#[tokio::test]
async fn a_backup_under_load_from_a_follower_restores_consistently() {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let coordinator = cluster.agreed(SETTLE).await;
    let follower = (coordinator + 1) % 3;
    let stop_at = Instant::now() + Duration::from_millis(1_500);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..3 {
        let mut client = cluster.client(&[0, 1, 2]);
        tasks.spawn(async move {
            let mut n = 0;
            while Instant::now() < stop_at {
                let _ = client.create(&format!("l{w}-{n}"), "", None).await;
                n += 1;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let file = cluster.dir.path().join("follower.backup");
    let info = idserver::backup::fetch(
        &cluster.addr(follower).to_string(),
        &cluster.name,
        &cluster.peer_transport(coordinator),
        &file,
    )
    .await
    .unwrap();
    assert_eq!(
        info.node_id,
        cluster.status(follower).await.unwrap().node_id
    );
    assert!(info.accounts > 0);
    tasks.join_all().await;
    let target = idserver::backup::RestoreTarget {
        cluster: cluster.name.clone(),
        data_dir: cluster.dir.path().join("restored"),
        redis_url: None,
        redis_bin: "redis-server".into(),
        appendfsync: "everysec".into(),
    };
    let (restored, node_id) = idserver::backup::restore(&file, &target).await.unwrap();
    assert_eq!(restored, info);
    assert_ne!(node_id, info.node_id);
}
