//! A stranger on the lab's network: the `rogue` host, which holds none of the run's
//! credentials, and what it tries. Each attack reports what it sent and how the nodes
//! answered; a forged request that gets served fails the step at once (the rejection counters
//! and the cluster's state are judged by `assert` steps and the checks).
//!
//! - `forge-master`, `forge-newmaster`, `forge-rank`, `forge-heartbeat`: cluster datagrams
//!   claiming a huge epoch, half of them plain, half sealed with a key of the rogue's own.
//! - `forge-replicate`, `forge-snapshot`, `forge-forward`: peer requests over plain TCP, over
//!   TLS trusting the cluster's CA (public) without a certificate, and over TLS presenting a
//!   certificate of the rogue's own CA.
//! - `replay`: genuine sealed datagrams captured on the target's link (an on-path attacker),
//!   sent to it again.
//! - `redirect`: genuine sealed datagrams arriving at the target, sent on at once to every
//!   other member (a vote sealed for one candidate offered to its rivals).
//! - `flood`: random bytes as datagrams (some with the sealed magic) and as TCP connections.

use crate::error::{Error, Result};
use idserver::client::request_frame;
use idserver::connection::{Connection, Transport};
use idserver::core::{Body, Message, NodeRef, Purpose, Role};
use idserver::security::mint::{CredentialSet, NodeSpec};
use idserver::security::seal::{Sealer, MAGIC};
use idserver::security::{KeyRing, NodeTls};
use idserver::wire::{encode_datagram, Envelope, Reply, Request};
use idserver::ErrorCode;
use netns::Host;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;

/// What the rogue tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// MASTER: "I coordinate", with a huge epoch.
    ForgeMaster,
    /// NEWMASTER: an election result naming the rogue.
    ForgeNewMaster,
    /// RANK: a reply that would make the rogue a member.
    ForgeRank,
    /// GETRANK heartbeat: a coordinator's member list naming only the rogue.
    ForgeHeartbeat,
    /// Replicate: events for a replica.
    ForgeReplicate,
    /// Snapshot: a replacement database.
    ForgeSnapshot,
    /// Forward: a delete whose password check "was done".
    ForgeForward,
    /// Genuine datagrams, captured and sent again.
    Replay,
    /// Genuine datagrams arriving at one member, sent on at once to every other member.
    Redirect,
    /// Random bytes.
    Flood,
}

impl Attack {
    /// Every attack with its name in scenario files.
    pub const ALL: [(&'static str, Attack); 10] = [
        ("forge-master", Attack::ForgeMaster),
        ("forge-newmaster", Attack::ForgeNewMaster),
        ("forge-rank", Attack::ForgeRank),
        ("forge-heartbeat", Attack::ForgeHeartbeat),
        ("forge-replicate", Attack::ForgeReplicate),
        ("forge-snapshot", Attack::ForgeSnapshot),
        ("forge-forward", Attack::ForgeForward),
        ("replay", Attack::Replay),
        ("redirect", Attack::Redirect),
        ("flood", Attack::Flood),
    ];

    /// As written in scenario files.
    pub fn as_str(self) -> &'static str {
        Attack::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(name, _)| *name)
            .expect("every attack is listed")
    }
}

/// The rogue's own credentials: a CA, a certificate and a cluster key the cluster never saw.
pub struct RogueKit {
    keys: KeyRing,
    /// TLS trusting the cluster's CA and presenting the rogue's certificate.
    presenting: Transport,
    /// TLS trusting the cluster's CA, no certificate.
    anonymous: Transport,
}

impl RogueKit {
    /// Mints the rogue's credentials in `dir` (for `cluster`, at `ip`); with the cluster's CA
    /// (`cluster_ca`, public), if it has one.
    pub fn mint(
        dir: &Path,
        cluster: &str,
        ip: std::net::IpAddr,
        cluster_ca: Option<&Path>,
    ) -> Result<RogueKit> {
        let setup = |e: idserver::Error| Error::Setup(format!("rogue credentials: {e}"));
        let own = CredentialSet::write(
            dir,
            cluster,
            &[NodeSpec::at("rogue", ip)],
            Duration::from_secs(24 * 3600),
        )
        .map_err(setup)?;
        let keys = KeyRing::load(&own.cluster_key(), cluster).map_err(setup)?;
        let mut files = own.node("rogue").tls;
        if let Some(ca) = cluster_ca {
            files.ca = ca.to_path_buf();
        }
        let presenting = Transport::Tls {
            connector: NodeTls::load(&files).map_err(setup)?.connector,
            server_name: None,
        };
        let anonymous = Transport::Tls {
            connector: idserver::security::tls::client_connector(&files.ca).map_err(setup)?,
            server_name: None,
        };
        Ok(RogueKit {
            keys,
            presenting,
            anonymous,
        })
    }
}

