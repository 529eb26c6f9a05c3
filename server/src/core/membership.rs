//! Joining, ranks and the member table: a joining node takes the lowest rank no live node
//! holds; the coordinator's heartbeat carries the member list, which is authoritative when
//! two live nodes claim one rank.

use super::message::{Body, Purpose};
use super::node::{JoinState, Node, RankReply};
use super::types::{Clock, Epoch, MemberView, NodeRef, Rank, Role};
use std::collections::{BTreeMap, BTreeSet};

/// Rejoins in a row after which the join window stops doubling (8 times the configured one).
const REJOIN_DOUBLINGS_MAX: u32 = 3;

impl Node {
    pub(super) fn start_join(
        &mut self,
        now_ms: u64,
        epoch: Epoch,
        clock: Clock,
        last_epoch: Epoch,
    ) {
        self.epoch = self.epoch.max(epoch);
        // We may have voted in the stored epoch before a restart: vote only above it.
        self.voted_epoch = self.voted_epoch.max(self.epoch);
        self.voted_for = None;
        self.clock = clock;
        self.last_event_epoch = last_epoch;
        self.rejoin(now_ms);
    }

    /// Forgets our rank and asks everyone for theirs.
    pub(super) fn rejoin(&mut self, now_ms: u64) {
        self.rejoin_knowing(now_ms, Vec::new());
    }

    /// Joins again after losing our rank, starting from what we know: the members we knew and
    /// `known` (the node that took our rank, or the coordinator's list), so that a free rank is
    /// taken even if no reply comes within the window. Each rejoin in a row doubles the window
    /// (up to 8 times), for links slower than it.
    fn rejoin_knowing(&mut self, now_ms: u64, known: Vec<(NodeRef, Role, Option<NodeRef>, Epoch)>) {
        let window_ms = self.config.join_window_ms << self.rejoins.min(REJOIN_DOUBLINGS_MAX);
        let mut replies: BTreeMap<_, _> = self
            .members
            .values()
            .filter(|m| m.node.node_id != self.me.node_id)
            .map(|m| (m.node.node_id, (m.node, Role::Follower, None, self.epoch)))
            .collect();
        replies.extend(
            known
                .into_iter()
                .filter(|(n, ..)| n.node_id != self.me.node_id)
                .map(|k| (k.0.node_id, k)),
        );
        if self.me.rank.is_some() {
            self.rejoins += 1;
        }
        self.me.rank = None;
        self.role = Role::Joining;
        self.coordinator = None;
        self.candidate = None;
        self.members.clear();
        self.join = Some(JoinState {
            until_ms: now_ms + window_ms,
            replies,
            joiners: Default::default(),
        });
        self.broadcast(Body::GetRank {
            purpose: Purpose::Join,
        });
    }

    pub(super) fn note_joiner(&mut self, from: &NodeRef) {
        if let Some(join) = self.join.as_mut() {
            if from.rank.is_none() {
                join.joiners.insert(from.node_id);
            }
        }
    }

    /// Ends the join window: takes a free rank and follows the coordinator the others named,
    /// or, if none did, prepares to elect one.
    pub(super) fn finish_join(&mut self, now_ms: u64) {
        let Some(join) = self.join.take() else {
            return;
        };
        let taken: BTreeSet<Rank> = join.replies.values().filter_map(|(n, ..)| n.rank).collect();
        let mut joiners = join.joiners.clone();
        joiners.extend(
            join.replies
                .values()
                .filter(|(n, ..)| n.rank.is_none())
                .map(|(n, ..)| n.node_id),
        );
        joiners.insert(self.me.node_id);
        // A node that announced its rank meanwhile is no longer joining.
        joiners.retain(|id| join.replies.get(id).is_none_or(|(n, ..)| n.rank.is_none()));
        // Nodes joining together take the free ranks in node-id order, so they agree without
        // talking further.
        let position = joiners
            .iter()
            .position(|id| *id == self.me.node_id)
            .unwrap_or(0);
        let rank = (1..)
            .filter(|r| !taken.contains(r))
            .nth(position)
            .expect("ranks are unbounded");
        self.me.rank = Some(rank);
        self.role = Role::Follower;
        for (node, role, _, _) in join.replies.values() {
            if node.rank.is_some() && *role != Role::Joining {
                self.remember_member(now_ms, *node, 0);
            }
        }
        let claimed = join
            .replies
            .values()
            .filter(|(_, role, ..)| *role == Role::Coordinator)
            .map(|(node, _, _, epoch)| (*epoch, *node))
            .chain(
                join.replies
                    .values()
                    .filter_map(|(_, _, c, epoch)| c.map(|c| (*epoch, c))),
            )
            .max_by_key(|(epoch, node)| (*epoch, std::cmp::Reverse(node.rank)));
        match claimed {
            Some((epoch, coordinator)) if epoch >= self.epoch => {
                self.coordinator = Some(coordinator);
                self.coordinator_epoch = epoch;
                self.last_heard_coordinator_ms = now_ms;
            }
            _ => {
                // No coordinator anywhere: suspect at once, staggered by rank.
                self.last_heard_coordinator_ms = now_ms.saturating_sub(self.suspect_base_ms());
            }
        }
        let body = self.rank_body(now_ms, Purpose::Join);
        self.broadcast(body);
    }

