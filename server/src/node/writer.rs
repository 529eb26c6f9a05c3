//! The coordinator's writer, the I/O shell of [`WriterState`]: gives new events their clocks
//! and applies them, many per Redis round trip (group commit), in the order they arrived.
//! Refused writes consume no clock. In strict mode it also opens each epoch this node
//! coordinates with an event of that epoch ([`Change::Open`]) before any write.

use crate::core::replication::{recovery, Batch, Opened, Recovery, WriterState, NOT_OPENED};
use crate::core::{Input, Role};
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Change, Event};
use crate::limits::{ACK_TIMEOUT_MS, WRITES_QUEUED_MAX, WRITE_BATCH_MAX};
use crate::node::shared::Shared;
use crate::store::Applied;
use crate::time::now_ms;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

struct Job {
    request_id: Uuid,
    change: Change,
    /// The request id was never sent before (see [`crate::wire::Envelope::fresh`]).
    fresh: bool,
    reply: oneshot::Sender<Result<Applied>>,
}

/// Pause before trying again to open an epoch after the store failed.
const OPEN_RETRY_MS: u64 = 50;

/// Queue into the writer task.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    /// Held (read) by the writer task while it decides and applies a batch; held (write) by
    /// a step-down, so that nothing more is decided while it hands over.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// The last epoch this node opened (strict mode): its number and its opening's clock.
    opened: watch::Receiver<Opened>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("request_id", &self.request_id)
            .finish()
    }
}

impl Writer {
    /// Starts the writer task.
    pub fn start(shared: Arc<Shared>) -> Writer {
        let (jobs, rx) = mpsc::channel(WRITES_QUEUED_MAX);
        let (opened_tx, opened) = watch::channel(Opened::default());
        let gate = Arc::new(tokio::sync::RwLock::new(()));
        tokio::spawn(run(shared, rx, opened_tx, gate.clone()));
        Writer { jobs, gate, opened }
    }

    /// Holds every new write until the guard is dropped (once the batch being written, if
    /// any, is done): nothing is decided meanwhile. Writes wait, then meet whatever role the
    /// node has by then (a node that handed over refuses them as not coordinating).
    pub async fn hold(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.gate.clone().write_owned().await
    }

    /// Waits until this node has applied the opening event of `epoch` (strict mode); returns
    /// its clock. Fails as `unavailable` if that takes longer than an acknowledgement may, or
    /// the node stops coordinating in `epoch` meanwhile.
    pub async fn opened(&self, shared: &Shared, epoch: u64) -> Result<u64> {
        let mut opened = self.opened.clone();
        let deadline = tokio::time::sleep(Duration::from_millis(ACK_TIMEOUT_MS));
        tokio::pin!(deadline);
        loop {
            let now = *opened.borrow_and_update();
            if now.epoch == epoch {
                return Ok(now.clock);
            }
            let view = shared.membership.state().view;
            if now.epoch > epoch || view.role != Role::Coordinator || view.epoch != epoch {
                return Err(Error::refused(
                    ErrorCode::Unavailable,
                    format!("this node stopped coordinating (epoch {epoch}); retry"),
                ));
            }
            tokio::select! {
                changed = opened.changed() => {
                    if changed.is_err() {
                        return Err(Error::refused(ErrorCode::Unavailable, "the writer stopped"));
                    }
                }
                // The role is looked at again now and then.
                () = tokio::time::sleep(Duration::from_millis(OPEN_RETRY_MS)) => {}
                () = &mut deadline => {
                    return Err(Error::refused(
                        ErrorCode::Unavailable,
                        format!("epoch {epoch} is not opened yet (its first event did not apply); retry"),
                    ));
                }
            }
        }
    }

    /// Applies `change` as a new event (on the coordinator only); `fresh`: its request id was
    /// never sent before, so no earlier result is looked for.
    pub async fn write(&self, request_id: Uuid, change: Change, fresh: bool) -> Result<Applied> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request_id,
            change,
            fresh,
            reply,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| Error::refused(ErrorCode::Unavailable, "the writer stopped"))?;
        answer
            .await
            .map_err(|_| Error::refused(ErrorCode::Unavailable, "the writer stopped"))?
    }
}

