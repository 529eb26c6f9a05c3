//! The coordinator's side of replication, the I/O shell: one task per member moves the
//! requests its [`Progress`] decides (events it lacks, or, when it is too far behind or its
//! history diverged, a full snapshot) and feeds the answers back; the replicas' acks, counted
//! by [`Acks`], decide when a write may be answered.

use crate::client::{exchange_frame, request_frame};
use crate::connection::Connection;
use crate::core::replication::{Acks, LinkLimits, Next, Progress, Quorum};
use crate::core::{NodeId, NodeRef, Role};
use crate::error::{Error, ErrorCode, Result};
use crate::event::Event;
use crate::limits::{
    ACK_TIMEOUT_MS, FORWARD_TIMEOUT_MS, REPLICATION_PROBE_MS, REQUEST_FRAME_BYTES_MAX,
    SNAPSHOT_CHUNK_BYTES,
};
use crate::metrics::LinkState;
use crate::node::forward::connect;
use crate::node::shared::Shared;
use crate::store::{idle_priority, RdbStream};
use crate::wire::{decode, encode, Envelope, ReplicaStatus, Reply, Request};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How often the manager looks at the member list.
const MEMBERS_POLL_MS: u64 = 20;
/// Pause after a failed connection to a replica.
const RECONNECT_PAUSE_MS: u64 = 50;
/// Time for one snapshot piece (they are large).
const SNAPSHOT_PIECE_TIMEOUT_MS: u64 = 30_000;
/// Snapshot pieces read from Redis ahead of the one being shipped.
const SNAPSHOT_PIECES_AHEAD: usize = 4;

/// Which clock each replica has acknowledged, and the writes waiting for acknowledgements.
#[derive(Debug)]
pub struct Replicator {
    /// The replicas' acks (see [`Acks`]).
    acks: std::sync::Mutex<Acks>,
    /// Waiting writes by clock: each is woken once, when enough replicas passed its clock
    /// (not on every ack, which under load would wake every waiting write thousands of times a
    /// second).
    waiters: std::sync::Mutex<BTreeMap<u64, Vec<oneshot::Sender<()>>>>,
}

impl Replicator {
    /// Starts the task that keeps one replication task per member while this node coordinates.
    pub fn start(shared: Arc<Shared>) -> Arc<Replicator> {
        let replicator = Arc::new(Replicator {
            acks: std::sync::Mutex::default(),
            waiters: std::sync::Mutex::default(),
        });
        tokio::spawn(manage(shared, replicator.clone()));
        replicator
    }

    /// Waits until enough replicas applied `clock` (see [`crate::core::replication::Replication::needed`]) and this
    /// node's claim has settled (see [`crate::core::View::settled`]).
    ///
    /// Acks count only while this node still coordinates in `epoch`, the epoch the write was
    /// made in: a coordinator replaced meanwhile (paused, then resumed) may still hear acks,
    /// but they prove nothing, so it answers `unavailable` (a retry with the same request id
    /// learns the write's outcome).
    pub async fn wait_acked(&self, shared: &Shared, clock: u64, epoch: u64) -> Result<()> {
        let started = std::time::Instant::now();
        let deadline = tokio::time::sleep(Duration::from_millis(ACK_TIMEOUT_MS));
        tokio::pin!(deadline);
        loop {
            // Registered before looking, so an ack that lands in between still wakes it.
            let (wake, woken) = oneshot::channel();
            self.lock_waiters().entry(clock).or_default().push(wake);
            let view = shared.membership.state().view;
            if view.role != Role::Coordinator || view.epoch != epoch {
                self.forget(clock, woken);
                return Err(Error::refused(
                    ErrorCode::Unavailable,
                    format!(
                        "this node stopped coordinating (epoch {epoch}) before event {clock} was \
                         acknowledged; retry with the same request id to learn its outcome"
                    ),
                ));
            }
            let quorum = self.quorum(shared, &view);
            if quorum.acked >= clock {
                self.forget(clock, woken);
                shared.metrics.ack_wait(started.elapsed());
                return Ok(());
            }
            // Membership changes (a replica leaving lowers what is needed) and the claim
            // settling are seen at the next tick.
            let tick = tokio::time::sleep(Duration::from_millis(MEMBERS_POLL_MS));
            tokio::select! {
                _ = woken => {}
                _ = tick => {}
                _ = &mut deadline => {
                    let (acked, needed) = (quorum.holding(clock), quorum.needed);
                    let unsettled = if view.settled { "" } else { " (this coordinator's claim had not settled)" };
                    return Err(Error::refused(
                        ErrorCode::AckTimeout,
                        format!("event {clock} was applied here but only {acked} of {needed} replicas acknowledged it in {ACK_TIMEOUT_MS} ms{unsettled}"),
                    ));
                }
            }
        }
    }

