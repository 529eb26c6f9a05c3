//! The node state machine: inputs in, outputs out, one step at a time. This file holds the
//! state, the dispatch and the timers (and the timings derived from the round trip); joining
//! is in `membership.rs`, elections in `election.rs`, round-trip estimates in `rtt.rs`.

use super::message::{Body, Message, Purpose, VoteRequest};
use super::rtt::RoundTrips;
use super::types::{
    Clock, CoreConfig, ElectionFailure, Epoch, MemberView, NodeId, NodeRef, Rank, Role, View,
};
use crate::limits::EPOCH_MAX;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

/// What happens to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The node starts (or restarts) with the epoch and clock its store holds, and joins.
    Start {
        /// Stored epoch.
        epoch: Epoch,
        /// Stored clock.
        clock: Clock,
        /// Epoch of the last stored event (strict mode compares logs by it).
        last_epoch: Epoch,
    },
    /// A datagram arrived from `src` (its UDP source address).
    Message {
        /// Where it came from (for replies to clients, whose address is not in `from`).
        src: SocketAddr,
        /// What it says.
        msg: Message,
    },
    /// A client's question (GETMASTER, or GETRANK for a client) that proved nothing about its
    /// sender: with datagram authentication on, anyone may ask, but what they say changes
    /// nothing here (no epoch, no member, no vote). The answer goes to `src`.
    Query {
        /// Where it came from: the answer goes there.
        src: SocketAddr,
        /// The question.
        body: Body,
    },
    /// A deadline given by [`Node::poll_timeout`] passed (extra ticks are harmless).
    Tick,
    /// The node applied events up to `clock`; the last was made in `epoch`.
    Applied {
        /// Its clock now.
        clock: Clock,
        /// The epoch of its last event.
        epoch: Epoch,
    },
    /// An RPC to the coordinator failed: ask the others whether they still hear it.
    CoordinatorUnreachable,
    /// A peer RPC carried this epoch.
    SawEpoch(Epoch),
    /// The node stops cleanly: it tells the others (LEAVE), so they know it is gone.
    Leave,
    /// The coordinator hands over to member `to`, which has acknowledged everything it
    /// decided (the shell checks that, with writes held): whitepaper mode names it in
    /// NEWMASTER with the next epoch; strict mode tells it to ask for votes (TAKEOVER) and
    /// steps down.
    HandOver {
        /// The successor.
        to: NodeId,
    },
    /// The coordinator of `epoch` cannot go on: its store lacks events the replicas may hold
    /// and it cannot make them again. It steps down (its applied clock, already lowered to
    /// its store's, keeps it from winning the next election over the nodes that hold them);
    /// the others elect once they no longer hear it. Ignored in any other epoch or role.
    Resign {
        /// The epoch it coordinated.
        epoch: Epoch,
    },
}

/// What the node wants done, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send to one address.
    Send {
        /// Destination.
        to: SocketAddr,
        /// Content.
        msg: Message,
    },
    /// Send to every peer (and the multicast group, if any).
    Broadcast(Message),
    /// Store this epoch durably before carrying out any later output.
    PersistEpoch(Epoch),
}

#[derive(Debug, Clone)]
pub(super) struct JoinState {
    pub(super) until_ms: u64,
    /// Nodes that answered, with their role, the coordinator they follow and their epoch.
    pub(super) replies: BTreeMap<NodeId, (NodeRef, Role, Option<NodeRef>, Epoch)>,
    /// Nodes seen joining at the same time (they get free ranks in node-id order).
    pub(super) joiners: BTreeSet<NodeId>,
}

