//! Checkers: each takes the run's record ([`CheckInput`]) and returns a [`Finding`]: valid,
//! invalid with the evidence, or unknown. They never touch the lab.

mod acks;
mod linearizable;
mod lost;
mod order;
mod sessions;

use crate::history::{OpRecord, Outcome, SeenEvents};
use crate::scenario::CheckKind;
use idserver::event::{Change, LoggedEvent};
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

pub use linearizable::{check_key, KeyOp, KeyStep};

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
    fn from_violations(details: Vec<String>) -> Finding {
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
}

impl CheckInput<'_> {
    /// Acknowledged writes.
    fn acked_writes(&self) -> impl Iterator<Item = &OpRecord> {
        self.history
            .iter()
            .filter(|op| op.outcome == Outcome::Ok && op.request_id.is_some())
    }

    /// The most complete final log (after recovery they should all be the same).
    fn reference_log(&self) -> Option<(&String, &Vec<LoggedEvent>)> {
        self.final_logs.iter().max_by_key(|(_, log)| log.len())
    }

    fn rel(&self, ms: u64) -> String {
        format!("+{} ms", ms.saturating_sub(self.start_ms))
    }
}

/// Describes an operation for a report line.
fn describe(op: &OpRecord) -> String {
    match &op.new_login {
        Some(new) => format!("{:?} {} -> {}", op.kind, op.login, new).to_lowercase(),
        None => format!("{:?} {}", op.kind, op.login).to_lowercase(),
    }
}

/// Events of a log by request id.
fn by_request(log: &[LoggedEvent]) -> BTreeMap<Uuid, &LoggedEvent> {
    log.iter().map(|e| (e.event.request_id, e)).collect()
}

/// The logins an event binds and unbinds: (login, Some(uuid)) binds, (login, None) frees.
fn effects(change: &Change) -> Vec<(&str, Option<Uuid>)> {
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

#[cfg(test)]
pub(crate) mod fixtures {
    //! Small histories and logs for the checkers' tests.

    use super::*;
    use crate::scenario::OpKind;
    use idserver::event::Event;

    pub fn uuid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    pub fn op(
        session: u32,
        kind: OpKind,
        login: &str,
        times: (u64, u64),
        outcome: Outcome,
        uuid_n: Option<u128>,
        rid: Option<u128>,
    ) -> OpRecord {
        OpRecord {
            session,
            host: 0,
            kind,
            login: login.into(),
            new_login: None,
            request_id: rid.map(uuid),
            invoke_ms: times.0,
            complete_ms: times.1,
            outcome,
            uuid: uuid_n.map(uuid),
            error: None,
            server: Some("n1".into()),
            clock: 0,
        }
    }

    fn logged(clock: u64, rid: u128, applied_ms: u64, change: Change) -> LoggedEvent {
        LoggedEvent {
            event: Event {
                clock,
                epoch: 1,
                origin_rank: 1,
                request_id: uuid(rid),
                at_ms: applied_ms,
                change,
            },
            applied_ms,
        }
    }

    pub fn create(
        clock: u64,
        login: &str,
        uuid_n: u128,
        rid: u128,
        applied_ms: u64,
    ) -> LoggedEvent {
        let change = Change::Create {
            uuid: uuid(uuid_n),
            login: login.into(),
            real_name: String::new(),
            client_addr: String::new(),
            password_hash: None,
        };
        logged(clock, rid, applied_ms, change)
    }

    pub fn delete(
        clock: u64,
        login: &str,
        uuid_n: u128,
        rid: u128,
        applied_ms: u64,
    ) -> LoggedEvent {
        let change = Change::Delete {
            uuid: uuid(uuid_n),
            login: login.into(),
        };
        logged(clock, rid, applied_ms, change)
    }

    /// An acknowledged create of `login` whose UUID and request id are both `n`.
    pub fn acked_create(session: u32, login: &str, times: (u64, u64), n: u128) -> OpRecord {
        op(
            session,
            OpKind::Create,
            login,
            times,
            Outcome::Ok,
            Some(n),
            Some(n),
        )
    }

    pub fn seen_of(log: &[LoggedEvent]) -> SeenEvents {
        log.iter()
            .map(|e| ((e.event.clock, e.event.request_id), e.clone()))
            .collect()
    }

    pub fn check(
        kind: CheckKind,
        history: &[OpRecord],
        logs: &[(&str, Vec<LoggedEvent>)],
    ) -> Finding {
        let final_logs: BTreeMap<String, Vec<LoggedEvent>> = logs
            .iter()
            .map(|(n, l)| (n.to_string(), l.clone()))
            .collect();
        let seen: Vec<SeenEvents> = logs.iter().map(|(_, l)| seen_of(l)).collect();
        let names: Vec<String> = logs.iter().map(|(n, _)| n.to_string()).collect();
        let input = CheckInput {
            history,
            final_logs: &final_logs,
            seen: &seen,
            names: &names,
            start_ms: 0,
            was_coordinator: &|_, _| true,
        };
        run(&kind, &input)
    }
}
