//! The cluster protocol without I/O: membership, ranks, heartbeats, failure detection and
//! election as a deterministic state machine. It reads no clock, opens no socket, touches no
//! Redis; time comes in with every [`Node::step`], and its only randomness (election backoff)
//! comes from a generator seeded with the node's id.

mod election;
mod membership;
mod message;
mod node;
pub mod replication;
mod rtt;
mod types;

pub use message::{Body, Message, Purpose, VoteRequest};
pub use node::{Input, Node, Output};
pub use replication::ReplicaStatus;
pub use types::{
    Clock, CoreConfig, ElectionFailure, Epoch, MemberView, NodeId, NodeRef, Rank, Role, View,
};
