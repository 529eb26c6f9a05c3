//! Failure detection and election. A follower that stops hearing the coordinator first asks
//! the others whether they still hear it (the pre-vote, in the same round that collects their
//! ranks and clocks); only if none does, it raises the epoch, names the node with the highest
//! clock (lowest rank among equals) in NEWMASTER, and the winner announces itself with MASTER.
//!
//! Strict mode elects as Raft does with pre-vote: the first round asks "would you vote for me
//! in epoch e+1?" and changes nothing at the voters; once a majority would, the candidate
//! raises its epoch to e+1, votes for itself and asks for real votes, which each node gives
//! once per epoch. Every round resends its request halfway through to those that have not
//! answered, and a round without result is followed by a backoff with a random share, so
//! candidates that failed together do not stay in step. Windows and timeouts follow the
//! measured round trip (`rtt.rs`); `docs/elections.md` argues each rule.

use super::message::{Body, Purpose, VoteRequest};
use super::node::{CandidateState, Node, Output, RankReply};
use super::types::{Clock, ElectionFailure, Epoch, NodeId, NodeRef, Rank, Role};
use rand::Rng;

/// Rounds without any reply before a candidate that knows other members gives the round up.
const SILENT_ROUNDS_MAX: u32 = 1;

/// Recent rounds whose start is kept, so that late replies still measure the round trip.
const ROUND_STARTS_KEPT: usize = 8;

impl Node {
    /// Starts a round: GETRANK to all, asking whether they still hear the coordinator.
    pub(super) fn start_candidate(&mut self, now_ms: u64) {
        self.start_round(now_ms, 0);
    }

    fn start_round(&mut self, now_ms: u64, silent_rounds: u32) {
        if self.me.rank.is_none() {
            return;
        }
        let proposed_epoch = self.epoch.saturating_add(1);
        let vote = self.config.strict_cluster_size.map(|_| VoteRequest {
            epoch: proposed_epoch,
            last_epoch: self.last_event_epoch,
            last_clock: self.clock,
            pre: true,
            transfer: false,
        });
        self.open_round(now_ms, proposed_epoch, false, silent_rounds, vote);
    }

    /// Strict mode: a majority would vote for us. Raise the epoch (stored before the request
    /// goes out), vote for ourselves, and ask for the votes of that epoch.
    fn start_vote(&mut self, now_ms: u64, proposed_epoch: Epoch, transfer: bool) {
        let epoch = proposed_epoch.max(self.epoch.saturating_add(1));
        self.epoch = epoch;
        self.voted_epoch = epoch;
        self.voted_for = Some(self.me.node_id);
        self.out.push(Output::PersistEpoch(epoch));
        let vote = Some(VoteRequest {
            epoch,
            last_epoch: self.last_event_epoch,
            last_clock: self.clock,
            pre: false,
            transfer,
        });
        self.open_round(now_ms, epoch, true, 0, vote);
    }

    fn open_round(
        &mut self,
        now_ms: u64,
        proposed_epoch: Epoch,
        voting: bool,
        silent_rounds: u32,
        vote: Option<VoteRequest>,
    ) {
        self.round += 1;
        self.role = Role::Candidate;
        self.note_round_start(self.round, now_ms);
        let window_ms = self.election_window_ms();
        self.candidate = Some(CandidateState {
            round: self.round,
            until_ms: now_ms + window_ms,
            voting,
            replies: Default::default(),
            votes: Default::default(),
            proposed_epoch,
            silent_rounds,
            resend_at_ms: Some(now_ms + window_ms / 2),
            outclassed: false,
            vote,
            resent_round: None,
        });
        self.broadcast(Body::GetRank {
            purpose: Purpose::Election {
                round: self.round,
                vote,
            },
        });
    }

    /// Notes when a round's request went out (replies measure the round trip from it).
    fn note_round_start(&mut self, round: u64, now_ms: u64) {
        if self.round_starts.len() == ROUND_STARTS_KEPT {
            self.round_starts.pop_front();
        }
        self.round_starts.push_back((round, now_ms));
    }