/// One attack: what, on which cluster's nodes, how many times each, claiming which epoch.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The cluster's name (in every forged envelope).
    pub cluster: String,
    /// What to try.
    pub attack: Attack,
    /// The nodes' addresses.
    pub targets: Vec<SocketAddr>,
    /// Tries per node (for a replay: sends of each captured datagram).
    pub count: u32,
    /// The epoch forgeries claim.
    pub epoch: u64,
}

/// Carries out `plan` from the rogue host (call inside its runtime); `captured` holds the
/// datagrams a replay sends.
pub async fn run(
    kit: &RogueKit,
    plan: &Plan,
    captured: Vec<(SocketAddr, Vec<u8>)>,
) -> Result<String> {
    match plan.attack {
        Attack::ForgeMaster
        | Attack::ForgeNewMaster
        | Attack::ForgeRank
        | Attack::ForgeHeartbeat => forge_datagrams(kit, plan).await,
        Attack::ForgeReplicate | Attack::ForgeSnapshot | Attack::ForgeForward => {
            forge_requests(kit, plan).await
        }
        Attack::Replay => replay(captured, plan.count).await,
        Attack::Redirect => Err(Error::Step(
            "redirect runs on the targets' links (rogue::redirect), not from the rogue host".into(),
        )),
        Attack::Flood => flood(&plan.targets, plan.count).await,
    }
}

fn step_error(e: std::io::Error) -> Error {
    Error::Step(format!("rogue: {e}"))
}

async fn forge_datagrams(kit: &RogueKit, plan: &Plan) -> Result<String> {
    let Plan {
        cluster,
        attack,
        targets,
        count,
        epoch,
    } = plan;
    let (attack, count, epoch) = (*attack, *count, *epoch);
    let socket = UdpSocket::bind("0.0.0.0:0").await.map_err(step_error)?;
    let me = NodeRef {
        node_id: uuid::Uuid::new_v4(),
        rank: Some(1),
        addr: socket.local_addr().map_err(step_error)?,
    };
    let body = match attack {
        Attack::ForgeMaster => Body::Master {
            coordinator: me,
            clock: 1 << 40,
            members: vec![me],
            answer: false,
        },
        Attack::ForgeNewMaster => Body::NewMaster { winner: me },
        Attack::ForgeRank => Body::Rank {
            purpose: Purpose::Join,
            clock: 1 << 40,
            last_epoch: epoch,
            role: Role::Coordinator,
            coordinator: Some(me),
            hears_coordinator: true,
            granted: true,
            held: false,
        },
        _ => Body::GetRank {
            purpose: Purpose::Heartbeat {
                members: vec![me],
                sent_ms: 1,
                rtt_ms: 1,
                elected_clock: 1 << 40,
            },
        },
    };
    let msg = Message {
        from: me,
        epoch,
        to: None,
        body,
    };
    let plain = encode_datagram(cluster, &msg).map_err(|e| Error::Step(e.to_string()))?;
    let mut sealer = Sealer::new();
    let mut sent = 0;
    for to in targets {
        for n in 0..count {
            let bytes = if n % 2 == 0 {
                plain.clone()
            } else {
                sealer.seal(&kit.keys, &plain)
            };
            socket.send_to(&bytes, to).await.map_err(step_error)?;
            sent += 1;
        }
    }
    Ok(format!(
        "{sent} {} datagrams at epoch {epoch} (half plain, half sealed with the rogue's key)",
        msg.body.name()
    ))
}

/// How the nodes answered forged requests.
#[derive(Debug, Default)]
struct Answers {
    forbidden: u32,
    refused: u32,
    served: Vec<String>,
}