#[derive(Debug, Clone)]
pub(super) struct CandidateState {
    pub(super) round: u64,
    pub(super) until_ms: u64,
    /// Strict mode: the round asks for real votes (the epoch is raised); else it is the
    /// pre-vote, which changes nothing at the voters.
    pub(super) voting: bool,
    /// Ranked nodes that answered, with their clock, and the coordinator they hear (if any).
    pub(super) replies: BTreeMap<NodeId, (NodeRef, Clock, Option<NodeRef>)>,
    /// Strict mode: the nodes that voted for us.
    pub(super) votes: BTreeMap<NodeId, NodeRef>,
    /// Strict mode: the epoch this round asks votes for.
    pub(super) proposed_epoch: Epoch,
    /// When the round's request goes out once more to those that have not answered (datagrams
    /// get lost), if it has not yet.
    pub(super) resend_at_ms: Option<u64>,
    /// The round's vote request (strict mode), as sent.
    pub(super) vote: Option<VoteRequest>,
    /// The round number the request went out again under, if it did: a reply names the send
    /// it answers, so each measures its own round trip.
    pub(super) resent_round: Option<u64>,
    /// A reply showed a log newer than ours: that node can win, we cannot while it lives.
    pub(super) outclassed: bool,
    /// Earlier rounds of this election that got no reply at all.
    pub(super) silent_rounds: u32,
}

/// One node's protocol state.
#[derive(Debug, Clone)]
pub struct Node {
    pub(super) config: CoreConfig,
    pub(super) me: NodeRef,
    pub(super) role: Role,
    pub(super) epoch: Epoch,
    pub(super) clock: Clock,
    /// Epoch in which the last applied event was made.
    pub(super) last_event_epoch: Epoch,
    pub(super) coordinator: Option<NodeRef>,
    /// Epoch in which `coordinator` was accepted.
    pub(super) coordinator_epoch: Epoch,
    /// When suspicion was last reset (a heartbeat, a MASTER, a NEWMASTER, a failed round).
    pub(super) last_heard_coordinator_ms: u64,
    /// A round started early, because a request to the coordinator failed (not because
    /// suspicion ran out): the `last_heard_coordinator_ms` it started from, which a pre-vote
    /// failing that round leaves in place (see `finish_election`).
    pub(super) early_round_heard_ms: Option<u64>,
    /// When the coordinator itself was last heard (a heartbeat or its MASTER).
    pub(super) last_direct_ms: u64,
    /// Members by rank: the coordinator's own table, or a follower's copy of its list.
    pub(super) members: BTreeMap<Rank, MemberView>,
    pub(super) join: Option<JoinState>,
    pub(super) candidate: Option<CandidateState>,
    pub(super) round: u64,
    /// When recent rounds started: (round, milliseconds).
    pub(super) round_starts: VecDeque<(u64, u64)>,
    pub(super) next_heartbeat_ms: u64,
    /// When this node last became coordinator (strict mode's lease starts then).
    pub(super) coordinating_since_ms: u64,
    pub(super) last_step_ms: Option<u64>,
    pub(super) elections_started: u64,
    /// Coordinator: per member, the send time of the latest heartbeat it answered (strict
    /// mode's lease counts from these, so it holds however long the round trip).
    pub(super) confirmed_ms: BTreeMap<NodeId, u64>,
    /// Highest epoch this node voted in (or stood in with real votes): it votes once per
    /// epoch. After a restart it votes only above the epoch it stored.
    pub(super) voted_epoch: Epoch,
    /// Whom this node voted for in `voted_epoch` (not kept across restarts: after one, this
    /// node votes only above the stored epoch). A repeated request gets the same answer.
    pub(super) voted_for: Option<NodeId>,
    /// The clock our coordinator had when it took office in `coordinator_epoch` (ours, if we
    /// coordinate): two coordinators of one epoch settle by it.
    pub(super) coordinator_clock: Clock,
    /// Members this coordinator dropped for silence rather than because they left: they may
    /// be alive behind a cut, so this node does not count on being alone.
    pub(super) missing: BTreeSet<NodeId>,
    /// Members that said LEAVE, with when: until they join again (or two dead intervals pass),
    /// nothing said by or about them brings them back. A member list sent before its sender
    /// heard the LEAVE may arrive after it; taken as is, it would make the last node believe a
    /// member that left is only silent, and never coordinate alone (finding 26).
    pub(super) left: BTreeMap<NodeId, u64>,
    /// Round trips measured from requests this node sent (and its coordinator's figure).
    pub(super) rtt: RoundTrips,
    /// When this node last resumed from a stall (its own pause): requests sent before then
    /// measure no round trip.
    pub(super) resumed_ms: u64,
    /// The deadline this node last asked to be woken at ([`Node::poll_timeout`]).
    pub(super) wake_by_ms: Option<u64>,
    /// Extra wait before the next candidacy, drawn at random after a round without result
    /// (Raft's randomised election timeout), so that rivals fall out of step.
    pub(super) backoff_ms: u64,
    pub(super) failed_rounds: u64,
    /// Times in a row this node lost its rank and joined again (its join window doubles).
    pub(super) rejoins: u32,
    pub(super) last_failure: Option<ElectionFailure>,
    pub(super) rng: SmallRng,
    pub(super) out: Vec<Output>,
}