    /// The follower to hand over to in `view`, and what it acknowledged (see
    /// [`Acks::most_caught_up`]).
    pub fn most_caught_up(
        &self,
        shared: &Shared,
        view: &crate::core::View,
    ) -> Option<(NodeRef, u64)> {
        self.lock_acks().most_caught_up(shared.node_id, view)
    }

    /// What the acks allow in `view`.
    fn quorum(&self, shared: &Shared, view: &crate::core::View) -> Quorum {
        self.lock_acks()
            .quorum(shared.node_id, view, &shared.replication)
    }

    fn lock_acks(&self) -> std::sync::MutexGuard<'_, Acks> {
        self.acks.lock().expect("acks lock poisoned")
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Vec<oneshot::Sender<()>>>> {
        self.waiters.lock().expect("ack waiters lock poisoned")
    }

    /// Drops a waiter that stopped waiting (and any other gone waiter at that clock).
    fn forget(&self, clock: u64, woken: oneshot::Receiver<()>) {
        drop(woken);
        let mut waiters = self.lock_waiters();
        if let Some(at) = waiters.get_mut(&clock) {
            at.retain(|wake| !wake.is_closed());
            if at.is_empty() {
                waiters.remove(&clock);
            }
        }
    }

    /// Records that a replica holds this node's history up to `applied` (as its coordinator
    /// in `epoch`) and wakes the writes it lets through.
    fn record(&self, shared: &Shared, node: NodeId, epoch: u64, applied: u64) {
        self.lock_acks().record(node, epoch, applied);
        let view = shared.membership.state().view;
        let acked = self.quorum(shared, &view).acked;
        let ready = {
            let mut waiters = self.lock_waiters();
            let later = match acked.checked_add(1) {
                Some(after) => waiters.split_off(&after),
                None => BTreeMap::new(),
            };
            std::mem::replace(&mut *waiters, later)
        };
        for wake in ready.into_values().flatten() {
            let _ = wake.send(());
        }
    }
}