async fn forge_requests(kit: &RogueKit, plan: &Plan) -> Result<String> {
    let Plan {
        cluster,
        attack,
        targets,
        count,
        epoch,
    } = plan;
    let (attack, count, epoch) = (*attack, *count, *epoch);
    let request = match attack {
        Attack::ForgeReplicate => Request::Replicate {
            epoch,
            prev: None,
            events: Vec::new(),
        },
        Attack::ForgeSnapshot => Request::Snapshot {
            epoch,
            offset: 0,
            sha256: None,
            data: serde_bytes::ByteBuf::from(b"REDIS0010".to_vec()),
        },
        _ => Request::Forward {
            epoch,
            client_addr: "rogue".into(),
            request: Box::new(Request::Delete {
                login: "anyone".into(),
                password: None,
                request_id: uuid::Uuid::new_v4(),
            }),
            password_hash: None,
            verified_uuid: Some(uuid::Uuid::new_v4()),
        },
    };
    let ways = [
        ("plain TCP", Transport::InsecurePlaintext),
        ("TLS without a certificate", kit.anonymous.clone()),
        ("TLS with the rogue's certificate", kit.presenting.clone()),
    ];
    let mut answers = Answers::default();
    let frame =
        request_frame(cluster, 1, 0, &request, false).map_err(|e| Error::Step(e.to_string()))?;
    for to in targets {
        for n in 0..count {
            let (how, transport) = &ways[n as usize % ways.len()];
            let reply = async {
                let mut conn =
                    Connection::connect(&to.to_string(), 1_000, 1 << 20, transport).await?;
                conn.write_frame(&frame).await?;
                conn.read_frame().await
            };
            match tokio::time::timeout(Duration::from_secs(2), reply).await {
                Ok(Ok(Some(payload))) => {
                    match idserver::wire::decode::<Envelope<Reply>>(&payload) {
                        Ok(Envelope {
                            body: Reply::Error(e),
                            ..
                        }) if e.code == ErrorCode::Forbidden => answers.forbidden += 1,
                        Ok(Envelope {
                            body: Reply::Error(e),
                            ..
                        }) if e.code == ErrorCode::BadFrame => answers.refused += 1,
                        Ok(other) => answers
                            .served
                            .push(format!("{to} over {how}: {:?}", other.body)),
                        Err(_) => answers.refused += 1,
                    }
                }
                _ => answers.refused += 1,
            }
        }
    }
    if !answers.served.is_empty() {
        return Err(Error::Step(format!(
            "a forged {} was served: {}",
            request.name(),
            answers.served.join("; ")
        )));
    }
    Ok(format!(
        "{} forged {} requests: {} forbidden, {} refused at the connection",
        answers.forbidden + answers.refused,
        request.name(),
        answers.forbidden,
        answers.refused
    ))
}

async fn replay(captured: Vec<(SocketAddr, Vec<u8>)>, times: u32) -> Result<String> {
    if captured.is_empty() {
        return Err(Error::Step(
            "replay: no sealed datagram was captured on the target's link".into(),
        ));
    }
    let socket = UdpSocket::bind("0.0.0.0:0").await.map_err(step_error)?;
    let mut sent = 0;
    for _ in 0..times {
        for (to, bytes) in &captured {
            socket.send_to(bytes, to).await.map_err(step_error)?;
            sent += 1;
        }
    }
    Ok(format!(
        "{sent} replays of {} captured sealed datagrams",
        captured.len()
    ))
}

async fn flood(targets: &[SocketAddr], count: u32) -> Result<String> {
    let mut rng = rand::rngs::SmallRng::from_entropy();
    let socket = UdpSocket::bind("0.0.0.0:0").await.map_err(step_error)?;
    let mut datagrams = 0;
    let mut connections = 0;
    for to in targets {
        for n in 0..count {
            let len = rng.gen_range(1..1400);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if n % 3 == 0 && bytes.len() >= 4 {
                bytes[..4].copy_from_slice(MAGIC);
            }
            socket.send_to(&bytes, to).await.map_err(step_error)?;
            datagrams += 1;
            if n % 10 == 0 {
                if let Ok(Ok(mut stream)) = tokio::time::timeout(
                    Duration::from_millis(500),
                    tokio::net::TcpStream::connect(to),
                )
                .await
                {
                    let _ = stream.write_all(&bytes).await;
                    connections += 1;
                }
            }
        }
    }
    Ok(format!(
        "{datagrams} garbage datagrams, {connections} garbage connections"
    ))
}