    pub(super) fn on_rank(&mut self, now_ms: u64, purpose: Purpose, reply: RankReply) {
        if self.role == Role::Joining {
            if let Some(join) = self.join.as_mut() {
                join.replies.insert(
                    reply.from.node_id,
                    (reply.from, reply.role, reply.coordinator, reply.epoch),
                );
            }
            return;
        }
        match purpose {
            Purpose::Election { round, vote } => {
                // Replies name their round, so even late ones measure the round trip; a join's
                // replies cannot be told from announcements and measure nothing.
                let measurable =
                    |(r, started_ms): &&(u64, u64)| *r == round && *started_ms >= self.resumed_ms;
                let found = self
                    .round_starts
                    .iter()
                    .find(measurable)
                    .filter(|_| !reply.held);
                if let Some((_, started_ms)) = found {
                    let rtt_ms = now_ms.saturating_sub(*started_ms);
                    self.rtt.sample(reply.from.node_id, rtt_ms);
                }
                self.on_election_reply(now_ms, round, vote, reply)
            }
            // Members never ask as clients: such a RANK was sent to a client's spoofed source.
            Purpose::Client => {}
            Purpose::Join | Purpose::Heartbeat { .. } => {
                if let (Purpose::Heartbeat { sent_ms, .. }, Role::Coordinator) =
                    (&purpose, self.role)
                {
                    if *sent_ms > 0 && (self.resumed_ms..=now_ms).contains(sent_ms) && !reply.held {
                        let rtt_ms = now_ms.saturating_sub(*sent_ms);
                        self.rtt.sample(reply.from.node_id, rtt_ms);
                    }
                    // A node of an older version echoes no send time: its arrival must do.
                    // Nor can an echo be from the future: one is a reply captured before this
                    // process (and its clock) started again, and would stretch the lease.
                    let sent_ms = if *sent_ms > 0 {
                        (*sent_ms).min(now_ms)
                    } else {
                        now_ms
                    };
                    let confirmed = self.confirmed_ms.entry(reply.from.node_id).or_default();
                    *confirmed = (*confirmed).max(sent_ms);
                }
                if self.role == Role::Coordinator {
                    if let Some(rank) = reply.from.rank {
                        if reply.role != Role::Joining && self.rank_is_free_for(rank, &reply.from) {
                            self.remember_member(now_ms, reply.from, reply.clock);
                        }
                    }
                } else {
                    self.check_rank_conflict(now_ms, &reply.from);
                }
            }
        }
    }

    /// Whether the coordinator's table lets `node` hold `rank`: the incumbent keeps a rank, and
    /// nobody takes the coordinator's own.
    fn rank_is_free_for(&self, rank: Rank, node: &NodeRef) -> bool {
        if self.me.rank == Some(rank) {
            return false;
        }
        self.members
            .get(&rank)
            .is_none_or(|m| m.node.node_id == node.node_id)
    }

    pub(super) fn remember_member(&mut self, now_ms: u64, node: NodeRef, clock: Clock) {
        let Some(rank) = node.rank else {
            return;
        };
        // A node that rejoined under another rank leaves its old entry behind.
        self.members
            .retain(|r, m| *r == rank || m.node.node_id != node.node_id);
        self.members.insert(
            rank,
            MemberView {
                node,
                clock,
                last_seen_ms: now_ms,
            },
        );
    }

