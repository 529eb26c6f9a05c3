//! A replica's side: whether to take a batch of events from a coordinator. Events are applied
//! strictly in clock order, and only after checking that the histories agree up to them; a
//! gap or a divergence is reported, never guessed around.

use crate::core::{Clock, Epoch};
use crate::limits::EPOCH_MAX;

/// What replication needs to know of an event.
pub trait Entry {
    /// Its place in the history.
    fn clock(&self) -> Clock;
    /// The epoch of the coordinator that made it.
    fn epoch(&self) -> Epoch;
    /// Whether it is the same event as `other` (same place, same write).
    fn same_as(&self, other: &Self) -> bool;
}

/// How a request's epoch compares with the replica's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochCheck {
    /// From a coordinator of an older epoch: refused.
    Stale,
    /// From the coordinator of the replica's epoch.
    Current,
    /// From a coordinator of a later epoch: taken, and news to the cluster core.
    Newer,
    /// Beyond [`EPOCH_MAX`]: malformed or forged, refused.
    OutOfRange,
}

/// Compares a request's `epoch` with the replica's own.
pub fn check_epoch(ours: Epoch, theirs: Epoch) -> EpochCheck {
    if theirs > EPOCH_MAX {
        return EpochCheck::OutOfRange;
    }
    match theirs.cmp(&ours) {
        std::cmp::Ordering::Less => EpochCheck::Stale,
        std::cmp::Ordering::Equal => EpochCheck::Current,
        std::cmp::Ordering::Greater => EpochCheck::Newer,
    }
}

/// The replica's decision on a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// The histories agree; apply the batch's events from this index on (their clocks follow
    /// the applied clock one by one). An index past the end: nothing new, the replica holds all.
    Apply {
        /// Index of the first new event in the batch.
        from: usize,
    },
    /// The batch does not follow what the replica holds: it lacks events before it.
    Gap,
    /// The replica holds another event at this clock: its history diverged.
    Diverged {
        /// The clock where the histories differ.
        at: Clock,
    },
}

/// The clocks at which the replica must read its own events before [`accept`] can decide:
/// `prev` and the batch's events it already holds.
pub fn clocks_to_compare<E: Entry>(applied: Clock, prev: Option<&E>, events: &[E]) -> Vec<Clock> {
    prev.into_iter()
        .chain(events)
        .map(Entry::clock)
        .filter(|clock| *clock <= applied)
        .collect()
}

/// Decides on a batch: `events` follow `prev` (the coordinator's event just before them, `None`
/// from the start of history), and the replica has applied up to `applied`; `holds(e)` says
/// whether the replica applied the same event at `e`'s clock (asked only for the clocks
/// [`clocks_to_compare`] names).
pub fn accept<E: Entry>(
    applied: Clock,
    prev: Option<&E>,
    events: &[E],
    holds: impl Fn(&E) -> bool,
) -> Acceptance {
    if let Some(prev) = prev {
        if applied < prev.clock() {
            return Acceptance::Gap;
        }
        if !holds(prev) {
            return Acceptance::Diverged { at: prev.clock() };
        }
    }
    if let Some(e) = events
        .iter()
        .filter(|e| e.clock() <= applied)
        .find(|e| !holds(e))
    {
        return Acceptance::Diverged { at: e.clock() };
    }
    let from = events
        .iter()
        .position(|e| e.clock() > applied)
        .unwrap_or(events.len());
    // The new events must continue the applied clock one by one.
    let consecutive = events[from..]
        .iter()
        .zip(applied + 1..)
        .all(|(e, expected)| e.clock() == expected);
    if !consecutive {
        return Acceptance::Gap;
    }
    Acceptance::Apply { from }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// (clock, epoch, write id).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Ev(pub u64, pub u64, pub u64);

    impl Entry for Ev {
        fn clock(&self) -> Clock {
            self.0
        }
        fn epoch(&self) -> Epoch {
            self.1
        }
        fn same_as(&self, other: &Self) -> bool {
            self == other
        }
    }

    fn decide(log: &[Ev], prev: Option<Ev>, events: &[Ev]) -> Acceptance {
        let holds = |e: &Ev| log.get(e.0 as usize - 1).is_some_and(|own| own.same_as(e));
        accept(log.len() as u64, prev.as_ref(), events, holds)
    }

    #[test]
    fn a_batch_that_follows_applies_its_new_events_only() {
        let log = [Ev(1, 1, 10), Ev(2, 1, 11)];
        let batch = [Ev(2, 1, 11), Ev(3, 1, 12)];
        assert_eq!(
            decide(&log, Some(Ev(1, 1, 10)), &batch),
            Acceptance::Apply { from: 1 }
        );
        assert_eq!(
            decide(&log, Some(Ev(2, 1, 11)), &[]),
            Acceptance::Apply { from: 0 }
        );
        assert_eq!(
            clocks_to_compare(2, Some(&Ev(1, 1, 10)), &batch),
            vec![1, 2]
        );
    }

    #[test]
    fn gaps_and_divergence_are_reported() {
        let log = [Ev(1, 1, 10), Ev(2, 1, 11)];
        assert_eq!(
            decide(&log, Some(Ev(3, 2, 20)), &[Ev(4, 2, 21)]),
            Acceptance::Gap
        );
        assert_eq!(
            decide(&log, Some(Ev(2, 2, 20)), &[Ev(3, 2, 21)]),
            Acceptance::Diverged { at: 2 }
        );
        assert_eq!(
            decide(&log, None, &[Ev(1, 1, 10), Ev(2, 2, 20)]),
            Acceptance::Diverged { at: 2 }
        );
        // New events must continue the clock one by one.
        assert_eq!(
            decide(&log, Some(Ev(2, 1, 11)), &[Ev(4, 1, 13)]),
            Acceptance::Gap
        );
        assert_eq!(
            decide(&log, Some(Ev(2, 1, 11)), &[Ev(3, 1, 12), Ev(5, 1, 13)]),
            Acceptance::Gap
        );
    }

    #[test]
    fn epochs_compare() {
        assert_eq!(check_epoch(5, 4), EpochCheck::Stale);
        assert_eq!(check_epoch(5, 5), EpochCheck::Current);
        assert_eq!(check_epoch(5, 6), EpochCheck::Newer);
        assert_eq!(check_epoch(5, u64::MAX), EpochCheck::OutOfRange);
    }
}
