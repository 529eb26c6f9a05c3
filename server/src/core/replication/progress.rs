//! The coordinator's side, per replica: what to send it next (a probe, events, or a full
//! snapshot), how many batches may be unanswered, and what each answer proves. The link task
//! only moves the requests and answers this decides; it keeps the timers (probe when idle,
//! give up on a silent replica) and calls [`Progress::idle`] or [`Progress::reset`].

use crate::core::{Clock, Epoch};
use crate::limits::{FULL_SYNC_LAG_EVENTS, REPLICATE_BATCH_MAX, REPLICATE_IN_FLIGHT_MAX};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How a replica took a `Replicate` or `Snapshot` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaStatus {
    /// Applied (or nothing to apply).
    Ok,
    /// The replica lacks events before these: send from `applied + 1`.
    Gap,
    /// The replica's history differs from this clock on: it needs a full sync.
    Diverged {
        /// First clock at which the histories differ.
        at: u64,
    },
    /// A snapshot piece was stored; send the next.
    ChunkStored,
}

/// The bounds a link works within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLimits {
    /// Events per batch.
    pub batch_max: usize,
    /// Batches sent and not answered yet.
    pub in_flight_max: usize,
    /// A replica further behind than this gets a snapshot instead of events.
    pub full_sync_lag: u64,
}

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits {
            batch_max: REPLICATE_BATCH_MAX,
            in_flight_max: REPLICATE_IN_FLIGHT_MAX,
            full_sync_lag: FULL_SYNC_LAG_EVENTS,
        }
    }
}

/// What to send the replica now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Ask where it is: an empty batch after this node's event at `prev` (0: none), so that the
    /// answer proves how much of this node's history the replica holds (its clock alone does
    /// not: its events there may be another epoch's).
    Probe {
        /// The clock of the event the probe carries.
        prev: Clock,
    },
    /// The events `from..=to`, after the event at `from - 1`.
    Events {
        /// First clock.
        from: Clock,
        /// Last clock.
        to: Clock,
    },
    /// A full snapshot of this node's store.
    Snapshot,
    /// Nothing now: wait for an answer, a newly decided event, or the probe timer.
    Wait,
}

/// A request sent and not answered yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    seq: u64,
    /// What an `Ok` answer proves the replica holds (None: its answer no longer matters).
    proves: Option<Clock>,
    /// Whether it was a probe (its answer decides where to stream from).
    probe: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Probe,
    Stream { from: Clock },
    Snapshot,
    SnapshotSent,
}

/// One replica's progress, as its coordinator in one epoch sees it.
#[derive(Debug, Clone)]
pub struct Progress {
    epoch: Epoch,
    limits: LinkLimits,
    mode: Mode,
    in_flight: VecDeque<Pending>,
    /// A snapshot was installed and the replica has not caught up since: it catches up by
    /// events however far the writes made meanwhile put it behind (another snapshot would only
    /// fall behind again under a steady write load).
    synced_since_caught_up: bool,
}

/// An answer that does not fit the requests sent (a confused or hostile peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnexpectedAnswer {
    /// The sequence number answered.
    pub seq: u64,
    /// The one expected (0: none was due).
    pub expected: u64,
}

impl std::fmt::Display for UnexpectedAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replica answered request {}, expected {}",
            self.seq, self.expected
        )
    }
}

impl Progress {
    /// A link of this node's coordination in `epoch`, starting with a probe.
    pub fn new(epoch: Epoch, limits: LinkLimits) -> Progress {
        Progress {
            epoch,
            limits,
            mode: Mode::Probe,
            in_flight: VecDeque::new(),
            synced_since_caught_up: false,
        }
    }

    /// The epoch every request of this link carries.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Requests sent and not answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether another request may be sent before an answer arrives.
    pub fn has_room(&self) -> bool {
        self.in_flight.len() < self.limits.in_flight_max
    }

