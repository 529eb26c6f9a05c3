//! The coordinator's writer: gives new events their clocks and applies them, many per Redis
//! round trip (group commit), in the order they arrived. Refused writes consume no clock.

use crate::core::Role;
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Change, Event};
use crate::limits::{WRITES_QUEUED_MAX, WRITE_BATCH_MAX};
use crate::service::now_ms;
use crate::shared::Shared;
use crate::store::Applied;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

struct Job {
    request_id: Uuid,
    change: Change,
    /// The request id was never sent before (see [`crate::wire::Envelope::fresh`]).
    fresh: bool,
    reply: oneshot::Sender<Result<Applied>>,
}

/// Queue into the writer task.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
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
        tokio::spawn(run(shared, rx));
        Writer { jobs }
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

async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(WRITE_BATCH_MAX);
    while rx.recv_many(&mut jobs, WRITE_BATCH_MAX).await > 0 {
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
