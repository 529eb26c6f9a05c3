//! Events: the writes (create, rename, delete) as facts with their results already decided,
//! so that every node that applies one stores the same record. Reads are never events.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An event as a node's log keeps it: with the time this node applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// When this node wrote it to its Redis, milliseconds since the Unix epoch (the node's
    /// clock, read as the transaction is sent).
    pub applied_ms: u64,
}

impl Event {
    /// Whether `other` is the same event (same place, same making): histories that differ
    /// here have diverged.
    pub fn same_as(&self, other: &Event) -> bool {
        self.clock == other.clock
            && self.epoch == other.epoch
            && self.request_id == other.request_id
    }
}

/// One write, numbered by its Lamport clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Lamport clock: the event's place in the total order.
    pub clock: u64,
    /// Election epoch in which the event was made.
    pub epoch: u64,
    /// Rank of the node that made it (breaks ties between equal clocks: lower first).
    pub origin_rank: u32,
    /// The client's request id, so a retry finds this event's result.
    pub request_id: Uuid,
    /// When it was made, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What changed.
    pub change: Change,
}

/// The change an event makes, with every generated value filled in. Tagged by `kind` (in the
/// event log's JSON: `change.kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A new account.
    Create {
        /// Generated UUID.
        uuid: Uuid,
        /// Normalised login name.
        login: String,
        /// Real name.
        real_name: String,
        /// Address of the creating client.
        client_addr: String,
        /// argon2id PHC string, if the account has a password.
        password_hash: Option<String>,
    },
    /// A rename.
    Rename {
        /// The account.
        uuid: Uuid,
        /// Its login before.
        old: String,
        /// Its login after.
        new: String,
    },
    /// A removal.
    Delete {
        /// The account.
        uuid: Uuid,
        /// Its login at removal.
        login: String,
    },
}

impl Change {
    /// The event kind's name, as in logs and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Create { .. } => "create",
            Change::Rename { .. } => "rename",
            Change::Delete { .. } => "delete",
        }
    }

    /// The account the change is about.
    pub fn uuid(&self) -> Uuid {
        match self {
            Change::Create { uuid, .. }
            | Change::Rename { uuid, .. }
            | Change::Delete { uuid, .. } => *uuid,
        }
    }
}