    /// What to send next, with events up to `decided` decided here. Answers still due to a
    /// request whose answer no longer matters are awaited first (a stream that fell out of
    /// step, a snapshot to come).
    pub fn next(&mut self, decided: Clock) -> Next {
        let draining = self.in_flight.iter().any(|p| p.proves.is_none());
        if draining || !self.has_room() {
            return Next::Wait;
        }
        match self.mode {
            Mode::SnapshotSent => Next::Wait,
            Mode::Snapshot if self.in_flight.is_empty() => {
                self.mode = Mode::SnapshotSent;
                Next::Snapshot
            }
            Mode::Snapshot => Next::Wait,
            Mode::Probe if self.in_flight.is_empty() => Next::Probe { prev: decided },
            Mode::Probe => Next::Wait,
            Mode::Stream { from } => {
                let too_far = !self.synced_since_caught_up
                    && (decided + 1).saturating_sub(from) > self.limits.full_sync_lag;
                if from > decided + 1 || too_far {
                    // The replica holds events this coordinator never made, or is too far
                    // behind for events.
                    self.need_snapshot();
                    return self.next(decided);
                }
                if from > decided {
                    self.synced_since_caught_up = false;
                    return Next::Wait;
                }
                let to = decided.min(from + self.limits.batch_max as u64 - 1);
                Next::Events { from, to }
            }
        }
    }

    /// Records that `send` (a probe or events, as [`Progress::next`] gave it) went out as
    /// request `seq`.
    pub fn sent(&mut self, seq: u64, send: Next) {
        assert!(
            self.in_flight.back().is_none_or(|p| p.seq < seq),
            "requests are numbered in order"
        );
        let pending = match send {
            Next::Probe { prev } => Pending {
                seq,
                proves: Some(prev),
                probe: true,
            },
            Next::Events { from, to } => {
                assert!(from <= to, "a batch holds events");
                self.mode = Mode::Stream { from: to + 1 };
                Pending {
                    seq,
                    proves: Some(to),
                    probe: false,
                }
            }
            Next::Snapshot | Next::Wait => return,
        };
        self.in_flight.push_back(pending);
    }

    /// This node's log cannot give the events [`Progress::next`] asked for (it no longer
    /// reaches back that far): the replica gets a snapshot.
    pub fn need_snapshot(&mut self) {
        self.mode = Mode::Snapshot;
        self.forget_in_flight();
    }

    /// The replica answered request `seq`: it has applied up to `applied`. Returns the clock up
    /// to which the answer proves it holds this node's history (an ack), if it does.
    pub fn answered(
        &mut self,
        seq: u64,
        applied: Clock,
        status: ReplicaStatus,
    ) -> Result<Option<Clock>, UnexpectedAnswer> {
        let Some(pending) = self.in_flight.pop_front() else {
            return Err(UnexpectedAnswer { seq, expected: 0 });
        };
        if pending.seq != seq {
            return Err(UnexpectedAnswer {
                seq,
                expected: pending.seq,
            });
        }
        let Some(proves) = pending.proves else {
            return Ok(None);
        };
        match status {
            ReplicaStatus::Ok => {
                if pending.probe {
                    self.mode = Mode::Stream {
                        from: applied.saturating_add(1),
                    };
                }
                Ok(Some(applied.min(proves)))
            }
            ReplicaStatus::Gap | ReplicaStatus::ChunkStored => {
                self.mode = Mode::Stream {
                    from: applied.saturating_add(1),
                };
                self.forget_in_flight();
                Ok(None)
            }
            ReplicaStatus::Diverged { .. } => {
                self.need_snapshot();
                Ok(None)
            }
        }
    }

    /// The replica answered the last piece of a snapshot. Returns the ack it gives.
    pub fn snapshot_answered(&mut self, applied: Clock, status: ReplicaStatus) -> Option<Clock> {
        self.synced_since_caught_up = true;
        match status {
            ReplicaStatus::Ok => {
                self.mode = Mode::Stream {
                    from: applied.saturating_add(1),
                };
                Some(applied)
            }
            ReplicaStatus::Gap | ReplicaStatus::ChunkStored => {
                self.mode = Mode::Stream {
                    from: applied.saturating_add(1),
                };
                None
            }
            ReplicaStatus::Diverged { .. } => {
                self.mode = Mode::Snapshot;
                None
            }
        }
    }

    /// Nothing was sent or answered for a while: ask where the replica is.
    pub fn idle(&mut self) {
        if self.in_flight.is_empty() {
            self.mode = Mode::Probe;
        }
    }

    /// The connection was lost (or a request failed): start again with a probe.
    pub fn reset(&mut self) {
        self.in_flight.clear();
        self.mode = Mode::Probe;
    }

