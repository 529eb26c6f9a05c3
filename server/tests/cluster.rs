//! Real `idserver` processes, each with its own real Redis, forming clusters on loopback
//! (unicast peers, a private 127.x.y.0/24 per test so parallel tests never meet). Multicast,
//! which needs a network namespace, is tested by the lab (`harness/tests/multicast.rs`).

mod common;

use common::cluster::Cluster;
use idserver::client::{Client, ClientConfig};
use idserver::core::Role;
use idserver::discovery::Discovery;
use idserver::ErrorCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const IDSERVER: &str = env!("CARGO_BIN_EXE_idserver");

const SETTLE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn election_at_start_up_agrees_and_ranks_are_one_to_n() {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let c = cluster.agreed(SETTLE).await;
    // Started together, the lowest rank wins (equal clocks); the simulation checks this
    // exhaustively, here a slow start can let a node join after the election.
    let coordinator_rank = cluster.rank(c).await.unwrap();
    assert!((1..=3).contains(&coordinator_rank));
    let mut ranks = Vec::new();
    for i in 0..3 {
        ranks.push(cluster.rank(i).await.unwrap());
    }
    ranks.sort();
    assert_eq!(ranks, vec![1, 2, 3]);
    let status = cluster.status(c).await.unwrap();
    assert_eq!(status.members.len(), 3, "{status:#?}");
}

