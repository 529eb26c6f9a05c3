//! Small histories and logs for the checkers' tests.

use super::*;
use crate::history::{OpRecord, Outcome, SeenEvents};
use crate::scenario::CheckKind;
use crate::scenario::OpKind;
use idserver::event::Event;
use idserver::event::{Change, LoggedEvent};
use std::collections::BTreeMap;
use uuid::Uuid;

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

pub fn create(clock: u64, login: &str, uuid_n: u128, rid: u128, applied_ms: u64) -> LoggedEvent {
    let change = Change::Create {
        uuid: uuid(uuid_n),
        login: login.into(),
        real_name: String::new(),
        client_addr: String::new(),
        password_hash: None,
    };
    logged(clock, rid, applied_ms, change)
}

pub fn delete(clock: u64, login: &str, uuid_n: u128, rid: u128, applied_ms: u64) -> LoggedEvent {
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

pub fn check(kind: CheckKind, history: &[OpRecord], logs: &[(&str, Vec<LoggedEvent>)]) -> Finding {
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
        clock_uncertainty_ms: 0,
    };
    run(&kind, &input)
}
