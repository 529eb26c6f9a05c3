//! What every checker shares: the record it judges ([`CheckInput`]), what it concludes
//! ([`Finding`], [`Verdict`]), helpers over the record, and the dispatch by check kind.

use crate::history::{OpRecord, Outcome, SeenEvents};
use crate::scenario::CheckKind;
use idserver::event::{Change, LoggedEvent};
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{acks, linearizable, lost, order, sessions};

/// What a checker concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The property holds on this run.
    Valid,
    /// It does not; the details say where.
    Invalid,
    /// The checker could not decide (too large, nothing to judge).
    Unknown,
}

/// A checker's verdict with its evidence and figures.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The verdict.
    pub verdict: Verdict,
    /// One line per violation (or why unknown).
    pub details: Vec<String>,
    /// Measured figures (e.g. `window_p99_ms`).
    pub figures: BTreeMap<String, f64>,
}

impl Finding {
    pub(super) fn from_violations(details: Vec<String>) -> Finding {
        Finding {
            verdict: if details.is_empty() {
                Verdict::Valid
            } else {
                Verdict::Invalid
            },
            details,
            figures: BTreeMap::new(),
        }
    }
}

/// Everything the checkers judge.
pub struct CheckInput<'a> {
    /// The client history.
    pub history: &'a [OpRecord],
    /// Each live node's whole log after recovery, by node name.
    pub final_logs: &'a BTreeMap<String, Vec<LoggedEvent>>,
    /// Events each node (by index; names in `names`) was seen to apply during the run.
    pub seen: &'a [SeenEvents],
    /// Node names by index.
    pub names: &'a [String],
    /// When the run started (Unix ms), for relative times in details.
    pub start_ms: u64,
    /// Whether the server at `addr` was the coordinator at `at_ms`.
    pub was_coordinator: &'a dyn Fn(&str, u64) -> bool,
    /// How far apart the clocks of the hosts and of the control node may be (ms; 0 in the
    /// local lab, where they are one clock): checks comparing their times allow for it.
    pub clock_uncertainty_ms: u64,
}

impl CheckInput<'_> {
    /// Acknowledged writes.
    pub(super) fn acked_writes(&self) -> impl Iterator<Item = &OpRecord> {
        self.history
            .iter()
            .filter(|op| op.outcome == Outcome::Ok && op.request_id.is_some())
    }

    /// The most complete final log (after recovery they should all be the same).
    pub(super) fn reference_log(&self) -> Option<(&String, &Vec<LoggedEvent>)> {
        self.final_logs.iter().max_by_key(|(_, log)| log.len())
    }

    pub(super) fn rel(&self, ms: u64) -> String {
        format!("+{} ms", ms.saturating_sub(self.start_ms))
    }
}

/// Describes an operation for a report line.
pub(super) fn describe(op: &OpRecord) -> String {
    match &op.new_login {
        Some(new) => format!("{:?} {} -> {}", op.kind, op.login, new).to_lowercase(),
        None => format!("{:?} {}", op.kind, op.login).to_lowercase(),
    }
}

/// Events of a log by request id.
pub(super) fn by_request(log: &[LoggedEvent]) -> BTreeMap<Uuid, &LoggedEvent> {
    log.iter().map(|e| (e.event.request_id, e)).collect()
}

/// The logins an event binds and unbinds: (login, Some(uuid)) binds, (login, None) frees.
pub(super) fn effects(change: &Change) -> Vec<(&str, Option<Uuid>)> {
    match change {
        Change::Create { uuid, login, .. } => vec![(login.as_str(), Some(*uuid))],
        Change::Rename { uuid, old, new } => {
            vec![(old.as_str(), None), (new.as_str(), Some(*uuid))]
        }
        Change::Delete { login, .. } => vec![(login.as_str(), None)],
        Change::Open => Vec::new(),
    }
}

/// Runs one check.
pub fn run(kind: &CheckKind, input: &CheckInput) -> Finding {
    match kind {
        CheckKind::EventOrder => order::event_order(input),
        CheckKind::LogsIdentical => order::logs_identical(input),
        CheckKind::AckedApplied(k) => acks::acked_applied(input, *k),
        CheckKind::Window(ms) => acks::window(input, *ms),
        CheckKind::Latency(ms) => acks::latency(input, *ms),
        CheckKind::NoLostWrites => lost::no_lost_writes(input),
        CheckKind::Unique => lost::unique(input),
        CheckKind::Sessions => sessions::sessions(input),
        CheckKind::Linearizable => linearizable::linearizable(input),
        CheckKind::OneWriterPerEpoch => order::one_writer_per_epoch(input),
    }
}

/// The p-th percentile (0..=100) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
