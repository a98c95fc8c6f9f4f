//! How far an upstream server's clock is from ours, measured as snapclient does it: each Time
//! round trip gives one estimate, `((server receive − client send) − (client receive − server
//! send)) / 2`. A round trip that a scheduler or a queue delayed on one side only is off by
//! half that delay, and it is also a slow round trip: so, as NTP does, only the fastest third
//! of the recent round trips count, and the offset is their median. (A plain median of all
//! of them drifted by up to a millisecond on a busy two-core machine. The fastest tenth was
//! tried behind a proxy with 1 ms of jitter each way: no better, and its median of five is
//! noisier under symmetric jitter.)
//!
//! Chunks are not stamped with that estimate directly but with a [`Translation`] that follows
//! it at a bounded rate: clients play chunks back to back, so a timestamp that jumps with
//! the estimate's noise would never be heard as a jump, only as a client that started where
//! the first, noisiest estimate put it and creeps back at snapclient's soft-correction pace.

use std::collections::VecDeque;

/// Round trips kept: 25 s at the steady rate of four a second, so the fastest third is about
/// 33 estimates.
const WINDOW: usize = 100;

/// Round trips before the estimate is trusted for stamping chunks: the connect burst gives
/// them in about a third of a second.
pub(crate) const SETTLED_SAMPLES: usize = 30;

/// How fast the applied offset follows the estimate: 250 ppm, half of snapclient's largest
/// soft correction (so its clients keep up), and well above the drift between two crystal
/// clocks, even while NTP slews one of them.
const SLEW_PPM: i64 = 250;

/// A difference the slew would take too long over (8 s at [`SLEW_PPM`]) is stepped instead:
/// snapclient hard-syncs on 2 ms too.
const STEP_US: i64 = 2_000;

/// One Time round trip, every time in µs on its own side's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoundTrip {
    /// The reply's `latency`: the server's receive time minus our clock when the request
    /// left.
    pub(crate) server_latency_us: i64,
    /// The server's clock when the reply left (its header's `sent`).
    pub(crate) server_sent_us: i64,
    /// Our clock when the reply arrived.
    pub(crate) received_us: i64,
}

impl RoundTrip {
    /// Server clock minus ours, as this round trip tells it.
    fn offset_us(&self) -> i64 {
        let to_server = self.server_latency_us;
        let to_us = self.received_us - self.server_sent_us;
        (to_server - to_us) / 2
    }

    /// Time on the wire both ways (the server's turnaround left out).
    fn rtt_us(&self) -> i64 {
        let to_us = self.received_us - self.server_sent_us;
        self.server_latency_us + to_us
    }
}

/// The recent round trips and what they say.
#[derive(Debug, Default)]
pub(crate) struct TimeSync {
    offsets: VecDeque<i64>,
    rtts: VecDeque<i64>,
}

impl TimeSync {
    pub(crate) fn add(&mut self, trip: RoundTrip) {
        if self.offsets.len() == WINDOW {
            self.offsets.pop_front();
            self.rtts.pop_front();
        }
        self.offsets.push_back(trip.offset_us());
        self.rtts.push_back(trip.rtt_us());
    }

    /// Round trips measured so far (up to the window).
    pub(crate) fn samples(&self) -> usize {
        self.offsets.len()
    }

    /// The offsets of the fastest third of the recent round trips (at least one).
    fn fastest(&self) -> VecDeque<i64> {
        let mut trips: Vec<(i64, i64)> = self
            .rtts
            .iter()
            .copied()
            .zip(self.offsets.iter().copied())
            .collect();
        trips.sort_unstable_by_key(|(rtt, _)| *rtt);
        let keep = trips.len().div_ceil(3);
        trips
            .into_iter()
            .take(keep)
            .map(|(_, offset)| offset)
            .collect()
    }

    /// Server clock minus ours, µs: the median of the fastest round trips' estimates; `None`
    /// before the first reply.
    pub(crate) fn offset_us(&self) -> Option<i64> {
        median(&self.fastest())
    }

    /// How much those estimates spread: the median distance from their median, µs.
    pub(crate) fn jitter_us(&self) -> Option<i64> {
        let fastest = self.fastest();
        let center = median(&fastest)?;
        let distances: VecDeque<i64> = fastest.iter().map(|o| (o - center).abs()).collect();
        median(&distances)
    }

    /// The median round-trip time, µs.
    pub(crate) fn rtt_us(&self) -> Option<i64> {
        median(&self.rtts)
    }
}

/// The offset chunks are stamped with: set from the first settled estimate, then moved toward
/// later ones by at most [`SLEW_PPM`] of the time passed, or stepped when they are more than
/// [`STEP_US`] apart.
#[derive(Debug, Default)]
pub(crate) struct Translation {
    /// Upstream clock minus ours, µs, and when (our clock, µs) it was last moved.
    applied: Option<(i64, i64)>,
}

