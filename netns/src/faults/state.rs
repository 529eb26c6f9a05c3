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

/// The faults in force, hosts by index. Each backend turns a state into rules: the lab's
/// switch ([`super::apply`]), or each remote host its own share.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FaultState {
    /// Per host index: conditions from the host, and to the host.
    pub(crate) links: BTreeMap<u32, [LinkConditions; 2]>,
    /// Directed cuts between host indexes.
    pub(crate) cuts: BTreeMap<(u32, u32), PartitionMode>,
}

impl FaultState {
    /// Sets the conditions of one direction (or both) of `host`'s link.
    pub fn set_link(
        &mut self,
        host: u32,
        direction: Direction,
        conditions: LinkConditions,
    ) -> crate::Result<()> {
        if !(0.0..=100.0).contains(&conditions.loss_pct) {
            return Err(crate::Error::Invalid(format!(
                "loss {}% is not within 0 to 100",
                conditions.loss_pct
            )));
        }
        let entry = self.links.entry(host).or_default();
        match direction {
            Direction::FromHost => entry[0] = conditions,
            Direction::ToHost => entry[1] = conditions,
            Direction::Both => *entry = [conditions, conditions],
        }
        Ok(())
    }

    /// Clears every link's conditions.
    pub fn clear_links(&mut self) {
        self.links.clear();
    }

    /// `host`'s link: conditions from the host, and to the host.
    pub fn link(&self, host: u32) -> [LinkConditions; 2] {
        self.links.get(&host).copied().unwrap_or_default()
    }

    /// Cuts `host` off from each of `others`, both ways.
    pub fn isolate(
        &mut self,
        host: u32,
        others: impl IntoIterator<Item = u32>,
        mode: PartitionMode,
    ) {
        for other in others.into_iter().filter(|o| *o != host) {
            self.cuts.insert((host, other), mode);
            self.cuts.insert((other, host), mode);
        }
    }

    /// Cuts every side off from every other (hosts in no side keep reaching everyone).
    pub fn split(&mut self, sides: &[Vec<u32>], mode: PartitionMode) {
        for (a, side_a) in sides.iter().enumerate() {
            for side_b in sides.iter().skip(a + 1) {
                for x in side_a {
                    for y in side_b {
                        self.cuts.insert((*x, *y), mode);
                        self.cuts.insert((*y, *x), mode);
                    }
                }
            }
        }
    }

    /// `from` can no longer reach `to`.
    pub fn cut(&mut self, from: u32, to: u32, mode: PartitionMode) {
        self.cuts.insert((from, to), mode);
    }

    /// Removes the cuts between `a` and `b`, both ways.
    pub fn mend(&mut self, a: u32, b: u32) {
        self.cuts.remove(&(a, b));
        self.cuts.remove(&(b, a));
    }

    /// Removes every cut.
    pub fn heal(&mut self) {
        self.cuts.clear();
    }

    /// Whether a cut separates `a` and `b`, either way.
    pub fn is_cut(&self, a: u32, b: u32) -> bool {
        self.cuts.contains_key(&(a, b)) || self.cuts.contains_key(&(b, a))
    }

    /// The hosts whose packets to `host` are cut, and how.
    pub fn cuts_to(&self, host: u32) -> impl Iterator<Item = (u32, PartitionMode)> + '_ {
        self.cuts
            .iter()
            .filter(move |((_, to), _)| *to == host)
            .map(|((from, _), mode)| (*from, *mode))
    }
}
