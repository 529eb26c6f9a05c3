//! Round-trip estimate from the protocol's own request/reply pairs (heartbeat RANK replies,
//! election and join rounds), smoothed as TCP does (RFC 6298): the election window and the
//! per-rank stagger follow it, so that a cluster on slow links waits long enough for replies.

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
            self.srtt_ms = rtt_ms;
            self.rttvar_ms = rtt_ms / 2;
        } else {
            let deviation = self.srtt_ms.abs_diff(rtt_ms);
            self.rttvar_ms = (3 * self.rttvar_ms + deviation) / 4;
            self.srtt_ms = (7 * self.srtt_ms + rtt_ms) / 8;
        }
        self.samples += 1;
    }

    /// Takes the coordinator's estimate (carried in its heartbeat): the coordinator measures
    /// every member every heartbeat, a follower only in its rare election rounds.
    pub(super) fn adopt(&mut self, high_ms: u64) {
        if high_ms > 0 {
            self.srtt_ms = high_ms.min(HIGH_MS_MAX);
            self.rttvar_ms = 0;
            self.samples = self.samples.max(1);
        }
    }

    /// A round trip that replies rarely exceed: the smoothed value plus four deviations.
    pub(super) fn high_ms(&self) -> u64 {
        (self.srtt_ms + 4 * self.rttvar_ms).min(HIGH_MS_MAX)
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
        assert!((45..=55).contains(&rtt.srtt_ms), "{rtt:?}");
        assert!(rtt.high_ms() >= 60 && rtt.high_ms() <= 110, "{rtt:?}");
    }

    #[test]
    fn ignores_held_back_replies_and_follows_the_coordinators_estimate() {
        let mut rtt = RttEstimator::default();
        rtt.sample(10);
        rtt.sample(30_000);
        assert_eq!(rtt.srtt_ms, 10);
        rtt.adopt(0);
        assert_eq!(rtt.high_ms(), 10 + 4 * 5);
        rtt.adopt(80);
        assert_eq!(rtt.high_ms(), 80);
        rtt.adopt(12);
        assert_eq!(rtt.high_ms(), 12);
        rtt.adopt(60_000);
        assert_eq!(rtt.high_ms(), HIGH_MS_MAX);
    }
}
