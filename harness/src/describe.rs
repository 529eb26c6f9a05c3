//! One-line descriptions of steps, node names and conditions, for progress lines and reports.

use crate::scenario::{Action, Condition, Expect, LinkSpec, PartitionShape, Selector};

/// A node selector as written in scenario files.
pub fn describe_selector(sel: &Selector) -> String {
    match sel {
        Selector::Node(n) => format!("n{n}"),
        Selector::Coordinator => "coordinator".into(),
        Selector::Follower => "follower".into(),
        Selector::Rank(r) => format!("rank:{r}"),
        Selector::Label(l) => format!("@{l}"),
        Selector::Client(c) => crate::cluster::client_host_name(*c),
        Selector::Others => "others".into(),
        Selector::Redis(node) => format!("redis:{}", describe_selector(node)),
    }
}

/// A condition in words.
pub fn describe_condition(c: &Condition) -> String {
    match c {
        Condition::Agreed => "agreed".into(),
        Condition::Converged => "converged".into(),
        Condition::Coordinator(s) => format!("coordinator is {}", describe_selector(s)),
        Condition::NotCoordinator(s) => format!("coordinator is not {}", describe_selector(s)),
        Condition::Rank(s, r) => format!("{} holds rank {r}", describe_selector(s)),
        Condition::Ranks(r) => format!("ranks are {r:?}"),
        Condition::Role(s, role) => format!("{} is {role}", describe_selector(s)),
        Condition::Coordinators(n) => format!("{n} coordinator(s)"),
        Condition::EpochsAtMost(e) => format!("every epoch at most {e}"),
        Condition::Rejected(s, kind, n) => format!(
            "{} rejected at least {n} {}",
            s.as_ref()
                .map_or("every live node".into(), describe_selector),
            kind.as_str()
        ),
    }
}

/// One line per step for progress and reports.
pub fn summarize(action: &Action) -> String {
    let list = |sels: &[Selector]| {
        sels.iter()
            .map(describe_selector)
            .collect::<Vec<_>>()
            .join(" ")
    };
    match action {
        Action::Start { nodes, stagger_ms } => format!(
            "start {}{}",
            list(nodes),
            if *stagger_ms > 0 {
                format!(" ({stagger_ms} ms apart)")
            } else {
                String::new()
            }
        ),
        Action::Node { change, node, .. } => {
            format!("{} {}", change.as_str(), describe_selector(node))
        }
        Action::StepDown { .. } => "step-down (the coordinator hands over)".into(),
        Action::Partition { shape, reject, .. } => {
            let what = match shape {
                PartitionShape::Isolate(s) => format!("isolate {}", describe_selector(s)),
                PartitionShape::Sides(sides) => sides
                    .iter()
                    .map(|s| format!("[{}]", list(s)))
                    .collect::<Vec<_>>()
                    .join(" | "),
                PartitionShape::OneWay { from, to } => {
                    format!("{} -/-> {}", describe_selector(from), describe_selector(to))
                }
            };
            format!("partition {what}{}", if *reject { " (reject)" } else { "" })
        }
        Action::Heal => "heal".into(),
        Action::Link {
            nodes, spec, down, ..
        } => format!(
            "link {}: {}",
            if nodes.is_empty() {
                "all".into()
            } else {
                list(nodes)
            },
            match (spec, down) {
                (_, true) => "down".to_string(),
                (None, _) => "defaults".to_string(),
                (Some(s), _) => describe_link(s),
            }
        ),
        Action::Op(op) => format!(
            "{:?} {}{}{}",
            op.kind,
            op.login,
            op.new_login
                .as_ref()
                .map(|n| format!(" -> {n}"))
                .unwrap_or_default(),
            op.via
                .as_ref()
                .map(|v| format!(" via {}", describe_selector(v)))
                .unwrap_or_default()
        )
        .to_lowercase(),
        Action::Load(l) => format!(
            "load: {} clients for {} ms{}",
            l.clients,
            l.duration_ms,
            if l.background { " (background)" } else { "" }
        ),
        Action::AwaitLoad => "await load".into(),
        Action::Label { node, label } => format!("label {} as @{label}", describe_selector(node)),
        Action::Wait { ms } => format!("wait {ms} ms"),
        Action::Await {
            condition,
            timeout_ms,
            ..
        } => format!(
            "await {} (≤ {timeout_ms} ms)",
            describe_condition(condition)
        ),
        Action::Assert {
            condition,
            within_ms,
            expect,
        } => format!(
            "assert {}{}{}",
            describe_condition(condition),
            if *within_ms > 0 {
                format!(" within {within_ms} ms")
            } else {
                String::new()
            },
            if *expect == Expect::Violated {
                " (expected violated)"
            } else {
                ""
            }
        ),
        Action::RandomFaults(r) => format!(
            "random faults {:?} at {}/s for {} ms",
            r.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            r.rate_per_s,
            r.duration_ms
        ),
        Action::Repeat { first, times } => format!("repeat from step {} {times} times", first + 1),
        Action::Rogue {
            attack,
            nodes,
            count,
            ..
        } => format!(
            "rogue {} ×{count} at {}",
            attack.as_str(),
            nodes
                .iter()
                .map(describe_selector)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Link conditions in words: `10 ms ± 2 ms, 5% loss, 80 Mbit/s`.
pub fn describe_link(s: &LinkSpec) -> String {
    format!(
        "{} ms ± {} ms, {}% loss{}",
        s.latency_ms,
        s.jitter_ms,
        s.loss_pct,
        if s.rate_mbit > 0 {
            format!(", {} Mbit/s", s.rate_mbit)
        } else {
            String::new()
        }
    )
}