    /// Halfway through a round, sends its request once more to the members that have not
    /// answered: on a lossy network one lost datagram would otherwise cost the whole round and
    /// a backoff.
    pub(super) fn resend_round(&mut self, now_ms: u64) {
        let Some(candidate) = self.candidate.as_mut() else {
            return;
        };
        if candidate.resend_at_ms.is_none_or(|at| now_ms < at) {
            return;
        }
        candidate.resend_at_ms = None;
        self.round += 1;
        candidate.resent_round = Some(self.round);
        let request = Body::GetRank {
            purpose: Purpose::Election {
                round: self.round,
                vote: candidate.vote,
            },
        };
        self.note_round_start(self.round, now_ms);
        let candidate = self.candidate.as_ref().expect("checked above");
        let silent: Vec<_> = self
            .members
            .values()
            .map(|m| m.node)
            .filter(|n| n.node_id != self.me.node_id && !candidate.replies.contains_key(&n.node_id))
            .collect();
        if silent.is_empty() {
            // Every member we know answered (or we know none): the votes that are missing are
            // those of nodes we do not know, which only a broadcast reaches.
            self.broadcast(request);
        } else {
            for node in silent {
                self.send_to_member(node.addr, node.node_id, request.clone());
            }
        }
    }

    /// Whitepaper mode: another node runs a round. A candidate of higher rank gives way to it,
    /// so that elections started together rarely name two winners. Strict mode needs no such
    /// rule (each node votes once per epoch) and must not have it: a node that can send but
    /// not hear would keep every other candidate giving way.
    pub(super) fn on_election_request(&mut self, now_ms: u64, from: &NodeRef) {
        if self.config.strict_cluster_size.is_some() {
            return;
        }
        let lower_rank =
            matches!((from.rank, self.me.rank), (Some(theirs), Some(ours)) if theirs < ours);
        if self.role == Role::Candidate && lower_rank {
            self.candidate = None;
            self.role = Role::Follower;
            self.last_heard_coordinator_ms = now_ms;
        }
    }

