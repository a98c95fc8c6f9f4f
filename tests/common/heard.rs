//! What a client heard of a writer's frames: every silence and every jump of the frame
//! counter (with the absolute frames on either side), and the latency of each played block
//! from its first frame's due time to the moment the player wrote it out.
//!
//! The counter in the signal wraps every 65 536 frames (1.37 s); which lap a frame is on
//! is told by its latency, which must fall in `LATENCY_US`.

use std::ops::Range;

use super::audio::{self, FRAME_BYTES, PLAYER_BLOCK_BYTES, RATE};
use super::{Arrival, Snapclient};

/// Plausible latencies from a frame's due time to the player's output (1 s buffer).
const LATENCY_US: Range<i64> = 200_000..1_700_000;

/// A stretch of digital silence (at least 1 ms) and the frames around it.
#[derive(Debug, Clone, Copy)]
pub struct Silence {
    pub before: u64,
    pub after: u64,
    pub ms: f64,
}

impl Silence {
    /// How much of the signal was left out across it, in ms.
    pub fn skipped_ms(&self) -> f64 {
        (self.after - self.before - 1) as f64 * 1000.0 / f64::from(RATE)
    }
}

/// One block the player wrote: its first frame and its latency.
#[derive(Debug, Clone, Copy)]
pub struct Played {
    pub frame: u64,
    pub latency_us: i64,
}

/// What one client heard after `settle_frames` of output.
#[derive(Debug, Clone, Default)]
pub struct Heard {
    pub silences: Vec<Silence>,
    /// Counter jumps with no silence between (audio lost or repeated), other than
    /// snapclient's own one-frame corrections: (frame before, frame after).
    pub jumps: Vec<(u64, u64)>,
    pub blocks: Vec<Played>,
    /// The first and last frame heard after settling.
    pub first: Option<u64>,
    pub last: Option<u64>,
}

impl Heard {
    /// Latencies (ms) of the blocks that start within `frames`.
    fn latencies(&self, frames: Range<u64>) -> Vec<f64> {
        self.blocks
            .iter()
            .filter(|b| frames.contains(&b.frame))
            .map(|b| b.latency_us as f64 / 1000.0)
            .collect()
    }

    /// Median latency (ms) of the blocks that start within `frames`, and their number;
    /// NaN with fewer than three.
    pub fn latency_ms(&self, frames: Range<u64>) -> (f64, usize) {
        let latencies = self.latencies(frames);
        let median = if latencies.len() >= 3 {
            audio::median(&latencies)
        } else {
            f64::NAN
        };
        (median, latencies.len())
    }

    /// The lowest latency (ms) of the blocks that start within `frames`; NaN with fewer
    /// than three. For a blocking writer, whose writes are let through in clumps as the
    /// reader frees pipe pages (so a block's first frame may have waited in the writer),
    /// the lowest is the one that went straight through.
    pub fn latency_floor_ms(&self, frames: Range<u64>) -> f64 {
        let latencies = self.latencies(frames);
        if latencies.len() >= 3 {
            latencies.iter().copied().fold(f64::INFINITY, f64::min)
        } else {
            f64::NAN
        }
    }
}

/// When the player wrote output frame `i` out (µs), from the read that carried it.
fn output_at(arrivals: &[Arrival], i: usize) -> Option<i64> {
    let offset = i * FRAME_BYTES;
    let index = arrivals
        .partition_point(|a| a.offset <= offset)
        .checked_sub(1)?;
    let arrival = &arrivals[index];
    Some(
        arrival.at_us
            + ((offset - arrival.offset) / FRAME_BYTES) as i64 * 1_000_000 / i64::from(RATE),
    )
}

