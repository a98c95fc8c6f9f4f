//! How far ahead of real time a source's writer keeps its data: the pacer's reference for
//! placing data that comes back after a pause.
//!
//! One observation is `end − now`: where on the timeline the data received so far ends
//! (read, staged, or still waiting in the pipe or socket) minus the time it is observed.
//! For a writer that plays in real time it is about 0 right after each write; for one that
//! keeps `L` queued ahead it is about `L`; for a blocking writer it is what its pipe holds.
//! Delays only make it smaller (we look late; a write comes late), so the **largest**
//! observation of the last one to two seconds of playback is the writer's lead. While the
//! source is paused nothing is observed and the window does not move on, so a pause never
//! ages out the lead it will be resumed with.
//!
//! The reference the pacer places by changes only when the windowed lead moves away from it
//! by more than `HYSTERESIS_US`. Each placement is off by the wake-up delay of the best
//! arrival it saw; if every such error were learned back as a "new lead", the errors of
//! successive pauses would add up (always later). With the hysteresis, placements are
//! arrival times plus one fixed reference: errors do not carry from one pause to the next,
//! while a writer whose lead really changed (another player, a different buffer) is followed
//! within the window.

/// How much stream time one half of the window covers.
const HALF_WINDOW_US: i64 = 1_000_000;
/// Changes of the windowed lead smaller than this leave the reference as it is.
const HYSTERESIS_US: i64 = 3_000;
/// The spread of observations counted for the pause detector's patience, at most.
const MAX_SPREAD_US: i64 = 100_000;

/// The largest observation of one half of the window, and the largest and smallest of those
/// made right after a read that had to wait (how the writer's own writes scatter).
#[derive(Debug, Clone, Copy)]
struct Extremes {
    max: i64,
    arrivals: Option<(i64, i64)>,
}

impl Extremes {
    fn new(observed: i64, at_arrival: bool) -> Self {
        Self {
            max: observed,
            arrivals: at_arrival.then_some((observed, observed)),
        }
    }

    fn merge(self, other: Self) -> Self {
        Self {
            max: self.max.max(other.max),
            arrivals: match (self.arrivals, other.arrivals) {
                (Some((a_max, a_min)), Some((b_max, b_min))) => {
                    Some((a_max.max(b_max), a_min.min(b_min)))
                }
                (one, other) => one.or(other),
            },
        }
    }
}

/// The writer's lead, learned over a sliding window of playback.
#[derive(Debug, Default)]
pub(super) struct Lead {
    current: Option<Extremes>,
    previous: Option<Extremes>,
    /// Stream time played into `current`, µs.
    current_us: i64,
    /// What placements use; `None` until the first observation.
    reference: Option<i64>,
}

impl Lead {
    /// Records one observation of `end − now`, µs; `at_arrival` when it was made right after
    /// a read that had to wait for the writer.
    pub(super) fn observe(&mut self, observed: i64, at_arrival: bool) {
        let new = Extremes::new(observed, at_arrival);
        self.current = Some(self.current.map_or(new, |extremes| extremes.merge(new)));
        let windowed = self.windowed().map_or(observed, |w| w.max);
        match self.reference {
            Some(reference) if (windowed - reference).abs() <= HYSTERESIS_US => {}
            _ => self.reference = Some(windowed),
        }
    }

    /// `played_us` more of the stream was played with the source flowing.
    pub(super) fn played(&mut self, played_us: i64) {
        self.current_us += played_us;
        if self.current_us >= HALF_WINDOW_US {
            self.previous = self.current.take();
            self.current_us = 0;
        }
    }

    /// The lead placements use: 0 before anything was observed.
    pub(super) fn reference(&self) -> i64 {
        self.reference.unwrap_or(0)
    }

    /// How widely the writer's data scatters when we wait for it (a jittery writer's
    /// lateness), capped: how much longer than usual to wait before calling the source
    /// paused. A lead that drains during a stall is not scatter and does not count.
    pub(super) fn spread(&self) -> i64 {
        self.windowed()
            .and_then(|w| w.arrivals)
            .map_or(0, |(max, min)| (max - min).clamp(0, MAX_SPREAD_US))
    }

    fn windowed(&self) -> Option<Extremes> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            (one, other) => one.or(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lead_is_the_largest_observation_of_the_window() {
        let mut lead = Lead::default();
        assert_eq!(lead.reference(), 0);
        for observed in [280_000, 250_000, 279_500, 120_000, 280_200] {
            lead.observe(observed, false);
            lead.played(20_000);
        }
        assert_eq!(
            lead.reference(),
            280_000,
            "within the hysteresis of the first"
        );
        assert_eq!(lead.spread(), 0, "a draining queue is not scatter");
        lead.observe(-20_000, true);
        lead.observe(15_000, true);
        assert_eq!(lead.spread(), 35_000);
        lead.observe(-200_000, true);
        assert_eq!(lead.spread(), MAX_SPREAD_US);
    }

    #[test]
    fn small_moves_keep_the_reference_so_placement_errors_do_not_add_up() {
        let mut lead = Lead::default();
        lead.observe(0, true);
        // Each "pause" placed 1 ms late: the windowed lead creeps, the reference does not.
        for step in 1..=2 {
            for _ in 0..200 {
                lead.observe(step * 1_000, true);
                lead.played(20_000);
            }
            assert_eq!(lead.reference(), 0);
        }
    }

    #[test]
    fn a_real_change_of_lead_is_followed_within_the_window() {
        let mut lead = Lead::default();
        for _ in 0..100 {
            lead.observe(300_000, false);
            lead.played(20_000);
        }
        // Another writer, real time: after two half windows the old lead is gone.
        for _ in 0..101 {
            lead.observe(-500, true);
            lead.played(20_000);
        }
        assert_eq!(lead.reference(), -500);
        // And back up at once: a larger lead shows in the max immediately.
        lead.observe(100_000, false);
        assert_eq!(lead.reference(), 100_000);
    }

    #[test]
    fn nothing_ages_out_while_nothing_is_played() {
        let mut lead = Lead::default();
        lead.observe(200_000, false);
        lead.played(20_000);
        // A pause: no observations, no played time; the lead is still there after it.
        assert_eq!(lead.reference(), 200_000);
        assert_eq!(lead.spread(), 0);
    }
}