/// Keeps one task per member while coordinator; none otherwise.
async fn manage(shared: Arc<Shared>, replicator: Arc<Replicator>) {
    let mut tasks: BTreeMap<NodeId, (NodeRef, u64, JoinHandle<()>)> = BTreeMap::new();
    loop {
        let view = shared.membership.state().view;
        let wanted: BTreeMap<NodeId, NodeRef> = if view.role == Role::Coordinator {
            view.members
                .iter()
                .filter(|m| m.node.node_id != shared.node_id)
                .map(|m| (m.node.node_id, m.node))
                .collect()
        } else {
            BTreeMap::new()
        };
        // A link speaks for one epoch of this node's coordination: a new epoch gets new links.
        tasks.retain(|id, (node, epoch, task)| {
            let keep = wanted.get(id).is_some_and(|w| w.addr == node.addr)
                && *epoch == view.epoch
                && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        replicator.lock_acks().retain(|id| wanted.contains_key(id));
        shared
            .metrics
            .retain_links(|replica| tasks.values().any(|(node, _, _)| node.addr == *replica));
        for (id, node) in wanted {
            tasks.entry(id).or_insert_with(|| {
                let link = Link {
                    shared: shared.clone(),
                    replicator: replicator.clone(),
                    node,
                    progress: Progress::new(view.epoch, LinkLimits::default()),
                    seq: 0,
                    acked: 0,
                };
                (node, view.epoch, tokio::spawn(link.run()))
            });
        }
        tokio::time::sleep(Duration::from_millis(MEMBERS_POLL_MS)).await;
    }
}

/// The coordinator's link to one replica: it sends what [`Progress`] decides and feeds the
/// answers back.
struct Link {
    shared: Arc<Shared>,
    replicator: Arc<Replicator>,
    node: NodeRef,
    /// Where the replica stands; its epoch is the one this node coordinates in: every request
    /// says so, and the link stops when the node no longer coordinates in it (a stale
    /// coordinator must not pass its events off as the new epoch's).
    progress: Progress,
    seq: u64,
    /// The replica's last ack (for the metrics).
    acked: u64,
}

impl Link {
    async fn run(mut self) {
        loop {
            let mut conn =
                match connect(self.node.addr, &self.shared.security.peer_transport()).await {
                    Ok(conn) => conn,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(RECONNECT_PAUSE_MS)).await;
                        continue;
                    }
                };
            self.progress.reset();
            if let Err(e) = self.serve(&mut conn).await {
                if self.still_coordinating().is_err() {
                    return;
                }
                tracing::debug!(replica = %self.node.addr, error = %e, "replication link failed");
                tokio::time::sleep(Duration::from_millis(RECONNECT_PAUSE_MS)).await;
            }
        }
    }

    /// Sends what the progress asks for as events are decided here (see [`Shared::decided`]),
    /// pipelined up to the in-flight window (answers come back in order: a connection is served
    /// one request at a time); probes when idle; fails when the replica stops answering.
    async fn serve(&mut self, conn: &mut Connection) -> Result<()> {
        let mut decided_watch = self.shared.watch_decided();
        let probe = Duration::from_millis(REPLICATION_PROBE_MS);
        let answer_timeout = Duration::from_millis(FORWARD_TIMEOUT_MS);
        loop {
            self.send_what_is_due(conn).await?;
            let waiting = self.progress.in_flight() > 0;
            let room = self.progress.has_room();
            tokio::select! {
                answer = self.receive(conn), if waiting => {
                    let (seq, applied, status) = answer?;
                    let ack = self.progress.answered(seq, applied, status).map_err(|e| {
                        Error::refused(ErrorCode::BadFrame, e.to_string())
                    })?;
                    if let Some(ack) = ack {
                        self.record(ack);
                    } else if let ReplicaStatus::Diverged { at } = status {
                        tracing::warn!(replica = %self.node.addr, at, "replica diverged: sending a full snapshot");
                    }
                }
                _ = decided_watch.changed(), if room => {}
                () = tokio::time::sleep(probe), if !waiting => self.progress.idle(),
                () = tokio::time::sleep(answer_timeout), if waiting => {
                    return Err(Error::refused(
                        ErrorCode::Unreachable,
                        format!("replica {} did not answer in time", self.node.addr),
                    ));
                }
            }
        }
    }

    /// Sends requests until the progress says to wait.
    async fn send_what_is_due(&mut self, conn: &mut Connection) -> Result<()> {
        loop {
            let send = self.progress.next(self.shared.decided());
            match send {
                Next::Wait => return Ok(()),
                Next::Snapshot => {
                    let (applied, status) = self.send_snapshot().await?;
                    if let Some(ack) = self.progress.snapshot_answered(applied, status) {
                        self.record(ack);
                    }
                }
                Next::Probe { prev } => {
                    let prev = match prev {
                        0 => None,
                        clock => self.shared.event_at(clock).await?,
                    };
                    let send = Next::Probe {
                        prev: prev.as_ref().map_or(0, |e| e.clock),
                    };
                    let seq = self.send(conn, prev, Vec::new()).await?;
                    self.progress.sent(seq, send);
                }
                Next::Events { from, to } => match self.events(from, to).await? {
                    Some((prev, events)) => {
                        let to = events.last().map_or(to, |e| e.clock);
                        let seq = self.send(conn, prev, events).await?;
                        self.progress.sent(seq, Next::Events { from, to });
                        self.report();
                    }
                    None => self.progress.need_snapshot(),
                },
            }
        }
    }

    /// The events `from..=to` and the one before them, or None if this node's log no longer
    /// reaches back that far.
    async fn events(&self, from: u64, to: u64) -> Result<Option<(Option<Event>, Vec<Event>)>> {
        let prev = match from - 1 {
            0 => None,
            clock => match self.shared.event_at(clock).await? {
                Some(event) => Some(event),
                None => return Ok(None),
            },
        };
        let mut events = self
            .shared
            .events_from(from, (to - from + 1) as usize)
            .await?;
        // Never past what the writer has decided (the log may hold no more).
        events.retain(|e| e.clock <= to);
        if events.first().map(|e| e.clock) != Some(from) {
            return Ok(None);
        }
        Ok(Some((prev, events)))
    }

    /// Records the replica's ack for this link's epoch.
    fn record(&mut self, ack: u64) {
        self.replicator
            .record(&self.shared, self.node.node_id, self.progress.epoch(), ack);
        self.acked = ack;
        self.report();
    }

    /// Shows the link's state in the metrics.
    fn report(&self) {
        let state = LinkState {
            acked: self.acked,
            in_flight: self.progress.in_flight() as u64,
        };
        self.shared.metrics.link(self.node.addr, state);
    }

    /// Sends one `Replicate` request; returns its sequence number.
    async fn send(
        &mut self,
        conn: &mut Connection,
        prev: Option<Event>,
        events: Vec<Event>,
    ) -> Result<u64> {
        self.still_coordinating()?;
        let request = Request::Replicate {
            epoch: self.progress.epoch(),
            prev,
            events,
        };
        self.seq += 1;
        let envelope = Envelope::new(&self.shared.cluster, self.seq, &request);
        let frame = encode(&envelope, REQUEST_FRAME_BYTES_MAX)?;
        conn.write_frame(&frame).await?;
        Ok(self.seq)
    }

    /// The next answer: (its sequence number, the replica's applied clock, status).
    async fn receive(&self, conn: &mut Connection) -> Result<(u64, u64, ReplicaStatus)> {
        let payload = conn.read_frame().await?.ok_or_else(|| {
            Error::refused(ErrorCode::Unreachable, "replica closed the connection")
        })?;
        let envelope: Envelope<Reply> = decode(&payload)?;
        let (applied, status) = replicated(envelope.body)?;
        Ok((envelope.seq, applied, status))
    }

    /// Streams a fresh snapshot of this node's Redis to the replica piece by piece while
    /// Redis is still writing it; the last piece carries the SHA-256 of the whole. All of it
    /// (reading, hashing, framing, sending) runs on a thread of its own at idle priority, over
    /// a connection of its own (see [`SnapshotSender`]); this link waits for the answer.
    async fn send_snapshot(&mut self) -> Result<(u64, ReplicaStatus)> {
        self.still_coordinating()?;
        let started = std::time::Instant::now();
        let (done_tx, done) = oneshot::channel();
        let sender = SnapshotSender {
            shared: self.shared.clone(),
            epoch: self.progress.epoch(),
            to: self.node.addr,
        };
        std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                let sent = sender.run(&done_tx);
                let _ = done_tx.send(sent);
            })
            .map_err(|e| Error::io("failed to start the snapshot thread", e))?;
        tracing::info!(replica = %self.node.addr, "streaming a full snapshot");
        let (answer, bytes) = done
            .await
            .map_err(|_| Error::refused(ErrorCode::Internal, "the snapshot thread stopped"))??;
        self.shared.metrics.full_sync_sent(bytes);
        tracing::info!(
            replica = %self.node.addr,
            applied = answer.0,
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "full snapshot installed"
        );
        Ok(answer)
    }

    /// Fails once this node no longer coordinates in the link's epoch.
    fn still_coordinating(&self) -> Result<()> {
        coordinating_in(&self.shared, self.progress.epoch())
    }
}