/// Analyses `client`'s output from `settle_frames` after its first sound on, against the
/// writer's due times (`due_at(frame)`, µs; `None` for a frame never written).
pub fn heard(
    client: &Snapclient,
    settle_frames: usize,
    due_at: impl Fn(u64) -> Option<i64>,
) -> Heard {
    let (bytes, arrivals) = client.output();
    let frames = audio::frames(&bytes);
    let mut heard = Heard::default();
    let Some(first_sound) = audio::first_sound(&frames) else {
        return heard;
    };
    let output_at = |i: usize| output_at(&arrivals, i);
    // The absolute frame that output frame `i` (counter `counter`) is.
    let absolute = |i: usize, counter: u16| -> Option<u64> {
        let at = output_at(i)?;
        (0..256u64).find_map(|lap| {
            let frame = u64::from(counter) + lap * 65_536;
            let due = due_at(frame)?;
            LATENCY_US.contains(&(at - due)).then_some(frame)
        })
    };
    let start = first_sound + settle_frames;
    let mut previous: Option<u64> = None;
    let mut silent_run = 0usize;
    for (i, frame) in frames.iter().enumerate().skip(start) {
        if *frame == (0, 0) {
            silent_run += 1;
            continue;
        }
        let counter = audio::counter(*frame);
        let current = match previous {
            Some(prev) if silent_run == 0 => {
                let step = i32::from(counter.wrapping_sub(prev as u16) as i16);
                match step {
                    1 => prev + 1,
                    // snapclient's own drift corrections: one frame dropped or repeated.
                    0 | 2 => prev + step as u64,
                    _ => match absolute(i, counter) {
                        Some(now) => {
                            heard.jumps.push((prev, now));
                            now
                        }
                        None => continue,
                    },
                }
            }
            _ => match absolute(i, counter) {
                Some(now) => now,
                None => continue,
            },
        };
        if let Some(prev) = previous {
            // A lone zero frame can be the signal itself.
            if silent_run >= 48 && current > prev {
                heard.silences.push(Silence {
                    before: prev,
                    after: current,
                    ms: silent_run as f64 * 1000.0 / f64::from(RATE),
                });
            }
        }
        heard.first.get_or_insert(current);
        heard.last = Some(current);
        previous = Some(current);
        silent_run = 0;
    }
    // Latency per player block that began a read (it was written out when it arrived).
    for pair in arrivals.windows(2) {
        let (begin, end) = (pair[0].offset, pair[1].offset);
        if begin % PLAYER_BLOCK_BYTES != 0 || end - begin < FRAME_BYTES {
            continue;
        }
        let index = begin / FRAME_BYTES;
        if index < start || frames[index] == (0, 0) {
            continue;
        }
        if let Some(frame) = absolute(index, audio::counter(frames[index])) {
            if let Some(due) = due_at(frame) {
                heard.blocks.push(Played {
                    frame,
                    latency_us: pair[0].at_us - due,
                });
            }
        }
    }
    heard
}

/// Where the sound stops and starts again around the pauses a client heard, for codecs that
/// do not carry the frame counter through (opus, vorbis): found from the level, not the
/// counter.
#[derive(Debug, Clone, Default)]
pub struct Edges {
    /// Every stretch of 20 ms or more without the tone, after settling: (when the sound
    /// before it ended, when the sound after it began), µs on the player's output clock.
    pub quiet: Vec<(i64, i64)>,
}

/// A sample at least this loud is the tone (12 000 peak): a quarter of it keeps the codec's
/// pre-echo and ringing around an edge out, and misses a sine only near its zero crossings.
const TONE_LEVEL: i16 = 3_000;
/// Longer gaps between loud samples than this are a silence, not a zero crossing.
const QUIET_FRAMES: usize = RATE as usize / 50;

/// The quiet stretches of `client`'s output from `settle_frames` after its first sound on.
pub fn edges(client: &Snapclient, settle_frames: usize) -> Edges {
    let (bytes, arrivals) = client.output();
    let frames = audio::frames(&bytes);
    let mut found = Edges::default();
    let Some(first_sound) = audio::first_sound(&frames) else {
        return found;
    };
    let output_at = |i: usize| output_at(&arrivals, i);
    let loud =
        |f: &(i16, i16)| f.0.saturating_abs() >= TONE_LEVEL || f.1.saturating_abs() >= TONE_LEVEL;
    let mut last_loud: Option<usize> = None;
    for (i, frame) in frames.iter().enumerate().skip(first_sound + settle_frames) {
        if !loud(frame) {
            continue;
        }
        if let Some(previous) = last_loud {
            if i - previous > QUIET_FRAMES {
                if let (Some(ended), Some(began)) = (output_at(previous + 1), output_at(i)) {
                    found.quiet.push((ended, began));
                }
            }
        }
        last_loud = Some(i);
    }
    found
}
