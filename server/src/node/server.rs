//! The TCP front of a node: accepts connections, reads frames, hands requests to the
//! [`Service`] and writes replies; starts and stops the node's storage. Bad frames get an
//! error reply (or, when the stream cannot be resynchronised, a closed connection) and never
//! disturb other clients.

use crate::address::{self, AddressFlags, HostAddresses};
use crate::config::{ClusterConfig, ServerConfig};
use crate::connection::{Connection, ReadLimits, Stream};
use crate::core::Role;
use crate::error::{Error, ErrorCode, Result};
use crate::limits::{
    CLIENT_CONNECTIONS_MAX, CLIENT_FRAME_READ_TIMEOUT_MS, CLIENT_IDLE_TIMEOUT_MS,
    CLIENT_REQUEST_FRAME_BYTES_MAX, CLUSTER_NAME_BYTES_MAX, HANDSHAKES_MAX, PEER_CONNECTIONS_MAX,
    REDIS_SUPERVISE_MS, REPLY_FRAME_BYTES_MAX, REPLY_WRITE_STALL_MS, REQUEST_FRAME_BYTES_MAX,
    SHUTDOWN_DRAIN_TIMEOUT_MS, SNAPSHOT_CHUNK_BYTES, STORE_CONNECT_MS, STORE_HANG_MS,
    STORE_PROBE_MS, TLS_HANDSHAKE_TIMEOUT_MS,
};
use crate::node::cluster;
use crate::node::cluster::Identity;
use crate::node::http;
use crate::node::service::Service;
use crate::node::shared::{Shared, Storage};
use crate::security::{Guard, Origin, Rejection, Rejections, Security};
use crate::store::{RedisChild, Store};
use crate::wire::{
    decode, encode, Envelope, EnvelopeHead, FrameError, Reply, Request, WireError,
    PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN,
};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use uuid::Uuid;

