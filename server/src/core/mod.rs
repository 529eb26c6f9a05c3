//! The cluster protocol without I/O: membership, ranks, heartbeats, failure detection and
//! election as a deterministic state machine. It reads no clock, opens no socket, touches no
//! Redis and draws no randomness; time comes in with every [`Node::step`].

mod election;
mod membership;
mod message;
mod node;
mod types;

pub use message::{Body, Message, Purpose, VoteRequest};
pub use node::{Input, Node, Output};
pub use types::{Clock, CoreConfig, Epoch, MemberView, NodeId, NodeRef, Rank, Role, View};