    pub(super) fn on_election_reply(
        &mut self,
        now_ms: u64,
        round: u64,
        vote: Option<VoteRequest>,
        reply: RankReply,
    ) {
        let Some(candidate) = self.candidate.as_mut() else {
            return;
        };
        // A reply counts only if it echoes this round's request exactly: its round and its
        // vote request (epoch, pre-vote or vote, log), so that no grant of another request,
        // a pre-vote or a rival's, is taken for a vote in this one.
        let ours = candidate.round == round || candidate.resent_round == Some(round);
        if !ours
            || vote != candidate.vote
            || reply.from.rank.is_none()
            || reply.role == Role::Joining
        {
            return;
        }
        // Strict mode: a rival pre-voting too, of lower rank and with a log at least as recent
        // (as votes compare logs: a rival we would not vote for cannot win, and giving way to
        // it would hold back the node that can), makes us give way, so that two candidates
        // rarely reach the vote in one epoch (each would vote for itself, and neither might
        // win). It answered our request, so it hears: a node that can send but not hear cannot
        // hold others back this way.
        let lower_rank = matches!(
            (reply.from.rank, self.me.rank),
            (Some(theirs), Some(ours)) if theirs < ours
        );
        let rival = self.config.strict_cluster_size.is_some()
            && !candidate.voting
            && reply.role == Role::Candidate
            && lower_rank
            && (reply.last_epoch, reply.clock) >= (self.last_event_epoch, self.clock);
        if rival {
            self.candidate = None;
            self.role = Role::Follower;
            self.last_heard_coordinator_ms = now_ms;
            return;
        }
        // Others "hearing" us as coordinator while we are not one is no reason to give up; nor
        // is their still hearing the coordinator that handed over to us.
        let transfer = candidate.vote.is_some_and(|v| v.transfer);
        let heard = reply
            .coordinator
            .filter(|c| reply.hears_coordinator && c.node_id != self.me.node_id && !transfer);
        candidate
            .replies
            .insert(reply.from.node_id, (reply.from, reply.clock, heard));
        if (reply.last_epoch, reply.clock) > (self.last_event_epoch, self.clock) {
            candidate.outclassed = true;
        }
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

    /// Ends a round: gives up if anyone still hears a coordinator, else (strict) moves from
    /// pre-vote to vote or takes office, or (whitepaper) names the winner.
    pub(super) fn finish_election(&mut self, now_ms: u64) {
        let Some(candidate) = self.candidate.take() else {
            return;
        };
        if candidate.replies.is_empty()
            && candidate.silent_rounds < SILENT_ROUNDS_MAX
            && self.knows_others()
        {
            // Silence may be loss rather than death: ask once more.
            self.start_round(now_ms, candidate.silent_rounds + 1);
            return;
        }
        if let Some(heard) = candidate.replies.values().find_map(|(_, _, heard)| *heard) {
            // The pre-vote failed: the coordinator is alive for someone. After a round started
            // early (a request to the coordinator failed) suspicion runs on from where it
            // was: the others still hearing it may only not have noticed yet, and restarting
            // it here would put this node's next round a whole suspicion time later (and keep
            // it saying it hears no one for that long); after a regular round it restarts.
            self.role = Role::Follower;
            self.last_heard_coordinator_ms = self.early_round_heard_ms.take().unwrap_or(now_ms);
            self.coordinator = Some(heard);
            return;
        }
        if let Some(majority) = self.config.majority() {
            // Strict mode: a candidate coordinates only with a majority's votes.
            let votes = candidate.votes.len() + 1;
            if votes >= majority && candidate.voting {
                self.elections_started += 1;
                self.become_coordinator(now_ms, self.epoch);
            } else if votes >= majority {
                self.start_vote(now_ms, candidate.proposed_epoch, false);
            } else if candidate.replies.len() + 1 < majority {
                self.round_failed(now_ms, ElectionFailure::RepliesLate, candidate.outclassed);
            } else if candidate.voting {
                self.round_failed(now_ms, ElectionFailure::VotesSplit, candidate.outclassed);
            } else {
                self.round_failed(now_ms, ElectionFailure::NoMajority, candidate.outclassed);
            }
            return;
        }
        if candidate.replies.is_empty() && !self.may_stand_alone() {
            self.round_failed(now_ms, ElectionFailure::AloneBySilence, false);
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
        self.epoch = self.epoch.saturating_add(1);
        // Stored before anything of this election is sent, so a restart never reuses it.
        self.out.push(Output::PersistEpoch(self.epoch));
        self.elections_started += 1;
        self.broadcast(Body::NewMaster { winner });
        self.accept_winner(now_ms, self.epoch, winner);
    }

    /// A round ended without a coordinator: wait the suspicion timeout again, plus a random
    /// share of a round (Raft's randomised timeout), plus: after a split vote a window per
    /// rank above the first (the lowest rank asks first, and its request reaches the others
    /// before they ask); if a reply showed a newer log than ours (we cannot win while that
    /// node lives), two windows, so that it can.
    fn round_failed(&mut self, now_ms: u64, why: ElectionFailure, outclassed: bool) {
        self.role = Role::Follower;
        self.last_heard_coordinator_ms = now_ms;
        self.failed_rounds += 1;
        self.last_failure = Some(why);
        let window_ms = self.election_window_ms();
        let above_first = u64::from(self.me.rank.unwrap_or(1).saturating_sub(1)).min(16);
        let ordered_ms = match why {
            _ if outclassed => 2 * window_ms,
            ElectionFailure::VotesSplit => above_first * window_ms,
            _ => 0,
        };
        let spread_ms = self.rtt_ms() + self.config.stagger_ms;
        self.backoff_ms = ordered_ms + self.rng.gen_range(0..=spread_ms);
    }

    /// A coordinator is agreed (by us or for us): the failed rounds are over.
    fn elected(&mut self) {
        self.failed_rounds = 0;
        self.backoff_ms = 0;
        self.rejoins = 0;
    }

    /// Whitepaper mode: a node that hears nobody coordinates alone only if it knows of no
    /// other member, not even one that fell silent: configured alone, or every member left
    /// cleanly (LEAVE). Silence alone is no evidence.
    fn may_stand_alone(&self) -> bool {
        self.missing.is_empty()
            && !self
                .members
                .values()
                .any(|m| m.node.node_id != self.me.node_id)
    }

    /// Strict mode: whether we would vote, or (for a real request) do vote, for a candidate:
    /// once per epoch, only if its log is at least as recent as ours by (epoch of the last
    /// event, clock), and only if we no longer hear a coordinator. A pre-vote changes nothing
    /// here; a real vote raises our epoch (stored before the vote is sent).
    pub(super) fn grant_vote(
        &mut self,
        now_ms: u64,
        candidate: &NodeRef,
        vote: VoteRequest,
    ) -> bool {
        if self.config.strict_cluster_size.is_none() || self.role == Role::Joining {
            return false;
        }
        let recent_enough =
            (vote.last_epoch, vote.last_clock) >= (self.last_event_epoch, self.clock);
        let free = recent_enough
            && self.role != Role::Coordinator
            && (vote.transfer || !self.hears_coordinator(now_ms));
        if vote.pre {
            return free && vote.epoch > self.epoch;
        }
        let again = vote.epoch == self.voted_epoch && self.voted_for == Some(candidate.node_id);
        let grant = free && vote.epoch >= self.epoch && (vote.epoch > self.voted_epoch || again);
        if grant {
            self.voted_epoch = vote.epoch;
            self.voted_for = Some(candidate.node_id);
            if vote.epoch > self.epoch {
                self.epoch = vote.epoch;
                self.out.push(Output::PersistEpoch(vote.epoch));
            }
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
        let lease_ms = self.lease_ms();
        if now_ms < self.coordinating_since_ms + lease_ms {
            return false;
        }
        let heard = self
            .members
            .values()
            .filter(|m| {
                m.node.node_id != self.me.node_id
                    && self
                        .confirmed_ms
                        .get(&m.node.node_id)
                        .is_some_and(|sent_ms| now_ms < sent_ms + lease_ms)
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

    /// The coordinator hands over to `to` (see [`super::Input::HandOver`]). Ignored unless
    /// this node coordinates and `to` is another member it knows.
    pub(super) fn hand_over(&mut self, now_ms: u64, to: NodeId) {
        if self.role != Role::Coordinator || to == self.me.node_id {
            return;
        }
        let Some(successor) = self
            .members
            .values()
            .map(|m| m.node)
            .find(|n| n.node_id == to)
        else {
            return;
        };
        if self.config.strict_cluster_size.is_some() {
            // Twice: a lost TAKEOVER costs a suspicion timeout and an ordinary election (the
            // successor ignores the copy once it asks for votes).
            self.send_to_member(successor.addr, successor.node_id, Body::TakeOver);
            self.send_to_member(successor.addr, successor.node_id, Body::TakeOver);
            self.step_down(now_ms);
            return;
        }
        self.epoch = self.epoch.saturating_add(1);
        self.out.push(Output::PersistEpoch(self.epoch));
        self.broadcast(Body::NewMaster { winner: successor });
        // Once more to the successor: a lost NEWMASTER there costs a suspicion timeout and an
        // ordinary election (the copy changes nothing once it coordinates).
        let again = Body::NewMaster { winner: successor };
        self.send_to_member(successor.addr, successor.node_id, again);
        self.accept_winner(now_ms, self.epoch, successor);
        // Its first heartbeat comes a round trip from now at best: suspecting it sooner (whitepaper
        // suspicion is a few heartbeats, whatever the latency) would have this node, of equal
        // clock and perhaps lower rank, elect itself back.
        self.last_heard_coordinator_ms = now_ms + self.rtt.high_ms(true);
    }

    /// Strict mode: our coordinator hands over to us: ask for votes at once, as a transfer.
    /// Only from the coordinator we follow, in its epoch.
    pub(super) fn on_take_over(&mut self, now_ms: u64, epoch: Epoch, from: &NodeRef) {
        let ours = self.coordinator.is_some_and(|c| c.node_id == from.node_id);
        if self.config.strict_cluster_size.is_none()
            || self.role != Role::Follower
            || !ours
            || epoch != self.epoch
        {
            return;
        }
        self.start_vote(now_ms, self.epoch.saturating_add(1), true);
    }

    pub(super) fn on_new_master(&mut self, now_ms: u64, epoch: Epoch, winner: NodeRef) {
        if epoch < self.epoch || self.role == Role::Joining {
            return;
        }
        // A copy for the coordinator we already are in that epoch: taking office again would
        // restart its claim's settling.
        if self.role == Role::Coordinator
            && self.coordinator_epoch == epoch
            && winner.node_id == self.me.node_id
        {
            return;
        }
        // A NEWMASTER does not carry the winner's clock; rank settles it until the winner's
        // own claim (MASTER, heartbeats) brings its elected clock.
        let settled_on_better = self.coordinator_epoch == epoch
            && self.coordinator.is_some_and(|c| {
                c.node_id != winner.node_id && outranks((epoch, 0, &c), (epoch, 0, &winner))
            });
        if settled_on_better {
            return;
        }
        self.accept_winner(now_ms, epoch, winner);
    }

    fn accept_winner(&mut self, now_ms: u64, epoch: Epoch, winner: NodeRef) {
        self.candidate = None;
        self.elected();
        if winner.node_id == self.me.node_id {
            self.become_coordinator(now_ms, epoch);
        } else {
            self.role = Role::Follower;
            self.coordinator = Some(winner);
            self.coordinator_epoch = epoch;
            self.coordinator_clock = 0;
            self.last_heard_coordinator_ms = now_ms;
        }
    }

    fn become_coordinator(&mut self, now_ms: u64, epoch: Epoch) {
        self.elected();
        self.role = Role::Coordinator;
        self.coordinating_since_ms = now_ms;
        self.coordinator = Some(self.me);
        self.coordinator_epoch = epoch;
        self.coordinator_clock = self.clock;
        self.confirmed_ms.clear();
        self.last_heard_coordinator_ms = now_ms;
        self.remember_member(now_ms, self.me, self.clock);
        let members = self.members.values().map(|m| m.node).collect();
        self.broadcast(Body::Master {
            coordinator: self.me,
            clock: self.clock,
            members,
            answer: false,
        });
        self.heartbeat(now_ms);
    }

    /// A node claims to be coordinator (MASTER or heartbeat) in `epoch`, which is at least
    /// ours, having taken office at `elected_clock`. Two coordinators of one epoch (whitepaper
    /// mode: two candidates named two winners) settle by the election's own rule: the higher
    /// clock at election, then the lower rank. Neither acknowledged anything before its claim
    /// settled (see `View::settled`), so the one that gives way drops no acknowledged write.
    pub(super) fn on_coordinator_claim(
        &mut self,
        now_ms: u64,
        claimant: NodeRef,
        epoch: Epoch,
        elected_clock: Clock,
    ) {
        if epoch < self.epoch || self.role == Role::Joining {
            return;
        }
        let current = self.coordinator;
        let same = current.is_some_and(|c| c.node_id == claimant.node_id);
        let claim = (epoch, elected_clock, &claimant);
        if self.role == Role::Coordinator && !same {
            let ours = (self.coordinator_epoch, self.coordinator_clock, &self.me);
            if !outranks(claim, ours) {
                return;
            }
        } else if !same {
            let silent = now_ms >= self.last_direct_ms + self.suspect_base_ms() / 2;
            let better = current.is_none_or(|c| {
                silent || outranks(claim, (self.coordinator_epoch, self.coordinator_clock, &c))
            });
            if !better {
                return;
            }
        }
        self.candidate = None;
        self.elected();
        self.role = Role::Follower;
        self.coordinator = Some(claimant);
        self.coordinator_epoch = epoch;
        self.coordinator_clock = elected_clock;
        self.last_heard_coordinator_ms = now_ms;
        self.last_direct_ms = now_ms;
    }
}

/// Whether coordinator `a` wins over `b`: the higher epoch, then the higher clock at election,
/// then the lower rank, then (for two nodes that wrongly share a rank) the lower node id.
fn outranks(a: (Epoch, Clock, &NodeRef), b: (Epoch, Clock, &NodeRef)) -> bool {
    let key = |(epoch, clock, node): (Epoch, Clock, &NodeRef)| {
        (
            std::cmp::Reverse(epoch),
            std::cmp::Reverse(clock),
            node.rank.unwrap_or(Rank::MAX),
            node.node_id,
        )
    };
    key(a) < key(b)
}