#[tokio::test]
async fn killing_the_coordinator_elects_another_and_it_does_not_take_over_on_return() {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let old = cluster.agreed(SETTLE).await;
    let old_epoch = cluster.status(old).await.unwrap().epoch;
    let mut client = cluster.client(&[0, 1, 2]);
    client.create("before", "", None).await.unwrap();
    // Equal clocks everywhere, so that the rank decides.
    let deadline = Instant::now() + SETTLE;
    for i in 0..3 {
        while cluster.status(i).await.map(|s| s.clock) != Some(1) {
            assert!(
                Instant::now() < deadline,
                "node {i} never applied the write"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    let old_rank = cluster.rank(old).await;
    let mut surviving_ranks = Vec::new();
    for i in (0..3).filter(|i| *i != old) {
        surviving_ranks.push(cluster.rank(i).await.unwrap());
    }
    cluster.kill(old);
    let new = cluster.agreed(SETTLE).await;
    assert_ne!(new, old);
    assert_eq!(
        cluster.rank(new).await,
        surviving_ranks.iter().min().copied(),
        "equal clocks: the lowest surviving rank wins (the old coordinator held {old_rank:?})"
    );
    assert!(cluster.status(new).await.unwrap().epoch > old_epoch);
    client
        .create("after", "", None)
        .await
        .expect("writes work after failover");

    cluster.start(old);
    assert_eq!(
        cluster.agreed(SETTLE).await,
        new,
        "the returning node follows"
    );
    let free = (1..).find(|r| !surviving_ranks.contains(r));
    assert_eq!(
        cluster.rank(old).await,
        free,
        "and takes the lowest free rank"
    );
}

#[tokio::test]
async fn a_paused_coordinator_steps_down_when_resumed() {
    use nix::sys::signal::Signal;
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let old = cluster.agreed(SETTLE).await;
    cluster.signal(old, Signal::SIGSTOP);
    let deadline = Instant::now() + SETTLE;
    let new = loop {
        let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
        let mut roles = Vec::new();
        for i in &survivors {
            roles.push(cluster.status(*i).await.map(|s| s.role));
        }
        if let Some(pos) = roles.iter().position(|r| *r == Some(Role::Coordinator)) {
            break survivors[pos];
        }
        assert!(
            Instant::now() < deadline,
            "no successor while the coordinator is stopped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    cluster.signal(old, Signal::SIGCONT);
    assert_eq!(
        cluster.agreed(SETTLE).await,
        new,
        "the resumed node follows the successor"
    );
    let status = cluster.status(old).await.unwrap();
    assert_eq!(status.role, Role::Follower);
    assert_eq!(status.coordinator_addr, Some(cluster.addr(new).to_string()));
}

#[tokio::test]
async fn a_dead_nodes_rank_is_reused() {
    let mut cluster = Cluster::new(IDSERVER, 4);
    cluster.start_all();
    let c = cluster.agreed(SETTLE).await;
    let two = (0..4).find(|i| *i != c).unwrap();
    let rank = {
        let mut r = None;
        for _ in 0..100 {
            r = cluster.rank(two).await;
            if r.is_some() {
                break;
            }
        }
        r.unwrap()
    };
    cluster.kill(two);
    let deadline = Instant::now() + SETTLE;
    while cluster
        .status(c)
        .await
        .unwrap()
        .members
        .iter()
        .any(|m| m.rank == rank)
    {
        assert!(
            Instant::now() < deadline,
            "the coordinator never declared the node dead"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A new machine (fresh data) in the dead node's place.
    cluster.start_with_data(two, "replacement");
    cluster.agreed(SETTLE).await;
    let deadline = Instant::now() + SETTLE;
    while cluster.rank(two).await != Some(rank) {
        assert!(
            Instant::now() < deadline,
            "replacement got {:?}, not {rank}",
            cluster.rank(two).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn any_server_takes_requests_and_a_client_fails_over_by_itself() {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let c = cluster.agreed(SETTLE).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != c).collect();
    let mut via_follower = cluster.client(&[followers[0]]);
    let uuid = via_follower.create("olga", "Olga", None).await.unwrap();
    // Another session sees it once every node applied it (sequential consistency promises a
    // session its own writes, not other sessions' at once).
    let written = via_follower.session_clock();
    let deadline = Instant::now() + SETTLE;
    for i in 0..3 {
        while cluster.status(i).await.map_or(0, |s| s.clock) < written {
            assert!(
                Instant::now() < deadline,
                "node {i} never applied the write"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut other = cluster.client(&[followers[1]]);
    assert_eq!(other.lookup("olga").await.unwrap().uuid, uuid);

    // Discovery: GETMASTER then GETRANK; the client binds to the fastest answer.
    let discovery = Discovery {
        peers: (0..3).map(|i| cluster.addr(i)).collect(),
        mcast: None,
    };
    let mut client = Client::discover(&discovery, &cluster.name, cluster.transport.clone())
        .await
        .unwrap();
    assert_eq!(client.servers().len(), 3);
    client.lookup("olga").await.unwrap();
    let bound: SocketAddr = client.bound_server().unwrap().parse().unwrap();
    let bound_index = (0..3).find(|i| cluster.addr(*i) == bound).unwrap();
    if bound_index == c {
        // Failing over from a coordinator loses its unreplicated data; fail over from a follower.
        return;
    }
    cluster.kill(bound_index);
    assert_eq!(
        client.lookup("olga").await.unwrap().uuid,
        uuid,
        "served by the next server"
    );
    assert_ne!(client.bound_server().unwrap(), bound.to_string());
}

#[tokio::test]
async fn requests_get_unavailable_while_no_coordinator_is_known() {
    let mut cluster = Cluster::new(IDSERVER, 1);
    cluster.extra_args = vec!["--join-window-ms".into(), "3000".into()];
    cluster.start(0);
    let mut client = Client::new(ClientConfig {
        servers: vec![cluster.addr(0).to_string()],
        cluster: cluster.name.clone(),
        retry_for_ms: 2_000,
        transport: cluster.transport.clone(),
        ..ClientConfig::default()
    });
    // Retried while the server starts; then the joining node answers "unavailable" at once.
    let started = Instant::now();
    let err = client.lookup("x").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable, "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let status = cluster.status(0).await.unwrap();
    assert_eq!(status.role, Role::Joining);
    cluster.agreed(SETTLE).await;
    assert_eq!(
        client.lookup("x").await.unwrap_err().code(),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn datagrams_of_another_cluster_are_ignored_and_counted() {
    let mut cluster = Cluster::new(IDSERVER, 2);
    cluster.start_all();
    cluster.agreed(SETTLE).await;
    // A datagram of another cluster, with a tempting epoch, and garbage.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let msg = idserver::core::Message {
        from: idserver::core::NodeRef {
            node_id: uuid::Uuid::new_v4(),
            rank: Some(1),
            addr: socket.local_addr().unwrap(),
        },
        epoch: 99,
        to: None,
        body: idserver::core::Body::GetMaster,
    };
    let bytes = idserver::wire::encode_datagram("someone-else", &msg).unwrap();
    socket.send_to(&bytes, cluster.addr(0)).unwrap();
    socket.send_to(b"garbage", cluster.addr(0)).unwrap();
    let deadline = Instant::now() + SETTLE;
    loop {
        let status = cluster.status(0).await.unwrap();
        if status.ignored_datagrams >= 2 {
            assert!(status.epoch < 99, "a foreign epoch was not adopted");
            break;
        }
        assert!(Instant::now() < deadline, "{status:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One datagram of the cluster's own name with an epoch at the end of the range (a MASTER
/// naming a stranger, a NEWMASTER, a vote request) used to move every node to that epoch for
/// good: with u64::MAX no election could raise it any more, and `epoch + 1` overflowed. Epochs
/// above `EPOCH_MAX` are now refused and counted; the coordinator, the epoch and writes are
/// untouched.
#[tokio::test]
async fn datagrams_with_an_epoch_beyond_the_range_are_ignored_and_counted() {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let coordinator = cluster.agreed(SETTLE).await;
    let before = cluster.status(coordinator).await.unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let stranger = idserver::core::NodeRef {
        node_id: uuid::Uuid::new_v4(),
        rank: Some(1),
        addr: socket.local_addr().unwrap(),
    };
    let forged = [
        idserver::core::Body::Master {
            coordinator: stranger,
            clock: u64::MAX,
            members: vec![stranger],
            answer: false,
        },
        idserver::core::Body::NewMaster { winner: stranger },
        idserver::core::Body::GetRank {
            purpose: idserver::core::Purpose::Election {
                round: 1,
                vote: Some(idserver::core::VoteRequest {
                    epoch: u64::MAX,
                    last_epoch: u64::MAX,
                    last_clock: u64::MAX,
                    pre: false,
                    transfer: false,
                }),
            },
        },
    ];
    for body in forged {
        let msg = idserver::core::Message {
            from: stranger,
            epoch: u64::MAX,
            to: None,
            body,
        };
        let bytes = idserver::wire::encode_datagram(&before.cluster, &msg).unwrap();
        for i in 0..3 {
            socket.send_to(&bytes, cluster.addr(i)).unwrap();
        }
    }
    let deadline = Instant::now() + SETTLE;
    loop {
        let statuses = cluster.statuses().await;
        if statuses.iter().flatten().all(|s| s.ignored_datagrams >= 3) {
            for s in statuses.iter().flatten() {
                assert_eq!(
                    s.epoch, before.epoch,
                    "no node took the forged epoch: {s:#?}"
                );
            }
            break;
        }
        assert!(Instant::now() < deadline, "{statuses:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cluster.agreed(SETTLE).await, coordinator);
    let mut client = cluster.client(&[0, 1, 2]);
    client.create("after-forgery", "A", None).await.unwrap();
}

/// GET `url` off the async runtime: (status, body).
async fn http_get(url: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || common::http::get(&common::http::http(), &url))
        .await
        .unwrap()
}

/// The exposition at `url`.
async fn scraped(url: String) -> prometheus_parse::Scrape {
    tokio::task::spawn_blocking(move || common::http::scrape(&common::http::http(), &url))
        .await
        .unwrap()
}

/// Each node's `/metrics` and `/readyz` in a three-node cluster: the coordinator shows each
/// replica's lag and in-flight requests (down to 0 once they caught up), followers are
/// ready; a new coordinator after a crash counts its win.
#[tokio::test]
async fn metrics_show_replica_lag_and_followers_become_ready() {
    use common::http::sample;
    let mut cluster = Cluster::new(IDSERVER, 3);
    let bases: Vec<String> = (0..3)
        .map(|i| format!("http://{}:9151", cluster.addr(i).ip()))
        .collect();
    for i in 0..3 {
        let metrics = format!("{}:9151", cluster.addr(i).ip());
        cluster.start_with_args(i, &format!("d{i}"), &["--metrics-listen".into(), metrics]);
    }
    let coordinator = cluster.agreed(SETTLE).await;
    let mut client = cluster.client(&[0, 1, 2]);
    for n in 0..20 {
        client.create(&format!("m{n}"), "M", None).await.unwrap();
    }
    let deadline = Instant::now() + SETTLE;
    let caught_up = loop {
        let metrics = scraped(format!("{}/metrics", bases[coordinator])).await;
        let lags: Vec<f64> = (0..3)
            .filter(|i| *i != coordinator)
            .filter_map(|i| {
                let replica = cluster.addr(i).to_string();
                sample(
                    &metrics,
                    "idserver_replica_lag_events",
                    &[("replica", &replica)],
                )
            })
            .collect();
        let in_flight = metrics
            .samples
            .iter()
            .filter(|s| s.metric == "idserver_replica_in_flight")
            .count();
        if lags.len() == 2 && lags.iter().all(|lag| *lag == 0.0) && in_flight == 2 {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "replicas never caught up: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sample(&caught_up, "idserver_members", &[]), Some(3.0));
    assert!(sample(&caught_up, "idserver_decided_clock", &[]).unwrap() >= 20.0);
    for i in (0..3).filter(|i| *i != coordinator) {
        let (status, body) = http_get(format!("{}/readyz", bases[i])).await;
        assert_eq!((status, body.as_str()), (200, "ready\n"), "follower {i}");
        let follower = scraped(format!("{}/metrics", bases[i])).await;
        assert_eq!(
            sample(&follower, "idserver_role", &[("role", "follower")]),
            Some(1.0)
        );
        let replicas = follower
            .samples
            .iter()
            .filter(|s| s.metric == "idserver_replica_lag_events")
            .count();
        assert_eq!(replicas, 0, "only a coordinator shows replicas");
    }
    cluster.kill(coordinator);
    let successor = cluster.agreed(Duration::from_secs(10)).await;
    let won = scraped(format!("{}/metrics", bases[successor])).await;
    assert_eq!(sample(&won, "idserver_elections_won_total", &[]), Some(1.0));
    assert_eq!(
        sample(&won, "idserver_role", &[("role", "coordinator")]),
        Some(1.0)
    );
}