/// Fails unless this node coordinates in `epoch`.
fn coordinating_in(shared: &Shared, epoch: u64) -> Result<()> {
    let view = shared.membership.state().view;
    if view.role == Role::Coordinator && view.epoch == epoch {
        Ok(())
    } else {
        Err(Error::refused(
            ErrorCode::Unavailable,
            format!("no longer the coordinator of epoch {epoch}"),
        ))
    }
}

/// A replica's answer to a replication request: its applied clock and status.
fn replicated(reply: Reply) -> Result<(u64, ReplicaStatus)> {
    match reply {
        Reply::Replicated { applied, status } => Ok((applied, status)),
        Reply::Error(e) => Err(Error::refused(e.code, e.message)),
        other => Err(Error::refused(
            ErrorCode::BadFrame,
            format!("unexpected reply {other:?}"),
        )),
    }
}

/// One snapshot piece, framed as the request it travels in.
struct SnapshotFrame {
    seq: u64,
    bytes: Vec<u8>,
    /// Snapshot bytes it carries.
    data_bytes: u64,
    /// The last piece (it carries the checksum).
    last: bool,
}

/// Where the snapshot thread reports the replica's answer to the last piece and the bytes sent.
type SnapshotDone = oneshot::Sender<Result<((u64, ReplicaStatus), u64)>>;

