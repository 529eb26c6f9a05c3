//! A replica's side of replication, the I/O shell: reads the events [`accept`] compares,
//! applies what it accepts (strictly in clock order, after checking that the histories agree
//! up to them), and installs full snapshots. Gaps and divergence are reported, not guessed.

use crate::connection::write_in_slices;
use crate::core::replication::{self, accept, clocks_to_compare, Acceptance, EpochCheck};
use crate::core::{Input, Role};
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Event, LoggedEvent};
use crate::limits::{
    REDIS_START_TIMEOUT_MS, SNAPSHOT_PERSIST_WAIT_MS, SNAPSHOT_STALL_MS, SNAPSHOT_WATCH_MS,
};
use crate::node::shared::Shared;
use crate::store::SnapshotFeed;
use crate::wire::{ReplicaStatus, Reply};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// A snapshot being received.
struct Incoming {
    /// Tells this snapshot from a later one (for its watchdog).
    id: u64,
    /// The epoch of the coordinator sending it.
    epoch: u64,
    /// When its last piece arrived.
    last_piece: Instant,
    sink: Sink,
    sha256: Sha256,
    received: u64,
    /// This node's event log before the snapshot (to report what the snapshot drops).
    before: Vec<LoggedEvent>,
}

/// Where the pieces of a snapshot go as they arrive.
enum Sink {
    /// Straight into the node's own Redis, which loads them as they come (see
    /// [`SnapshotFeed`]); reads wait for the end.
    Feed(SnapshotFeed),
    /// Into a file, loaded at the end: for an external Redis (by a scratch Redis whose keys are
    /// copied over), or if the feed could not start (by restarting the node's Redis on it).
    File {
        path: PathBuf,
        file: tokio::fs::File,
    },
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("received", &self.received)
            .finish()
    }
}

/// One replica's apply side: one batch or snapshot at a time.
#[derive(Debug, Default)]
pub struct Replica {
    incoming: Arc<Mutex<Option<Incoming>>>,
    snapshots: AtomicU64,
}

impl Replica {
    /// Checks `prev` and applies `events` (see [`crate::wire::Request::Replicate`]).
    pub async fn replicate(
        &self,
        shared: &Shared,
        epoch: u64,
        prev: Option<Event>,
        events: Vec<Event>,
    ) -> Result<Reply> {
        check_epoch(shared, epoch)?;
        let mut incoming = self.incoming.lock().await;
        // Events instead of the rest of a snapshot: that snapshot was given up (its link
        // failed; a coordinator was replaced). Its Redis must stand alone again to take them.
        if let Some(stale) = incoming.take() {
            tracing::warn!(
                received = stale.received,
                why = "events came instead",
                "a snapshot stopped arriving; keeping the data from before it"
            );
            discard(shared, stale).await;
        }
        let store = &shared.store;
        let applied = shared.applied();
        let answer = |status| Ok(Reply::Replicated { applied, status });
        // This node's events at the clocks the decision compares.
        let mut own = BTreeMap::new();
        for clock in clocks_to_compare(applied, prev.as_ref(), &events) {
            if let Some(event) = shared.event_at(clock).await? {
                own.insert(clock, event);
            }
        }
        let holds = |e: &Event| own.get(&e.clock).is_some_and(|o| o.same_as(e));
        let new = match accept(applied, prev.as_ref(), &events, holds) {
            Acceptance::Gap => return answer(ReplicaStatus::Gap),
            Acceptance::Diverged { at } => return answer(ReplicaStatus::Diverged { at }),
            Acceptance::Apply { from } => {
                let mut events = events;
                events.split_off(from)
            }
        };
        let Some(last) = new.last() else {
            return answer(ReplicaStatus::Ok);
        };
        assert!(
            new.iter().zip(applied + 1..).all(|(e, c)| e.clock == c),
            "clocks are consecutive on apply"
        );
        let last_epoch = last.epoch;
        if let Err(e) = store.apply_replicated(&new).await {
            // The store's clock did not follow this node's applied clock: something else wrote.
            tracing::error!(error = %e, "replicated events did not apply");
            return Err(e);
        }
        let now = last.clock;
        shared.recent.push(new);
        shared.advance(now, last_epoch);
        Ok(Reply::Replicated {
            applied: now,
            status: ReplicaStatus::Ok,
        })
    }

