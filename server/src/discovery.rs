//! How a client finds servers without being told one: GETMASTER to the listed servers (and the
//! multicast group on a named interface) for the coordinator and member list, then GETRANK to
//! every member, keeping them in the order they answered: the fastest first, the rest as
//! failovers.

use crate::core::{Body, Message, NodeRef, Purpose};
use crate::error::{Error, ErrorCode, Result};
use crate::limits::{
    DATAGRAM_BYTES_MAX, DISCOVERY_ATTEMPTS_MAX, DISCOVERY_GRACE_MS, DISCOVERY_WAIT_MS,
};
use crate::security::seal;
use crate::wire::{decode_datagram, encode_datagram};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Where to ask.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Servers to ask directly.
    pub peers: Vec<SocketAddr>,
    /// Multicast group to ask, and the address of the interface to send it on.
    pub mcast: Option<(SocketAddrV4, Ipv4Addr)>,
}

/// What was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The coordinator, if some server named one.
    pub coordinator: Option<NodeRef>,
    /// Servers in the order they answered GETRANK: bind to the first, fail over to the rest.
    pub servers: Vec<SocketAddr>,
}

impl Discovery {
    /// Asks, and returns the servers that answered, fastest first.
    pub async fn run(&self, cluster: &str) -> Result<Found> {
        let bind_ip = self.mcast.map_or(Ipv4Addr::UNSPECIFIED, |(_, iface)| iface);
        let socket = UdpSocket::bind(SocketAddr::from((bind_ip, 0)))
            .await
            .map_err(|e| Error::io("failed to open a discovery socket", e))?;
        if let Some((_, iface)) = self.mcast {
            let sock = socket2::SockRef::from(&socket);
            sock.set_multicast_if_v4(&iface)
                .and_then(|_| sock.set_multicast_ttl_v4(1))
                .map_err(|e| Error::io(format!("failed to multicast on {iface}"), e))?;
        }
        let me = NodeRef {
            node_id: uuid::Uuid::new_v4(),
            rank: None,
            addr: socket
                .local_addr()
                .map_err(|e| Error::io("failed to read the socket address", e))?,
        };
        let asker = Asker {
            socket,
            cluster,
            me,
        };
        for _ in 0..DISCOVERY_ATTEMPTS_MAX {
            let master = asker.ask_master(self).await?;
            let mut targets: BTreeSet<SocketAddr> = self.peers.iter().copied().collect();
            if let Some((coordinator, members)) = &master {
                targets.insert(coordinator.addr);
                targets.extend(members.iter().map(|m| m.addr));
            }
            let servers = asker
                .ask_ranks(&targets, self.mcast.map(|(g, _)| g))
                .await?;
            if !servers.is_empty() {
                return Ok(Found {
                    coordinator: master.map(|(c, _)| c),
                    servers,
                });
            }
        }
        Err(Error::refused(
            ErrorCode::Unreachable,
            format!(
                "no server answered discovery ({} peers{})",
                self.peers.len(),
                if self.mcast.is_some() {
                    ", multicast"
                } else {
                    ""
                }
            ),
        ))
    }
}

struct Asker<'a> {
    socket: UdpSocket,
    cluster: &'a str,
    me: NodeRef,
}

impl Asker<'_> {
    async fn send(&self, to: SocketAddr, body: Body) -> Result<()> {
        let msg = Message {
            from: self.me,
            epoch: 0,
            to: None,
            body,
        };
        let bytes = encode_datagram(self.cluster, &msg)?;
        // An unreachable peer is a normal discovery outcome, not an error.
        let _ = self.socket.send_to(&bytes, to).await;
        Ok(())
    }

    async fn recv_until(&self, deadline: Instant) -> Option<Message> {
        let mut buf = vec![0u8; DATAGRAM_BYTES_MAX + seal::HEADER_BYTES];
        loop {
            let received = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await;
            match received {
                Err(_) => return None,
                Ok(Err(_)) => continue, // e.g. ICMP port unreachable from a stopped peer
                Ok(Ok((len, _))) => {
                    // Answers are sealed, and a client holds no key: they are hints. Only the
                    // TLS handshake with a server proves it is one of the cluster.
                    let payload = seal::payload_unverified(&buf[..len]);
                    if let Ok(msg) = decode_datagram(self.cluster, payload) {
                        return Some(msg);
                    }
                }
            }
        }
    }

    /// GETMASTER: the first MASTER answer's coordinator and member list.
    async fn ask_master(&self, d: &Discovery) -> Result<Option<(NodeRef, Vec<NodeRef>)>> {
        for peer in &d.peers {
            self.send(*peer, Body::GetMaster).await?;
        }
        if let Some((group, _)) = d.mcast {
            self.send(SocketAddr::V4(group), Body::GetMaster).await?;
        }
        let deadline = Instant::now() + Duration::from_millis(DISCOVERY_WAIT_MS);
        while let Some(msg) = self.recv_until(deadline).await {
            if let Body::Master {
                coordinator,
                members,
                ..
            } = msg.body
            {
                return Ok(Some((coordinator, members)));
            }
        }
        Ok(None)
    }

    /// GETRANK to every target: the servers in the order they answered.
    async fn ask_ranks(
        &self,
        targets: &BTreeSet<SocketAddr>,
        group: Option<SocketAddrV4>,
    ) -> Result<Vec<SocketAddr>> {
        let purpose = Purpose::Client;
        for target in targets {
            self.send(
                *target,
                Body::GetRank {
                    purpose: purpose.clone(),
                },
            )
            .await?;
        }
        if let Some(group) = group {
            self.send(SocketAddr::V4(group), Body::GetRank { purpose })
                .await?;
        }
        let sent = Instant::now();
        let mut deadline = sent + Duration::from_millis(DISCOVERY_WAIT_MS);
        let mut answered = Vec::new();
        while let Some(msg) = self.recv_until(deadline).await {
            if matches!(msg.body, Body::Rank { .. }) && !answered.contains(&msg.from.addr) {
                if answered.is_empty() {
                    // The fastest answered: the others get its round trip again plus a grace
                    // to be ordered, not the whole window (a dead peer would cost all of it).
                    let grace = sent.elapsed() + Duration::from_millis(DISCOVERY_GRACE_MS);
                    deadline = deadline.min(Instant::now() + grace);
                }
                answered.push(msg.from.addr);
                let all_known = !targets.is_empty() && targets.iter().all(|t| answered.contains(t));
                if all_known && group.is_none() {
                    break;
                }
            }
        }
        Ok(answered)
    }
}
