//! The faults a lab can hold: what a link does to packets, which way, how a cut treats them,
//! and the set in force. No I/O: [`super::apply`] turns a state into rules.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one direction of a link does to packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkConditions {
    /// Added one-way delay.
    pub latency_ms: u32,
    /// Delay varies uniformly within ± this much (packets keep their order).
    pub jitter_ms: u32,
    /// Packets dropped at random, in percent.
    pub loss_pct: f64,
    /// Bandwidth cap, if any.
    pub rate_kbit: Option<u32>,
    /// The link is down (both directions).
    pub down: bool,
}

impl LinkConditions {
    pub(crate) fn delays(&self) -> bool {
        self.latency_ms > 0 || self.jitter_ms > 0
    }
}

/// Which direction of a host's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Packets the host sends.
    FromHost,
    /// Packets sent to the host.
    ToHost,
    /// Both.
    Both,
}

/// How a cut treats packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionMode {
    /// Silently dropped (the sender times out).
    Drop,
    /// Refused (TCP reset, ICMP port unreachable): the sender learns at once.
    Reject,
}

/// The faults in force.
#[derive(Debug, Default, Clone)]
pub(crate) struct FaultState {
    /// Per host index: conditions from the host, and to the host.
    pub(crate) links: BTreeMap<u32, [LinkConditions; 2]>,
    /// Directed cuts between host indexes.
    pub(crate) cuts: BTreeMap<(u32, u32), PartitionMode>,
}
