//! What the parts of a running node share: its store, its cluster view, its applied clock,
//! its own Redis (if it runs one) and the replication settings.

use crate::core::replication::Replication;
use crate::core::Input;
use crate::error::Result;
use crate::event::Event;
use crate::node::cluster::{ClusterHandle, Identity};
use crate::node::recent::RecentEvents;
use crate::security::{Guard, Rejections, Security};
use crate::store::{RedisChild, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

/// How the node's Redis is run.
#[derive(Debug)]
pub struct Storage {
    /// The `redis-server` this node started, if it did.
    pub redis_child: Option<RedisChild>,
    /// The `redis-server` binary.
    pub redis_bin: String,
    /// A directory for scratch files.
    pub scratch_dir: std::path::PathBuf,
    /// Whether the node's Redis answers (see [`crate::limits::STORE_HANG_MS`]); the cluster
    /// task holds a receiver of it.
    pub answers: watch::Sender<bool>,
}

/// The node's shared state.
#[derive(Debug)]
pub struct Shared {
    /// The node's Redis.
    pub store: Store,
    /// The cluster task.
    pub membership: ClusterHandle,
    /// The node's id.
    pub node_id: Uuid,
    /// The cluster's name.
    pub cluster: String,
    /// Replication settings.
    pub replication: Replication,
    /// The `redis-server` this node runs, if any (a full sync restarts it on a snapshot).
    pub redis_child: Mutex<Option<RedisChild>>,
    /// The `redis-server` binary (for the scratch server of a full sync into an external Redis).
    pub redis_bin: String,
    /// Where that scratch server keeps its files.
    pub scratch_dir: std::path::PathBuf,
    /// The latest events applied here.
    pub recent: RecentEvents,
    /// How this node proves itself to others and checks them.
    pub security: Security,
    /// What was refused for failing authentication or a limit.
    pub rejections: Arc<Rejections>,
    /// What operators scrape (see [`crate::metrics`]).
    pub metrics: crate::metrics::Metrics,
    applied: watch::Sender<u64>,
    /// On the coordinator, the last clock its writer decided (sent to replicas while its own
    /// Redis writes it); never below `applied`.
    decided: watch::Sender<u64>,
    syncing: AtomicBool,
    store_answers: watch::Sender<bool>,
}

impl Shared {
    /// Shared state for a node whose store has applied up to `applied`.
    pub fn new(
        store: Store,
        membership: ClusterHandle,
        identity: Identity,
        replication: Replication,
        storage: Storage,
        guard: Guard,
        applied: u64,
    ) -> Self {
        Shared {
            store,
            membership,
            node_id: identity.node_id,
            cluster: identity.cluster,
            replication,
            redis_child: Mutex::new(storage.redis_child),
            redis_bin: storage.redis_bin,
            scratch_dir: storage.scratch_dir,
            recent: RecentEvents::default(),
            security: guard.security,
            rejections: guard.rejections,
            metrics: crate::metrics::Metrics::new(),
            applied: watch::Sender::new(applied),
            decided: watch::Sender::new(applied),
            syncing: AtomicBool::new(false),
            store_answers: storage.answers,
        }
    }

    /// The event this node applied at `clock` (from memory, else from its Redis log).
    pub async fn event_at(&self, clock: u64) -> Result<Option<Event>> {
        if let Some(event) = self.recent.get(clock) {
            return Ok(Some(event));
        }
        Ok(self.store.event_at(clock).await?.map(|logged| logged.event))
    }

    /// Up to `max` events from clock `from` on (from memory, else from the Redis log).
    pub async fn events_from(&self, from: u64, max: usize) -> Result<Vec<Event>> {
        if let Some(events) = self.recent.from(from, max) {
            return Ok(events);
        }
        let logged = self.store.events_after(from.saturating_sub(1), max).await?;
        Ok(logged.into_iter().map(|l| l.event).collect())
    }

    /// The highest clock this node applied.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Notes that events up to `clock` are applied, the last made in `epoch` (never lowers it).
    pub fn advance(&self, clock: u64, epoch: u64) {
        self.decide(clock);
        if raise(&self.applied, clock) {
            self.membership.notify(Input::Applied { clock, epoch });
        }
    }

    /// Notes that the writer decided events up to `clock` (never lowers it).
    pub fn decide(&self, clock: u64) {
        raise(&self.decided, clock);
    }

    /// Forgets decided events that were not applied (they must not be sent again).
    pub fn undecide(&self) {
        self.decided.send_replace(self.applied());
    }

    /// The last clock decided here: what replication links may send. Never below the applied
    /// clock, by construction (the two are separate channels, updated one after the other).
    pub fn decided(&self) -> u64 {
        (*self.decided.borrow()).max(self.applied())
    }

    /// A receiver that sees every change of the decided clock.
    pub fn watch_decided(&self) -> watch::Receiver<u64> {
        self.decided.subscribe()
    }

    /// Sets the applied clock after a full sync (it may go down: a divergent tail was dropped).
    pub fn reset_applied(&self, clock: u64, epoch: u64) {
        self.applied.send_replace(clock);
        self.decided.send_replace(clock);
        self.membership.notify(Input::Applied { clock, epoch });
    }

    /// A receiver that sees every change of the applied clock.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Waits up to `timeout` until the applied clock reaches `clock`.
    pub async fn wait_applied(&self, clock: u64, timeout: Duration) -> bool {
        if self.applied() >= clock {
            return true;
        }
        let mut applied = self.watch_applied();
        tokio::time::timeout(timeout, applied.wait_for(|a| *a >= clock))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether the node's Redis answers (see [`crate::limits::STORE_HANG_MS`]).
    pub fn store_answers(&self) -> bool {
        *self.store_answers.borrow()
    }

    /// Notes whether the node's Redis answers; returns whether that changed.
    pub fn set_store_answers(&self, answers: bool) -> bool {
        self.store_answers.send_if_modified(|current| {
            let changed = *current != answers;
            *current = answers;
            changed
        })
    }

    /// Whether a snapshot is being installed (reads must not be served from it).
    pub fn syncing(&self) -> bool {
        self.syncing.load(Ordering::Acquire)
    }

    /// Marks the start or end of a snapshot install.
    pub fn set_syncing(&self, syncing: bool) {
        self.syncing.store(syncing, Ordering::Release);
    }
}

/// Raises the watched clock to `clock` if it is higher; returns whether it did.
fn raise(watched: &watch::Sender<u64>, clock: u64) -> bool {
    watched.send_if_modified(|current| {
        let higher = clock > *current;
        if higher {
            *current = clock;
        }
        higher
    })
}
