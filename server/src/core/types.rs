//! The core's vocabulary: identities, ranks, epochs, roles, timings, and the view of the
//! cluster a node exposes.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use uuid::Uuid;

/// A node's permanent identity (kept in its Redis).
pub type NodeId = Uuid;
/// A node's place in the cluster, >= 1; the lowest free one is taken at join.
pub type Rank = u32;
/// Election term; every election uses the highest seen plus one.
pub type Epoch = u64;
/// Lamport clock of the latest event a node applied.
pub type Clock = u64;

/// Who a message is from, or about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeRef {
    /// Permanent id.
    pub node_id: NodeId,
    /// Rank, once joined.
    pub rank: Option<Rank>,
    /// Where it serves (TCP) and listens for datagrams (UDP), same port number.
    pub addr: SocketAddr,
}

/// What a node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Collecting RANK replies to choose a rank.
    Joining,
    /// Following a coordinator (or waiting for one to be elected).
    Follower,
    /// Asking whether others still hear the coordinator, and collecting their ranks and clocks.
    Candidate,
    /// The coordinator.
    Coordinator,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Role {
    /// The role's name, as in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Joining => "joining",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Coordinator => "coordinator",
        }
    }
}

/// Timings of the protocol.
///
/// Defaults (milliseconds): heartbeat 20; suspect the coordinator after 4 silent heartbeats
/// (80) plus 10 per rank above 1; a member is dead after 10 silent heartbeats (200); join
/// window 100; election window 40; whitepaper mode (strict mode's lease: 3 heartbeats). These
/// are floors: where the measured round trip needs more, the node waits longer (see
/// `docs/elections.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreConfig {
    /// How often the coordinator sends GETRANK.
    pub heartbeat_ms: u64,
    /// Silent heartbeats before a follower suspects the coordinator.
    pub suspect_misses: u32,
    /// Silent heartbeats before the coordinator declares a member dead and frees its rank.
    pub dead_misses: u32,
    /// Extra suspicion delay per rank above 1, so that elections rarely collide.
    pub stagger_ms: u64,
    /// How long a joining node collects RANK replies.
    pub join_window_ms: u64,
    /// How long a candidate waits for RANK replies (it stops early once all known members answered).
    pub election_window_ms: u64,
    /// Strict mode's cluster size N (`None`: whitepaper mode). In strict mode a candidate needs
    /// the votes of a majority (N/2 + 1, itself included), and a coordinator that has not heard
    /// a majority within its lease steps down.
    pub strict_cluster_size: Option<usize>,
    /// Strict mode's lease, in heartbeats: shorter than the suspicion timeout, so an isolated
    /// coordinator stops acting before the others elect a successor.
    pub lease_misses: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            heartbeat_ms: 20,
            suspect_misses: 4,
            dead_misses: 10,
            stagger_ms: 10,
            join_window_ms: 100,
            election_window_ms: 40,
            strict_cluster_size: None,
            lease_misses: 3,
        }
    }
}

impl CoreConfig {
    /// Votes (or live members, the coordinator included) a strict-mode majority needs.
    pub fn majority(&self) -> Option<usize> {
        self.strict_cluster_size.map(|n| n / 2 + 1)
    }

    /// How long a strict-mode coordinator keeps acting without hearing a majority.
    pub fn lease_ms(&self) -> u64 {
        self.heartbeat_ms * u64::from(self.lease_misses)
    }

    /// Silence after which the coordinator declares a member dead.
    pub fn dead_ms(&self) -> u64 {
        self.heartbeat_ms * u64::from(self.dead_misses)
    }
}

/// One member as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Its identity.
    pub node: NodeRef,
    /// Its latest clock, as last reported.
    pub clock: Clock,
    /// When it was last heard from (the caller's milliseconds), directly or through the
    /// coordinator's member list.
    pub last_seen_ms: u64,
}

/// What a node believes about itself and the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// This node.
    pub me: NodeRef,
    /// What it is doing.
    pub role: Role,
    /// Highest epoch seen.
    pub epoch: Epoch,
    /// Its latest clock.
    pub clock: Clock,
    /// The coordinator it follows (itself if coordinator), if any.
    pub coordinator: Option<NodeRef>,
    /// Whether it heard that coordinator directly within the suspicion timeout (always for the
    /// coordinator itself): a follower that does not (a one-way cut) should not take requests
    /// it can only forward into silence.
    pub hears_coordinator: bool,
    /// Members it knows of, itself included, by rank.
    pub members: Vec<MemberView>,
    /// Elections this node started that went on to name a winner.
    pub elections_started: u64,
    /// Election rounds in a row this node ran without a result (0 once a coordinator is
    /// agreed).
    pub failed_rounds: u64,
    /// Why the last of those rounds gave no result.
    pub last_failure: Option<ElectionFailure>,
    /// The round-trip estimate (high end, milliseconds) the election timings follow.
    pub rtt_ms: u64,
    /// Members dropped for silence, not because they left: they may be alive behind a cut,
    /// so a whitepaper coordinator still counts them when it decides how many acks it needs.
    pub missing: usize,
    /// A coordinator whose claim has settled: long enough in office that a rival of the same
    /// epoch would have been heard (always true in strict mode, where votes make a rival
    /// impossible). Writes are acknowledged only by a settled coordinator.
    pub settled: bool,
}

/// Why an election round ended without a coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElectionFailure {
    /// Enough nodes answered, but too few would vote for this node (they still hear a
    /// coordinator, hold a newer log, or voted in that epoch already).
    NoMajority,
    /// The votes of the epoch went to several candidates.
    VotesSplit,
    /// Too few replies arrived within the election window (late, lost, or nodes down).
    RepliesLate,
    /// Nobody answered, and members this node knows of may still be alive: silence is no
    /// evidence that it is alone, so it does not coordinate alone.
    AloneBySilence,
}

impl ElectionFailure {
    /// What it means, for logs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            ElectionFailure::NoMajority => "no majority of votes",
            ElectionFailure::VotesSplit => "votes split",
            ElectionFailure::RepliesLate => "replies too late or missing",
            ElectionFailure::AloneBySilence => "nobody answered (not known to be alone)",
        }
    }
}