/// Captures up to `count` sealed datagrams arriving at `target` on its host's links, for at
/// most `within` (an on-path attacker's view; runs in the target's namespace).
pub fn capture(
    host: &Host,
    target: SocketAddr,
    count: usize,
    within: Duration,
) -> Result<Vec<(SocketAddr, Vec<u8>)>> {
    host.run_in(move || {
        let mut out = Vec::new();
        watch_here(target, count, within, |payload| {
            out.push((target, payload.to_vec()));
            Ok(())
        })?;
        Ok(out)
    })
    .map_err(|e| Error::Step(format!("capture: {e}")))?
}

/// Redirects: for `within`, sends every sealed datagram arriving at `target` (up to `count`)
/// on to each of `others` at once, as an on-path attacker would send a vote meant for one
/// candidate to its rivals. Runs in the target's namespace; returns how many it sent.
pub fn redirect(
    host: &Host,
    target: SocketAddr,
    others: Vec<SocketAddr>,
    count: usize,
    within: Duration,
) -> Result<usize> {
    host.run_in(move || {
        let fail = |e: std::io::Error| Error::Step(format!("redirect: failed to send: {e}"));
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(fail)?;
        let mut sent = 0;
        watch_here(target, count, within, |payload| {
            for to in &others {
                socket.send_to(payload, to).map_err(fail)?;
                sent += 1;
            }
            Ok(())
        })?;
        Ok(sent)
    })
    .map_err(|e| Error::Step(format!("redirect: {e}")))?
}

/// Hands each distinct sealed datagram arriving at `target` on this namespace's links to
/// `take`, up to `count` of them, for at most `within`.
fn watch_here(
    target: SocketAddr,
    count: usize,
    within: Duration,
    mut take: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    use nix::sys::socket::{
        recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol,
        SockType,
    };
    let fail = |what: &str, e: nix::Error| Error::Step(format!("capture: failed to {what}: {e}"));
    // A cooked packet socket: IP packets, every interface of the namespace.
    let fd = socket(
        AddressFamily::Packet,
        SockType::Datagram,
        SockFlag::empty(),
        SockProtocol::EthAll,
    )
    .map_err(|e| fail("open a packet socket", e))?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(0, 100_000),
    )
    .map_err(|e| fail("set a timeout", e))?;
    let std::net::IpAddr::V4(want_ip) = target.ip() else {
        return Err(Error::Step("capture: IPv4 targets only".into()));
    };
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 65_536];
    let mut taken = 0;
    let mut seen = std::collections::BTreeSet::new();
    while taken < count && Instant::now() < deadline {
        let len = match recv(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &mut buf,
            MsgFlags::empty(),
        ) {
            Ok(len) => len,
            Err(nix::Error::EAGAIN | nix::Error::EINTR) => continue,
            Err(e) => return Err(fail("read", e)),
        };
        if let Some(payload) = udp_payload_to(&buf[..len], want_ip, target.port()) {
            // Loopback shows a packet twice (out and in).
            if payload.starts_with(MAGIC) && seen.insert(payload.to_vec()) {
                take(payload)?;
                taken += 1;
            }
        }
    }
    Ok(())
}

/// The payload of an IPv4 UDP packet to `ip:port`.
fn udp_payload_to(packet: &[u8], ip: std::net::Ipv4Addr, port: u16) -> Option<&[u8]> {
    let version_ihl = *packet.first()?;
    if version_ihl >> 4 != 4 || *packet.get(9)? != 17 {
        return None;
    }
    let dst = std::net::Ipv4Addr::new(
        *packet.get(16)?,
        *packet.get(17)?,
        *packet.get(18)?,
        *packet.get(19)?,
    );
    let header = usize::from(version_ihl & 0x0f) * 4;
    let udp = packet.get(header..)?;
    let dst_port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    (dst == ip && dst_port == port)
        .then(|| udp.get(8..))
        .flatten()
}