    /// Takes a snapshot piece; the last one (the one with the checksum) is checked and the
    /// snapshot installed.
    pub async fn snapshot(
        &self,
        shared: &Arc<Shared>,
        epoch: u64,
        offset: u64,
        sha256: Option<ByteBuf>,
        data: ByteBuf,
    ) -> Result<Reply> {
        check_epoch(shared, epoch)?;
        let mut incoming = self.incoming.lock().await;
        if offset == 0 {
            if let Some(old) = incoming.take() {
                discard(shared, old).await;
            }
            let id = self.snapshots.fetch_add(1, Ordering::Relaxed);
            *incoming = Some(begin(shared, id, epoch).await?);
            tokio::spawn(watch_snapshot(self.incoming.clone(), shared.clone(), id));
        }
        let Some(snapshot) = incoming.as_mut() else {
            return Err(invalid("a snapshot piece arrived without its beginning"));
        };
        if snapshot.received != offset {
            discard(shared, incoming.take().expect("checked above")).await;
            return Err(invalid("a snapshot piece does not continue the snapshot"));
        }
        let passed = match &mut snapshot.sink {
            Sink::Feed(feed) => feed.piece(&data).await,
            Sink::File { path, file } => write_in_slices(file, &data)
                .await
                .map_err(|e| Error::io(format!("failed to write {}", path.display()), e)),
        };
        if let Err(e) = passed {
            discard(shared, incoming.take().expect("checked above")).await;
            return Err(e);
        }
        snapshot.sha256.update(&data);
        snapshot.received += data.len() as u64;
        snapshot.last_piece = Instant::now();
        let Some(expected) = sha256 else {
            return Ok(Reply::Replicated {
                applied: shared.applied(),
                status: ReplicaStatus::ChunkStored,
            });
        };
        let snapshot = incoming.take().expect("checked above");
        if snapshot.sha256.clone().finalize().as_slice() != expected.as_slice() {
            discard(shared, snapshot).await;
            return Err(invalid("the snapshot's checksum does not match"));
        }
        tracing::info!(bytes = snapshot.received, "received a full snapshot");
        Ok(Reply::Replicated {
            applied: install(shared, snapshot).await?,
            status: ReplicaStatus::Ok,
        })
    }
}

/// Gives snapshot `id` up if its pieces stop coming for [`SNAPSHOT_STALL_MS`] or its sender
/// stops being this node's coordinator (this node has stood for election for two checks in a
/// row, so not for a false alarm the coordinator answers at once; or it coordinates; or it
/// hears of a later epoch); ends once the snapshot is installed or given up otherwise. Without it, a sender
/// that dies mid-snapshot would leave the node's Redis blocked reading the rest (and with it
/// everything on this node that asks Redis, elections included) until another snapshot or
/// batch of events arrives, which may be never.
async fn watch_snapshot(incoming: Arc<Mutex<Option<Incoming>>>, shared: Arc<Shared>, id: u64) {
    let stall = Duration::from_millis(SNAPSHOT_STALL_MS);
    let mut candidate_checks = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(SNAPSHOT_WATCH_MS)).await;
        // Held while a piece is passed on or the snapshot installed: look again later.
        let Ok(mut guard) = incoming.try_lock() else {
            continue;
        };
        let Some(current) = guard.as_ref().filter(|current| current.id == id) else {
            return;
        };
        let view = shared.membership.state().view;
        candidate_checks = match view.role {
            Role::Candidate => candidate_checks + 1,
            _ => 0,
        };
        let why = if candidate_checks >= 2 {
            "this node stands for election"
        } else if view.role == Role::Coordinator {
            "this node coordinates"
        } else if view.epoch > current.epoch {
            "a coordinator of a later epoch is known"
        } else if current.last_piece.elapsed() > stall {
            "no piece arrived in time"
        } else {
            continue;
        };
        let stale = guard.take().expect("checked above");
        tracing::warn!(
            received = stale.received,
            why,
            "a snapshot stopped arriving; keeping the data from before it"
        );
        discard(&shared, stale).await;
        return;
    }
}

