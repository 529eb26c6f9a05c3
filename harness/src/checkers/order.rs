//! Event order on each node, and agreement between nodes: every log in strict (clock, rank)
//! order with consecutive clocks (no gaps), and every live node holding the same history.

use super::{CheckInput, Finding};
use std::collections::{BTreeMap, BTreeSet};

/// Each final log is in strictly increasing (clock, origin rank) order, one clock after another.
pub fn event_order(input: &CheckInput) -> Finding {
    let mut details = Vec::new();
    for (node, log) in input.final_logs {
        for pair in log.windows(2) {
            let (a, b) = (&pair[0].event, &pair[1].event);
            if (b.clock, b.origin_rank) <= (a.clock, a.origin_rank) {
                details.push(format!(
                    "{node}: event ({}, rank {}) comes after ({}, rank {})",
                    b.clock, b.origin_rank, a.clock, a.origin_rank
                ));
            } else if b.clock != a.clock + 1 {
                details.push(format!(
                    "{node}: gap between clock {} and clock {}",
                    a.clock, b.clock
                ));
            }
        }
    }
    let mut finding = Finding::from_violations(details);
    let events: usize = input.final_logs.values().map(Vec::len).sum();
    finding
        .figures
        .insert("events_checked".into(), events as f64);
    finding
}

/// Every epoch's events were made by one node (one origin rank), over every event any node was
/// seen to apply during the run and every final log: two coordinators of one epoch (what
/// strict mode's votes rule out) would each make events in it, and the one that lost would
/// see its events dropped, which the final logs alone no longer show.
pub fn one_writer_per_epoch(input: &CheckInput) -> Finding {
    let mut writers: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    let seen = input.seen.iter().flat_map(|s| s.values());
    for e in seen.chain(input.final_logs.values().flatten()) {
        writers
            .entry(e.event.epoch)
            .or_default()
            .insert(e.event.origin_rank);
    }
    let details = writers
        .iter()
        .filter(|(_, ranks)| ranks.len() > 1)
        .map(|(epoch, ranks)| format!("epoch {epoch}: events made by ranks {ranks:?}"))
        .collect();
    let mut finding = Finding::from_violations(details);
    finding
        .figures
        .insert("epochs_checked".into(), writers.len() as f64);
    finding
}

/// All final logs end at the same clock and agree on every clock they both hold.
pub fn logs_identical(input: &CheckInput) -> Finding {
    let mut details = Vec::new();
    let Some((ref_node, reference)) = input.reference_log() else {
        return Finding {
            verdict: super::Verdict::Unknown,
            details: vec!["no live node to read a log from".into()],
            figures: Default::default(),
        };
    };
    let by_clock: std::collections::BTreeMap<u64, _> = reference
        .iter()
        .map(|e| (e.event.clock, &e.event))
        .collect();
    let last = reference.last().map_or(0, |e| e.event.clock);
    for (node, log) in input.final_logs {
        let their_last = log.last().map_or(0, |e| e.event.clock);
        if their_last != last {
            details.push(format!(
                "{node} ends at clock {their_last}, {ref_node} at clock {last}"
            ));
        }
        if let Some(diff) = log.iter().find(|e| {
            by_clock
                .get(&e.event.clock)
                .is_some_and(|r| !r.same_as(&e.event))
        }) {
            details.push(format!(
                "{node} and {ref_node} differ at clock {} (epoch {} vs {})",
                diff.event.clock, diff.event.epoch, by_clock[&diff.event.clock].epoch
            ));
        }
    }
    let mut finding = Finding::from_violations(details);
    finding.figures.insert("final_clock".into(), last as f64);
    finding
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::Verdict;
    use crate::scenario::CheckKind;

    #[test]
    fn two_writers_in_one_epoch_are_found() {
        let one = vec![create(1, "a", 1, 1, 5), create(2, "b", 2, 2, 6)];
        let f = check(CheckKind::OneWriterPerEpoch, &[], &[("n1", one.clone())]);
        assert_eq!(f.verdict, Verdict::Valid);
        let mut rival = create(2, "c", 3, 3, 6);
        rival.event.origin_rank = 2;
        let f = check(
            CheckKind::OneWriterPerEpoch,
            &[],
            &[("n1", one), ("n2", vec![create(1, "a", 1, 1, 5), rival])],
        );
        assert_eq!(f.details, vec!["epoch 1: events made by ranks {1, 2}"]);
        let mut later = create(3, "d", 4, 4, 7);
        (later.event.epoch, later.event.origin_rank) = (2, 2);
        let f = check(
            CheckKind::OneWriterPerEpoch,
            &[],
            &[("n1", vec![create(1, "a", 1, 1, 5), later])],
        );
        assert_eq!(f.verdict, Verdict::Valid, "{f:?}");
    }

    #[test]
    fn a_gap_and_a_disorder_are_found() {
        let good = vec![create(1, "a", 1, 1, 5), create(2, "b", 2, 2, 6)];
        assert_eq!(
            check(CheckKind::EventOrder, &[], &[("n1", good.clone())]).verdict,
            Verdict::Valid
        );
        let gap = vec![create(1, "a", 1, 1, 5), create(3, "b", 2, 2, 6)];
        let f = check(CheckKind::EventOrder, &[], &[("n1", gap)]);
        assert_eq!(f.details, vec!["n1: gap between clock 1 and clock 3"]);
        let back = vec![create(2, "a", 1, 1, 5), create(1, "b", 2, 2, 6)];
        assert_eq!(
            check(CheckKind::EventOrder, &[], &[("n1", back)]).verdict,
            Verdict::Invalid
        );
    }

    #[test]
    fn differing_or_shorter_logs_are_found() {
        let a = vec![create(1, "a", 1, 1, 5), create(2, "b", 2, 2, 6)];
        let b = vec![create(1, "a", 1, 1, 5), create(2, "c", 3, 3, 6)];
        let f = check(
            CheckKind::LogsIdentical,
            &[],
            &[("n1", a.clone()), ("n2", b)],
        );
        assert_eq!(f.verdict, Verdict::Invalid);
        let short = vec![create(1, "a", 1, 1, 5)];
        let f = check(
            CheckKind::LogsIdentical,
            &[],
            &[("n1", a.clone()), ("n2", short)],
        );
        assert_eq!(f.details, vec!["n2 ends at clock 1, n1 at clock 2"]);
        let f = check(
            CheckKind::LogsIdentical,
            &[],
            &[("n1", a.clone()), ("n2", a)],
        );
        assert_eq!(f.verdict, Verdict::Valid);
    }
}
