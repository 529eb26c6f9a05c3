//! The coordinator's side of replication: one task per member pushes the events it lacks (or,
//! when it is too far behind or its history diverged, a full snapshot), and the replicas'
//! acknowledgements decide when a write may be answered.

use crate::client::exchange;
use crate::connection::Connection;
use crate::core::{NodeId, NodeRef, Role};
use crate::error::{Error, ErrorCode, Result};
use crate::forward::connect;
use crate::limits::{
    ACK_TIMEOUT_MS, FORWARD_TIMEOUT_MS, FULL_SYNC_LAG_EVENTS, REPLICATE_BATCH_MAX,
    REPLICATION_PROBE_MS, SNAPSHOT_CHUNK_BYTES,
};
use crate::shared::Shared;
use crate::store::fetch_rdb;
use crate::wire::{ReplicaStatus, Reply, Request};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the manager looks at the member list.
const MEMBERS_POLL_MS: u64 = 20;
/// Pause after a failed connection to a replica.
const RECONNECT_PAUSE_MS: u64 = 50;
/// Time for one snapshot piece (they are large).
const SNAPSHOT_PIECE_TIMEOUT_MS: u64 = 30_000;

/// Which clock each replica has acknowledged.
#[derive(Debug)]
pub struct Replicator {
    acks: watch::Sender<BTreeMap<NodeId, u64>>,
}

impl Replicator {
    /// Starts the task that keeps one replication task per member while this node coordinates.
    pub fn start(shared: Arc<Shared>) -> Arc<Replicator> {
        let replicator = Arc::new(Replicator {
            acks: watch::Sender::new(BTreeMap::new()),
        });
        tokio::spawn(manage(shared, replicator.clone()));
        replicator
    }

    /// Waits until enough replicas applied `clock`: in strict mode a majority with the
    /// coordinator (N/2 others); else `--min-acks` of them, or every other known member if
    /// there are fewer (none for a node alone).
    pub async fn wait_acked(&self, shared: &Shared, clock: u64) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ACK_TIMEOUT_MS);
        let mut acks = self.acks.subscribe();
        loop {
            let view = shared.membership.state().view;
            let others: Vec<NodeId> = view
                .members
                .iter()
                .map(|m| m.node.node_id)
                .filter(|id| *id != shared.node_id)
                .collect();
            let needed = match shared.replication.strict_cluster_size {
                Some(n) => n / 2,
                None => shared.replication.min_acks.min(others.len()),
            };
            let acked = {
                let map = acks.borrow_and_update();
                others
                    .iter()
                    .filter(|id| map.get(id).is_some_and(|a| *a >= clock))
                    .count()
            };
            if acked >= needed {
                return Ok(());
            }
            let tick = tokio::time::sleep(Duration::from_millis(MEMBERS_POLL_MS));
            tokio::select! {
                _ = acks.changed() => {}
                _ = tick => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::refused(
                        ErrorCode::AckTimeout,
                        format!("event {clock} was applied here but only {acked} of {needed} replicas acknowledged it in {ACK_TIMEOUT_MS} ms"),
                    ));
                }
            }
        }
    }

    fn record(&self, node: NodeId, applied: u64) {
        self.acks.send_modify(|acks| {
            acks.insert(node, applied);
        });
    }
}

