//! Replication acks: was each acknowledged write applied on enough nodes when the client got
//! its answer, and how long after the answer did the last replica apply it (the whitepaper's
//! inconsistency window)?

use super::{describe, percentile, CheckInput, Finding, Verdict};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Earliest time each node was seen applying each request id.
fn applied_at(input: &CheckInput) -> Vec<BTreeMap<Uuid, u64>> {
    input
        .seen
        .iter()
        .map(|seen| {
            let mut first = BTreeMap::new();
            for e in seen.values() {
                let at = first.entry(e.event.request_id).or_insert(e.applied_ms);
                *at = (*at).min(e.applied_ms);
            }
            first
        })
        .collect()
}

/// Times of hosts with clocks of their own are each off by up to the uncertainty: a finding
/// that compares them says how much it allowed (nothing in the local lab, one clock).
fn note_clocks(finding: &mut Finding, input: &CheckInput) {
    if input.clock_uncertainty_ms > 0 {
        finding.figures.insert(
            "clock_uncertainty_ms".into(),
            input.clock_uncertainty_ms as f64,
        );
    }
}

/// Every acknowledged write was applied on at least `min_nodes` nodes by its ack.
pub fn acked_applied(input: &CheckInput, min_nodes: u32) -> Finding {
    let applied = applied_at(input);
    let mut details = Vec::new();
    let mut counts = Vec::new();
    for op in input.acked_writes() {
        let rid = op.request_id.expect("acked writes have ids");
        let on: Vec<&str> = applied
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                a.get(&rid)
                    .is_some_and(|t| *t <= op.complete_ms + input.clock_uncertainty_ms)
            })
            .map(|(i, _)| input.names[i].as_str())
            .collect();
        counts.push(on.len() as u64);
        if (on.len() as u32) < min_nodes {
            details.push(format!(
                "{} acked at {} was applied on {} node(s) by then ({})",
                describe(op),
                input.rel(op.complete_ms),
                on.len(),
                on.join(", ")
            ));
        }
    }
    let mut finding = Finding::from_violations(details);
    note_clocks(&mut finding, input);
    counts.sort_unstable();
    finding
        .figures
        .insert("acked_writes".into(), counts.len() as f64);
    finding.figures.insert(
        "nodes_applied_at_ack_min".into(),
        counts.first().copied().unwrap_or(0) as f64,
    );
    if counts.is_empty() {
        finding.verdict = Verdict::Unknown;
        finding
            .details
            .push("no acknowledged write to judge".into());
    }
    finding
}

/// p99 of (last live node applied − ack) is at most `p99_ms_max`.
pub fn window(input: &CheckInput, p99_ms_max: u64) -> Finding {
    let applied = applied_at(input);
    let live: Vec<usize> = (0..input.names.len())
        .filter(|i| input.final_logs.contains_key(&input.names[*i]))
        .collect();
    let mut windows = Vec::new();
    let mut lags = Vec::new();
    for op in input.acked_writes() {
        let rid = op.request_id.expect("acked writes have ids");
        let times: Vec<u64> = live
            .iter()
            .filter_map(|i| applied[*i].get(&rid))
            .copied()
            .collect();
        if let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) {
            windows.push(last.saturating_sub(op.complete_ms));
            lags.push(last - first);
        }
    }
    windows.sort_unstable();
    lags.sort_unstable();
    let mut finding = Finding::from_violations(Vec::new());
    if windows.is_empty() {
        finding.verdict = Verdict::Unknown;
        finding
            .details
            .push("no acknowledged write to judge".into());
        return finding;
    }
    let p99 = percentile(&windows, 99.0);
    // Besides the window the whitepaper speaks of (from the client's ack), the time replicas
    // disagree: from the first node applying a write (the coordinator) to the last.
    for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        finding
            .figures
            .insert(format!("window_{name}_ms"), percentile(&windows, p) as f64);
        finding.figures.insert(
            format!("replica_lag_{name}_ms"),
            percentile(&lags, p) as f64,
        );
    }
    finding
        .figures
        .insert("writes_measured".into(), windows.len() as f64);
    note_clocks(&mut finding, input);
    if p99 > p99_ms_max + input.clock_uncertainty_ms {
        finding.verdict = Verdict::Invalid;
        finding.details.push(format!(
            "p99 window {p99} ms is above {p99_ms_max} ms (over {} writes; clocks within ± {} \
             ms)",
            windows.len(),
            input.clock_uncertainty_ms
        ));
    }
    finding
}