    /// The answers still due no longer matter (they are read and dropped).
    fn forget_in_flight(&mut self) {
        for pending in &mut self.in_flight {
            pending.proves = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> LinkLimits {
        LinkLimits {
            batch_max: 2,
            in_flight_max: 2,
            full_sync_lag: 10,
        }
    }

    #[test]
    fn a_probe_then_a_pipelined_stream_then_acks() {
        let mut p = Progress::new(3, small());
        assert_eq!(p.next(5), Next::Probe { prev: 5 });
        p.sent(1, Next::Probe { prev: 5 });
        assert_eq!(p.next(5), Next::Wait);
        // It lacks the event at 5: it has applied up to 2.
        assert_eq!(p.answered(1, 2, ReplicaStatus::Gap), Ok(None));
        assert_eq!(p.next(5), Next::Events { from: 3, to: 4 });
        p.sent(2, Next::Events { from: 3, to: 4 });
        assert_eq!(p.next(5), Next::Events { from: 5, to: 5 });
        p.sent(3, Next::Events { from: 5, to: 5 });
        assert_eq!(
            p.next(6),
            Next::Wait,
            "two batches in flight fill the window"
        );
        assert_eq!(p.answered(2, 4, ReplicaStatus::Ok), Ok(Some(4)));
        assert_eq!(p.next(6), Next::Events { from: 6, to: 6 });
        assert_eq!(p.answered(3, 5, ReplicaStatus::Ok), Ok(Some(5)));
        assert_eq!(
            p.answered(9, 5, ReplicaStatus::Ok),
            Err(UnexpectedAnswer {
                seq: 9,
                expected: 0
            })
        );
    }

    #[test]
    fn divergence_drains_then_sends_a_snapshot_and_the_replica_catches_up_by_events() {
        let mut p = Progress::new(3, small());
        p.sent(1, Next::Probe { prev: 4 });
        assert_eq!(p.answered(1, 4, ReplicaStatus::Ok), Ok(Some(4)));
        assert_eq!(p.next(8), Next::Events { from: 5, to: 6 });
        p.sent(2, Next::Events { from: 5, to: 6 });
        p.sent(3, Next::Events { from: 7, to: 8 });
        assert_eq!(
            p.answered(2, 4, ReplicaStatus::Diverged { at: 5 }),
            Ok(None)
        );
        assert_eq!(p.next(8), Next::Wait, "the answer still due is read first");
        assert_eq!(
            p.answered(3, 8, ReplicaStatus::Ok),
            Ok(None),
            "it proves nothing now"
        );
        assert_eq!(p.next(8), Next::Snapshot);
        assert_eq!(p.next(8), Next::Wait);
        assert_eq!(p.snapshot_answered(8, ReplicaStatus::Ok), Some(8));
        // Far behind after the snapshot, it still catches up by events.
        assert_eq!(p.next(40), Next::Events { from: 9, to: 10 });
    }

    #[test]
    fn a_replica_ahead_or_too_far_behind_gets_a_snapshot() {
        let mut p = Progress::new(1, small());
        p.sent(1, Next::Probe { prev: 3 });
        assert_eq!(p.answered(1, 7, ReplicaStatus::Ok), Ok(Some(3)));
        assert_eq!(p.next(3), Next::Snapshot);
        let mut q = Progress::new(1, small());
        q.sent(1, Next::Probe { prev: 30 });
        assert_eq!(q.answered(1, 2, ReplicaStatus::Gap), Ok(None));
        assert_eq!(q.next(30), Next::Snapshot);
    }

    #[test]
    fn idle_links_probe_again_and_a_reset_forgets_what_was_in_flight() {
        let mut p = Progress::new(1, small());
        p.sent(1, Next::Probe { prev: 0 });
        assert_eq!(p.answered(1, 0, ReplicaStatus::Ok), Ok(Some(0)));
        assert_eq!(p.next(0), Next::Wait);
        p.idle();
        assert_eq!(p.next(0), Next::Probe { prev: 0 });
        p.sent(2, Next::Probe { prev: 0 });
        p.reset();
        assert_eq!(p.in_flight(), 0);
        assert_eq!(p.next(2), Next::Probe { prev: 2 });
    }
}