/// A started server; stop it with [`RunningServer::shutdown`].
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    node_id: Uuid,
    stop: watch::Sender<bool>,
    accept_loop: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl RunningServer {
    /// Connects storage, binds the listener and starts serving.
    pub async fn start(config: ServerConfig) -> Result<RunningServer> {
        if config.cluster.is_empty() || config.cluster.len() > CLUSTER_NAME_BYTES_MAX {
            return Err(Error::Config(format!(
                "--cluster must be 1 to {CLUSTER_NAME_BYTES_MAX} bytes"
            )));
        }
        let redis = match &config.redis_url {
            Some(_) => None,
            None => Some(
                RedisChild::start(&config.data_dir, &config.redis_bin, &config.appendfsync).await?,
            ),
        };
        let url = config
            .redis_url
            .clone()
            .or_else(|| redis.as_ref().map(RedisChild::url))
            .expect("either a Redis URL or our own Redis");
        let store = Store::connect(&url).await?;
        store.check_version().await?;
        let node_id = store.claim(&config.cluster, Uuid::new_v4()).await?;
        store.upgrade_layout().await?;
        config.cluster_net.validate().map_err(Error::Config)?;
        let multicast = config.cluster_net.mcast.is_some();
        let (listener, udp) = cluster::bind_pair(config.listen, multicast).await?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("failed to read the listening address", e))?;
        let net = &config.cluster_net;
        let flags = AddressFlags {
            listen: SocketAddr::new(config.listen.ip(), local_addr.port()),
            advertise: net.advertise,
            mcast_if: net.mcast_if,
            peers: &net.peers,
        };
        let host = HostAddresses::probe(&net.peers);
        let advertised = address::advertised(flags, &host);
        let cluster_net = ClusterConfig {
            peers: address::others(flags, advertised, &host),
            ..net.clone()
        };
        if let Some(n) = config.replication.strict_cluster_size {
            if cluster_net.peers.len() + 1 != n && !net.peers.is_empty() {
                tracing::warn!(
                    cluster_size = n,
                    others_listed = cluster_net.peers.len(),
                    %advertised,
                    "strict mode: --peers lists {} other node(s) but the cluster size is {n}; \
                     check that this node's own entry is among --peers",
                    cluster_net.peers.len()
                );
            }
        }
        let (stop, stopped) = watch::channel(false);
        let (answers, store_answers) = watch::channel(true);
        let guard = Guard {
            security: config.security.clone(),
            rejections: Arc::new(Rejections::default()),
        };
        let identity = Identity {
            node_id,
            cluster: config.cluster.clone(),
        };
        let membership = cluster::start(
            &cluster_net,
            &identity,
            advertised,
            udp,
            store.clone(),
            cluster::Watches {
                store_answers,
                stop: stopped.clone(),
            },
            guard.clone(),
        )
        .await?;
        let applied = store.clock().await?;
        let shared = Arc::new(Shared::new(
            store,
            membership,
            identity,
            config.replication,
            Storage {
                redis_child: redis,
                redis_bin: config.redis_bin.clone(),
                scratch_dir: config.data_dir.clone(),
                answers,
            },
            guard.clone(),
            applied,
        ));
        tokio::spawn(supervise_redis(shared.clone(), stopped.clone()));
        tokio::spawn(watch_store(shared.clone(), stopped.clone()));
        tokio::spawn(count_elections_won(shared.clone(), stopped.clone()));
        let metrics_addr = match config.metrics_listen {
            Some(addr) => Some(http::start(addr, shared.clone(), stopped.clone()).await?),
            None => None,
        };
        let service = Arc::new(Service::new(shared.clone(), advertised.to_string()));
        let front = Front {
            service,
            cluster: config.cluster.as_str().into(),
            guard,
            handshakes: Arc::new(Semaphore::new(HANDSHAKES_MAX)),
            clients: Arc::new(Semaphore::new(CLIENT_CONNECTIONS_MAX)),
            peers: Arc::new(Semaphore::new(PEER_CONNECTIONS_MAX)),
        };
        let accept_loop = tokio::spawn(accept_loop(listener, front, stopped));
        tracing::info!(%local_addr, %advertised, %node_id, redis = %crate::store::redact_url(&url), "serving");
        Ok(RunningServer {
            local_addr,
            metrics_addr,
            node_id,
            stop,
            accept_loop,
            shared,
        })
    }

    /// The address clients reach this server at.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// This node's id (kept in its Redis across restarts).
    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    /// The pid of the `redis-server` this server started, if it started one.
    pub async fn redis_pid(&self) -> Option<u32> {
        self.shared
            .redis_child
            .lock()
            .await
            .as_ref()
            .and_then(RedisChild::pid)
    }

    /// Stops accepting, lets requests in flight finish (for a bounded time), then stops the
    /// node's own Redis, which flushes its append-only file.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        let _ = self.accept_loop.await;
        let redis = self.shared.redis_child.lock().await.take();
        match redis {
            Some(redis) => redis.stop().await,
            None => Ok(()),
        }
    }
}

/// Counts the epochs this node wins as they happen (not only when scraped: a term may end
/// between two scrapes).
async fn count_elections_won(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut views = shared.membership.watch();
    loop {
        shared.metrics.observe_view(&views.borrow_and_update().view);
        tokio::select! {
            changed = views.changed() => if changed.is_err() { return },
            _ = stopped.changed() => return,
        }
    }
}

/// Restarts the node's own Redis when it dies under it: a node must not go on coordinating
/// (or replicating) on a dead store. Writes fail with `internal` while it restarts.
async fn supervise_redis(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(REDIS_SUPERVISE_MS));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return,
        }
        if *stopped.borrow() {
            return;
        }
        let mut child = shared.redis_child.lock().await;
        let Some(redis) = child.as_mut() else { return };
        redis.idle_background_work();
        match redis.revive_if_exited().await {
            Ok(None) => {}
            Ok(Some(status)) => {
                tracing::error!(
                    %status,
                    pid = redis.pid(),
                    "own redis-server exited unexpectedly; restarted it on its append-only file"
                );
                shared.metrics.redis_restarted();
                // The next write reads the clock the append-only file brought back.
                shared.store.forget_clock().await;
                // Its files may hold less than was applied (killed while it rewrote its
                // append-only file right after a full sync, or before it wrote out the last
                // writes). A follower's applied clock follows them (its coordinator sends the
                // rest again); a coordinator's writer makes the events again from memory
                // before anything else, as the replicas hold them (see `Error::StoreBehind`).
                let coordinating = shared.membership.state().view.role == Role::Coordinator;
                if let (Ok(clock), false) = (shared.store.clock().await, coordinating) {
                    if clock != shared.applied() {
                        tracing::error!(
                            clock,
                            applied = shared.applied(),
                            "own redis-server came back at another clock; following it"
                        );
                        shared.recent.clear();
                        let epoch = shared.store.last_epoch(clock).await;
                        shared.reset_applied(clock, epoch);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "own redis-server exited and failed to restart"),
        }
    }
}

