//! Maps a buffering encoder's sample positions back to capture times (docs/PROTOCOL.md
//! §2.4: a chunk's timestamp is the capture time of the first sample *in the encoded chunk*).
//!
//! Each PCM chunk that goes in starts a segment `(first sample index, timestamp)`. A unit
//! that starts at sample `n` takes the timestamp of the segment holding `n` plus the time of
//! the samples before `n` in it. Because every chunk keeps its own timestamp, a re-based time
//! base after a source stall (timestamps jump forward) carries over exactly, even when an
//! encoder holds samples from before and after the jump.

use std::collections::VecDeque;

/// Sample-index to capture-time mapping for one stream.
#[derive(Debug)]
pub(crate) struct Timeline {
    rate: u64,
    /// `(first sample index, capture time µs)` of each chunk not yet fully encoded.
    segments: VecDeque<(u64, i64)>,
    /// Index of the next sample to be pushed.
    end: u64,
}

impl Timeline {
    pub(crate) fn new(rate: u32) -> Self {
        Self {
            rate: u64::from(rate),
            segments: VecDeque::new(),
            end: 0,
        }
    }

    /// Records a chunk of `frames` frames whose first frame was captured at `timestamp_us`.
    pub(crate) fn push(&mut self, timestamp_us: i64, frames: usize) {
        if frames == 0 {
            return;
        }
        self.segments.push_back((self.end, timestamp_us));
        self.end += frames as u64;
    }

    /// Capture time of sample `index`, and forgets segments that end at or before it: units
    /// are taken in order, so nothing before `index` is asked for again.
    pub(crate) fn timestamp_of(&mut self, index: u64) -> i64 {
        while self.segments.len() > 1 && self.segments[1].0 <= index {
            self.segments.pop_front();
        }
        match self.segments.front() {
            Some(&(start, ts)) => {
                let offset = index.saturating_sub(start);
                ts + (offset * 1_000_000 / self.rate) as i64
            }
            // Nothing pushed yet: only reachable by a caller bug; time zero is harmless.
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuous_chunks_map_by_sample_count() {
        let mut timeline = Timeline::new(48000);
        timeline.push(1_000_000, 960);
        timeline.push(1_020_000, 960);
        assert_eq!(timeline.timestamp_of(0), 1_000_000);
        assert_eq!(timeline.timestamp_of(1152), 1_024_000);
        assert_eq!(timeline.end, 1920);
    }

    #[test]
    fn a_rebased_chunk_keeps_its_own_timestamp() {
        let mut timeline = Timeline::new(48000);
        timeline.push(1_000_000, 960);
        timeline.push(5_000_000, 960); // after a stall the time base jumped
        assert_eq!(timeline.timestamp_of(480), 1_010_000);
        assert_eq!(timeline.timestamp_of(960 + 48), 5_001_000);
        // The first segment is gone once a later index was asked for.
        assert_eq!(timeline.segments.len(), 1);
    }
}
