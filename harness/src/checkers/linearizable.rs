//! Per-login linearizability of writes and of reads answered by the coordinator (strict
//! mode's promise), by the Wing–Gong search with Lowe's memoisation: find an order of the
//! operations on one login that respects real time (an operation that completed before
//! another was invoked comes first) and that a single register would have produced.
//!
//! Writes whose answer never came count only if their event is in the final log, and then
//! may take effect at any time after they were sent.

use super::{by_request, describe, CheckInput, Finding, Verdict};
use crate::history::Outcome;
use crate::limits::LINEARIZABLE_OPS_PER_KEY_MAX;
use crate::scenario::OpKind;
use std::collections::{BTreeMap, HashSet};
use uuid::Uuid;

/// What one operation does to one login's register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStep {
    /// Free → bound to this UUID.
    Bind(Uuid),
    /// Bound to this UUID → free.
    Free(Uuid),
    /// Reads: bound to this UUID.
    ReadBound(Uuid),
    /// Reads: bound to some UUID.
    ReadTaken,
    /// Reads: free.
    ReadFree,
}

impl KeyStep {
    fn apply(self, state: Option<Uuid>) -> Option<Option<Uuid>> {
        match (self, state) {
            (KeyStep::Bind(u), None) => Some(Some(u)),
            (KeyStep::Free(u), Some(s)) if s == u => Some(None),
            (KeyStep::ReadBound(u), Some(s)) if s == u => Some(state),
            (KeyStep::ReadTaken, Some(_)) => Some(state),
            (KeyStep::ReadFree, None) => Some(state),
            _ => None,
        }
    }
}

/// One operation on one login: its step and its real-time interval (`u64::MAX`: never
/// answered).
#[derive(Debug, Clone)]
pub struct KeyOp {
    /// What it does.
    pub step: KeyStep,
    /// Sent.
    pub invoke_ms: u64,
    /// Answered.
    pub complete_ms: u64,
    /// For reports.
    pub label: String,
}

/// Whether the operations on one login (starting free) are linearizable; `None` if the search
/// is too large to decide.
pub fn check_key(ops: &[KeyOp]) -> Option<bool> {
    if ops.len() > LINEARIZABLE_OPS_PER_KEY_MAX {
        return None;
    }
    let mut failed: HashSet<(Vec<u64>, Option<Uuid>)> = HashSet::new();
    let mut done = vec![0u64; ops.len().div_ceil(64)];
    let mut budget = 2_000_000u64;
    search(ops, &mut done, None, 0, &mut failed, &mut budget)
}

fn search(
    ops: &[KeyOp],
    done: &mut Vec<u64>,
    state: Option<Uuid>,
    count: usize,
    failed: &mut HashSet<(Vec<u64>, Option<Uuid>)>,
    budget: &mut u64,
) -> Option<bool> {
    if count == ops.len() {
        return Some(true);
    }
    if *budget == 0 {
        return None;
    }
    *budget -= 1;
    if failed.contains(&(done.clone(), state)) {
        return Some(false);
    }
    let is_done = |done: &Vec<u64>, i: usize| done[i / 64] & (1 << (i % 64)) != 0;
    // Only an operation invoked before every pending one completed can go next.
    let horizon = (0..ops.len())
        .filter(|i| !is_done(done, *i))
        .map(|i| ops[i].complete_ms)
        .min()
        .unwrap_or(u64::MAX);
    for i in 0..ops.len() {
        if is_done(done, i) || ops[i].invoke_ms > horizon {
            continue;
        }
        if let Some(next) = ops[i].step.apply(state) {
            done[i / 64] |= 1 << (i % 64);
            let found = search(ops, done, next, count + 1, failed, budget);
            done[i / 64] &= !(1 << (i % 64));
            match found {
                Some(false) => {}
                other => return other,
            }
        }
    }
    failed.insert((done.clone(), state));
    Some(false)
}