/// Watches whether the node's Redis answers, over a connection of its own (so it never waits
/// behind this node's writes). One that has not answered for [`STORE_HANG_MS`] (hung, not
/// dead: stopped, swapping, on a stalled disk; or dead and not coming back) makes the node
/// keep still in the cluster, so that its peers elect another coordinator, and refuse
/// requests, so that clients go elsewhere, until it answers again. Not while a snapshot is
/// fed in: Redis is then busy with it by design.
async fn watch_store(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let client = match redis::Client::open(shared.store.url()) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the node's Redis");
            return;
        }
    };
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut last_answer = tokio::time::Instant::now();
    let hang = Duration::from_millis(STORE_HANG_MS);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(STORE_PROBE_MS)) => {}
            _ = stopped.changed() => return,
        }
        if *stopped.borrow() {
            return;
        }
        if shared.syncing() {
            last_answer = tokio::time::Instant::now();
        } else {
            let ping = async {
                if conn.is_none() {
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Duration::from_millis(STORE_CONNECT_MS));
                    conn = Some(
                        client
                            .get_multiplexed_async_connection_with_config(&config)
                            .await?,
                    );
                }
                let conn = conn.as_mut().expect("connected above");
                redis::cmd("PING").query_async::<String>(conn).await
            };
            match tokio::time::timeout(hang, ping).await {
                Ok(Ok(_)) => last_answer = tokio::time::Instant::now(),
                // A connection that failed, or went unanswered for as long as a hang takes, is
                // dropped: a Redis that died and came back (a container started again, a cut
                // link healed) never answers on the old one. A hung Redis answers a new one
                // once it runs again.
                Ok(Err(_)) | Err(_) => conn = None,
            }
        }
        let answers = last_answer.elapsed() < hang;
        if shared.set_store_answers(answers) {
            if answers {
                tracing::warn!("own Redis answers again; this node takes part again");
            } else {
                tracing::error!(
                    silent_ms = last_answer.elapsed().as_millis() as u64,
                    "own Redis does not answer: this node keeps still in the cluster and refuses \
                     requests until it does"
                );
            }
        }
    }
}

/// What the TCP front needs to serve connections.
struct Front {
    service: Arc<Service>,
    cluster: Arc<str>,
    guard: Guard,
    handshakes: Arc<Semaphore>,
    clients: Arc<Semaphore>,
    peers: Arc<Semaphore>,
}

async fn accept_loop(listener: TcpListener, front: Front, mut stopped: watch::Receiver<bool>) {
    let front = Arc::new(front);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let front = front.clone();
                let stopped = stopped.clone();
                connections.spawn(async move { front.serve(stream, peer, stopped).await });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_millis(SHUTDOWN_DRAIN_TIMEOUT_MS), drain)
        .await
        .is_err()
    {
        tracing::warn!("requests still running at shutdown were cut off");
    }
}

impl Front {
    /// Proves who is on the other end (TLS), takes a slot of that kind's budget and serves.
    async fn serve(&self, stream: TcpStream, peer: SocketAddr, stopped: watch::Receiver<bool>) {
        let _ = stream.set_nodelay(true);
        let (stream, origin) = match self.handshake(stream, peer).await {
            Some(secured) => secured,
            None => return,
        };
        let budget = match origin {
            Origin::Peer => &self.peers,
            Origin::Client | Origin::Unverified => &self.clients,
        };
        let Ok(_permit) = budget.clone().try_acquire_owned() else {
            self.guard.rejections.note(
                Rejection::Connection,
                peer,
                &format!("{} connections are at their limit", origin.as_str()),
            );
            return;
        };
        let frame_max = match origin {
            Origin::Client => CLIENT_REQUEST_FRAME_BYTES_MAX,
            Origin::Peer | Origin::Unverified => REQUEST_FRAME_BYTES_MAX,
        };
        let conn = Connection::over(stream, frame_max);
        self.serve_frames(conn, peer, origin, stopped).await;
    }

