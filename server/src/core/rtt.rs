//! Round-trip estimates from the protocol's own request/reply pairs (heartbeat RANK replies
//! and election rounds, matched by the send time or round they echo), smoothed per peer as TCP
//! does (RFC 6298). The election window, the per-rank stagger, suspicion and strict mode's
//! lease follow the estimate a quorum needs (the k-th fastest peer), so that one peer answering
//! a backlog after a pause cannot stretch everyone's timings.

use super::types::NodeId;
use std::collections::BTreeMap;

/// Smoothed round trip and its variation, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RttEstimator {
    /// Smoothed round trip; 0 until the first sample.
    srtt_ms: u64,
    /// Mean deviation of the samples.
    rttvar_ms: u64,
    samples: u64,
}

/// Samples longer than this are replies held back (a paused process, a cut that healed), not
/// a round trip: they would stretch every election window for long after.
const SAMPLE_MS_MAX: u64 = 1_000;
/// The estimate's ceiling: election windows of two round trips stay within a second.
const HIGH_MS_MAX: u64 = 500;

impl RttEstimator {
    /// Adds one round trip measured by this node.
    pub(super) fn sample(&mut self, rtt_ms: u64) {
        if rtt_ms > SAMPLE_MS_MAX {
            return;
        }
        if self.samples == 0 {
            // RFC 6298 starts the deviation at half the sample; a quarter keeps the first
            // estimates (which size suspicion and windows) at twice the round trip, not three.
            self.srtt_ms = rtt_ms;
            self.rttvar_ms = rtt_ms / 4;
        } else {
            let deviation = self.srtt_ms.abs_diff(rtt_ms);
            self.rttvar_ms = (3 * self.rttvar_ms + deviation) / 4;
            self.srtt_ms = (7 * self.srtt_ms + rtt_ms) / 8;
        }
        self.samples += 1;
    }

    /// A round trip that replies rarely exceed: the smoothed value plus four deviations.
    pub(super) fn high_ms(&self) -> u64 {
        (self.srtt_ms + 4 * self.rttvar_ms).min(HIGH_MS_MAX)
    }
}

/// The estimates of every peer, and the coordinator's figure (from its heartbeats).
#[derive(Debug, Clone, Default)]
pub(super) struct RoundTrips {
    by_peer: BTreeMap<NodeId, RttEstimator>,
    /// The coordinator's figure (0 on fast links), once one has been heard: it measures every
    /// member every heartbeat, a follower only in its rare election rounds.
    adopted_ms: Option<u64>,
}

impl RoundTrips {
    /// A round trip to `peer`.
    pub(super) fn sample(&mut self, peer: NodeId, rtt_ms: u64) {
        self.by_peer.entry(peer).or_default().sample(rtt_ms);
    }

    /// Takes the coordinator's figure (0: it knows none yet), which replaces what this node
    /// measured before: all followers then follow one figure, and their own measurements
    /// start afresh, in the next election.
    pub(super) fn adopt(&mut self, high_ms: u64) {
        if high_ms > 0 {
            self.adopted_ms = Some(high_ms.min(HIGH_MS_MAX));
            self.by_peer.clear();
        }
    }

    /// The figure a coordinator publishes in its heartbeats: at least 1 ms once known, 0 for
    /// none.
    pub(super) fn published_ms(&self) -> u64 {
        if self.known() {
            self.high_ms(true).max(1)
        } else {
            0
        }
    }

    /// Whether any round trip is known (measured, or the coordinator's figure).
    pub(super) fn known(&self) -> bool {
        self.adopted_ms.is_some() || self.measured()
    }

    fn measured(&self) -> bool {
        self.by_peer.values().any(|e| e.samples > 0)
    }

    /// Forgets a peer that left.
    pub(super) fn forget(&mut self, peer: &NodeId) {
        self.by_peer.remove(peer);
    }

    /// The round trip a quorum needs: the high estimate of the k-th fastest peer, k being a
    /// majority of the peers measured (at least one). A coordinator uses its own measurements
    /// (its predecessor's figure until it has some); the others the coordinator's figure, or
    /// what their rounds measured since, whichever is higher.
    pub(super) fn high_ms(&self, coordinating: bool) -> u64 {
        let mut highs: Vec<u64> = self.by_peer.values().map(RttEstimator::high_ms).collect();
        highs.sort_unstable();
        let k = (highs.len() / 2).max(1);
        let measured = highs.get(k - 1).copied().unwrap_or(0);
        match (coordinating, self.adopted_ms) {
            // A new coordinator goes on with its predecessor's figure until it has its own.
            (true, Some(adopted)) if !self.measured() => adopted,
            (true, _) => measured,
            (false, adopted) => adopted.unwrap_or(0).max(measured),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_a_steady_round_trip_and_covers_its_jitter() {
        let mut rtt = RttEstimator::default();
        assert_eq!(rtt.high_ms(), 0);
        for sample in [40, 60, 45, 55, 50, 42, 58, 50] {
            rtt.sample(sample);
        }
        assert!((40..=55).contains(&rtt.srtt_ms), "{rtt:?}");
        assert!(rtt.high_ms() >= 55 && rtt.high_ms() <= 110, "{rtt:?}");
    }

    #[test]
    fn ignores_replies_held_back_for_longer_than_a_round_trip_can_be() {
        let mut rtt = RttEstimator::default();
        rtt.sample(10);
        rtt.sample(30_000);
        assert_eq!(rtt.srtt_ms, 10);
        assert_eq!(rtt.high_ms(), 10 + 4 * (10 / 4));
    }

    #[test]
    fn one_peer_answering_a_backlog_does_not_stretch_the_quorums_round_trip() {
        let mut trips = RoundTrips::default();
        let (a, b, c, d) = (
            NodeId::from_u128(1),
            NodeId::from_u128(2),
            NodeId::from_u128(3),
            NodeId::from_u128(4),
        );
        for _ in 0..20 {
            trips.sample(a, 4);
            trips.sample(b, 6);
            trips.sample(c, 5);
        }
        // d was paused and answers a second's worth of heartbeats at once.
        for held in (20..1_000).rev().step_by(20) {
            trips.sample(d, held);
        }
        assert!(trips.high_ms(true) <= 10, "{trips:?}");
        assert!(trips.published_ms() >= 1 && trips.published_ms() <= 10);
        trips.adopt(80);
        assert_eq!(
            trips.high_ms(false),
            80,
            "adopting replaces the own samples"
        );
        trips.adopt(0);
        assert_eq!(trips.high_ms(false), 80, "0 is no figure");
        trips.adopt(60_000);
        assert_eq!(trips.high_ms(false), HIGH_MS_MAX);
    }
}
