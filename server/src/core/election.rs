//! Failure detection and election. A follower that stops hearing the coordinator first asks
//! the others whether they still hear it (the pre-vote, in the same round that collects their
//! ranks and clocks); only if none does, it raises the epoch, names the node with the highest
//! clock (lowest rank among equals) in NEWMASTER, and the winner announces itself with MASTER.

use super::message::{Body, Purpose, VoteRequest};
use super::node::{CandidateState, Node, Output, RankReply};
use super::types::{Epoch, NodeRef, Rank, Role};

/// Rounds without any reply before a candidate that knows other members elects alone.
const SILENT_ROUNDS_MAX: u32 = 1;

impl Node {
    /// Starts a round: GETRANK to all, asking whether they still hear the coordinator.
    pub(super) fn start_candidate(&mut self, now_ms: u64) {
        self.start_round(now_ms, 0);
    }

    fn start_round(&mut self, now_ms: u64, silent_rounds: u32) {
        if self.me.rank.is_none() {
            return;
        }
        self.round += 1;
        self.role = Role::Candidate;
        let proposed_epoch = self.epoch + 1;
        self.candidate = Some(CandidateState {
            round: self.round,
            until_ms: now_ms + self.config.election_window_ms,
            replies: Default::default(),
            votes: Default::default(),
            proposed_epoch,
            silent_rounds,
        });
        let vote = self.config.strict_cluster_size.map(|_| VoteRequest {
            epoch: proposed_epoch,
            last_epoch: self.last_event_epoch,
            last_clock: self.clock,
        });
        self.broadcast(Body::GetRank {
            purpose: Purpose::Election {
                round: self.round,
                vote,
            },
        });
    }

    /// Another node runs a round. A candidate of higher rank gives way to it, so that elections
    /// started together rarely name two winners; in strict mode only to a candidate that could
    /// win (a log at least as recent as ours), or a stale low rank would stall every election.
    pub(super) fn on_election_request(
        &mut self,
        now_ms: u64,
        from: &NodeRef,
        vote: Option<VoteRequest>,
    ) {
        let lower_rank =
            matches!((from.rank, self.me.rank), (Some(theirs), Some(ours)) if theirs < ours);
        let could_win = vote
            .is_none_or(|v| (v.last_epoch, v.last_clock) >= (self.last_event_epoch, self.clock));
        if self.role == Role::Candidate && lower_rank && could_win {
            self.candidate = None;
            self.role = Role::Follower;
            self.last_heard_coordinator_ms = now_ms;
        }
    }

    pub(super) fn on_election_reply(&mut self, now_ms: u64, round: u64, reply: RankReply) {
        let Some(candidate) = self.candidate.as_mut() else {
            return;
        };
        if candidate.round != round || reply.from.rank.is_none() || reply.role == Role::Joining {
            return;
        }
        // Others "hearing" us as coordinator while we are not one is no reason to give up.
        let heard = reply
            .coordinator
            .filter(|c| reply.hears_coordinator && c.node_id != self.me.node_id);
        candidate
            .replies
            .insert(reply.from.node_id, (reply.from, reply.clock, heard));
        if reply.granted {
            candidate.votes.insert(reply.from.node_id, reply.from);
        }
        let won = self
            .config
            .majority()
            .is_some_and(|majority| candidate.votes.len() + 1 >= majority);
        let suspected = self.coordinator.map(|c| c.node_id);
        let everyone_answered = self
            .members
            .values()
            .filter(|m| m.node.node_id != self.me.node_id && Some(m.node.node_id) != suspected)
            .all(|m| candidate.replies.contains_key(&m.node.node_id));
        // Strict mode waits for votes, not for the members this node happens to know.
        let done_early = everyone_answered && self.config.strict_cluster_size.is_none();
        if done_early || heard.is_some() || won {
            self.finish_election(now_ms);
        }
    }

    /// Ends a round: gives up if anyone still hears a coordinator, else names the winner.
    pub(super) fn finish_election(&mut self, now_ms: u64) {
        let Some(candidate) = self.candidate.take() else {
            return;
        };
        if candidate.replies.is_empty()
            && candidate.silent_rounds < SILENT_ROUNDS_MAX
            && self.knows_others()
        {
            // Silence may be loss rather than death: ask once more before electing alone.
            self.start_round(now_ms, candidate.silent_rounds + 1);
            return;
        }
        self.role = Role::Follower;
        self.last_heard_coordinator_ms = now_ms;
        if let Some(heard) = candidate.replies.values().find_map(|(_, _, heard)| *heard) {
            // The pre-vote failed: the coordinator is alive for someone.
            self.coordinator = Some(heard);
            return;
        }
        if let Some(majority) = self.config.majority() {
            // Strict mode: a candidate coordinates only with a majority's votes.
            if candidate.votes.len() + 1 >= majority {
                self.epoch = candidate.proposed_epoch;
                self.out.push(Output::PersistEpoch(self.epoch));
                self.elections_started += 1;
                self.become_coordinator(now_ms, self.epoch);
            }
            return;
        }
        let winner = candidate
            .replies
            .values()
            .map(|(node, clock, _)| (*node, *clock))
            .chain(std::iter::once((self.me, self.clock)))
            .max_by_key(|(node, clock)| (*clock, std::cmp::Reverse(node.rank)))
            .map(|(node, _)| node)
            .expect("the candidate itself is always eligible");
        self.epoch += 1;
        // Stored before anything of this election is sent, so a restart never reuses it.
        self.out.push(Output::PersistEpoch(self.epoch));
        self.elections_started += 1;
        self.broadcast(Body::NewMaster { winner });
        self.accept_winner(now_ms, self.epoch, winner);
    }

