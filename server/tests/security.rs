//! A cluster with credentials (TLS, sealed datagrams) against a stranger on the same network:
//! forged datagrams, a key of its own, peer requests on a client connection, replays. Nothing
//! it sends moves the coordinator, the epochs or the data; the rejection counters say what was
//! refused. (The lab's `rogue` scenarios do the same across namespaces.)

mod common;

use common::cluster::Cluster;
use idserver::connection::Connection;
use idserver::core::{Body, Message, NodeRef, Purpose, Role};
use idserver::error::ErrorCode;
use idserver::limits::REPLY_FRAME_BYTES_MAX;
use idserver::security::mint::{CredentialSet, NodeSpec};
use idserver::security::seal::Sealer;
use idserver::security::KeyRing;
use idserver::wire::{encode_datagram, Reply, Request, StatusView};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

const IDSERVER: &str = env!("CARGO_BIN_EXE_idserver");
const SETTLE: Duration = Duration::from_secs(5);
const HUGE_EPOCH: u64 = 1_000_000_000_000_000;

fn stranger(addr: SocketAddr, rank: Option<u32>) -> NodeRef {
    NodeRef {
        node_id: uuid::Uuid::new_v4(),
        rank,
        addr,
    }
}

/// The datagrams a stranger forges: a coordinator claim, an election result naming itself, a
/// RANK reply, each with a huge epoch.
fn forgeries(me: SocketAddr) -> Vec<Message> {
    let from = stranger(me, Some(1));
    let claim = Body::Master {
        coordinator: from,
        clock: 1 << 40,
        members: vec![from],
        answer: false,
    };
    let rank = Body::Rank {
        purpose: Purpose::Join,
        clock: 1 << 40,
        last_epoch: HUGE_EPOCH,
        role: Role::Coordinator,
        coordinator: Some(from),
        hears_coordinator: true,
        granted: true,
        held: false,
    };
    let heartbeat = Body::GetRank {
        purpose: Purpose::Heartbeat {
            members: vec![from],
            sent_ms: 1,
            rtt_ms: 1,
            elected_clock: 1 << 40,
        },
    };
    [claim, Body::NewMaster { winner: from }, rank, heartbeat]
        .into_iter()
        .map(|body| Message {
            from,
            epoch: HUGE_EPOCH,
            to: None,
            body,
        })
        .collect()
}

async fn settled_status(cluster: &Cluster, i: usize) -> StatusView {
    cluster.status(i).await.expect("node answers")
}

