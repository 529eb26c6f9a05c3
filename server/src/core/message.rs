//! The whitepaper's messages (GETRANK, RANK, GETMASTER, MASTER, NEWMASTER), as the core sends
//! and receives them. The wire adds version and cluster name around them.

use super::types::{Clock, Epoch, NodeId, NodeRef, Role};
use serde::{Deserialize, Serialize};

/// One datagram's content: the sender, its epoch, and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender (a client sends a random id and no rank).
    pub from: NodeRef,
    /// The sender's epoch (0 from clients).
    pub epoch: Epoch,
    /// The one member it is for, when it is for one (a reply, a request to one member); a
    /// node ignores a datagram for another. Sealed with the rest, so a vote captured on its
    /// way to one candidate counts for no other (issue 28). Absent: for anyone (broadcasts,
    /// sends to an address whose node is not known yet, and every datagram of a node older
    /// than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<NodeId>,
    /// What it says.
    pub body: Body,
}

/// Why a GETRANK was sent; RANK echoes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// A node is joining and needs the ranks in use.
    Join,
    /// The coordinator's heartbeat, with its member list (authoritative for ranks).
    Heartbeat {
        /// Members by rank, the coordinator included.
        members: Vec<NodeRef>,
        /// The coordinator's time of sending (its own milliseconds), echoed in RANK so it
        /// measures the round trip to each member.
        #[serde(default)]
        sent_ms: u64,
        /// The coordinator's round-trip estimate (high end), which followers' election
        /// windows follow.
        #[serde(default)]
        rtt_ms: u64,
        /// The coordinator's clock when it took office in this epoch: two coordinators of one
        /// epoch settle by the election's own rule (highest clock, then lowest rank).
        #[serde(default)]
        elected_clock: Clock,
    },
    /// A candidate asks: do you still hear the coordinator, and what are your rank and clock?
    Election {
        /// Identifies the candidate's round, so late replies to an old round are dropped.
        round: u64,
        /// Strict mode: the candidate asks for votes for itself in this epoch, with its last
        /// event's (epoch, clock).
        #[serde(default)]
        vote: Option<VoteRequest>,
    },
    /// A client measures which server answers fastest.
    Client,
}

/// A strict-mode candidate's request for votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRequest {
    /// The epoch the candidate would coordinate.
    pub epoch: Epoch,
    /// The epoch of the candidate's last event.
    pub last_epoch: Epoch,
    /// The candidate's clock.
    pub last_clock: Clock,
    /// A pre-vote: would you vote for me? It changes nothing at the voter; only once a
    /// majority would, the candidate raises its epoch and asks for real votes.
    #[serde(default)]
    pub pre: bool,
    /// The coordinator handed over to the candidate (TAKEOVER): voters still hearing it vote
    /// all the same (Raft's leadership transfer). Logs are compared as for any vote.
    #[serde(default)]
    pub transfer: bool,
}

/// The messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// GETRANK: asks every node for its rank and latest clock.
    GetRank {
        /// Why.
        purpose: Purpose,
    },
    /// RANK: the answer.
    Rank {
        /// The GETRANK's purpose, echoed.
        purpose: Purpose,
        /// Latest event clock.
        clock: Clock,
        /// The epoch the latest event was made in: logs compare by (this, clock).
        #[serde(default)]
        last_epoch: Epoch,
        /// What the sender is doing.
        role: Role,
        /// The coordinator the sender follows, if any.
        coordinator: Option<NodeRef>,
        /// Whether the sender heard that coordinator recently (or is it).
        hears_coordinator: bool,
        /// Strict mode: the sender votes for the candidate.
        #[serde(default)]
        granted: bool,
        /// The sender has just resumed from a stall of its own (a pause, a hung store): the
        /// request may have waited for it, so the reply measures no round trip.
        #[serde(default)]
        held: bool,
    },
    /// GETMASTER: who is the coordinator?
    GetMaster,
    /// MASTER: the coordinator announces itself (or a node answers GETMASTER about it).
    Master {
        /// The coordinator.
        coordinator: NodeRef,
        /// Its latest clock.
        clock: Clock,
        /// The members known to the sender (for clients' second stage).
        members: Vec<NodeRef>,
        /// An answer to a client's GETMASTER: members never act on it. A client question with
        /// its source spoofed to a member's address would otherwise have the coordinator send
        /// that member a sealed MASTER whose clock (its current one) the member takes as the
        /// clock it was elected at (issue 28). Sealed with the rest, so it cannot be stripped.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        answer: bool,
    },
    /// NEWMASTER: an election's result, naming the winner.
    NewMaster {
        /// The node with the highest clock (lowest rank among equals) the candidate heard.
        winner: NodeRef,
    },
    /// TAKEOVER (strict mode, not in the whitepaper): the coordinator hands over to the
    /// receiver, which has acknowledged its whole history: ask for votes now, without waiting
    /// to suspect it. (Whitepaper mode hands over with NEWMASTER.)
    TakeOver,
    /// LEAVE: the sender stops cleanly (not in the whitepaper). Its rank is free at once, and
    /// the others know it is gone rather than silent: only such evidence lets a node that is
    /// left alone acknowledge writes alone.
    Leave,
}

impl Message {
    /// The highest epoch the message carries anywhere (its own, a vote's, a log's).
    pub fn highest_epoch(&self) -> Epoch {
        let body = match &self.body {
            Body::GetRank {
                purpose: Purpose::Election { vote: Some(v), .. },
            } => v.epoch.max(v.last_epoch),
            Body::Rank {
                purpose,
                last_epoch,
                ..
            } => match purpose {
                Purpose::Election { vote: Some(v), .. } => {
                    v.epoch.max(v.last_epoch).max(*last_epoch)
                }
                _ => *last_epoch,
            },
            _ => 0,
        };
        self.epoch.max(body)
    }
}

impl Body {
    /// The whitepaper's name of the message.
    pub fn name(&self) -> &'static str {
        match self {
            Body::GetRank { .. } => "GETRANK",
            Body::Rank { .. } => "RANK",
            Body::GetMaster => "GETMASTER",
            Body::Master { .. } => "MASTER",
            Body::NewMaster { .. } => "NEWMASTER",
            Body::TakeOver => "TAKEOVER",
            Body::Leave => "LEAVE",
        }
    }
}