impl Node {
    /// A node with this identity and address; it does nothing until [`Input::Start`].
    pub fn new(config: CoreConfig, node_id: NodeId, addr: SocketAddr) -> Node {
        let mut node = Node {
            config,
            me: NodeRef {
                node_id,
                rank: None,
                addr,
            },
            role: Role::Joining,
            epoch: 0,
            clock: 0,
            last_event_epoch: 0,
            coordinator: None,
            coordinator_epoch: 0,
            last_heard_coordinator_ms: 0,
            early_round_heard_ms: None,
            last_direct_ms: 0,
            members: BTreeMap::new(),
            join: None,
            candidate: None,
            round: 0,
            round_starts: VecDeque::new(),
            next_heartbeat_ms: 0,
            coordinating_since_ms: 0,
            last_step_ms: None,
            elections_started: 0,
            confirmed_ms: BTreeMap::new(),
            voted_epoch: 0,
            voted_for: None,
            coordinator_clock: 0,
            missing: BTreeSet::new(),
            left: BTreeMap::new(),
            rtt: RoundTrips::default(),
            resumed_ms: 0,
            wake_by_ms: None,
            backoff_ms: 0,
            failed_rounds: 0,
            rejoins: 0,
            last_failure: None,
            rng: SmallRng::seed_from_u64(seed_of(node_id)),
            out: Vec::new(),
        };
        // Rounds are numbered from a random start: two candidates never count rounds in step,
        // so a reply to one never names a round of the other.
        node.round = node.rng.gen_range(0..ROUND_START_MAX);
        node
    }

    /// Feeds one input at time `now_ms` (any monotonic milliseconds) and returns what to do.
    pub fn step(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        let epoch_before = self.epoch;
        self.notice_pause(now_ms);
        match input {
            Input::Start {
                epoch,
                clock,
                last_epoch,
            } => self.start_join(now_ms, epoch, clock, last_epoch),
            // Epochs beyond the range are malformed or forged (the wire refuses them too).
            Input::Message { msg, .. } if msg.highest_epoch() > EPOCH_MAX => {}
            Input::Message { src, msg } => self.on_message(now_ms, src, msg),
            Input::Query { src, body } => self.on_query(now_ms, src, body),
            Input::Tick => {}
            Input::Applied { clock, epoch } => {
                self.clock = clock;
                self.last_event_epoch = epoch;
            }
            Input::CoordinatorUnreachable => {
                if self.role == Role::Follower && self.coordinator.is_some() {
                    let early = now_ms < self.suspect_deadline_ms();
                    self.early_round_heard_ms = early.then_some(self.last_heard_coordinator_ms);
                    self.start_candidate(now_ms);
                }
            }
            Input::SawEpoch(epoch) if epoch > EPOCH_MAX => {}
            Input::SawEpoch(epoch) => self.observe_epoch(now_ms, epoch),
            Input::Leave => {
                if self.me.rank.is_some() {
                    self.broadcast(Body::Leave);
                }
            }
            Input::HandOver { to } => self.hand_over(now_ms, to),
            Input::Resign { epoch } => {
                if self.role == Role::Coordinator && self.epoch == epoch {
                    self.step_down(now_ms);
                }
            }
        }
        self.on_timers(now_ms);
        self.wake_by_ms = self.poll_timeout();
        assert!(
            self.epoch >= epoch_before,
            "epochs never decrease ({epoch_before} -> {})",
            self.epoch
        );
        std::mem::take(&mut self.out)
    }