/// Node `i`'s status once `holds` says yes of it (polled; fails after a few seconds with the
/// last one).
async fn status_when(
    cluster: &Cluster,
    i: usize,
    holds: impl Fn(&StatusView) -> bool,
) -> StatusView {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let status = settled_status(cluster, i).await;
        if holds(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {i}: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Epoch, coordinator and clock of every node.
async fn picture(cluster: &Cluster) -> Vec<(u64, Option<String>, u64)> {
    let mut out = Vec::new();
    for i in 0..cluster.size {
        let s = settled_status(cluster, i).await;
        out.push((s.epoch, s.coordinator_addr, s.clock));
    }
    out
}

#[tokio::test]
async fn forged_and_foreign_datagrams_move_nothing_and_are_counted() {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let c = cluster.agreed(SETTLE).await;
    let mut client = cluster.client(&[0, 1, 2]);
    client.create("before", "B", None).await.unwrap();
    for i in 0..cluster.size {
        status_when(&cluster, i, |s| s.clock == 1).await;
    }
    let before = picture(&cluster).await;

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = socket.local_addr().unwrap();
    // A key of the stranger's own: sealed, but not with the cluster's.
    let own_key = KeyRing::parse(&idserver::security::mint::cluster_key(), &cluster.name).unwrap();
    let mut sealer = Sealer::new();
    for msg in forgeries(me) {
        let plain = encode_datagram(&cluster.name, &msg).unwrap();
        let sealed = sealer.seal(&own_key, &plain);
        for i in 0..cluster.size {
            for _ in 0..5 {
                socket.send_to(&plain, cluster.addr(i)).await.unwrap();
                socket.send_to(&sealed, cluster.addr(i)).await.unwrap();
            }
        }
    }
    // Garbage too.
    for i in 0..cluster.size {
        socket
            .send_to(
                b"IDs1 not really sealed at all, just long enough to look it",
                cluster.addr(i),
            )
            .await
            .unwrap();
    }
    // Once every node has refused all 41, none of them moved.
    for i in 0..cluster.size {
        let status = status_when(&cluster, i, |s| s.rejected_datagrams >= 41).await;
        assert!(status.authenticated);
    }
    assert_eq!(picture(&cluster).await, before, "nothing moved");
    client.create("after", "A", None).await.unwrap();
    assert_eq!(cluster.agreed(SETTLE).await, c);

    // A client's questions are still answered (discovery needs no key), and answers go to
    // where the question came from.
    let question = Message {
        from: stranger("203.0.113.9:5151".parse().unwrap(), None),
        epoch: HUGE_EPOCH,
        to: None,
        body: Body::GetMaster,
    };
    socket
        .send_to(
            &encode_datagram(&cluster.name, &question).unwrap(),
            cluster.addr(c),
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .expect("the coordinator answers GETMASTER")
        .unwrap();
    let payload = idserver::security::seal::payload_unverified(&buf[..len]);
    let answer = idserver::wire::decode_datagram(&cluster.name, payload).unwrap();
    assert!(matches!(answer.body, Body::Master { .. }), "{answer:?}");
    assert!(
        answer.epoch < 100,
        "the question's epoch was not taken: {answer:?}"
    );
}

#[tokio::test]
async fn a_datagram_is_taken_once_and_replays_are_refused() {
    // Three members listed; the third is a stranger's socket that receives what the two real
    // nodes send it, sealed for it, and plays it to a real node again and again.
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start(0);
    cluster.start(1);
    let spy = std::net::UdpSocket::bind(cluster.addr(2)).unwrap();
    spy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    cluster.agreed(SETTLE).await;
    let mut buf = vec![0u8; 65536];
    let captured = loop {
        let (len, _) = spy
            .recv_from(&mut buf)
            .expect("a heartbeat reaches the spy");
        if buf[..len].starts_with(b"IDs1") {
            break buf[..len].to_vec();
        }
    };
    let before = settled_status(&cluster, 1).await.rejected_datagrams;
    for _ in 0..10 {
        spy.send_to(&captured, cluster.addr(1)).unwrap();
    }
    // Sealed for the spy's address, the first copy is new to node 1 (see `seal`); the rest
    // are replays.
    let after = status_when(&cluster, 1, |s| s.rejected_datagrams >= before + 9)
        .await
        .rejected_datagrams;
    // A sealed datagram whose payload was changed fails its tag.
    let mut changed = captured.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    spy.send_to(&changed, cluster.addr(1)).unwrap();
    status_when(&cluster, 1, |s| s.rejected_datagrams > after).await;
}

#[tokio::test]
async fn peer_requests_need_a_cluster_certificate() {
    let mut cluster = Cluster::new(IDSERVER, 3);
    cluster.start_all();
    let c = cluster.agreed(SETTLE).await;
    let mut client = cluster.client(&[0, 1, 2]);
    let uuid = client.create("victim", "V", Some("secret")).await.unwrap();
    let status = settled_status(&cluster, c).await;
    let forged = [
        Request::Forward {
            epoch: status.epoch,
            client_addr: "x".into(),
            request: Box::new(Request::Delete {
                login: "victim".into(),
                password: None,
                request_id: uuid::Uuid::new_v4(),
            }),
            password_hash: None,
            verified_uuid: Some(uuid),
        },
        Request::Replicate {
            epoch: status.epoch + 1,
            prev: None,
            events: Vec::new(),
        },
        Request::Snapshot {
            epoch: status.epoch + 1,
            offset: 0,
            sha256: None,
            data: serde_bytes::ByteBuf::from(vec![0u8; 16]),
        },
    ];
    // Over TLS with the right CA, but no certificate: a client connection.
    for i in 0..cluster.size {
        for request in &forged {
            let mut conn = Connection::connect(
                &cluster.addr(i).to_string(),
                1_000,
                REPLY_FRAME_BYTES_MAX,
                &cluster.transport,
            )
            .await
            .unwrap();
            let frame =
                idserver::client::request_frame(&cluster.name, 1, 0, request, false).unwrap();
            conn.write_frame(&frame).await.unwrap();
            let reply: idserver::wire::Envelope<Reply> =
                idserver::wire::decode(&conn.read_frame().await.unwrap().unwrap()).unwrap();
            match reply.body {
                Reply::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden, "{e:?}"),
                other => panic!("{} served: {other:?}", request.name()),
            }
        }
        assert!(settled_status(&cluster, i).await.rejected_requests >= 3);
    }
    // A certificate of another CA: no connection at all.
    let other_dir = tempfile::tempdir().unwrap();
    let other = CredentialSet::write(
        other_dir.path(),
        &cluster.name,
        &[NodeSpec::at("rogue", cluster.addr(0).ip())],
        Duration::from_secs(60),
    )
    .unwrap();
    // Its own CA: the cluster's certificate fails the rogue's check first.
    let own = idserver::security::NodeTls::load(&other.node("rogue").tls).unwrap();
    let transport = idserver::connection::Transport::Tls {
        connector: own.connector,
        server_name: None,
    };
    let addr = cluster.addr(c).to_string();
    assert!(Connection::connect(&addr, 1_000, 1024, &transport)
        .await
        .is_err());
    // The cluster's CA certificate is no secret: trusting it, the rogue presents its own
    // certificate, which the node refuses (TLS 1.3 tells the client after its last flight).
    let before = settled_status(&cluster, c).await.rejected_connections;
    let mut files = other.node("rogue").tls;
    files.ca = cluster.creds.as_ref().unwrap().ca();
    let presenting = idserver::security::NodeTls::load(&files).unwrap();
    let transport = idserver::connection::Transport::Tls {
        connector: presenting.connector,
        server_name: None,
    };
    if let Ok(mut conn) = Connection::connect(&addr, 1_000, 1024, &transport).await {
        let frame =
            idserver::client::request_frame(&cluster.name, 1, 0, &forged[1], false).unwrap();
        let _ = conn.write_frame(&frame).await;
        assert!(
            !matches!(conn.read_frame().await, Ok(Some(_))),
            "a foreign certificate got an answer"
        );
    }
    status_when(&cluster, c, |s| s.rejected_connections > before).await;
    assert_eq!(client.lookup("victim").await.unwrap().uuid, uuid);
    assert_eq!(cluster.agreed(SETTLE).await, c);
}