    async fn handshake(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<(Box<dyn Stream>, Origin)> {
        let credentials = match &self.guard.security {
            Security::InsecurePlaintext => return Some((Box::new(stream), Origin::Unverified)),
            Security::Authenticated(credentials) => credentials,
        };
        let Ok(_permit) = self.handshakes.try_acquire() else {
            self.guard.rejections.note(
                Rejection::Connection,
                peer,
                "too many TLS handshakes at once",
            );
            return None;
        };
        let acceptor = credentials.current().tls.acceptor.clone();
        let timeout = Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS);
        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                // The verifier accepted the certificate, if one was presented: only the CA's
                // certificates pass.
                let presented = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|certs| !certs.is_empty());
                let origin = if presented {
                    Origin::Peer
                } else {
                    Origin::Client
                };
                Some((Box::new(tls), origin))
            }
            Ok(Err(e)) => {
                self.guard.rejections.note(
                    Rejection::Connection,
                    peer,
                    &format!("TLS handshake failed: {e}"),
                );
                None
            }
            Err(_) => {
                self.guard
                    .rejections
                    .note(Rejection::Connection, peer, "TLS handshake timed out");
                None
            }
        }
    }

    /// Answers a [`Request::Backup`]: the snapshot in pieces, then what it holds (or an error
    /// reply). Fails only if the connection does.
    async fn stream_backup(&self, conn: &mut Connection, seq: u64) -> Result<()> {
        let cluster = &*self.cluster;
        let started = std::time::Instant::now();
        let (mut info, mut stream) = match self.service.begin_backup().await {
            Ok(begun) => begun,
            Err(e) => {
                let reply = refusal(e.code(), e.to_string());
                return send(conn, cluster, seq, 0, reply).await;
            }
        };
        let mut sha256 = Sha256::new();
        loop {
            let piece = match stream.next_piece(SNAPSHOT_CHUNK_BYTES).await {
                Ok(Some(piece)) => piece,
                Ok(None) => break,
                Err(e) => {
                    let reply = refusal(e.code(), e.to_string());
                    return send(conn, cluster, seq, 0, reply).await;
                }
            };
            sha256.update(&piece);
            info.bytes += piece.len() as u64;
            let reply = Reply::BackupPiece {
                data: serde_bytes::ByteBuf::from(piece),
            };
            send(conn, cluster, seq, 0, reply).await?;
        }
        info.sha256 = serde_bytes::ByteBuf::from(sha256.finalize().to_vec());
        tracing::info!(
            clock = info.clock,
            accounts = info.accounts,
            bytes = info.bytes,
            ms = started.elapsed().as_millis() as u64,
            "backup sent"
        );
        send(conn, cluster, seq, info.clock, Reply::BackupDone(info)).await
    }

    async fn serve_frames(
        &self,
        mut conn: Connection,
        peer: SocketAddr,
        origin: Origin,
        mut stopped: watch::Receiver<bool>,
    ) {
        let cluster = &*self.cluster;
        let client_addr = peer.to_string();
        // Peers are proven members and keep their connections open (the forwarder's pool,
        // replication links); anyone else is held to timeouts.
        let limits = (origin != Origin::Peer).then_some(ReadLimits {
            idle: Duration::from_millis(CLIENT_IDLE_TIMEOUT_MS),
            frame: Duration::from_millis(CLIENT_FRAME_READ_TIMEOUT_MS),
        });
        loop {
            let read = tokio::select! {
                _ = stopped.changed() => return,
                read = conn.read_frame_within(limits) => read,
            };
            let payload = match read {
                Ok(Some(payload)) => payload,
                Ok(None) => return,
                Err(Error::Frame(err @ FrameError::TooLarge { .. })) => {
                    // The rest of the stream cannot be framed any more: say why, then close.
                    tracing::debug!(%peer, error = %err, "refusing oversized frame");
                    let _ = send(&mut conn, cluster, 0, 0, bad_frame(&err.to_string())).await;
                    return;
                }
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "closing connection");
                    return;
                }
            };
            let (seq, clock, reply) = match parse_request(&payload, cluster) {
                Ok((seq, _, _, request)) if origin == Origin::Client && request.is_peer_only() => {
                    self.guard.rejections.note(
                        Rejection::Request,
                        peer,
                        &format!("{} from a client connection", request.name()),
                    );
                    let reply = refusal(
                        ErrorCode::Forbidden,
                        format!(
                            "{} is for cluster members only: this connection presented no \
                             cluster certificate",
                            request.name()
                        ),
                    );
                    (seq, 0, reply)
                }
                Ok((seq, _, _, Request::Backup)) => {
                    if self.stream_backup(&mut conn, seq).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok((seq, clock, fresh, request)) => {
                    let (reply, clock) = self
                        .service
                        .handle(request, &client_addr, clock, fresh)
                        .await;
                    (seq, clock, reply)
                }
                Err(refused) => {
                    let (seq, reply) = *refused;
                    (seq, 0, reply)
                }
            };
            if send(&mut conn, cluster, seq, clock, reply).await.is_err() {
                return;
            }
        }
    }
}

