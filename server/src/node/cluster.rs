//! The tokio shell around the protocol core: UDP sockets (unicast on the node's own port, and
//! multicast only on a named interface), the timer, epoch persistence, and the shared view the
//! request handlers read. It decides nothing itself; [`crate::core::Node`] does.

use crate::config::ClusterConfig;
use crate::core::{Body, Input, Message, Node, Output, Purpose, View};
use crate::error::{Error, Result};
use crate::limits::{CLUSTER_COMMANDS_QUEUED_MAX, DATAGRAM_BYTES_MAX, QUERY_ANSWERS_PER_S};
use crate::security::seal::{self, Rejected, Sealer, Windows};
use crate::security::{Guard, Rejection, Security};
use crate::store::Store;
use crate::wire::{decode_datagram, encode_datagram, Ignored};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// Failed election rounds in a row before a warning, and how often it is repeated after.
const FAILED_ROUNDS_WARN: u64 = 3;
const FAILED_ROUNDS_REWARN: u64 = 20;

/// Which node of which cluster.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The node's id.
    pub node_id: Uuid,
    /// The cluster's name.
    pub cluster: String,
}

/// What the request handlers see of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterState {
    /// The core's view.
    pub view: View,
    /// Datagrams ignored so far (another cluster, another version, unreadable).
    pub ignored_datagrams: u64,
}

/// The running cluster task: read its state, tell it about RPC failures and epochs.
#[derive(Debug, Clone)]
pub struct ClusterHandle {
    state: watch::Receiver<ClusterState>,
    commands: mpsc::Sender<Input>,
    started: Instant,
}

impl ClusterHandle {
    /// The current state.
    pub fn state(&self) -> ClusterState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every change of the state.
    pub fn watch(&self) -> watch::Receiver<ClusterState> {
        self.state.clone()
    }

    /// Milliseconds on the core's clock (for "last seen" ages).
    pub fn now_ms(&self) -> u64 {
        elapsed_ms(self.started)
    }

    /// Passes an event to the core (dropped if the queue is full: they are hints).
    pub fn notify(&self, input: Input) {
        let _ = self.commands.try_send(input);
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    // Starts at 1 so that 0 never looks like "just now".
    started.elapsed().as_millis() as u64 + 1
}

/// Binds a TCP listener and a UDP socket on the same port (the one the OS picks for port 0).
/// With `shares_port` (multicast on) the UDP socket lets the multicast group's socket bind the
/// same port, which it must when both listen on every address.
pub async fn bind_pair(
    listen: SocketAddr,
    shares_port: bool,
) -> Result<(tokio::net::TcpListener, UdpSocket)> {
    const ATTEMPTS: usize = 20;
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let tcp = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::io(format!("failed to listen on {listen}"), e))?;
        let port = tcp
            .local_addr()
            .map_err(|e| Error::io("failed to read the listening address", e))?
            .port();
        match bind_udp(SocketAddr::new(listen.ip(), port), shares_port) {
            Ok(udp) => return Ok((tcp, udp)),
            // With port 0 the UDP port may be taken by someone else: pick another pair.
            Err(e) if listen.port() == 0 => last_error = Some(e),
            Err(e) => return Err(Error::io(format!("failed to bind UDP {listen}"), e)),
        }
    }
    Err(Error::io(
        format!("failed to find a free TCP+UDP port pair on {}", listen.ip()),
        last_error.expect("at least one attempt"),
    ))
}

