//! The whitepaper's client model: one total order of writes (the final log's (clock, rank)
//! order) in which every session's writes keep their program order, every session reads its
//! own writes, and its reads never go back in that order (monotonic reads).
//!
//! Each login's value over the order is a step function of the clock. A read that returned
//! value `v` is explained by some point `x` of the order where the login held `v`; the session
//! keeps a floor (its last write's clock, its last read's point) and `x` must not be below it.

use super::{by_request, describe, effects, CheckInput, Finding, Verdict};
use crate::history::{OpRecord, Outcome};
use crate::scenario::OpKind;
use std::collections::BTreeMap;
use uuid::Uuid;

/// What a read showed about a login.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Bound(Uuid),
    BoundToSomething,
    Free,
}

impl Seen {
    fn matches(self, value: Option<Uuid>) -> bool {
        match self {
            Seen::Bound(u) => value == Some(u),
            Seen::BoundToSomething => value.is_some(),
            Seen::Free => value.is_none(),
        }
    }
}

/// The reads an operation amounts to (a definite failure reads the state that caused it).
fn reads(op: &OpRecord) -> Vec<(&str, Seen)> {
    match (op.kind, op.outcome, op.error.as_deref()) {
        (OpKind::Lookup, Outcome::Ok, _) => op
            .uuid
            .map(|u| vec![(op.login.as_str(), Seen::Bound(u))])
            .unwrap_or_default(),
        (OpKind::Lookup, Outcome::Fail, Some("not_found")) => vec![(op.login.as_str(), Seen::Free)],
        (OpKind::Create, Outcome::Fail, Some("login_exists")) => {
            vec![(op.login.as_str(), Seen::BoundToSomething)]
        }
        (OpKind::Delete | OpKind::Modify, Outcome::Fail, Some("not_found")) => {
            vec![(op.login.as_str(), Seen::Free)]
        }
        (OpKind::Modify, Outcome::Fail, Some("new_name_taken")) => op
            .new_login
            .as_deref()
            .map(|n| vec![(n, Seen::BoundToSomething)])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Each login's values over the order: (from clock, value), starting free at clock 0.
type Versions<'a> = BTreeMap<&'a str, Vec<(u64, Option<Uuid>)>>;

/// The lowest point at or above `floor` where `login` held what `seen` shows.
fn explain(versions: &Versions, login: &str, seen: Seen, floor: u64) -> Option<u64> {
    let initial = [(0, None)];
    let list = versions.get(login).map_or(&initial[..], |v| v.as_slice());
    list.iter().enumerate().find_map(|(i, (from, value))| {
        let until = list.get(i + 1).map_or(u64::MAX, |(next, _)| *next);
        (seen.matches(*value) && until > floor).then(|| (*from).max(floor))
    })
}

/// Checks every session against the final order.
pub fn sessions(input: &CheckInput) -> Finding {
    let Some((_, log)) = input.reference_log() else {
        return Finding {
            verdict: Verdict::Unknown,
            details: vec!["no live node to read the final order from".into()],
            figures: Default::default(),
        };
    };
    let mut versions: Versions = BTreeMap::new();
    for e in log {
        for (login, value) in effects(&e.event.change) {
            versions
                .entry(login)
                .or_insert_with(|| vec![(0, None)])
                .push((e.event.clock, value));
        }
    }
    let clock_of = by_request(log);
    let mut by_session: BTreeMap<u32, Vec<&OpRecord>> = BTreeMap::new();
    for op in input.history {
        by_session.entry(op.session).or_default().push(op);
    }
    let mut details = Vec::new();
    let mut reads_checked = 0;
    for (session, mut ops) in by_session {
        ops.sort_by_key(|op| op.invoke_ms);
        let mut floor = 0u64;
        for op in ops {
            if op.outcome == Outcome::Ok && op.kind.is_write() {
                let rid = op.request_id.expect("writes have ids");
                match clock_of.get(&rid) {
                    None => details.push(format!(
                        "session {session}: acknowledged {} (at {}) is not in the final order",
                        describe(op),
                        input.rel(op.complete_ms)
                    )),
                    Some(e) if e.event.clock < floor => details.push(format!(
                        "session {session}: {} took clock {} below what the session had seen ({floor})",
                        describe(op),
                        e.event.clock
                    )),
                    Some(e) => floor = e.event.clock,
                }
                continue;
            }
            for (login, seen) in reads(op) {
                reads_checked += 1;
                match explain(&versions, login, seen, floor) {
                    Some(x) => floor = x,
                    None => details.push(format!(
                        "session {session}: {} at {} saw {login} {} — no point of the order at or after clock {floor} has that",
                        describe(op),
                        input.rel(op.complete_ms),
                        match seen {
                            Seen::Bound(u) => format!("bound to {u}"),
                            Seen::BoundToSomething => "taken".into(),
                            Seen::Free => "free".into(),
                        }
                    )),
                }
            }
        }
    }
    let mut finding = Finding::from_violations(details);
    finding
        .figures
        .insert("reads_checked".into(), reads_checked as f64);
    finding
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::Verdict;
    use crate::history::Outcome;
    use crate::scenario::{CheckKind, OpKind};

    fn lookup(session: u32, login: &str, t: u64, found: Option<u128>) -> crate::history::OpRecord {
        let mut o = op(
            session,
            OpKind::Lookup,
            login,
            (t, t + 1),
            if found.is_some() {
                Outcome::Ok
            } else {
                Outcome::Fail
            },
            found,
            None,
        );
        if found.is_none() {
            o.error = Some("not_found".into());
        }
        o
    }

    #[test]
    fn reading_ones_own_write_and_other_sessions_stale_reads_are_fine() {
        let log = vec![create(1, "a", 1, 1, 5)];
        let history = vec![
            acked_create(1, "a", (0, 10), 1),
            lookup(1, "a", 11, Some(1)),
            // Another session may still read the older state...
            lookup(2, "a", 12, None),
            // ...and then the newer one.
            lookup(2, "a", 14, Some(1)),
        ];
        let f = check(CheckKind::Sessions, &history, &[("n1", log)]);
        assert_eq!(f.verdict, Verdict::Valid, "{:?}", f.details);
    }

    #[test]
    fn a_session_missing_its_own_write_or_going_back_is_found() {
        let log = vec![create(1, "a", 1, 1, 5)];
        let history = vec![acked_create(1, "a", (0, 10), 1), lookup(1, "a", 11, None)];
        let f = check(CheckKind::Sessions, &history, &[("n1", log.clone())]);
        assert_eq!(f.verdict, Verdict::Invalid);
        let history = vec![lookup(2, "a", 12, Some(1)), lookup(2, "a", 14, None)];
        let f = check(CheckKind::Sessions, &history, &[("n1", log)]);
        assert_eq!(f.verdict, Verdict::Invalid, "monotonic reads");
    }

    #[test]
    fn an_acknowledged_write_missing_from_the_order_is_found() {
        let history = vec![acked_create(1, "a", (0, 10), 1)];
        let f = check(CheckKind::Sessions, &history, &[("n1", vec![])]);
        assert_eq!(f.verdict, Verdict::Invalid);
    }
}