/// Starts receiving snapshot `id` from the coordinator of `epoch`: into the node's own Redis if
/// it runs one (reads stop until the snapshot is installed or given up), else into a file.
async fn begin(shared: &Shared, id: u64, epoch: u64) -> Result<Incoming> {
    let before = shared
        .store
        .events_after(0, crate::limits::EVENT_LOG_MAX)
        .await?;
    let own_redis = shared.redis_child.lock().await.is_some();
    if own_redis {
        shared.set_syncing(true);
        shared.recent.clear();
        shared.store.forget_clock().await;
        match SnapshotFeed::start(shared.store.url()).await {
            Ok(feed) => {
                return Ok(Incoming {
                    id,
                    epoch,
                    last_piece: Instant::now(),
                    sink: Sink::Feed(feed),
                    sha256: Sha256::new(),
                    received: 0,
                    before,
                })
            }
            Err(e) => tracing::warn!(
                error = %e,
                "could not feed the snapshot to Redis as it comes; receiving it into a file"
            ),
        }
    }
    let path = shared.scratch_dir.join("snapshot.incoming.rdb");
    let create = async {
        tokio::fs::create_dir_all(&shared.scratch_dir).await?;
        tokio::fs::File::create(&path).await
    };
    let file = match create.await {
        Ok(file) => file,
        Err(e) => {
            shared.set_syncing(false);
            return Err(Error::io(format!("failed to create {}", path.display()), e));
        }
    };
    Ok(Incoming {
        id,
        epoch,
        last_piece: Instant::now(),
        sink: Sink::File { path, file },
        sha256: Sha256::new(),
        received: 0,
        before,
    })
}

/// Gives a partly received snapshot up: a fed Redis keeps its old data, a file is removed.
async fn discard(shared: &Shared, incoming: Incoming) {
    match incoming.sink {
        Sink::Feed(feed) => feed.abandon().await,
        Sink::File { path, file } => {
            drop(file);
            let _ = tokio::fs::remove_file(&path).await;
        }
    }
    shared.store.forget_clock().await;
    shared.set_syncing(false);
}

/// Refuses a coordinator of an older epoch; a newer one is news to the core.
fn check_epoch(shared: &Shared, epoch: u64) -> Result<()> {
    let ours = shared.membership.state().view.epoch;
    match replication::check_epoch(ours, epoch) {
        EpochCheck::Stale => Err(Error::refused(
            ErrorCode::Unavailable,
            format!("replication from epoch {epoch}, but this node is in epoch {ours}"),
        )),
        EpochCheck::Newer => {
            shared.membership.notify(Input::SawEpoch(epoch));
            Ok(())
        }
        EpochCheck::Current => Ok(()),
        EpochCheck::OutOfRange => Err(invalid("the request's epoch is out of range")),
    }
}

/// A full sync into an external Redis (`--redis`), which this node cannot restart: the snapshot
/// is loaded by a scratch `redis-server`, copied into the spare database and swapped in.
async fn replace_external(shared: &Shared, rdb: &Path) -> Result<()> {
    let dir = shared
        .scratch_dir
        .join(format!("sync-{}", shared.node_id.simple()));
    let _ = std::fs::remove_dir_all(&dir);
    let scratch = crate::store::RedisChild::start_on_snapshot(&dir, &shared.redis_bin, rdb).await?;
    let copied = shared.store.replace_from(&scratch.url()).await;
    let stopped = scratch.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    copied.and(stopped)
}

