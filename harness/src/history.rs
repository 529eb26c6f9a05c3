//! What a run records: client operations (the history the checkers judge), status samples
//! (roles and epochs over time, for the timeline), fault windows and the events every node
//! was seen to apply. Times are milliseconds since the Unix epoch, the clock Redis stamps
//! `applied_ms` with (all nodes share the machine's clock).

use crate::scenario::OpKind;
use idserver::event::LoggedEvent;
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Success.
    Ok,
    /// A definite failure: it did not take effect (e.g. `login_exists`, `not_found`).
    Fail,
    /// Unknown: it may or may not have taken effect (no reply, ack timeout, unavailable).
    Timeout,
}

/// One client operation, invoked and completed.
#[derive(Debug, Clone, Serialize)]
pub struct OpRecord {
    /// Client session.
    pub session: u32,
    /// The client host it ran on (0: `client`, 1: `client2`, …).
    pub host: u32,
    /// What it did.
    pub kind: OpKind,
    /// The login it is about.
    pub login: String,
    /// The new login of a modify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_login: Option<String>,
    /// The request id of a write (its event carries it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
    /// When it was sent.
    pub invoke_ms: u64,
    /// When its answer came (or the client gave up).
    pub complete_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The UUID in a successful answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<Uuid>,
    /// The error code of a failure (as `idclient --json` names it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The server that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The session's clock after the answer.
    pub clock: u64,
}

/// One look at one node.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When.
    pub at_ms: u64,
    /// Node index (0 for n1).
    pub node: usize,
    /// What it said, if it answered.
    pub status: Option<NodeView>,
}

/// The part of a node's status the timeline and conditions use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// Role.
    pub role: idserver::core::Role,
    /// Highest epoch seen.
    pub epoch: u64,
    /// Its rank.
    pub rank: Option<u32>,
    /// The coordinator it names.
    pub coordinator: Option<String>,
    /// Highest clock applied.
    pub clock: u64,
}

impl From<idserver::wire::StatusView> for NodeView {
    fn from(s: idserver::wire::StatusView) -> Self {
        NodeView {
            role: s.role,
            epoch: s.epoch,
            rank: s.rank,
            coordinator: s.coordinator_addr,
            clock: s.clock,
        }
    }
}

/// What a fault window is, so that the step ending it finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowKind {
    /// A node killed or stopped, until it is started again.
    Kill,
    /// A node paused, until resumed.
    Pause,
    /// A node's Redis killed (a moment: its node restarts it).
    KillRedis,
    /// A node's Redis paused, until resumed.
    PauseRedis,
    /// A partition or cut, until healed.
    Partition,
    /// A link's conditions changed, until set back.
    Link,
    /// A fault of `random-faults`, until it ends.
    Random,
}

/// A fault's time span.
#[derive(Debug, Clone, Serialize)]
pub struct FaultWindow {
    /// Which kind of fault.
    pub kind: WindowKind,
    /// What (`kill n1`, `partition [n1] | [n2 n3]`).
    pub label: String,
    /// Node indices it concerns (empty: the whole cluster).
    pub nodes: Vec<usize>,
    /// Start.
    pub start_ms: u64,
    /// End (`None`: until the run's end).
    pub end_ms: Option<u64>,
}

/// Events a node was seen to apply over the run, keyed by (clock, request id): a tail dropped
/// by divergence and what replaced it are both kept.
pub type SeenEvents = BTreeMap<(u64, Uuid), LoggedEvent>;

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