    /// The next time [`Input::Tick`] is due, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.role {
            Role::Joining => self.join.as_ref().map(|j| j.until_ms),
            Role::Candidate => self
                .candidate
                .as_ref()
                .map(|c| c.resend_at_ms.map_or(c.until_ms, |at| at.min(c.until_ms))),
            Role::Coordinator => Some(self.next_heartbeat_ms),
            Role::Follower => Some(self.suspect_deadline_ms()),
        }
    }

    /// What this node believes now.
    pub fn view(&self) -> View {
        let mut members: Vec<MemberView> = self.members.values().cloned().collect();
        if self.me.rank.is_some()
            && !self
                .members
                .values()
                .any(|m| m.node.node_id == self.me.node_id)
        {
            members.push(MemberView {
                node: self.me,
                clock: self.clock,
                last_seen_ms: self.last_step_ms.unwrap_or(0),
            });
            members.sort_by_key(|m| m.node.rank);
        }
        View {
            me: self.me,
            role: self.role,
            epoch: self.epoch,
            clock: self.clock,
            coordinator: self.coordinator,
            hears_coordinator: self.hears_coordinator(self.last_step_ms.unwrap_or(0)),
            members,
            elections_started: self.elections_started,
            failed_rounds: self.failed_rounds,
            last_failure: self.last_failure,
            rtt_ms: self.rtt_ms(),
            missing: self.missing.len(),
            settled: self.settled(self.last_step_ms.unwrap_or(0)),
        }
    }

    /// Whether a coordinator may acknowledge writes: in whitepaper mode only once it has been
    /// in office long enough to hear a rival of its epoch (a round trip and two heartbeats: a
    /// rival elected with it announces itself at once, and again every heartbeat), so that of
    /// two coordinators elected together at most the one that stays acknowledges.
    fn settled(&self, now_ms: u64) -> bool {
        if self.role != Role::Coordinator {
            return false;
        }
        if self.config.strict_cluster_size.is_some() {
            return true;
        }
        let settle_ms = self.rtt_ms() + 2 * self.config.heartbeat_ms;
        now_ms >= self.coordinating_since_ms + settle_ms
    }

    /// A coordinator that was stopped (SIGSTOP, a VM pause) for longer than it takes the others
    /// to declare it dead must not go on acting as coordinator: the others may have moved on.
    fn notice_pause(&mut self, now_ms: u64) {
        let gap = self
            .last_step_ms
            .map_or(0, |last| now_ms.saturating_sub(last));
        self.last_step_ms = Some(now_ms);
        // Stalled: woken well after the deadline we asked for (idle is not stalled). Replies to
        // what we sent before the stall waited for us, not on the network.
        if self.wake_by_ms.is_some_and(|due| now_ms > due + STALL_MS) {
            self.resumed_ms = now_ms;
        }
        if self.role == Role::Coordinator && gap > self.dead_ms() {
            self.step_down(now_ms);
        }
    }

    fn on_timers(&mut self, now_ms: u64) {
        match self.role {
            Role::Joining => {
                if self.join.as_ref().is_some_and(|j| now_ms >= j.until_ms) {
                    self.finish_join(now_ms);
                }
            }
            Role::Candidate => {
                if self
                    .candidate
                    .as_ref()
                    .is_some_and(|c| now_ms >= c.until_ms)
                {
                    self.finish_election(now_ms);
                } else {
                    self.resend_round(now_ms);
                }
            }
            Role::Coordinator => {
                if now_ms >= self.next_heartbeat_ms && !self.lease_lost(now_ms) {
                    self.heartbeat(now_ms);
                }
            }
            Role::Follower => {
                if now_ms >= self.suspect_deadline_ms() {
                    self.early_round_heard_ms = None;
                    self.start_candidate(now_ms);
                }
            }
        }
    }

    pub(super) fn suspect_deadline_ms(&self) -> u64 {
        self.last_heard_coordinator_ms
            + self.suspect_base_ms()
            + self.stagger_ms()
            + self.backoff_ms
    }

    /// Silence after which a follower suspects its coordinator (before the rank stagger), and
    /// for which a follower that heard it refuses votes: the configured heartbeats; in strict
    /// mode a round trip and two heartbeats more, so that the lease (one heartbeat shorter)
    /// outlasts the round trip plus four lost heartbeats: a coordinator with a bare majority on
    /// lossy links keeps its lease. (With one heartbeat of slack, one lost reply from one
    /// member cost the lease about once a second at 1% loss and a 40 ms round trip.)
    /// Whitepaper mode has no lease, and heartbeats keep coming every interval whatever the
    /// latency: its suspicion does not grow.
    pub(super) fn suspect_base_ms(&self) -> u64 {
        let beats_ms = self.config.heartbeat_ms * u64::from(self.config.suspect_misses);
        match self.config.strict_cluster_size {
            Some(_) => beats_ms + self.rtt_ms() + 2 * self.config.heartbeat_ms,
            None => beats_ms,
        }
    }

    /// Strict mode's lease: a coordinator acts only while a majority answered a heartbeat it
    /// sent within this long. A follower that answered one sent at `s` heard it after `s`,
    /// so it refuses votes until at least `s` plus its suspicion time: one heartbeat more.
    pub(super) fn lease_ms(&self) -> u64 {
        self.config
            .lease_ms()
            .max(self.suspect_base_ms() - self.config.heartbeat_ms)
            .min(self.suspect_base_ms().saturating_sub(1))
    }

    /// Silence after which the coordinator declares a member dead and frees its rank.
    pub(super) fn dead_ms(&self) -> u64 {
        self.config.dead_ms().max(2 * self.suspect_base_ms())
    }

    /// This node's share of the per-rank stagger: at least the configured step per rank, and
    /// at least half a round trip (the one-way delay), so that a lower rank's round reaches us
    /// before we start ours.
    /// While no round trip is known (a cluster starting) it is half the start-up window: the
    /// lowest rank still goes first at once.
    pub(super) fn stagger_ms(&self) -> u64 {
        let above_first = u64::from(self.me.rank.unwrap_or(1).saturating_sub(1)).min(16);
        let one_way_ms = if self.rtt.known() {
            self.rtt_ms() / 2
        } else {
            UNKNOWN_RTT_WINDOW_MS / 2
        };
        self.config.stagger_ms.max(one_way_ms) * above_first
    }

    /// The round trip the timings follow (the high end of the quorum's estimate).
    pub(super) fn rtt_ms(&self) -> u64 {
        self.rtt.high_ms(self.role == Role::Coordinator)
    }

    /// How long a candidate waits for replies: the configured window, or two round trips;
    /// while no round trip is known (a cluster starting), a generous one: a round ends as soon
    /// as its outcome is known, so a long window costs only a failed round's time.
    pub(super) fn election_window_ms(&self) -> u64 {
        let floor_ms = if self.rtt.known() {
            2 * self.rtt_ms()
        } else {
            UNKNOWN_RTT_WINDOW_MS
        };
        self.config.election_window_ms.max(floor_ms)
    }

    fn on_message(&mut self, now_ms: u64, src: SocketAddr, msg: Message) {
        if msg.from.node_id == self.me.node_id {
            return; // our own multicast, looped back
        }
        if msg.to.is_some_and(|to| to != self.me.node_id) {
            return; // meant for another member: redirected, or a reply to a former address
        }
        if self.heard_leaving(now_ms, &msg) {
            return; // sent before its LEAVE, and late (reordered, duplicated)
        }
        self.missing.remove(&msg.from.node_id);
        self.observe_epoch(now_ms, msg.epoch);
        match msg.body {
            Body::GetRank { purpose } => {
                self.on_get_rank(now_ms, src, &msg.from, msg.epoch, purpose)
            }
            Body::Rank {
                purpose,
                clock,
                last_epoch,
                role,
                coordinator,
                hears_coordinator,
                granted,
                held,
            } => {
                let reply = RankReply {
                    from: msg.from,
                    epoch: msg.epoch,
                    clock,
                    last_epoch,
                    role,
                    coordinator,
                    hears_coordinator,
                    granted,
                    held,
                };
                self.on_rank(now_ms, purpose, reply)
            }
            Body::GetMaster => self.answer_get_master(src),
            Body::Master {
                coordinator,
                clock,
                answer,
                ..
            } => {
                if coordinator.node_id == msg.from.node_id && !answer {
                    self.on_coordinator_claim(now_ms, msg.from, msg.epoch, clock);
                }
            }
            Body::NewMaster { winner } => self.on_new_master(now_ms, msg.epoch, winner),
            Body::TakeOver => self.on_take_over(now_ms, msg.epoch, &msg.from),
            Body::Leave => self.on_leave(now_ms, &msg.from),
        }
    }

    /// Answers a client's question without taking anything from it.
    fn on_query(&mut self, now_ms: u64, src: SocketAddr, body: Body) {
        match body {
            Body::GetMaster => self.answer_get_master(src),
            Body::GetRank {
                purpose: Purpose::Client,
            } => {
                let body = self.rank_body(now_ms, Purpose::Client);
                self.send(src, body);
            }
            _ => {}
        }
    }

    fn answer_get_master(&mut self, src: SocketAddr) {
        if let Some(coordinator) = self.coordinator {
            let members = self.members.values().map(|m| m.node).collect();
            let body = Body::Master {
                coordinator,
                clock: self.clock,
                members,
                answer: true,
            };
            self.send(src, body);
        }
    }

    fn on_get_rank(
        &mut self,
        now_ms: u64,
        src: SocketAddr,
        from: &NodeRef,
        epoch: Epoch,
        purpose: Purpose,
    ) {
        match &purpose {
            Purpose::Join => self.note_joiner(from),
            Purpose::Heartbeat {
                members,
                rtt_ms,
                elected_clock,
                ..
            } => {
                if epoch >= self.epoch {
                    self.on_coordinator_claim(now_ms, *from, epoch, *elected_clock);
                    if self.coordinator.is_some_and(|c| c.node_id == from.node_id) {
                        self.rtt.adopt(*rtt_ms);
                        self.adopt_member_list(now_ms, *from, epoch, members);
                    }
                }
            }
            Purpose::Election { .. } => self.on_election_request(now_ms, from),
            Purpose::Client => {}
        }
        let granted = match &purpose {
            Purpose::Election {
                vote: Some(vote), ..
            } => self.grant_vote(now_ms, from, *vote),
            _ => false,
        };
        // Answers go to where the request came from, not to the address it claims: a node
        // that advertises an address others cannot reach still hears its replies.
        let mut body = self.rank_body(now_ms, purpose);
        if let Body::Rank { granted: g, .. } = &mut body {
            *g = granted;
        }
        self.send_to_member(src, from.node_id, body);
    }

    /// Raises our epoch to one seen in a message or RPC; a coordinator that sees a higher epoch
    /// steps down at once, and a candidate gives up its round.
    pub(super) fn observe_epoch(&mut self, now_ms: u64, epoch: Epoch) {
        if epoch <= self.epoch {
            return;
        }
        self.epoch = epoch;
        self.out.push(Output::PersistEpoch(epoch));
        // Strict mode: a pre-voting candidate that hears a rival ask for votes in the epoch it
        // proposes stays a candidate; whether it votes for the rival decides if it gives way.
        let rival_of_our_epoch = self.config.strict_cluster_size.is_some()
            && self
                .candidate
                .as_ref()
                .is_some_and(|c| !c.voting && epoch <= c.proposed_epoch);
        match self.role {
            Role::Coordinator => self.step_down(now_ms),
            Role::Candidate if rival_of_our_epoch => {}
            Role::Candidate => {
                self.candidate = None;
                self.role = Role::Follower;
                self.last_heard_coordinator_ms = now_ms;
            }
            Role::Joining | Role::Follower => {}
        }
    }

    pub(super) fn step_down(&mut self, now_ms: u64) {
        self.role = Role::Follower;
        self.coordinator = None;
        self.last_heard_coordinator_ms = now_ms;
    }

    /// Whether `msg` comes from a member that left and has not joined again: a node that
    /// starts again joins first (GETRANK or RANK for a join), which ends the memory.
    fn heard_leaving(&mut self, now_ms: u64, msg: &Message) -> bool {
        let forget_after_ms = 2 * self.dead_ms();
        self.left
            .retain(|_, left_ms| now_ms < *left_ms + forget_after_ms);
        if !self.left.contains_key(&msg.from.node_id) {
            return false;
        }
        let joining = matches!(
            msg.body,
            Body::GetRank {
                purpose: Purpose::Join
            } | Body::Rank {
                purpose: Purpose::Join,
                ..
            }
        );
        if joining {
            self.left.remove(&msg.from.node_id);
        }
        !joining
    }

    /// Whether `node` said LEAVE and has not joined since (see [`Node::heard_leaving`]).
    pub(super) fn has_left(&self, node: &NodeRef) -> bool {
        self.left.contains_key(&node.node_id)
    }

    /// A member stopped cleanly: its rank is free now, and if it was our coordinator we elect
    /// at once (staggered by rank) instead of waiting out its silence.
    fn on_leave(&mut self, now_ms: u64, from: &NodeRef) {
        self.left.insert(from.node_id, now_ms);
        self.members.retain(|_, m| m.node.node_id != from.node_id);
        self.rtt.forget(&from.node_id);
        let was_coordinator = self.coordinator.is_some_and(|c| c.node_id == from.node_id);
        if was_coordinator && self.role == Role::Follower {
            self.coordinator = None;
            self.last_direct_ms = 0;
            self.last_heard_coordinator_ms = now_ms.saturating_sub(self.suspect_base_ms());
        }
    }

    /// Whether this node heard its coordinator recently enough not to suspect it (or is it).
    pub(super) fn hears_coordinator(&self, now_ms: u64) -> bool {
        match self.role {
            Role::Coordinator => true,
            Role::Follower => {
                self.coordinator.is_some() && now_ms < self.last_direct_ms + self.suspect_base_ms()
            }
            Role::Joining | Role::Candidate => false,
        }
    }

    pub(super) fn rank_body(&self, now_ms: u64, purpose: Purpose) -> Body {
        Body::Rank {
            purpose,
            clock: self.clock,
            last_epoch: self.last_event_epoch,
            role: self.role,
            coordinator: self.coordinator,
            hears_coordinator: self.hears_coordinator(now_ms),
            granted: false,
            held: now_ms < self.resumed_ms + HELD_MS,
        }
    }

    pub(super) fn message(&self, body: Body) -> Message {
        Message {
            from: self.me,
            epoch: self.epoch,
            to: None,
            body,
        }
    }

    /// Sends to an address whose node is not known (a client, a listed peer).
    pub(super) fn send(&mut self, to: SocketAddr, body: Body) {
        let msg = self.message(body);
        self.out.push(Output::Send { to, msg });
    }

    /// Sends to member `node` at `addr`, naming it: no other member takes the datagram.
    pub(super) fn send_to_member(&mut self, addr: SocketAddr, node: NodeId, body: Body) {
        let mut msg = self.message(body);
        msg.to = Some(node);
        self.out.push(Output::Send { to: addr, msg });
    }

    pub(super) fn broadcast(&mut self, body: Body) {
        let msg = self.message(body);
        self.out.push(Output::Broadcast(msg));
    }
}