/// p99 of how long clients waited for an answer (whatever it was) is at most `p99_ms_max`:
/// availability as clients feel it, e.g. that a cut-off server turns them away quickly.
pub fn latency(input: &CheckInput, p99_ms_max: u64) -> Finding {
    let mut waits: Vec<u64> = input
        .history
        .iter()
        .map(|op| op.complete_ms.saturating_sub(op.invoke_ms))
        .collect();
    waits.sort_unstable();
    let mut finding = Finding::from_violations(Vec::new());
    if waits.is_empty() {
        finding.verdict = Verdict::Unknown;
        finding.details.push("no operation to judge".into());
        return finding;
    }
    for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        finding
            .figures
            .insert(format!("latency_{name}_ms"), percentile(&waits, p) as f64);
    }
    let p99 = percentile(&waits, 99.0);
    if p99 > p99_ms_max {
        finding.verdict = Verdict::Invalid;
        let slowest = input
            .history
            .iter()
            .max_by_key(|op| op.complete_ms.saturating_sub(op.invoke_ms))
            .expect("not empty");
        finding.details.push(format!(
            "p99 latency {p99} ms is above {p99_ms_max} ms (over {} operations; slowest: {} at {} took {} ms via {})",
            waits.len(),
            describe(slowest),
            input.rel(slowest.invoke_ms),
            slowest.complete_ms.saturating_sub(slowest.invoke_ms),
            slowest.server.as_deref().unwrap_or("-")
        ));
    }
    finding
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::Verdict;
    use crate::scenario::CheckKind;

    #[test]
    fn a_write_acked_before_a_replica_applied_it_is_found() {
        let history = vec![acked_create(1, "a", (0, 10), 1)];
        let n1 = vec![create(1, "a", 1, 1, 8)];
        let late = vec![create(1, "a", 1, 1, 30)];
        let f = check(
            CheckKind::AckedApplied(2),
            &history,
            &[("n1", n1.clone()), ("n2", late)],
        );
        assert_eq!(f.verdict, Verdict::Invalid);
        assert_eq!(
            f.details,
            vec!["create a acked at +10 ms was applied on 1 node(s) by then (n1)"]
        );
        let f = check(
            CheckKind::AckedApplied(2),
            &history,
            &[("n1", n1.clone()), ("n2", n1)],
        );
        assert_eq!(f.verdict, Verdict::Valid);
    }

    #[test]
    fn slow_answers_fail_the_latency_check() {
        let mut history: Vec<_> = (0..99)
            .map(|i| acked_create(1, "a", (i * 10, i * 10 + 2), i as u128))
            .collect();
        history.push(acked_create(1, "b", (1000, 3000), 500));
        let f = check(CheckKind::Latency(100), &history, &[("n1", vec![])]);
        assert_eq!(
            f.verdict,
            Verdict::Valid,
            "one slow answer in 100 is the p99 edge"
        );
        history.push(acked_create(1, "c", (4000, 6000), 501));
        let f = check(CheckKind::Latency(100), &history, &[("n1", vec![])]);
        assert_eq!(f.verdict, Verdict::Invalid);
        assert_eq!(f.figures["latency_max_ms"], 2000.0);
    }

    #[test]
    fn the_window_is_measured_from_ack_to_the_last_replica() {
        let history = vec![acked_create(1, "a", (0, 10), 1)];
        let logs = [
            ("n1", vec![create(1, "a", 1, 1, 8)]),
            ("n2", vec![create(1, "a", 1, 1, 70)]),
        ];
        let f = check(CheckKind::Window(50), &history, &logs);
        assert_eq!(f.verdict, Verdict::Invalid);
        assert_eq!(f.figures["window_p99_ms"], 60.0);
        assert_eq!(f.figures["replica_lag_p99_ms"], 62.0);
        assert_eq!(
            check(CheckKind::Window(60), &history, &logs).verdict,
            Verdict::Valid
        );
    }
}