    /// Strict mode: votes for a candidate once per epoch, only if its log is at least as
    /// recent as ours by (epoch of the last event, clock), and only if we no longer hear a
    /// coordinator. Voting raises our epoch (stored before the vote is sent).
    pub(super) fn grant_vote(&mut self, now_ms: u64, vote: VoteRequest) -> bool {
        if self.config.strict_cluster_size.is_none() || self.role == Role::Joining {
            return false;
        }
        let recent_enough =
            (vote.last_epoch, vote.last_clock) >= (self.last_event_epoch, self.clock);
        let grant = vote.epoch > self.epoch
            && recent_enough
            && self.role != Role::Coordinator
            && !self.hears_coordinator(now_ms);
        if grant {
            self.epoch = vote.epoch;
            self.out.push(Output::PersistEpoch(vote.epoch));
            self.candidate = None;
            self.role = Role::Follower;
            self.coordinator = None;
            self.last_heard_coordinator_ms = now_ms;
        }
        grant
    }

    /// Strict mode: a coordinator that has not heard a majority (itself included) within its
    /// lease steps down, so it stops acknowledging before a successor can be elected.
    pub(super) fn lease_lost(&mut self, now_ms: u64) -> bool {
        let Some(majority) = self.config.majority() else {
            return false;
        };
        let lease_ms = self.config.lease_ms();
        if now_ms < self.coordinating_since_ms + lease_ms {
            return false;
        }
        let heard = self
            .members
            .values()
            .filter(|m| {
                m.node.node_id != self.me.node_id
                    && now_ms.saturating_sub(m.last_seen_ms) <= lease_ms
            })
            .count()
            + 1;
        if heard >= majority {
            return false;
        }
        self.step_down(now_ms);
        true
    }

    /// Whether any member besides us and the suspected coordinator is known.
    fn knows_others(&self) -> bool {
        let suspected = self.coordinator.map(|c| c.node_id);
        self.members
            .values()
            .any(|m| m.node.node_id != self.me.node_id && Some(m.node.node_id) != suspected)
    }

    pub(super) fn on_new_master(&mut self, now_ms: u64, epoch: Epoch, winner: NodeRef) {
        if epoch < self.epoch || self.role == Role::Joining {
            return;
        }
        let settled_on_better = self.coordinator_epoch == epoch
            && self.coordinator.is_some_and(|c| {
                c.node_id != winner.node_id && outranks((epoch, &c), (epoch, &winner))
            });
        if settled_on_better {
            return;
        }
        self.accept_winner(now_ms, epoch, winner);
    }

    fn accept_winner(&mut self, now_ms: u64, epoch: Epoch, winner: NodeRef) {
        self.candidate = None;
        if winner.node_id == self.me.node_id {
            self.become_coordinator(now_ms, epoch);
        } else {
            self.role = Role::Follower;
            self.coordinator = Some(winner);
            self.coordinator_epoch = epoch;
            self.last_heard_coordinator_ms = now_ms;
        }
    }

    fn become_coordinator(&mut self, now_ms: u64, epoch: Epoch) {
        self.role = Role::Coordinator;
        self.coordinating_since_ms = now_ms;
        self.coordinator = Some(self.me);
        self.coordinator_epoch = epoch;
        self.last_heard_coordinator_ms = now_ms;
        self.remember_member(now_ms, self.me, self.clock);
        let members = self.members.values().map(|m| m.node).collect();
        self.broadcast(Body::Master {
            coordinator: self.me,
            clock: self.clock,
            members,
        });
        self.heartbeat(now_ms);
    }

    /// A node claims to be coordinator (MASTER or heartbeat) in `epoch`, which is at least ours.
    /// Two coordinators of one epoch: the lower rank stays.
    pub(super) fn on_coordinator_claim(&mut self, now_ms: u64, claimant: NodeRef, epoch: Epoch) {
        if epoch < self.epoch || self.role == Role::Joining {
            return;
        }
        let current = self.coordinator;
        let same = current.is_some_and(|c| c.node_id == claimant.node_id);
        if self.role == Role::Coordinator && !same {
            if !outranks((epoch, &claimant), (self.coordinator_epoch, &self.me)) {
                return;
            }
        } else if !same {
            let silent = now_ms >= self.last_direct_ms + self.config.suspect_ms(Some(1)) / 2;
            let better = current.is_none_or(|c| {
                silent || outranks((epoch, &claimant), (self.coordinator_epoch, &c))
            });
            if !better {
                return;
            }
        }
        self.candidate = None;
        self.role = Role::Follower;
        self.coordinator = Some(claimant);
        self.coordinator_epoch = epoch;
        self.last_heard_coordinator_ms = now_ms;
        self.last_direct_ms = now_ms;
    }
}

/// Whether coordinator `a` wins over `b`: the higher epoch, then the lower rank, then (for two
/// nodes that wrongly share a rank) the lower node id.
fn outranks(a: (Epoch, &NodeRef), b: (Epoch, &NodeRef)) -> bool {
    let key = |(epoch, node): (Epoch, &NodeRef)| {
        (
            std::cmp::Reverse(epoch),
            node.rank.unwrap_or(Rank::MAX),
            node.node_id,
        )
    };
    key(a) < key(b)
}