/// Checks every login touched by the history.
pub fn linearizable<'a>(input: &CheckInput<'a>) -> Finding {
    let in_log = input
        .reference_log()
        .map(|(_, log)| by_request(log))
        .unwrap_or_default();
    let mut keys: BTreeMap<&str, Vec<KeyOp>> = BTreeMap::new();
    let mut reads = 0;
    for op in input.history {
        let mut complete = op.complete_ms;
        let mut uuid = op.uuid;
        if op.outcome == Outcome::Timeout {
            // Counts only if it took effect; then it may have at any time after it was sent.
            let Some(e) = op.request_id.and_then(|r| in_log.get(&r)) else {
                continue;
            };
            complete = u64::MAX;
            uuid = e.event.change.uuid();
        }
        let label = format!("{} [{}..{}]", describe(op), op.invoke_ms, op.complete_ms);
        let mut push = |login: &'a str, step: KeyStep| {
            keys.entry(login).or_default().push(KeyOp {
                step,
                invoke_ms: op.invoke_ms,
                complete_ms: complete,
                label: label.clone(),
            })
        };
        let failed = op.outcome == Outcome::Fail;
        match (op.kind, failed, op.error.as_deref()) {
            (OpKind::Lookup, _, _) => {
                let by_coordinator = op
                    .server
                    .as_deref()
                    .is_some_and(|s| (input.was_coordinator)(s, op.complete_ms));
                if !by_coordinator || op.outcome == Outcome::Timeout {
                    continue;
                }
                reads += 1;
                match (failed, uuid, op.error.as_deref()) {
                    (false, Some(u), _) => push(&op.login, KeyStep::ReadBound(u)),
                    (true, _, Some("not_found")) => push(&op.login, KeyStep::ReadFree),
                    _ => {}
                }
            }
            (OpKind::Create, false, _) => {
                push(&op.login, KeyStep::Bind(uuid.expect("ok has uuid")))
            }
            (OpKind::Create, true, Some("login_exists")) => push(&op.login, KeyStep::ReadTaken),
            (OpKind::Delete, false, _) => {
                push(&op.login, KeyStep::Free(uuid.expect("ok has uuid")))
            }
            (OpKind::Modify, false, _) => {
                let u = uuid.expect("ok has uuid");
                push(&op.login, KeyStep::Free(u));
                if let Some(new) = &op.new_login {
                    push(new, KeyStep::Bind(u));
                }
            }
            (OpKind::Delete | OpKind::Modify, true, Some("not_found")) => {
                push(&op.login, KeyStep::ReadFree)
            }
            (OpKind::Modify, true, Some("new_name_taken")) => {
                if let Some(new) = &op.new_login {
                    push(new, KeyStep::ReadTaken);
                }
            }
            _ => {}
        }
    }
    let mut details = Vec::new();
    let mut undecided = Vec::new();
    for (login, ops) in &keys {
        match check_key(ops) {
            Some(true) => {}
            Some(false) => {
                let shown: Vec<&str> = ops.iter().take(12).map(|o| o.label.as_str()).collect();
                details.push(format!(
                    "login {login}: no linearization of {} operations: {}",
                    ops.len(),
                    shown.join("; ")
                ));
            }
            None => undecided.push(login.to_string()),
        }
    }
    let mut finding = Finding::from_violations(details);
    if finding.verdict == Verdict::Valid && !undecided.is_empty() {
        finding.verdict = Verdict::Unknown;
        finding.details.push(format!(
            "too many operations to decide for: {}",
            undecided.join(", ")
        ));
    }
    finding.figures.insert("logins".into(), keys.len() as f64);
    finding
        .figures
        .insert("coordinator_reads".into(), reads as f64);
    finding
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(step: KeyStep, i: u64, c: u64) -> KeyOp {
        KeyOp {
            step,
            invoke_ms: i,
            complete_ms: c,
            label: String::new(),
        }
    }

    fn u(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // A read overlapping a create may see it or not.
        let ops = [k(KeyStep::Bind(u(1)), 0, 10), k(KeyStep::ReadFree, 5, 8)];
        assert_eq!(check_key(&ops), Some(true));
        let ops = [
            k(KeyStep::Bind(u(1)), 0, 10),
            k(KeyStep::ReadBound(u(1)), 5, 8),
        ];
        assert_eq!(check_key(&ops), Some(true));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_not_linearizable() {
        let ops = [k(KeyStep::Bind(u(1)), 0, 10), k(KeyStep::ReadFree, 11, 12)];
        assert_eq!(check_key(&ops), Some(false));
        // Two creates of one login both acknowledged with different UUIDs.
        let ops = [k(KeyStep::Bind(u(1)), 0, 10), k(KeyStep::Bind(u(2)), 0, 10)];
        assert_eq!(check_key(&ops), Some(false));
    }

    #[test]
    fn an_unanswered_write_may_take_effect_late() {
        let ops = [
            k(KeyStep::Bind(u(1)), 0, u64::MAX),
            k(KeyStep::ReadFree, 20, 21),
            k(KeyStep::ReadBound(u(1)), 30, 31),
        ];
        assert_eq!(check_key(&ops), Some(true));
        let ops = [
            k(KeyStep::Bind(u(1)), 0, u64::MAX),
            k(KeyStep::ReadBound(u(1)), 20, 21),
            k(KeyStep::ReadFree, 30, 31),
        ];
        assert_eq!(check_key(&ops), Some(false));
    }

    #[test]
    fn a_long_valid_history_is_decided_quickly() {
        let mut ops = Vec::new();
        for i in 0..400u64 {
            let t = i * 10;
            ops.push(k(KeyStep::Bind(u(i as u128)), t, t + 6));
            ops.push(k(KeyStep::ReadBound(u(i as u128)), t + 2, t + 7));
            ops.push(k(KeyStep::Free(u(i as u128)), t + 5, t + 9));
        }
        assert_eq!(check_key(&ops), Some(true));
    }
}