fn bind_udp(addr: SocketAddr, shares_port: bool) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if shares_port {
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// What the cluster task watches besides the network.
#[derive(Debug)]
pub struct Watches {
    /// Whether the node's Redis answers: the task keeps still while it does not.
    pub store_answers: watch::Receiver<bool>,
    /// Turns true when the node stops, and the task with it.
    pub stop: watch::Receiver<bool>,
}

/// Starts the cluster task for this node.
pub async fn start(
    config: &ClusterConfig,
    identity: &Identity,
    addr: SocketAddr,
    udp: UdpSocket,
    store: Store,
    watches: Watches,
    guard: Guard,
) -> Result<ClusterHandle> {
    let Watches {
        mut store_answers,
        mut stop,
    } = watches;
    config.validate().map_err(Error::Config)?;
    let mcast = match (config.mcast, config.mcast_if) {
        (Some(group), Some(iface)) => Some(Multicast::open(&udp, group, iface)?),
        _ => None,
    };
    let started = Instant::now();
    let mut node = Node::new(config.core, identity.node_id, addr);
    let clock = store.clock().await?;
    let start = Input::Start {
        epoch: store.epoch().await?,
        clock,
        last_epoch: store.last_epoch(clock).await,
    };
    let (state_tx, state_rx) = watch::channel(ClusterState {
        view: node.view(),
        ignored_datagrams: 0,
    });
    let (commands_tx, mut commands_rx) = mpsc::channel(CLUSTER_COMMANDS_QUEUED_MAX);
    let shell = Shell {
        cluster: identity.cluster.clone(),
        // The other members only: the server leaves this node's own entries out
        // (`address::others`).
        peers: config.peers.clone(),
        udp: Arc::new(udp),
        mcast,
        store,
        state: state_tx,
        ignored: 0,
        guard,
        sealer: Sealer::new(),
        windows: Windows::default(),
        queries: Ration::new(QUERY_ANSWERS_PER_S),
    };
    tokio::spawn(async move {
        let mut shell = shell;
        let first = node.step(elapsed_ms(started), start);
        shell.carry_out(first).await;
        shell.publish(&node);
        let mut buf = vec![0u8; DATAGRAM_BYTES_MAX + seal::HEADER_BYTES];
        let mut mcast_buf = vec![0u8; DATAGRAM_BYTES_MAX + seal::HEADER_BYTES];
        let udp = shell.udp.clone();
        let mcast_socket = shell.mcast.as_ref().map(|m| m.recv.clone());
        loop {
            // A node whose Redis does not answer keeps still, as a paused process would: it
            // cannot persist an epoch or apply an event, so it must neither coordinate nor
            // vote. Datagrams wait in the socket meanwhile.
            if !*store_answers.borrow_and_update() {
                tokio::select! {
                    _ = stop.changed() => break,
                    answers = store_answers.wait_for(|answers| *answers) => {
                        if answers.is_err() {
                            break; // The node is shutting down.
                        }
                    }
                }
            }
            let deadline = node
                .poll_timeout()
                .map(|at| started + Duration::from_millis(at.saturating_sub(1)));
            let input = tokio::select! {
                _ = stop.changed() => break,
                _ = sleep_until(deadline) => Input::Tick,
                received = udp.recv_from(&mut buf) => match received {
                    Ok((len, src)) => match shell.decode(&buf[..len], src) {
                        Some(input) => input,
                        None => continue,
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to receive a datagram");
                        continue;
                    }
                },
                received = recv_optional(mcast_socket.as_deref(), &mut mcast_buf) => match received {
                    Ok((len, src)) => match shell.decode(&mcast_buf[..len], src) {
                        Some(input) => input,
                        None => continue,
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to receive a multicast datagram");
                        continue;
                    }
                },
                Some(command) = commands_rx.recv() => command,
            };
            let outputs = node.step(elapsed_ms(started), input);
            shell.carry_out(outputs).await;
            shell.publish(&node);
        }
        // A clean stop: tell the others, so they free our rank and, if we coordinated, elect
        // at once; and so that a node left alone knows it is alone rather than cut off.
        let outputs = node.step(elapsed_ms(started), Input::Leave);
        shell.carry_out(outputs).await;
    });
    Ok(ClusterHandle {
        state: state_rx,
        commands: commands_tx,
        started,
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn recv_optional(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// The multicast side: a socket bound to the group (so it hears only the group) and the group
/// to send to through the unicast socket, which is pinned to the named interface.
struct Multicast {
    recv: Arc<UdpSocket>,
    group: SocketAddr,
}

impl Multicast {
    fn open(unicast: &UdpSocket, group: SocketAddrV4, iface: Ipv4Addr) -> Result<Multicast> {
        let fail = |what: &str, e: std::io::Error| {
            Error::io(
                format!("failed to {what} for multicast {group} on {iface}"),
                e,
            )
        };
        let sender = socket2::SockRef::from(unicast);
        sender
            .set_multicast_if_v4(&iface)
            .map_err(|e| fail("pick the interface", e))?;
        sender
            .set_multicast_ttl_v4(1)
            .map_err(|e| fail("set TTL 1", e))?;
        sender
            .set_multicast_loop_v4(true)
            .map_err(|e| fail("enable loopback", e))?;
        // Bound to every address on the group's port, the unicast socket would also get the
        // group's datagrams (every one twice): only the group socket takes them.
        sender
            .set_multicast_all_v4(false)
            .map_err(|e| fail("keep group datagrams off the unicast socket", e))?;
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(|e| fail("open a socket", e))?;
        socket
            .set_reuse_address(true)
            .map_err(|e| fail("share the port", e))?;
        socket
            .set_reuse_port(true)
            .map_err(|e| fail("share the port", e))?;
        socket
            .bind(&SocketAddr::V4(group).into())
            .map_err(|e| fail("bind the group", e))?;
        socket
            .join_multicast_v4(group.ip(), &iface)
            .map_err(|e| fail("join the group", e))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| fail("set non-blocking", e))?;
        let recv =
            UdpSocket::from_std(socket.into()).map_err(|e| fail("register the socket", e))?;
        Ok(Multicast {
            recv: Arc::new(recv),
            group: SocketAddr::V4(group),
        })
    }
}

struct Shell {
    cluster: String,
    peers: Vec<SocketAddr>,
    udp: Arc<UdpSocket>,
    mcast: Option<Multicast>,
    store: Store,
    state: watch::Sender<ClusterState>,
    ignored: u64,
    guard: Guard,
    sealer: Sealer,
    windows: Windows,
    queries: Ration,
}

/// A token bucket: `per_s` a second, as many in a burst.
struct Ration {
    per_s: u32,
    tokens: f64,
    at: Instant,
}

impl Ration {
    fn new(per_s: u32) -> Ration {
        Ration {
            per_s,
            tokens: f64::from(per_s),
            at: Instant::now(),
        }
    }

    /// Takes a token if one is left at `now`.
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * f64::from(self.per_s);
        self.tokens = (self.tokens + refill).min(f64::from(self.per_s));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Shell {
    fn decode(&mut self, bytes: &[u8], src: SocketAddr) -> Option<Input> {
        let credentials = match &self.guard.security {
            Security::InsecurePlaintext => {
                return match decode_datagram(&self.cluster, bytes) {
                    Ok(msg) => Some(Input::Message { src, msg }),
                    Err(why) => self.ignore(src, why),
                };
            }
            Security::Authenticated(credentials) => credentials.current(),
        };
        match seal::open(&credentials.keys, bytes) {
            Ok(opened) => {
                let msg = match decode_datagram(&self.cluster, opened.payload) {
                    Ok(msg) => msg,
                    Err(why) => return self.ignore(src, why),
                };
                if !self.windows.admit(msg.from.node_id, opened.seq) {
                    return self.reject(src, Rejected::Replayed, msg.body.name());
                }
                Some(Input::Message { src, msg })
            }
            // Clients hold no key: their questions are answered, and nothing they say is
            // taken (see `Input::Query`).
            Err(Rejected::Unsealed) => match decode_datagram(&self.cluster, bytes) {
                Ok(Message {
                    body:
                        body @ (Body::GetMaster
                        | Body::GetRank {
                            purpose: Purpose::Client,
                        }),
                    ..
                }) => {
                    // An answer is larger than the question and anyone may ask with a
                    // forged source: answers are rationed, so a node is a poor amplifier.
                    if !self.queries.take(Instant::now()) {
                        return self.reject(src, Rejected::Unsealed, "question over the rate");
                    }
                    Some(Input::Query { src, body })
                }
                Ok(msg) => self.reject(src, Rejected::Unsealed, msg.body.name()),
                Err(why) => self.ignore(src, why),
            },
            Err(why) => self.reject(src, why, "datagram"),
        }
    }

    fn ignore(&mut self, src: SocketAddr, why: Ignored) -> Option<Input> {
        self.ignored += 1;
        tracing::debug!(%src, ?why, "ignoring datagram");
        None
    }

    fn reject(&mut self, src: SocketAddr, why: Rejected, what: &str) -> Option<Input> {
        self.guard.rejections.note(
            Rejection::Datagram,
            src,
            &format!("{what}: {}", why.as_str()),
        );
        None
    }

    async fn carry_out(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::PersistEpoch(epoch) => {
                    if let Err(e) = self.store.raise_epoch(epoch).await {
                        // Sending NEWMASTER for an epoch a restart could reuse is worse than
                        // staying silent: drop the rest of this step.
                        tracing::error!(error = %e, epoch, "failed to store the epoch");
                        return;
                    }
                }
                Output::Send { to, msg } => self.send(to, &msg).await,
                Output::Broadcast(msg) => {
                    for peer in self.peers.clone() {
                        self.send(peer, &msg).await;
                    }
                    if let Some(group) = self.mcast.as_ref().map(|m| m.group) {
                        self.send(group, &msg).await;
                    }
                }
            }
        }
    }

    async fn send(&mut self, to: SocketAddr, msg: &Message) {
        let bytes = match encode_datagram(&self.cluster, msg) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "failed to encode a datagram");
                return;
            }
        };
        let bytes = match &self.guard.security {
            Security::InsecurePlaintext => bytes,
            Security::Authenticated(credentials) => {
                self.sealer.seal(&credentials.current().keys, &bytes)
            }
        };
        if let Err(e) = self.udp.send_to(&bytes, to).await {
            tracing::debug!(%to, error = %e, message = msg.body.name(), "failed to send a datagram");
        }
    }

    fn publish(&self, node: &Node) {
        let state = ClusterState {
            view: node.view(),
            ignored_datagrams: self.ignored,
        };
        let rounds = state.view.failed_rounds;
        if rounds > self.state.borrow().view.failed_rounds
            && (rounds == FAILED_ROUNDS_WARN || rounds % FAILED_ROUNDS_REWARN == 0)
        {
            tracing::warn!(
                rounds,
                reason = state.view.last_failure.map_or("-", |f| f.as_str()),
                epoch = state.view.epoch,
                rtt_ms = state.view.rtt_ms,
                members = state.view.members.len(),
                "election rounds without a coordinator"
            );
        }
        self.state.send_if_modified(|current| {
            let changed = current.view.role != state.view.role
                || current.view.coordinator != state.view.coordinator
                || current.view.epoch != state.view.epoch;
            if changed {
                tracing::info!(
                    role = state.view.role.as_str(),
                    rank = ?state.view.me.rank,
                    epoch = state.view.epoch,
                    coordinator = ?state.view.coordinator.map(|c| c.addr),
                    failed_rounds = state.view.failed_rounds,
                    last_failure = state.view.last_failure.map_or("-", |f| f.as_str()),
                    rtt_ms = state.view.rtt_ms,
                    "cluster role"
                );
            }
            *current = state;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ration_gives_a_burst_then_its_rate() {
        let start = Instant::now();
        let mut ration = Ration::new(100);
        let burst = (0..150).filter(|_| ration.take(start)).count();
        assert_eq!(burst, 100);
        let later = start + Duration::from_millis(50);
        let refilled = (0..150).filter(|_| ration.take(later)).count();
        assert_eq!(refilled, 5);
    }
}