/// The election window while no round trip is known: room for links of up to 50 ms.
const UNKNOWN_RTT_WINDOW_MS: u64 = 250;

/// Rounds start below this (and count up by one or two a round: no wrap in any lifetime).
const ROUND_START_MAX: u64 = 1 << 48;

/// A step this much later than the deadline the node asked for means it was stalled (SIGSTOP, a
/// VM pause, CPU starvation, a hung store it waited on).
const STALL_MS: u64 = 100;

/// How long after a stall this node's replies say they may have waited for it (it works
/// through what queued up meanwhile within this).
const HELD_MS: u64 = 50;

/// The election backoff's seed: the node id folded to 64 bits (random in deployments, fixed
/// by the seed in the simulator).
fn seed_of(node_id: NodeId) -> u64 {
    let id = node_id.as_u128();
    (id as u64) ^ ((id >> 64) as u64)
}

/// A RANK reply's content, with its sender and epoch.
#[derive(Debug, Clone, Copy)]
pub(super) struct RankReply {
    pub(super) from: NodeRef,
    pub(super) epoch: Epoch,
    pub(super) clock: Clock,
    pub(super) last_epoch: Epoch,
    pub(super) role: Role,
    pub(super) coordinator: Option<NodeRef>,
    pub(super) hears_coordinator: bool,
    pub(super) granted: bool,
    pub(super) held: bool,
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
