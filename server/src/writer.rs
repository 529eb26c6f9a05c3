//! The coordinator's writer: gives new events their clocks and applies them, many per Redis
//! round trip (group commit), in the order they arrived. Refused writes consume no clock. In
//! strict mode it also opens each epoch this node coordinates with an event of that epoch
//! ([`Change::Open`]) before any write.

use crate::core::Role;
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Change, Event};
use crate::limits::{ACK_TIMEOUT_MS, WRITES_QUEUED_MAX, WRITE_BATCH_MAX};
use crate::service::now_ms;
use crate::shared::Shared;
use crate::store::Applied;
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
    /// The last epoch this node opened (strict mode): its number and its opening's clock.
    opened: watch::Receiver<Opened>,
}

/// An epoch's opening event, applied here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Opened {
    epoch: u64,
    clock: u64,
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
        tokio::spawn(run(shared, rx, opened_tx));
        Writer { jobs, opened }
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

async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Job>, opened: watch::Sender<Opened>) {
    let strict = shared.replication.strict_cluster_size.is_some();
    let mut states = shared.membership.watch();
    let mut jobs = Vec::with_capacity(WRITE_BATCH_MAX);
    loop {
        let open_failed = strict && !open_epoch(&shared, &opened).await;
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
        let view = shared.membership.state().view;
        if view.role != Role::Coordinator {
            for job in jobs.drain(..) {
                let _ = job.reply.send(Err(Error::refused(
                    ErrorCode::Unavailable,
                    "this node stopped being the coordinator; retry",
                )));
            }
            continue;
        }
        if strict && opened.borrow().epoch != view.epoch && !open_epoch(&shared, &opened).await {
            for job in jobs.drain(..) {
                let _ = job.reply.send(Err(Error::refused(
                    ErrorCode::Unavailable,
                    "this coordinator could not open its epoch yet; retry",
                )));
            }
            continue;
        }
        let at_ms = now_ms();
        let events: Vec<Event> = jobs
            .iter()
            .map(|job| Event {
                clock: 0,
                epoch: view.epoch,
                origin_rank: view.me.rank.unwrap_or(0),
                request_id: job.request_id,
                at_ms,
                change: job.change.clone(),
            })
            .collect();
        let fresh: Vec<bool> = jobs.iter().map(|job| job.fresh).collect();
        match shared.store.apply_new(&events, &fresh).await {
            Ok(results) => {
                let last = results
                    .iter()
                    .filter_map(|r| match r {
                        Ok(Applied::Done(_, clock)) => Some(*clock),
                        _ => None,
                    })
                    .max();
                let applied = events
                    .into_iter()
                    .zip(&results)
                    .filter_map(|(mut event, result)| match result {
                        Ok(Applied::Done(_, clock)) => {
                            event.clock = *clock;
                            Some(event)
                        }
                        _ => None,
                    });
                // The applied clock first: replication links never send past it.
                if let Some(clock) = last {
                    shared.advance(clock, view.epoch);
                }
                shared.recent.push(applied);
                for (job, result) in jobs.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "failed to apply writes");
                let code = err.code();
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(Error::refused(code, err.to_string())));
                }
            }
        }
    }
}

/// In strict mode, applies the opening event of the epoch this node coordinates in, unless it
/// did already (see [`Change::Open`]); returns false if the store failed (tried again later).
async fn open_epoch(shared: &Shared, opened: &watch::Sender<Opened>) -> bool {
    let view = shared.membership.state().view;
    if view.role != Role::Coordinator || opened.borrow().epoch == view.epoch {
        return true;
    }
    let mut event = Event {
        clock: 0,
        epoch: view.epoch,
        origin_rank: view.me.rank.unwrap_or(0),
        request_id: Uuid::new_v4(),
        at_ms: now_ms(),
        change: Change::Open,
    };
    match shared
        .store
        .apply_new(std::slice::from_ref(&event), &[true])
        .await
    {
        Ok(results) => match results.into_iter().next() {
            Some(Ok(Applied::Done(_, clock))) => {
                event.clock = clock;
                shared.advance(clock, view.epoch);
                shared.recent.push([event]);
                opened.send_replace(Opened {
                    epoch: view.epoch,
                    clock,
                });
                tracing::info!(epoch = view.epoch, clock, "opened the epoch");
                true
            }
            other => {
                tracing::error!(outcome = ?other, "an epoch's opening was not applied");
                false
            }
        },
        Err(err) => {
            tracing::warn!(error = %err, epoch = view.epoch, "failed to open the epoch; retrying");
            false
        }
    }
}
