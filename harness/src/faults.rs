//! Faults as the scenario names them, carried out on the lab: partitions and link conditions
//! by node name, and the seeded random schedule (made in full from the seed before it runs,
//! so the same seed replays the same schedule).

use crate::scenario::{FaultKind, LinkSpec, RandomSpec};
use netns::LinkConditions;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Link conditions as the lab takes them.
pub fn conditions(spec: &LinkSpec, down: bool) -> LinkConditions {
    LinkConditions {
        latency_ms: spec.latency_ms,
        jitter_ms: spec.jitter_ms,
        loss_pct: spec.loss_pct,
        rate_kbit: (spec.rate_mbit > 0).then_some(spec.rate_mbit * 1000),
        down,
    }
}

/// The loss a random `loss` fault puts on a link.
pub const RANDOM_LOSS_PCT: f64 = 20.0;
/// The delay a random `latency` fault puts on a link.
pub const RANDOM_LATENCY: LinkSpec = LinkSpec {
    latency_ms: 30,
    jitter_ms: 10,
    loss_pct: 0.0,
    rate_mbit: 0,
};

/// One entry of a random schedule: at `at_ms` after the schedule starts, begin (or end) a fault
/// on node index `node`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    /// Offset from the schedule's start.
    pub at_ms: u64,
    /// The fault kind.
    #[serde(serialize_with = "kind_name")]
    pub kind: FaultKind,
    /// Node index.
    pub node: usize,
    /// Begin (true) or end (false).
    pub begin: bool,
}

fn kind_name<S: serde::Serializer>(kind: &FaultKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}

/// The whole schedule for `spec` over `nodes` nodes, from `seed`: fault starts spaced by
/// exponential gaps (mean 1 / rate), each ending `fault_ms` later, at most one fault per node
/// at a time.
pub fn plan(spec: &RandomSpec, nodes: usize, seed: u64) -> Vec<Planned> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut busy_until = vec![0u64; nodes];
    let mut t = 0f64;
    loop {
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        t += -u.ln() / spec.rate_per_s * 1000.0;
        let at_ms = t as u64;
        if at_ms >= spec.duration_ms {
            break;
        }
        let kind = spec.kinds[rng.gen_range(0..spec.kinds.len())];
        let node = rng.gen_range(0..nodes);
        if busy_until[node] > at_ms {
            continue;
        }
        let end = (at_ms + spec.fault_ms).min(spec.duration_ms);
        busy_until[node] = end + 1;
        out.push(Planned {
            at_ms,
            kind,
            node,
            begin: true,
        });
        out.push(Planned {
            at_ms: end,
            kind,
            node,
            begin: false,
        });
    }
    out.sort_by_key(|p| (p.at_ms, p.begin));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RandomSpec {
        RandomSpec {
            kinds: vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Partition],
            rate_per_s: 2.0,
            duration_ms: 10_000,
            fault_ms: 800,
        }
    }

    #[test]
    fn a_seed_replays_exactly_and_another_seed_differs() {
        assert_eq!(plan(&spec(), 3, 42), plan(&spec(), 3, 42));
        assert_ne!(plan(&spec(), 3, 42), plan(&spec(), 3, 43));
    }

    #[test]
    fn every_fault_ends_and_a_node_has_one_at_a_time() {
        let p = plan(&spec(), 3, 7);
        assert!(p.len() >= 10, "about 20 faults in 10 s at 2/s: {}", p.len());
        let mut open = [false; 3];
        for step in &p {
            assert_ne!(open[step.node], step.begin, "{step:?}");
            open[step.node] = step.begin;
            assert!(step.at_ms <= 10_000);
        }
        assert_eq!(open, [false; 3]);
    }
}