/// The request in `payload`, or the error reply (with the seq to echo) if it is not one we
/// can serve.
/// The request in `payload` with its seq and session clock, or the error reply (with the seq
/// to echo) if it is not one we can serve.
/// A request frame's sequence number, session clock, fresh mark (see [`Envelope::fresh`]) and
/// request; or the refusal to send back.
type Parsed = (u64, u64, bool, Request);

fn parse_request(payload: &[u8], cluster: &str) -> Result<Parsed, Box<(u64, Reply)>> {
    // One pass over the frame when it reads as a request (a replication batch is most of a
    // replica's input); only one that does not is read again for its head, to tell a version or
    // cluster mismatch from a bad frame.
    let (head, rest) = match decode::<Envelope<Request>>(payload) {
        Ok(e) => {
            let head = EnvelopeHead {
                version_min: e.version_min,
                version_max: e.version_max,
                cluster: e.cluster,
                seq: e.seq,
            };
            (head, Ok((e.clock, e.fresh, e.body)))
        }
        Err(e) => {
            let head: EnvelopeHead = decode(payload)
                .map_err(|e| Box::new((0, bad_frame(&format!("unreadable envelope: {e}")))))?;
            (head, Err(e))
        }
    };
    if !head.version_compatible() {
        return Err(Box::new((
            head.seq,
            refusal(
                ErrorCode::VersionMismatch,
                format!(
                    "client speaks protocol {}..={}, server speaks {PROTOCOL_VERSION_MIN}..={PROTOCOL_VERSION_MAX}",
                    head.version_min, head.version_max
                ),
            ),
        )));
    }
    if head.cluster != cluster {
        return Err(Box::new((
            head.seq,
            refusal(
                ErrorCode::WrongCluster,
                format!(
                    "this server belongs to cluster {cluster:?}, not {:?}",
                    head.cluster
                ),
            ),
        )));
    }
    let (clock, fresh, request) =
        rest.map_err(|e| Box::new((head.seq, bad_frame(&format!("unreadable request: {e}")))))?;
    Ok((head.seq, clock, fresh, request))
}

fn refusal(code: ErrorCode, message: String) -> Reply {
    Reply::Error(WireError { code, message })
}

fn bad_frame(detail: &str) -> Reply {
    refusal(ErrorCode::BadFrame, detail.to_string())
}

async fn send(
    conn: &mut Connection,
    cluster: &str,
    seq: u64,
    clock: u64,
    reply: Reply,
) -> Result<()> {
    let mut envelope = Envelope::new(cluster, seq, reply);
    envelope.clock = clock;
    let frame = match encode(&envelope, REPLY_FRAME_BYTES_MAX) {
        Ok(frame) => frame,
        Err(err) => encode(
            &Envelope::new(cluster, seq, refusal(ErrorCode::Internal, err.to_string())),
            REPLY_FRAME_BYTES_MAX,
        )?,
    };
    conn.write_frame_within(&frame, Duration::from_millis(REPLY_WRITE_STALL_MS))
        .await
}
