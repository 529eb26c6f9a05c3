//! Durability and identity: no acknowledged write missing after recovery, no UUID issued
//! twice, no login bound to two UUIDs.

use super::{by_request, describe, effects, CheckInput, Finding};
use crate::history::Outcome;
use crate::scenario::OpKind;
use idserver::event::Change;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// Every acknowledged write is in every live node's final log. Lists each one that is not.
pub fn no_lost_writes(input: &CheckInput) -> Finding {
    let logs: BTreeMap<&String, _> = input
        .final_logs
        .iter()
        .map(|(n, log)| (n, by_request(log)))
        .collect();
    let mut details = Vec::new();
    let mut acked = 0;
    for op in input.acked_writes() {
        acked += 1;
        let rid = op.request_id.expect("acked writes have ids");
        let missing: Vec<&str> = logs
            .iter()
            .filter(|(_, log)| !log.contains_key(&rid))
            .map(|(n, _)| n.as_str())
            .collect();
        if !missing.is_empty() {
            details.push(format!(
                "{} (uuid {}, acked at {} by {}) is missing on {}",
                describe(op),
                op.uuid.map_or("-".into(), |u| u.to_string()),
                input.rel(op.complete_ms),
                op.server.as_deref().unwrap_or("?"),
                missing.join(", ")
            ));
        }
    }
    let mut finding = Finding::from_violations(details);
    finding.figures.insert("acked_writes".into(), acked as f64);
    let lost = finding.details.len();
    finding.figures.insert("lost_writes".into(), lost as f64);
    finding
}

/// No UUID is made by two creates; no final log ever binds a login twice; no two acknowledged
/// creates of one login hold different UUIDs unless one was (possibly) removed.
pub fn unique(input: &CheckInput) -> Finding {
    let mut details = Vec::new();
    // UUIDs over every event any node applied, dropped ones included.
    let mut makers: BTreeMap<Uuid, BTreeSet<Uuid>> = BTreeMap::new();
    let all = input
        .seen
        .iter()
        .flat_map(|s| s.values())
        .chain(input.final_logs.values().flatten());
    for e in all {
        if let Change::Create { uuid, .. } = &e.event.change {
            makers.entry(*uuid).or_default().insert(e.event.request_id);
        }
    }
    for (uuid, requests) in &makers {
        if requests.len() > 1 {
            details.push(format!(
                "uuid {uuid} was issued by {} different creates",
                requests.len()
            ));
        }
    }
    for (node, log) in input.final_logs {
        let mut bound: BTreeMap<&str, Uuid> = BTreeMap::new();
        for e in log {
            for (login, to) in effects(&e.event.change) {
                match to {
                    Some(u) => {
                        if let Some(old) = bound.insert(login, u) {
                            details.push(format!(
                                "{node}: clock {} binds {login} to {u} while it is bound to {old}",
                                e.event.clock
                            ));
                        }
                    }
                    None => {
                        bound.remove(login);
                    }
                }
            }
        }
    }
    // What clients were told.
    let mut created: BTreeMap<&str, BTreeSet<Uuid>> = BTreeMap::new();
    let mut removals: BTreeMap<&str, usize> = BTreeMap::new();
    for op in input.history {
        let done = op.outcome == Outcome::Ok;
        let maybe = done || op.outcome == Outcome::Timeout;
        match op.kind {
            OpKind::Create if done => {
                created
                    .entry(op.login.as_str())
                    .or_default()
                    .extend(op.uuid);
            }
            OpKind::Delete | OpKind::Modify if maybe => {
                *removals.entry(op.login.as_str()).or_default() += 1;
            }
            _ => {}
        }
    }
    for (login, uuids) in created {
        let removed = removals.get(login).copied().unwrap_or(0);
        if uuids.len() > removed + 1 {
            let list: Vec<String> = uuids.iter().map(|u| u.to_string()).collect();
            details.push(format!(
                "clients were told {login} is {} with only {removed} removal(s) between",
                list.join(" and ")
            ));
        }
    }
    Finding::from_violations(details)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::Verdict;
    use crate::history::Outcome;
    use crate::scenario::{CheckKind, OpKind};

    #[test]
    fn a_lost_acknowledged_write_is_listed() {
        let history = vec![
            acked_create(1, "a", (0, 10), 1),
            acked_create(1, "b", (11, 20), 2),
            op(
                1,
                OpKind::Create,
                "c",
                (21, 30),
                Outcome::Timeout,
                None,
                Some(3),
            ),
        ];
        let full = vec![create(1, "a", 1, 1, 5), create(2, "b", 2, 2, 15)];
        let f = check(
            CheckKind::NoLostWrites,
            &history,
            &[("n1", full.clone()), ("n2", full.clone())],
        );
        assert_eq!(f.verdict, Verdict::Valid);
        let f = check(
            CheckKind::NoLostWrites,
            &history,
            &[("n1", full), ("n2", vec![create(1, "a", 1, 1, 5)])],
        );
        assert_eq!(f.figures["lost_writes"], 1.0);
        assert!(f.details[0].starts_with("create b (uuid 00000000-0000-0000-0000-000000000002, acked at +20 ms by n1) is missing on n2"));
    }

    #[test]
    fn a_login_bound_twice_and_a_reused_uuid_are_found() {
        let log = vec![create(1, "a", 1, 1, 5), create(2, "a", 2, 2, 6)];
        let f = check(CheckKind::Unique, &[], &[("n1", log)]);
        assert_eq!(f.details.len(), 1, "{:?}", f.details);
        let log = vec![create(1, "a", 1, 1, 5), create(2, "b", 1, 2, 6)];
        assert_eq!(
            check(CheckKind::Unique, &[], &[("n1", log)]).verdict,
            Verdict::Invalid
        );
        let log = vec![
            create(1, "a", 1, 1, 5),
            delete(2, "a", 1, 2, 6),
            create(3, "a", 3, 3, 7),
        ];
        assert_eq!(
            check(CheckKind::Unique, &[], &[("n1", log)]).verdict,
            Verdict::Valid
        );
        let told = vec![
            acked_create(1, "a", (0, 10), 1),
            acked_create(2, "a", (0, 10), 2),
        ];
        assert_eq!(
            check(CheckKind::Unique, &told, &[("n1", vec![])]).verdict,
            Verdict::Invalid
        );
    }
}