/// Which of the events this node had `before` a snapshot the snapshot's history lacks (events
/// older than the new log reaches are assumed kept).
async fn dropped_events(
    store: &crate::store::Store,
    before: Vec<LoggedEvent>,
) -> Result<Vec<LoggedEvent>> {
    let Some(first) = before.first().map(|l| l.event.clock) else {
        return Ok(Vec::new());
    };
    let after = store
        .events_after(first - 1, crate::limits::EVENT_LOG_MAX)
        .await?;
    let oldest_known = after.first().map_or(0, |l| l.event.clock);
    let kept: std::collections::BTreeSet<(u64, uuid::Uuid)> = after
        .iter()
        .map(|l| (l.event.clock, l.event.request_id))
        .collect();
    Ok(before
        .into_iter()
        .filter(|l| l.event.clock >= oldest_known)
        .filter(|l| !kept.contains(&(l.event.clock, l.event.request_id)))
        .collect())
}

fn invalid(message: &str) -> Error {
    Error::refused(ErrorCode::InvalidInput, message)
}

/// Completes a received snapshot (lets the fed Redis finish loading, or loads the file), logs
/// every own event the new history does not have (dropped: they diverged), and returns the
/// snapshot's clock.
async fn install(shared: &Shared, incoming: Incoming) -> Result<u64> {
    let store = &shared.store;
    let Incoming {
        sink,
        received: bytes,
        before,
        ..
    } = incoming;
    shared.set_syncing(true);
    shared.recent.clear();
    store.forget_clock().await;
    let installed = match sink {
        Sink::Feed(feed) => feed.finish().await,
        Sink::File { path, mut file } => {
            let flushed = file.flush().await;
            drop(file);
            let loaded = match flushed {
                Err(e) => Err(Error::io(format!("failed to write {}", path.display()), e)),
                Ok(()) => match shared.redis_child.lock().await.as_mut() {
                    Some(redis) => redis.restart_on_snapshot(&path).await,
                    None => replace_external(shared, &path).await,
                },
            };
            let _ = tokio::fs::remove_file(&path).await;
            loaded
        }
    };
    let result = async {
        installed?;
        store
            .wait_ready(std::time::Duration::from_millis(REDIS_START_TIMEOUT_MS))
            .await?;
        // Not installed before its own Redis has it in its append-only file: a restart in
        // between would bring back the data from before the sync and lose what this node
        // acknowledged after it.
        if shared.redis_child.lock().await.is_some() {
            let waited = std::time::Duration::from_millis(SNAPSHOT_PERSIST_WAIT_MS);
            if !store.wait_persisted(waited).await? {
                tracing::warn!(
                    waited_ms = SNAPSHOT_PERSIST_WAIT_MS,
                    "own redis-server is still writing the snapshot into its append-only file; \
                     installing it anyway (a restart before that ends brings older data back)"
                );
            }
        }
        // The snapshot carries the coordinator's identity and epoch; this node keeps its own.
        store.set_node_id(shared.node_id).await?;
        // A coordinator of an older version sends the first layout.
        store.upgrade_layout().await?;
        store
            .raise_epoch(shared.membership.state().view.epoch)
            .await?;
        store.clock().await
    }
    .await;
    shared.set_syncing(false);
    store.forget_clock().await;
    let clock = match result {
        Ok(clock) => clock,
        Err(e) => {
            // Whatever state Redis is in now, the applied clock must say it.
            if let Ok(clock) = store.clock().await {
                shared.reset_applied(clock, store.last_epoch(clock).await);
            }
            return Err(e);
        }
    };
    shared.reset_applied(clock, store.last_epoch(clock).await);
    let dropped = dropped_events(store, before).await?;
    for logged in &dropped {
        tracing::warn!(
            event = %serde_json::to_string(&logged.event).unwrap_or_default(),
            "dropped a divergent event: the coordinator's history replaced it"
        );
    }
    tracing::info!(
        clock,
        dropped = dropped.len(),
        bytes,
        "installed a full snapshot"
    );
    Ok(clock)
}