    /// Without a coordinator to arbitrate, two nodes with one rank settle it by node id: the
    /// lower id keeps the rank, the other joins again.
    fn check_rank_conflict(&mut self, now_ms: u64, other: &NodeRef) {
        let same_rank = other.rank.is_some() && other.rank == self.me.rank;
        if same_rank && self.coordinator.is_none() && other.node_id < self.me.node_id {
            let epoch = self.epoch;
            self.rejoin_knowing(now_ms, vec![(*other, Role::Follower, None, epoch)]);
        }
    }

    /// A follower's copy of the coordinator's member list; if the list gives our rank to
    /// another node, we lost it and join again.
    ///
    /// The list says which ranks are in use: the join starts from it, so it takes a free rank
    /// even if no reply arrives within the join window (links slower than the window would
    /// otherwise make it take a used rank, lose it, and join again, forever).
    pub(super) fn adopt_member_list(
        &mut self,
        now_ms: u64,
        coordinator: NodeRef,
        epoch: Epoch,
        members: &[NodeRef],
    ) {
        let lost = members
            .iter()
            .any(|m| m.rank.is_some() && m.rank == self.me.rank && m.node_id != self.me.node_id);
        if lost {
            let known = members
                .iter()
                .map(|m| {
                    let role = if m.node_id == coordinator.node_id {
                        Role::Coordinator
                    } else {
                        Role::Follower
                    };
                    (*m, role, Some(coordinator), epoch)
                })
                .collect();
            self.rejoin_knowing(now_ms, known);
            return;
        }
        let previous = std::mem::take(&mut self.members);
        // A coordinator that has not heard a member's LEAVE yet still lists it.
        let listed: Vec<NodeRef> = members
            .iter()
            .filter(|m| !self.has_left(m))
            .copied()
            .collect();
        for node in &listed {
            let clock = node
                .rank
                .and_then(|r| previous.get(&r))
                .filter(|m| m.node.node_id == node.node_id)
                .map_or(0, |m| m.clock);
            self.remember_member(now_ms, *node, clock);
        }
    }

    /// The coordinator's beat: drop members silent for too long (their ranks become free) and
    /// send GETRANK with the member list.
    ///
    /// Whitepaper mode: a coordinator whose last members all fell silent steps down instead of
    /// acknowledging alone. Silence is no evidence of being alone: a cut of the traffic towards
    /// it looks the same, while the others still hear it and would take its single-copy writes
    /// as replicated. Stepping down lets them, if alive, elect among themselves.
    pub(super) fn heartbeat(&mut self, now_ms: u64) {
        let dead_ms = self.dead_ms();
        let me = self.me.node_id;
        let mut silent = Vec::new();
        self.members.retain(|_, m| {
            let alive = m.node.node_id == me || now_ms.saturating_sub(m.last_seen_ms) <= dead_ms;
            if !alive {
                silent.push(m.node.node_id);
            }
            alive
        });
        self.missing.extend(silent.iter().copied());
        let alone = !self.members.values().any(|m| m.node.node_id != me);
        // Entries a new coordinator took over from the old one's list may be stale: only
        // members this coordinator could have heard for a whole dead interval fell silent (the
        // first answers to its heartbeats arrive a round trip after it took office: on slow
        // links that is longer than whitepaper mode's dead interval).
        let heard_long_enough = now_ms >= self.coordinating_since_ms + dead_ms + self.rtt_ms();
        if alone
            && !silent.is_empty()
            && heard_long_enough
            && self.config.strict_cluster_size.is_none()
        {
            self.step_down(now_ms);
            return;
        }
        self.remember_member(now_ms, self.me, self.clock);
        let members = self.members.values().map(|m| m.node).collect();
        self.broadcast(Body::GetRank {
            purpose: Purpose::Heartbeat {
                members,
                sent_ms: now_ms,
                rtt_ms: self.rtt.published_ms(),
                elected_clock: self.coordinator_clock,
            },
        });
        self.next_heartbeat_ms = now_ms + self.config.heartbeat_ms;
    }
}