/// Keeps one task per member while coordinator; none otherwise.
async fn manage(shared: Arc<Shared>, replicator: Arc<Replicator>) {
    let mut tasks: BTreeMap<NodeId, (NodeRef, JoinHandle<()>)> = BTreeMap::new();
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
        tasks.retain(|id, (node, task)| {
            let keep = wanted.get(id).is_some_and(|w| w.addr == node.addr) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        replicator.acks.send_if_modified(|acks| {
            let before = acks.len();
            acks.retain(|id, _| wanted.contains_key(id));
            acks.len() != before
        });
        for (id, node) in wanted {
            tasks.entry(id).or_insert_with(|| {
                let link = Link {
                    shared: shared.clone(),
                    replicator: replicator.clone(),
                    node,
                    seq: 0,
                };
                (node, tokio::spawn(link.run()))
            });
        }
        tokio::time::sleep(Duration::from_millis(MEMBERS_POLL_MS)).await;
    }
}

/// The coordinator's link to one replica.
struct Link {
    shared: Arc<Shared>,
    replicator: Arc<Replicator>,
    node: NodeRef,
    seq: u64,
}

/// What to send a replica next.
enum Next {
    /// Ask where it is (a probe with no events).
    Probe,
    /// Events from this clock on.
    From(u64),
    /// Its history diverged from this clock on (or it is too far behind): a full snapshot.
    Snapshot,
}

impl Link {
    async fn run(mut self) {
        loop {
            let mut conn = match connect(self.node.addr).await {
                Ok(conn) => conn,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(RECONNECT_PAUSE_MS)).await;
                    continue;
                }
            };
            if let Err(e) = self.serve(&mut conn).await {
                tracing::debug!(replica = %self.node.addr, error = %e, "replication link failed");
                tokio::time::sleep(Duration::from_millis(RECONNECT_PAUSE_MS)).await;
            }
        }
    }

    async fn serve(&mut self, conn: &mut Connection) -> Result<()> {
        let mut next = Next::Probe;
        let mut applied_watch = self.shared.watch_applied();
        loop {
            let (applied, status) = match next {
                Next::Probe => self.replicate(conn, None, Vec::new()).await?,
                Next::From(from) => {
                    let last = self.shared.applied();
                    if from > last + 1 {
                        // The replica holds events this coordinator never made.
                        next = Next::Snapshot;
                        continue;
                    }
                    if last + 1 - from > FULL_SYNC_LAG_EVENTS {
                        next = Next::Snapshot;
                        continue;
                    }
                    if from > last {
                        // Up to date: wait for new events, probing now and then.
                        let wait = Duration::from_millis(REPLICATION_PROBE_MS);
                        let _ = tokio::time::timeout(wait, applied_watch.changed()).await;
                        if self.shared.applied() < from {
                            next = Next::Probe;
                        }
                        continue;
                    }
                    let prev = match from - 1 {
                        0 => None,
                        clock => match self.shared.event_at(clock).await? {
                            Some(event) => Some(event),
                            None => {
                                next = Next::Snapshot;
                                continue;
                            }
                        },
                    };
                    let mut events = self.shared.events_from(from, REPLICATE_BATCH_MAX).await?;
                    // Never past what the coordinator has acknowledged to itself as applied.
                    events.retain(|e| e.clock <= last);
                    if events.first().is_none_or(|e| e.clock != from) {
                        // The log no longer reaches back that far.
                        next = Next::Snapshot;
                        continue;
                    }
                    self.replicate(conn, prev, events).await?
                }
                Next::Snapshot => self.send_snapshot(conn).await?,
            };
            next = match status {
                ReplicaStatus::Ok => {
                    self.replicator.record(self.node.node_id, applied);
                    Next::From(applied + 1)
                }
                ReplicaStatus::Gap | ReplicaStatus::ChunkStored => Next::From(applied + 1),
                ReplicaStatus::Diverged { at } => {
                    tracing::warn!(replica = %self.node.addr, at, "replica diverged: sending a full snapshot");
                    Next::Snapshot
                }
            };
        }
    }

    async fn replicate(
        &mut self,
        conn: &mut Connection,
        prev: Option<crate::event::Event>,
        events: Vec<crate::event::Event>,
    ) -> Result<(u64, ReplicaStatus)> {
        let request = Request::Replicate {
            epoch: self.epoch(),
            prev,
            events,
        };
        self.call(conn, &request, FORWARD_TIMEOUT_MS).await
    }

    async fn send_snapshot(&mut self, conn: &mut Connection) -> Result<(u64, ReplicaStatus)> {
        let started = std::time::Instant::now();
        let rdb = fetch_rdb(self.shared.store.url()).await?;
        let sha256 = ByteBuf::from(Sha256::digest(&rdb).to_vec());
        let total = rdb.len() as u64;
        tracing::info!(replica = %self.node.addr, bytes = total, "sending a full snapshot");
        let mut offset = 0usize;
        let answer = loop {
            let end = (offset + SNAPSHOT_CHUNK_BYTES).min(rdb.len());
            let request = Request::Snapshot {
                epoch: self.epoch(),
                offset: offset as u64,
                total,
                sha256: sha256.clone(),
                data: ByteBuf::from(rdb[offset..end].to_vec()),
            };
            let answer = self.call(conn, &request, SNAPSHOT_PIECE_TIMEOUT_MS).await?;
            offset = end;
            if offset >= rdb.len() {
                break answer;
            }
        };
        tracing::info!(
            replica = %self.node.addr,
            applied = answer.0,
            ms = started.elapsed().as_millis() as u64,
            "full snapshot installed"
        );
        Ok(answer)
    }

    /// The epoch to send: the current one (replicas refuse older ones).
    fn epoch(&self) -> u64 {
        self.shared.membership.state().view.epoch
    }

    async fn call(
        &mut self,
        conn: &mut Connection,
        request: &Request,
        timeout_ms: u64,
    ) -> Result<(u64, ReplicaStatus)> {
        self.seq += 1;
        let timeout = Duration::from_millis(timeout_ms);
        let (reply, _) =
            exchange(conn, &self.shared.cluster, self.seq, 0, request, timeout).await?;
        match reply {
            Reply::Replicated { applied, status } => Ok((applied, status)),
            Reply::Error(e) => Err(Error::refused(e.code, e.message)),
            other => Err(Error::refused(
                ErrorCode::BadFrame,
                format!("unexpected reply {other:?}"),
            )),
        }
    }
}