/// Sends a full snapshot to a replica from a thread of its own at idle priority
/// (`SCHED_IDLE`), over a connection of its own: reading Redis's snapshot, hashing it, framing
/// it and sending it copies every byte several times, which must not delay the writes this
/// node serves meanwhile.
struct SnapshotSender {
    shared: Arc<Shared>,
    epoch: u64,
    to: std::net::SocketAddr,
}

impl SnapshotSender {
    /// The thread's body: the replica's answer to the last piece and the bytes sent, for
    /// `done` (once the link no longer waits for it, sending stops).
    fn run(self, done: &SnapshotDone) -> Result<((u64, ReplicaStatus), u64)> {
        idle_priority(0);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("failed to start the snapshot thread's runtime", e))?
            .block_on(self.send(done))
    }

    /// Frames are made up to SNAPSHOT_PIECES_AHEAD ahead while earlier ones are sent.
    async fn send(self, done: &SnapshotDone) -> Result<((u64, ReplicaStatus), u64)> {
        let mut conn = connect(self.to, &self.shared.security.peer_transport()).await?;
        let (frames_tx, mut frames) = mpsc::channel(SNAPSHOT_PIECES_AHEAD);
        let maker = tokio::spawn(make_snapshot_frames(
            self.shared.clone(),
            self.epoch,
            frames_tx,
        ));
        let _stop_making = AbortOnDrop(maker);
        let mut bytes = 0;
        loop {
            let Some(frame) = frames.recv().await.transpose()? else {
                return Err(Error::refused(
                    ErrorCode::Internal,
                    "the snapshot reader stopped before the end",
                ));
            };
            coordinating_in(&self.shared, self.epoch)?;
            if done.is_closed() {
                return Err(Error::refused(
                    ErrorCode::Unavailable,
                    "the replication link stopped",
                ));
            }
            let timeout = Duration::from_millis(SNAPSHOT_PIECE_TIMEOUT_MS);
            let (reply, _) = exchange_frame(&mut conn, frame.seq, &frame.bytes, timeout).await?;
            let answer = replicated(reply)?;
            bytes += frame.data_bytes;
            if frame.last {
                return Ok((answer, bytes));
            }
        }
    }
}

/// Reads a fresh snapshot of this node's Redis and frames it piece by piece into `frames`
/// (requests numbered from 1), the last carrying the SHA-256 of the whole.
async fn make_snapshot_frames(
    shared: Arc<Shared>,
    epoch: u64,
    frames: mpsc::Sender<Result<SnapshotFrame>>,
) {
    let made = async {
        let mut stream = RdbStream::open(shared.store.url()).await?;
        // Redis forked to write it: the fork yields to live writes too (not waiting for the
        // next supervision round).
        if let Some(redis) = shared.redis_child.lock().await.as_ref() {
            redis.idle_background_work();
        }
        let mut sha256 = Sha256::new();
        let (mut seq, mut offset) = (1, 0u64);
        // Each piece is sent once the next is known, so the last carries the checksum.
        let mut held: Option<Vec<u8>> = None;
        loop {
            let next = stream.next_piece(SNAPSHOT_CHUNK_BYTES).await?;
            if let Some(next) = &next {
                sha256.update(next);
            }
            let last = next.is_none();
            let data = match (held.take(), next) {
                (Some(data), next) => {
                    held = next;
                    data
                }
                (None, Some(next)) => {
                    held = Some(next);
                    continue;
                }
                (None, None) => Vec::new(),
            };
            let data_bytes = data.len() as u64;
            let request = Request::Snapshot {
                epoch,
                offset,
                sha256: last.then(|| ByteBuf::from(sha256.clone().finalize().to_vec())),
                data: ByteBuf::from(data),
            };
            let bytes = request_frame(&shared.cluster, seq, 0, &request, false)?;
            let frame = SnapshotFrame {
                seq,
                bytes,
                data_bytes,
                last,
            };
            if frames.send(Ok(frame)).await.is_err() || last {
                return Ok(());
            }
            offset += data_bytes;
            seq += 1;
        }
    };
    if let Err(e) = made.await {
        let _ = frames.send(Err(e)).await;
    }
}

/// Aborts a task when dropped (a failed send stops reading Redis's snapshot).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
