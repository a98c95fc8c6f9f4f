//! The test signal and the analysis of what a snapclient played.
//!
//! The signal is 48000:16:2 with a different sine per channel. The low byte of every sample
//! carries a frame counter (left: bits 0–7, right: bits 8–15), 48 dB below the tones, so
//! the output can be checked for frequency (FFT), for continuity (the counter steps by one
//! per frame), and for sync (which frame each client plays at the same instant).

use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

use super::Arrival;

pub const RATE: u32 = 48000;
pub const FRAME_BYTES: usize = 4;
/// snapclient's file player writes 50 ms per request.
pub const PLAYER_BLOCK_BYTES: usize = RATE as usize / 20 * FRAME_BYTES;

/// A stereo test tone with an embedded frame counter.
#[derive(Debug, Clone, Copy)]
pub struct Signal {
    pub left_hz: f64,
    pub right_hz: f64,
}

impl Signal {
    pub fn new(left_hz: f64, right_hz: f64) -> Self {
        Self { left_hz, right_hz }
    }

    fn sample(hz: f64, frame: u64, low: u8) -> i16 {
        let t = frame as f64 / f64::from(RATE);
        let tone = ((std::f64::consts::TAU * hz * t).sin() * 12000.0) as i32;
        ((tone & !0xFF) | i32::from(low)) as i16
    }

    /// Appends `frames` frames starting at frame number `start`.
    pub fn render(&self, start: u64, frames: usize, out: &mut Vec<u8>) {
        for frame in start..start + frames as u64 {
            let left = Self::sample(self.left_hz, frame, frame as u8);
            let right = Self::sample(self.right_hz, frame, (frame >> 8) as u8);
            out.extend_from_slice(&left.to_le_bytes());
            out.extend_from_slice(&right.to_le_bytes());
        }
    }
}

/// Interleaved 16-bit stereo frames of a byte buffer.
pub fn frames(bytes: &[u8]) -> Vec<(i16, i16)> {
    bytes
        .chunks_exact(FRAME_BYTES)
        .map(|f| {
            (
                i16::from_le_bytes([f[0], f[1]]),
                i16::from_le_bytes([f[2], f[3]]),
            )
        })
        .collect()
}

/// The counter a frame carries.
pub fn counter(frame: (i16, i16)) -> u16 {
    (frame.0 as u16 & 0xFF) | ((frame.1 as u16 & 0xFF) << 8)
}

/// Index of the first frame that is not digital silence.
pub fn first_sound(frames: &[(i16, i16)]) -> Option<usize> {
    frames.iter().position(|f| *f != (0, 0))
}

/// Discontinuities of the counter in `frames`.
#[derive(Debug, Default)]
pub struct Continuity {
    /// Frames checked.
    pub frames: usize,
    /// Single-frame drops or repeats: snapclient's drift correction, expected now and then.
    pub corrections: usize,
    /// (frame index, counter step) of every other jump: dropouts, silence, garbage.
    pub breaks: Vec<(usize, i32)>,
}

pub fn continuity(frames: &[(i16, i16)]) -> Continuity {
    let mut report = Continuity {
        frames: frames.len(),
        ..Continuity::default()
    };
    for (i, pair) in frames.windows(2).enumerate() {
        let step = i32::from(counter(pair[1]).wrapping_sub(counter(pair[0])) as i16);
        match step {
            1 => {}
            0 | 2 => report.corrections += 1,
            other => report.breaks.push((i + 1, other)),
        }
    }
    report
}

/// The strongest frequency in one channel, to within one FFT bin (48000 / n Hz).
pub fn dominant_frequency(frames: &[(i16, i16)], right: bool) -> f64 {
    dominant_frequency_at(frames, right, RATE)
}

/// [`dominant_frequency`] of audio at `rate` Hz.
pub fn dominant_frequency_at(frames: &[(i16, i16)], right: bool, rate: u32) -> f64 {
    let n = frames.len().min(1 << 15).next_power_of_two() / 2;
    assert!(
        n >= 4096,
        "too little audio for a spectrum: {} frames",
        frames.len()
    );
    let mut buffer: Vec<Complex<f64>> = frames[..n]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let sample = f64::from(if right { f.1 } else { f.0 });
            let window = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos();
            Complex::new(sample * window, 0.0)
        })
        .collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut buffer);
    let (bin, _) = buffer[1..n / 2]
        .iter()
        .enumerate()
        .map(|(i, c)| (i + 1, c.norm()))
        .fold(
            (0, 0.0),
            |best, cur| if cur.1 > best.1 { cur } else { best },
        );
    bin as f64 * f64::from(rate) / n as f64
}

/// For each whole 50 ms block the player wrote (read in one piece), when it arrived and
/// which frame counter it starts with. Blocks before `from_frame` are skipped.
pub fn block_positions(bytes: &[u8], arrivals: &[Arrival], from_frame: usize) -> Vec<(i64, u16)> {
    arrivals
        .windows(2)
        .filter(|pair| {
            pair[1].offset - pair[0].offset == PLAYER_BLOCK_BYTES
                && pair[0].offset % PLAYER_BLOCK_BYTES == 0
                && pair[0].offset / FRAME_BYTES >= from_frame
        })
        .map(|pair| {
            let at = pair[0].offset;
            let frame = (
                i16::from_le_bytes([bytes[at], bytes[at + 1]]),
                i16::from_le_bytes([bytes[at + 2], bytes[at + 3]]),
            );
            (pair[0].at_us, counter(frame))
        })
        .collect()
}

/// Median of how far client A plays ahead of client B, in ms: for every block of A, B's
/// position at that instant is extrapolated from B's latest block before it.
pub fn sync_offsets_ms(a: &[(i64, u16)], b: &[(i64, u16)]) -> Vec<f64> {
    let mut offsets = Vec::new();
    for &(at, counter_a) in a {
        let Some(&(bt, counter_b)) = b.iter().rev().find(|(bt, _)| *bt <= at) else {
            continue;
        };
        if at - bt > 50_000 {
            continue;
        }
        let predicted_b = f64::from(counter_b) + (at - bt) as f64 * f64::from(RATE) / 1e6;
        let mut diff = f64::from(counter_a) - predicted_b;
        diff = (diff + 32768.0).rem_euclid(65536.0) - 32768.0;
        offsets.push(diff * 1000.0 / f64::from(RATE));
    }
    offsets
}

pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

#[test]
fn signal_counter_round_trips() {
    let mut bytes = Vec::new();
    Signal::new(440.0, 660.0).render(65530, 10, &mut bytes);
    let decoded: Vec<u16> = frames(&bytes).into_iter().map(counter).collect();
    assert_eq!(decoded[0], 65530);
    assert_eq!(decoded[6], 0);
    assert!(continuity(&frames(&bytes)).breaks.is_empty());
}

#[test]
fn signal_has_its_frequencies() {
    let mut bytes = Vec::new();
    Signal::new(440.0, 1000.0).render(0, 1 << 15, &mut bytes);
    let f = frames(&bytes);
    assert!((dominant_frequency(&f, false) - 440.0).abs() < 3.0);
    assert!((dominant_frequency(&f, true) - 1000.0).abs() < 3.0);
}
