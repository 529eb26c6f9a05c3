//! Replication decided without I/O: the coordinator's per-replica [`Progress`] (probe, stream,
//! snapshot, in-flight window), the epoch-scoped ack [`quorum`](Acks::quorum), a replica's
//! [`accept`]ance of a batch, and the [`writer`](WriterState)'s batch decisions. The tokio tasks
//! in `crate::node::replication`, `crate::node::replica` and `crate::node::writer` move bytes and call the store;
//! the simulator (`server/tests/sim/`) drives these same types.

mod accept;
mod progress;
mod quorum;
mod writer;

pub use accept::{accept, check_epoch, clocks_to_compare, Acceptance, Entry, EpochCheck};
pub use progress::{LinkLimits, Next, Progress, ReplicaStatus, UnexpectedAnswer};
pub use quorum::{Acks, Quorum, Replication};
pub use writer::{recovery, Batch, Opened, Recovery, WriterState, NOT_OPENED};
