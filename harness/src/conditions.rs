//! Conditions of `await` and `assert` steps, judged on the statuses the live nodes give now.

use crate::cluster::LabCluster;
use crate::scenario::RejectedKind;
use idserver::core::Role;
use idserver::wire::StatusView;

/// A condition with its nodes resolved to indices.
/// (Node indices: 0 for `n1`; see [`crate::scenario::Condition`] for each meaning.)
pub enum Resolved {
    /// One coordinator named by every live node.
    Agreed,
    /// Agreed, and one clock everywhere.
    Converged,
    /// Agreed on this node.
    Coordinator(usize),
    /// Agreed on another node.
    NotCoordinator(usize),
    /// The node holds the rank.
    Rank(usize, u32),
    /// The live nodes' ranks are exactly these.
    Ranks(Vec<u32>),
    /// The node has the role.
    Role(usize, Role),
    /// This many nodes call themselves coordinator.
    Coordinators(u32),
    /// No live node's epoch is above this.
    EpochsAtMost(u64),
    /// This node (or every live one) refused at least this many.
    Rejected(Option<usize>, RejectedKind, u64),
}

/// The coordinator every answering live node names, if they agree and it says so itself.
pub fn agreed_coordinator(
    cluster: &LabCluster,
    statuses: &[(usize, Option<StatusView>)],
) -> Option<usize> {
    let mut named = None;
    for (_, s) in statuses {
        let s = s.as_ref()?;
        let c = s.coordinator_addr.as_ref()?;
        match &named {
            None => named = Some(c.clone()),
            Some(n) if n == c => {}
            Some(_) => return None,
        }
    }
    let index = cluster.index_of(&named?)?;
    let own = statuses.iter().find(|(i, _)| *i == index)?.1.as_ref()?;
    (own.role == Role::Coordinator).then_some(index)
}

/// Whether `condition` holds on these statuses, and the statuses in one line.
pub fn evaluate(
    cluster: &LabCluster,
    condition: &Resolved,
    statuses: &[(usize, Option<StatusView>)],
) -> (bool, String) {
    let state = describe_statuses(cluster, statuses);
    let agreed = agreed_coordinator(cluster, statuses);
    let status_of = |i: usize| {
        statuses
            .iter()
            .find(|(j, _)| *j == i)
            .and_then(|(_, s)| s.as_ref())
    };
    let held = match condition {
        Resolved::Agreed => agreed.is_some(),
        Resolved::Converged => {
            agreed.is_some() && {
                let clocks: Vec<u64> = statuses
                    .iter()
                    .filter_map(|(_, s)| s.as_ref().map(|s| s.clock))
                    .collect();
                clocks.windows(2).all(|w| w[0] == w[1])
            }
        }
        Resolved::Coordinator(i) => agreed == Some(*i),
        Resolved::NotCoordinator(i) => agreed.is_some_and(|a| a != *i),
        Resolved::Rank(i, r) => status_of(*i).and_then(|s| s.rank) == Some(*r),
        Resolved::Ranks(want) => {
            let mut have: Vec<u32> = statuses
                .iter()
                .filter_map(|(_, s)| s.as_ref().and_then(|s| s.rank))
                .collect();
            let mut want = want.clone();
            have.sort_unstable();
            want.sort_unstable();
            statuses.iter().all(|(_, s)| s.is_some()) && have == want
        }
        Resolved::Role(i, role) => status_of(*i).is_some_and(|s| s.role == *role),
        Resolved::Coordinators(n) => {
            statuses
                .iter()
                .filter(|(_, s)| s.as_ref().is_some_and(|s| s.role == Role::Coordinator))
                .count() as u32
                == *n
        }
        Resolved::EpochsAtMost(max) => statuses
            .iter()
            .all(|(_, s)| s.as_ref().is_some_and(|s| s.epoch <= *max)),
        Resolved::Rejected(node, kind, at_least) => {
            let counted = |s: &StatusView| match kind {
                RejectedKind::Datagrams => s.rejected_datagrams,
                RejectedKind::Connections => s.rejected_connections,
                RejectedKind::Requests => s.rejected_requests,
            };
            match node {
                Some(i) => status_of(*i).is_some_and(|s| counted(s) >= *at_least),
                None => statuses
                    .iter()
                    .all(|(_, s)| s.as_ref().is_some_and(|s| counted(s) >= *at_least)),
            }
        }
    };
    (held, state)
}

/// `n1 coordinator r1 e3 c12, n2 follower r2 …` for notes and failures.
pub fn describe_statuses(cluster: &LabCluster, statuses: &[(usize, Option<StatusView>)]) -> String {
    let parts: Vec<String> = statuses
        .iter()
        .map(|(i, s)| match s {
            None => format!("{} silent", cluster.name(*i)),
            Some(s) => format!(
                "{} {} rank {} epoch {} clock {}{}{}",
                cluster.name(*i),
                s.role,
                s.rank.map_or("-".into(), |r| r.to_string()),
                s.epoch,
                s.clock,
                if s.rejected_datagrams + s.rejected_connections + s.rejected_requests > 0 {
                    format!(
                        " rejected {}d/{}c/{}r",
                        s.rejected_datagrams, s.rejected_connections, s.rejected_requests
                    )
                } else {
                    String::new()
                },
                s.coordinator_addr
                    .as_deref()
                    .and_then(|a| cluster.index_of(a))
                    .map(|c| format!(" -> {}", cluster.name(c)))
                    .unwrap_or_default()
            ),
        })
        .collect();
    if parts.is_empty() {
        "no live node".into()
    } else {
        parts.join("; ")
    }
}
