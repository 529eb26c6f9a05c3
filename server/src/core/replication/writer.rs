//! The coordinator's writer, decided: whether a batch of writes may be made now, the epoch's
//! opening event in strict mode, and what to do when the store failed to apply events that
//! were already sent to replicas.

use crate::core::{Clock, Epoch, Role, View};

/// What the writer knows between batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterState {
    /// Strict mode: every epoch this node coordinates begins with an opening event.
    pub strict: bool,
    /// The last epoch opened here and its opening's clock.
    pub opened: Opened,
    /// An epoch in which this node sent events it then could not apply: it makes no more in
    /// it (see [`recovery`]).
    pub stuck: Option<Epoch>,
}

/// An epoch's opening event, applied here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opened {
    /// Its epoch.
    pub epoch: Epoch,
    /// Its clock.
    pub clock: Clock,
}

/// Why writes are refused while the coordinator's epoch is not opened.
pub const NOT_OPENED: &str = "this coordinator could not open its epoch yet; retry";

/// What to do with the writes waiting now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// Make and apply them.
    Write,
    /// Apply the epoch's opening event first (strict mode), then ask again.
    Open {
        /// The epoch to open.
        epoch: Epoch,
    },
    /// Answer them `unavailable`, for this reason.
    Refuse(&'static str),
}

impl WriterState {
    /// A writer for a node in strict mode or not.
    pub fn new(strict: bool) -> WriterState {
        WriterState {
            strict,
            ..WriterState::default()
        }
    }

    /// What to do with a batch of writes in `view`; `tried_opening`: the opening of this epoch
    /// was just tried and failed.
    pub fn batch(&self, view: &View, tried_opening: bool) -> Batch {
        if view.role != Role::Coordinator {
            return Batch::Refuse("this node stopped being the coordinator; retry");
        }
        if self.stuck == Some(view.epoch) {
            return Batch::Refuse(
                "this coordinator could not apply events it had sent; it makes no more in this \
                 epoch: retry after the next election",
            );
        }
        if let Some(epoch) = self.to_open(view) {
            if tried_opening {
                return Batch::Refuse(NOT_OPENED);
            }
            return Batch::Open { epoch };
        }
        Batch::Write
    }

    /// The epoch to open before anything else is written (strict mode, on a coordinator).
    pub fn to_open(&self, view: &View) -> Option<Epoch> {
        (self.strict && view.role == Role::Coordinator && self.opened.epoch != view.epoch)
            .then_some(view.epoch)
    }

    /// Notes that the opening event of `epoch` was applied at `clock`.
    pub fn opened(&mut self, epoch: Epoch, clock: Clock) {
        // (Its clock may be below an earlier opening's: a full sync may drop a divergent tail.)
        assert!(
            epoch > self.opened.epoch,
            "epochs opened here only go up (epoch {epoch} at {clock} after {:?})",
            self.opened
        );
        self.opened = Opened { epoch, clock };
    }

    /// Notes that events of `epoch` were sent and could not be applied here.
    pub fn stuck_in(&mut self, epoch: Epoch) {
        self.stuck = Some(epoch);
    }
}

/// What to do when this node's store may hold fewer events than the `last` this node made:
/// events it sent to the replicas and then failed to apply, or events it applied that its
/// Redis then lost (it came back from a crash without the writes its append-only file had not
/// yet written out: fsynced once a second, and the write itself waits while a slow disk syncs).
/// Replicas may hold those events and clients may have been told they succeeded, so this
/// node must hold them again before it makes anything else, or it would give their clocks to
/// other events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The store holds `last` (the write ran and only its answer was lost): check it is ours.
    Check,
    /// The store stopped before `last`: apply the events after its clock again, from memory.
    Reapply,
    /// The events the store lacks left memory (or `last` did, to check it): give up.
    Lost,
}

/// Decides [`Recovery`] from the store's clock now and the oldest event still in memory (none:
/// memory holds nothing up to `last`).
pub fn recovery(stored: Clock, last: Clock, oldest_in_memory: Option<Clock>) -> Recovery {
    let Some(oldest) = oldest_in_memory.filter(|oldest| *oldest <= last) else {
        return Recovery::Lost;
    };
    if stored >= last {
        Recovery::Check
    } else if oldest <= stored + 1 {
        Recovery::Reapply
    } else {
        Recovery::Lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::NodeRef;

    fn view(role: Role, epoch: Epoch) -> View {
        let me = NodeRef {
            node_id: uuid::Uuid::from_u128(1),
            rank: Some(1),
            addr: "127.0.0.1:7001".parse().unwrap(),
        };
        View {
            me,
            role,
            epoch,
            clock: 0,
            coordinator: Some(me),
            hears_coordinator: true,
            members: Vec::new(),
            elections_started: 0,
            failed_rounds: 0,
            last_failure: None,
            rtt_ms: 1,
            missing: 0,
            settled: true,
        }
    }

    #[test]
    fn strict_writers_open_each_epoch_first_and_stuck_epochs_refuse() {
        let mut w = WriterState::new(true);
        assert_eq!(
            w.batch(&view(Role::Coordinator, 2), false),
            Batch::Open { epoch: 2 }
        );
        assert!(matches!(
            w.batch(&view(Role::Coordinator, 2), true),
            Batch::Refuse(_)
        ));
        w.opened(2, 5);
        assert_eq!(w.batch(&view(Role::Coordinator, 2), false), Batch::Write);
        assert!(matches!(
            w.batch(&view(Role::Follower, 2), false),
            Batch::Refuse(_)
        ));
        w.stuck_in(2);
        assert!(matches!(
            w.batch(&view(Role::Coordinator, 2), false),
            Batch::Refuse(_)
        ));
        assert_eq!(
            w.batch(&view(Role::Coordinator, 3), false),
            Batch::Open { epoch: 3 }
        );
        assert_eq!(
            WriterState::new(false).batch(&view(Role::Coordinator, 3), false),
            Batch::Write
        );
    }

    #[test]
    #[should_panic(expected = "epochs opened here only go up")]
    fn an_epoch_opened_twice_is_a_bug() {
        let mut w = WriterState::new(true);
        w.opened(2, 5);
        w.opened(2, 6);
    }

    #[test]
    fn recovery_follows_the_store() {
        // The write ran and only its answer was lost.
        assert_eq!(recovery(9, 9, Some(8)), Recovery::Check);
        // The store stopped right before the events sent.
        assert_eq!(recovery(7, 9, Some(8)), Recovery::Reapply);
        // The store came back without events it had applied: still in memory, made again.
        assert_eq!(recovery(5, 9, Some(1)), Recovery::Reapply);
        assert_eq!(recovery(5, 9, Some(6)), Recovery::Reapply);
        // Some of what the store lacks left memory.
        assert_eq!(recovery(5, 9, Some(7)), Recovery::Lost);
        assert_eq!(recovery(7, 9, None), Recovery::Lost);
        assert_eq!(recovery(9, 9, Some(10)), Recovery::Lost);
    }
}
