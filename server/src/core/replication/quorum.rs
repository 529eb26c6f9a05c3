//! When a write may be answered: the coordinator counts, per replica, the clock up to which it
//! proved to hold this coordinator's history, and only acks given in the coordinator's current
//! epoch count.

use crate::core::{Clock, Epoch, NodeId, NodeRef, Role, View};
use std::collections::BTreeMap;

/// How writes are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Whitepaper mode: other nodes that must have applied an event before the client hears
    /// success (fewer if fewer members are known; none for a node alone).
    pub min_acks: usize,
    /// Strict mode's cluster size N: an event is acknowledged once a majority (N/2 + 1, the
    /// coordinator included) holds it. `None`: whitepaper mode.
    pub strict_cluster_size: Option<usize>,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            min_acks: 1,
            strict_cluster_size: None,
        }
    }
}

impl Replication {
    /// How many of the `others` members (and the `missing` ones, dropped for silence) must
    /// hold an event: in strict mode N/2 (with the coordinator, a majority); in whitepaper
    /// mode `min_acks`, or fewer if fewer members are known. Members that fell silent still
    /// count: silence is no evidence that this node is alone.
    pub fn needed(&self, others: usize, missing: usize) -> usize {
        match self.strict_cluster_size {
            Some(n) => n / 2,
            None => self.min_acks.min(others + missing),
        }
    }
}

/// Per replica, the epoch of this node's coordination it answered in and the clock up to which
/// it proved to hold this node's history. An ack speaks only for its epoch: in between, another
/// coordinator may have made the replica drop what it held.
#[derive(Debug, Default, Clone)]
pub struct Acks {
    acks: BTreeMap<NodeId, (Epoch, Clock)>,
}

/// What the acks allow, seen from one view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// The highest clock enough replicas hold: every write up to it may be answered
    /// (`u64::MAX` when none are needed; 0 while this node may not acknowledge at all).
    pub acked: Clock,
    /// The other members' clocks, highest first.
    pub clocks: Vec<Clock>,
    /// How many of them a write needs.
    pub needed: usize,
}

impl Quorum {
    /// How many replicas hold `clock`.
    pub fn holding(&self, clock: Clock) -> usize {
        self.clocks.iter().filter(|c| **c >= clock).count()
    }
}

impl Acks {
    /// Records that `node` holds this node's history up to `clock`, as answered to this node's
    /// coordination in `epoch` (acks never go down within an epoch: answers may arrive out of
    /// order across links).
    pub fn record(&mut self, node: NodeId, epoch: Epoch, clock: Clock) {
        let entry = self.acks.entry(node).or_insert((epoch, clock));
        if entry.0 != epoch || entry.1 < clock {
            *entry = (epoch, clock);
        }
    }

    /// Forgets replicas that are no longer members.
    pub fn retain(&mut self, member: impl Fn(&NodeId) -> bool) {
        self.acks.retain(|id, _| member(id));
    }

    /// The member of `view` other than `me` that acknowledged the most in `view`'s epoch (the
    /// lower rank among equals), with its ack: the one to hand over to. Members that have not
    /// answered in this epoch (perhaps dead) are not candidates.
    pub fn most_caught_up(&self, me: NodeId, view: &View) -> Option<(NodeRef, Clock)> {
        view.members
            .iter()
            .filter(|m| m.node.node_id != me)
            .filter_map(|m| match self.acks.get(&m.node.node_id) {
                Some((epoch, clock)) if *epoch == view.epoch => Some((m.node, *clock)),
                _ => None,
            })
            .max_by_key(|(node, clock)| (*clock, std::cmp::Reverse(node.rank)))
    }

    /// What the acks allow node `me` to answer in `view`. Nothing unless `me` is a settled
    /// coordinator (see [`View::settled`]): of two coordinators elected together, only the one
    /// that stays acknowledges. Acks of another epoch never count.
    pub fn quorum(&self, me: NodeId, view: &View, rule: &Replication) -> Quorum {
        let mut clocks: Vec<Clock> = view
            .members
            .iter()
            .filter(|m| m.node.node_id != me)
            .map(|m| match self.acks.get(&m.node.node_id) {
                Some((epoch, clock)) if *epoch == view.epoch => *clock,
                _ => 0,
            })
            .collect();
        clocks.sort_unstable_by(|a, b| b.cmp(a));
        let needed = rule.needed(clocks.len(), view.missing);
        let acked = if view.role != Role::Coordinator || !view.settled {
            0
        } else {
            match needed {
                0 => u64::MAX,
                n => clocks.get(n - 1).copied().unwrap_or(0),
            }
        };
        Quorum {
            acked,
            clocks,
            needed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{MemberView, NodeRef};
    use uuid::Uuid;

    fn member(id: u128) -> MemberView {
        MemberView {
            node: NodeRef {
                node_id: Uuid::from_u128(id),
                rank: Some(id as u32),
                addr: format!("127.0.0.1:{}", 7000 + id).parse().unwrap(),
            },
            clock: 0,
            last_seen_ms: 0,
        }
    }

    fn view(epoch: u64, settled: bool, members: usize) -> View {
        let all: Vec<MemberView> = (1..=members as u128).map(member).collect();
        View {
            me: all[0].node,
            role: Role::Coordinator,
            epoch,
            clock: 0,
            coordinator: Some(all[0].node),
            hears_coordinator: true,
            members: all,
            elections_started: 0,
            failed_rounds: 0,
            last_failure: None,
            rtt_ms: 1,
            missing: 0,
            settled,
        }
    }

    #[test]
    fn strict_mode_needs_a_majority_and_ignores_other_epochs() {
        let rule = Replication {
            min_acks: 1,
            strict_cluster_size: Some(5),
        };
        let me = Uuid::from_u128(1);
        let mut acks = Acks::default();
        acks.record(Uuid::from_u128(2), 7, 10);
        acks.record(Uuid::from_u128(3), 6, 12);
        let v = view(7, true, 5);
        assert_eq!(acks.quorum(me, &v, &rule).acked, 0);
        acks.record(Uuid::from_u128(3), 7, 9);
        let q = acks.quorum(me, &v, &rule);
        assert_eq!((q.acked, q.needed, q.holding(9)), (9, 2, 2));
        // An older answer of the same epoch does not lower it.
        acks.record(Uuid::from_u128(3), 7, 4);
        assert_eq!(acks.quorum(me, &v, &rule).acked, 9);
    }

    #[test]
    fn whitepaper_mode_waits_until_the_claim_settled_and_counts_missing_members() {
        let rule = Replication::default();
        let me = Uuid::from_u128(1);
        let mut acks = Acks::default();
        acks.record(Uuid::from_u128(2), 3, 5);
        assert_eq!(acks.quorum(me, &view(3, false, 2), &rule).acked, 0);
        assert_eq!(acks.quorum(me, &view(3, true, 2), &rule).acked, 5);
        let mut alone = view(3, true, 1);
        assert_eq!(acks.quorum(me, &alone, &rule).acked, u64::MAX);
        alone.missing = 1;
        assert_eq!(acks.quorum(me, &alone, &rule).acked, 0);
    }
}