async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Job>,
    opened: watch::Sender<Opened>,
    gate: Arc<tokio::sync::RwLock<()>>,
) {
    let strict = shared.replication.strict_cluster_size.is_some();
    let mut state = WriterState::new(strict);
    let mut states = shared.membership.watch();
    let mut jobs = Vec::with_capacity(WRITE_BATCH_MAX);
    loop {
        let open_failed = {
            let _open = gate.read().await;
            let view = shared.membership.state().view;
            state.to_open(&view).is_some() && !open_epoch(&shared, &view, &mut state, &opened).await
        };
        tokio::select! {
            taken = rx.recv_many(&mut jobs, WRITE_BATCH_MAX) => {
                if taken == 0 {
                    return;
                }
            }
            changed = states.changed(), if strict => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            () = tokio::time::sleep(Duration::from_millis(OPEN_RETRY_MS)), if open_failed => continue,
        }
        // Requests being read right now join this batch: a larger batch costs less per write.
        tokio::task::yield_now().await;
        while jobs.len() < WRITE_BATCH_MAX {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let _open = gate.read().await;
        let view = shared.membership.state().view;
        let mut batch = state.batch(&view, false);
        if let Batch::Open { .. } = batch {
            let opened_now = open_epoch(&shared, &view, &mut state, &opened).await;
            batch = state.batch(&view, !opened_now);
        }
        match batch {
            Batch::Write => {
                if !write_batch(&shared, &view, &mut jobs).await {
                    state.stuck_in(view.epoch);
                    resign(&shared, view.epoch).await;
                }
            }
            Batch::Refuse(why) => refuse(&mut jobs, why),
            // (Not after an opening was tried: then `batch` says write or refuse.)
            Batch::Open { .. } => refuse(&mut jobs, NOT_OPENED),
        }
    }
}

/// An event this node makes as coordinator in `view` (its clock is given when it is applied).
fn new_event(view: &crate::core::View, request_id: Uuid, at_ms: u64, change: Change) -> Event {
    Event {
        clock: 0,
        epoch: view.epoch,
        origin_rank: view.me.rank.unwrap_or(0),
        request_id,
        at_ms,
        change,
    }
}

/// Answers every job `unavailable`.
fn refuse(jobs: &mut Vec<Job>, why: &str) {
    for job in jobs.drain(..) {
        let _ = job
            .reply
            .send(Err(Error::refused(ErrorCode::Unavailable, why)));
    }
}

/// An event's outcome as decided, kept to answer its job if the write must be recovered.
type Decided = std::result::Result<Applied, (ErrorCode, String)>;

/// Makes the jobs' events and applies them, sending them to the replicas as soon as they are
/// decided (while this node's Redis writes them); answers every job. Returns false if events
/// were sent that this node could then not apply (see [`recover`]).
async fn write_batch(shared: &Shared, view: &crate::core::View, jobs: &mut Vec<Job>) -> bool {
    let at_ms = now_ms();
    let events: Vec<Event> = jobs
        .iter()
        .map(|job| new_event(view, job.request_id, at_ms, job.change.clone()))
        .collect();
    let fresh: Vec<bool> = jobs.iter().map(|job| job.fresh).collect();
    // (first clock, last clock, every outcome) of the events sent.
    let mut sent: Option<(u64, u64, Vec<Decided>)> = None;
    let publish = |outcomes: &[Result<Applied>]| {
        let decided: Vec<Event> = events
            .iter()
            .zip(outcomes)
            .filter_map(|(event, outcome)| match outcome {
                Ok(Applied::Done(_, clock)) => Some(Event {
                    clock: *clock,
                    ..event.clone()
                }),
                _ => None,
            })
            .collect();
        if let (Some(first), Some(last)) = (decided.first(), decided.last()) {
            let (first, last) = (first.clock, last.clock);
            shared.recent.push(decided);
            shared.decide(last);
            let kept = outcomes
                .iter()
                .map(|o| match o {
                    Ok(applied) => Ok(*applied),
                    Err(e) => Err((e.code(), e.to_string())),
                })
                .collect();
            sent = Some((first, last, kept));
        }
    };
    let applied = shared
        .store
        .apply_new_publishing(&events, &fresh, shared.applied(), publish)
        .await;
    let (results, recovered) = match (applied, sent) {
        (Ok(results), _) => (Ok(results), true),
        (Err(err), Some((first, last, outcomes))) => {
            tracing::error!(error = %err, first, last, "failed to apply writes already sent to replicas");
            if recover(shared, view.epoch, last).await {
                let results = outcomes
                    .into_iter()
                    .map(|o| o.map_err(|(code, message)| Error::refused(code, message)))
                    .collect();
                (Ok(results), true)
            } else {
                // Never sent again: the events are not this node's history.
                shared.recent.clear();
                shared.undecide();
                let lost = Error::refused(
                    ErrorCode::Unavailable,
                    "this coordinator failed to store the write; retry with the same request id \
                     to learn its outcome",
                );
                (Err(lost), false)
            }
        }
        (Err(Error::StoreBehind { stored, applied }), None) => {
            tracing::error!(
                stored,
                applied,
                "this node's Redis came back without events it had applied; applying them again"
            );
            let restored = recover(shared, view.epoch, applied).await;
            (Err(Error::StoreBehind { stored, applied }), restored)
        }
        (Err(err), None) => {
            tracing::error!(error = %err, "failed to apply writes");
            (Err(err), true)
        }
    };
    match results {
        Ok(results) => {
            let last = results
                .iter()
                .filter_map(|r| match r {
                    Ok(Applied::Done(_, clock)) => Some(*clock),
                    _ => None,
                })
                .max();
            if let Some(clock) = last {
                shared.advance(clock, view.epoch);
            }
            for (job, result) in jobs.drain(..).zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(err) => {
            let code = err.code();
            for job in jobs.drain(..) {
                let _ = job.reply.send(Err(Error::refused(code, err.to_string())));
            }
        }
    }
    recovered
}

/// Makes this node's store hold every event up to `last` again (see [`Recovery`]): events
/// that went to the replicas before this node's Redis failed to write them, or events it had
/// applied and its Redis lost. The node must hold them before it makes anything else, or it
/// would give their clocks to other events while replicas hold (and acknowledged) the first
/// ones. Tries until the events are applied (or turn out to be: the write may have run and
/// only its answer been lost) or the node stops coordinating in `epoch`; returns whether they
/// are applied here. (They cannot be if they left this node's memory.)
async fn recover(shared: &Shared, epoch: u64, last: u64) -> bool {
    loop {
        let view = shared.membership.state().view;
        if view.role != Role::Coordinator || view.epoch != epoch {
            return false;
        }
        match shared.store.clock().await {
            Ok(stored) => match recovery(stored, last, shared.recent.oldest()) {
                Recovery::Check => {
                    let ours = shared.recent.get(last);
                    let ran = shared.store.event_at(last).await;
                    return ran.is_ok_and(|e| {
                        e.is_some_and(|e| ours.is_some_and(|ours| e.event.same_as(&ours)))
                    });
                }
                Recovery::Reapply => {
                    let missing = last - stored;
                    let lacking = shared.recent.from(stored + 1, missing as usize);
                    let Some(lacking) = lacking.filter(|l| l.len() as u64 == missing) else {
                        tracing::error!(stored, last, "the events the store lacks left memory");
                        return false;
                    };
                    match shared.store.apply_replicated(&lacking).await {
                        Ok(_) => {
                            tracing::warn!(
                                first = stored + 1,
                                last,
                                "applied again the events the store lacked"
                            );
                            return true;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the events the store lacks still fail")
                        }
                    }
                }
                Recovery::Lost => {
                    tracing::error!(
                        stored,
                        last,
                        oldest_in_memory = shared.recent.oldest(),
                        "the store lacks events that left memory: cannot make them again"
                    );
                    return false;
                }
            },
            Err(e) => tracing::warn!(error = %e, "the store does not answer yet"),
        }
        tokio::time::sleep(Duration::from_millis(OPEN_RETRY_MS)).await;
    }
}

/// This coordinator cannot hold events the replicas may hold (see [`recover`]): it makes no
/// more events in `epoch` and stops coordinating, its applied clock following its store's, so
/// that it does not win the next election over the nodes that hold them; it catches up from
/// the successor as a follower.
async fn resign(shared: &Shared, epoch: u64) {
    tracing::error!(
        epoch,
        "stepping down: this node's store lacks events the replicas may hold"
    );
    shared.recent.clear();
    if let Ok(clock) = shared.store.clock().await {
        let last_epoch = shared.store.last_epoch(clock).await;
        shared.reset_applied(clock, last_epoch);
    }
    shared.membership.notify(Input::Resign { epoch });
}

/// In strict mode, applies the opening event of the epoch this node coordinates in `view`
/// (see [`Change::Open`]); returns false if the store failed (tried again later).
async fn open_epoch(
    shared: &Shared,
    view: &crate::core::View,
    state: &mut WriterState,
    opened: &watch::Sender<Opened>,
) -> bool {
    let mut event = new_event(view, Uuid::new_v4(), now_ms(), Change::Open);
    match shared
        .store
        .apply_new_publishing(
            std::slice::from_ref(&event),
            &[true],
            shared.applied(),
            |_| {},
        )
        .await
    {
        Ok(results) => match results.into_iter().next() {
            Some(Ok(Applied::Done(_, clock))) => {
                event.clock = clock;
                shared.recent.push([event]);
                shared.advance(clock, view.epoch);
                state.opened(view.epoch, clock);
                opened.send_replace(state.opened);
                tracing::info!(epoch = view.epoch, clock, "opened the epoch");
                true
            }
            other => {
                tracing::error!(outcome = ?other, "an epoch's opening was not applied");
                false
            }
        },
        Err(Error::StoreBehind { stored, applied }) => {
            tracing::error!(
                stored,
                applied,
                "this node's Redis came back without events it had applied; applying them again"
            );
            if !recover(shared, view.epoch, applied).await {
                state.stuck_in(view.epoch);
                resign(shared, view.epoch).await;
            }
            false
        }
        Err(err) => {
            tracing::warn!(error = %err, epoch = view.epoch, "failed to open the epoch; retrying");
            false
        }
    }
}