impl Translation {
    /// The offset to stamp a chunk with at `now_us`, given the current `estimate_us`.
    pub(crate) fn follow(&mut self, estimate_us: i64, now_us: i64) -> i64 {
        let offset = match self.applied {
            None => estimate_us,
            Some((applied, at)) => {
                let gap = estimate_us - applied;
                if gap.abs() > STEP_US {
                    estimate_us
                } else {
                    let allowed = (now_us - at).max(0) * SLEW_PPM / 1_000_000;
                    applied + gap.clamp(-allowed, allowed)
                }
            }
        };
        // Moved or not, the time counts from here: a long wait does not bank a large move.
        self.applied = Some((offset, now_us));
        offset
    }
}

fn median(values: &VecDeque<i64>) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted: Vec<i64> = values.iter().copied().collect();
    sorted.sort_unstable();
    Some(sorted[sorted.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round trip to a server whose clock is `offset` ahead, `up` and `down` µs each way.
    fn trip(at: i64, offset: i64, up: i64, down: i64) -> RoundTrip {
        let server_received = at + up + offset;
        let server_sent = server_received + 30;
        RoundTrip {
            server_latency_us: server_received - at,
            server_sent_us: server_sent,
            received_us: server_sent - offset + down,
        }
    }

    #[test]
    fn a_symmetric_path_gives_the_offset_exactly() {
        let mut sync = TimeSync::default();
        assert_eq!(sync.offset_us(), None);
        sync.add(trip(1_000_000, 5_000_000, 200, 200));
        assert_eq!(sync.offset_us(), Some(5_000_000));
        assert_eq!(sync.rtt_us(), Some(400));
    }

    #[test]
    fn slow_round_trips_do_not_count_even_when_they_are_many() {
        let mut sync = TimeSync::default();
        // Half the round trips waited 4 ms on the way back (a busy machine): a median of all
        // of them would be up to 2 ms off; the fast ones say the truth.
        for i in 0..50 {
            let down = if i % 2 == 0 { 4_150 } else { 150 };
            sync.add(trip(i * 1_000_000, 2_500, 150, down));
        }
        assert_eq!(sync.offset_us(), Some(2_500));
        assert_eq!(sync.rtt_us(), Some(4_300));
    }

    #[test]
    fn jitter_both_ways_averages_out_in_the_fastest_round_trips() {
        let mut sync = TimeSync::default();
        // 5 ms each way plus up to 2 ms of jitter on each, from a fixed pseudo-random
        // sequence: a single round trip can be up to 1 ms off.
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut jitter = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as i64 % 2_000
        };
        for i in 0..50 {
            let (up, down) = (5_000 + jitter(), 5_000 + jitter());
            sync.add(trip(i * 1_000_000, 42_000, up, down));
        }
        let error = sync.offset_us().unwrap() - 42_000;
        assert!(error.abs() <= 150, "{error} µs off");
    }

    #[test]
    fn the_translation_starts_at_the_estimate_and_follows_it_slowly() {
        let mut translation = Translation::default();
        assert_eq!(translation.follow(10_000, 0), 10_000);
        // 400 µs more, seen a second later: 250 µs of it.
        assert_eq!(translation.follow(10_400, 1_000_000), 10_250);
        // Chunks 20 ms apart move it 5 µs each.
        assert_eq!(translation.follow(10_400, 1_020_000), 10_255);
        assert_eq!(translation.follow(10_000, 1_040_000), 10_250);
        // Noise around a steady estimate stays within what the slew allows between chunks.
        let mut at = 1_040_000;
        for i in 0..1000 {
            at += 20_000;
            let noisy = 10_000 + if i % 2 == 0 { 300 } else { -300 };
            let applied = translation.follow(noisy, at);
            assert!((10_000 - 300..=10_300).contains(&applied), "{applied}");
        }
    }

    #[test]
    fn a_large_difference_is_stepped() {
        let mut translation = Translation::default();
        assert_eq!(translation.follow(-5_000, 0), -5_000);
        assert_eq!(translation.follow(-1_000, 20_000), -1_000);
        // Back to slewing from there.
        assert_eq!(translation.follow(0, 1_020_000), -750);
    }

    #[test]
    fn the_median_ignores_round_trips_delayed_one_way() {
        let mut sync = TimeSync::default();
        for i in 0..40 {
            sync.add(trip(i * 1_000_000, -123_456, 150, 150));
        }
        // A few stuck in a queue on the way back: each alone would be 5 ms off.
        for i in 40..50 {
            sync.add(trip(i * 1_000_000, -123_456, 150, 10_150));
        }
        assert_eq!(sync.offset_us(), Some(-123_456));
        assert_eq!(sync.jitter_us(), Some(0));
        assert_eq!(sync.samples(), 50);
        // The window moves on: old estimates leave.
        for i in 50..150 {
            sync.add(trip(i * 1_000_000, 7_000, 100, 100));
        }
        assert_eq!(sync.offset_us(), Some(7_000));
    }
}
