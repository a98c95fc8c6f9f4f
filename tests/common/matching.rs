//! Sync of two clients playing lossy audio (Opus, Vorbis), where the frame counter does not
//! survive: the same decoder on the same packets gives (nearly) identical samples, so a window
//! of one client's output is located in the other's by least squares.

use super::audio::{self, FRAME_BYTES, PLAYER_BLOCK_BYTES, RATE};
use super::snapclient::Arrival;

/// Where the player's whole blocks start in its output, modulo the block size: snapclient's
/// first write may be a partial block, after which every write is a whole one.
fn block_phase(arrivals: &[Arrival]) -> usize {
    arrivals
        .windows(2)
        .find(|p| p[1].offset - p[0].offset == PLAYER_BLOCK_BYTES)
        .map_or(0, |p| p[0].offset % PLAYER_BLOCK_BYTES)
}

/// Whether the read between `block` and `next` is exactly one of the player's writes.
fn whole_block(block: Arrival, next: Arrival, phase: usize) -> bool {
    next.offset - block.offset == PLAYER_BLOCK_BYTES && block.offset % PLAYER_BLOCK_BYTES == phase
}

/// When each frame of a client's output was played: the arrival time of the whole 50 ms
/// player block holding it plus its offset in the block. `None` outside whole blocks.
pub fn play_time_us(arrivals: &[Arrival], frame: usize) -> Option<f64> {
    let byte = frame * FRAME_BYTES;
    let i = arrivals
        .partition_point(|a| a.offset <= byte)
        .checked_sub(1)?;
    let (block, next) = (arrivals[i], arrivals.get(i + 1)?);
    if !whole_block(block, *next, block_phase(arrivals)) {
        return None;
    }
    let within = (byte - block.offset) / FRAME_BYTES;
    Some(block.at_us as f64 + within as f64 * 1e6 / f64::from(RATE))
}

/// The output frame a client was playing at `at_us`: the latest player block that arrived at
/// or before then, plus the time since, if that is within the block.
pub fn frame_at(arrivals: &[Arrival], at_us: i64) -> Option<usize> {
    let i = arrivals
        .partition_point(|a| a.at_us <= at_us)
        .checked_sub(1)?;
    let block = arrivals[i];
    let since = usize::try_from(at_us - block.at_us).ok()?;
    let frames = since * RATE as usize / 1_000_000;
    (frames < PLAYER_BLOCK_BYTES / FRAME_BYTES).then_some(block.offset / FRAME_BYTES + frames)
}

/// Sync of two clients playing the same decoded samples (lossy codecs): for each whole
/// 50 ms block of A after `from_a`, the 20 ms window at its start is found in B's output
/// within ±50 ms of where B was at that instant. A match counts only when the samples are
/// (nearly) identical, which the same decoder on the same packets gives; that rules out the
/// near-matches a periodic tone offers every 4.5 ms. Returns, per block matched, when A
/// played it (µs) and how far A plays ahead of B (ms), and how many blocks were tried.
pub fn sync_by_matching(
    (bytes_a, arrivals_a): &(Vec<u8>, Vec<Arrival>),
    (bytes_b, arrivals_b): &(Vec<u8>, Vec<Arrival>),
    from_a: usize,
) -> (Vec<(i64, f64)>, usize) {
    /// RMS difference per sample below which two windows are the same decoded audio; a
    /// one-frame shift of the tones alone gives ≈ 500, the 4.5 ms alias ≈ 100.
    const SAME_AUDIO: f64 = 20.0;
    const WINDOW: usize = 960;
    const SEARCH: usize = 2400;
    let a = audio::frames(bytes_a);
    let b = audio::frames(bytes_b);
    let mut offsets = Vec::new();
    let mut tried = 0;
    let phase_a = block_phase(arrivals_a);
    for pair in arrivals_a.windows(2) {
        let (block, next) = (pair[0], pair[1]);
        let start = block.offset / FRAME_BYTES;
        if !whole_block(block, next, phase_a) || start < from_a || start + WINDOW > a.len() {
            continue;
        }
        let Some(guess) = frame_at(arrivals_b, block.at_us) else {
            continue;
        };
        if guess < SEARCH || guess + SEARCH + WINDOW > b.len() {
            continue;
        }
        let window = &a[start..start + WINDOW];
        // Least squares, nearest lags first with an early exit once a lag is worse than the
        // best so far: the analysis must stay cheap, or it starves the snapclients of a test
        // running in parallel (they play in real time).
        let ssd = |at: usize, bound: f64| -> f64 {
            let mut sum = 0.0;
            for (x, y) in window.iter().zip(&b[at..at + WINDOW]) {
                let dl = f64::from(x.0) - f64::from(y.0);
                let dr = f64::from(x.1) - f64::from(y.1);
                sum += dl * dl + dr * dr;
                if sum > bound {
                    break;
                }
            }
            sum
        };
        let (mut best, mut best_ssd) = (guess, ssd(guess, f64::INFINITY));
        for distance in 1..=SEARCH {
            for at in [guess - distance, guess + distance] {
                let value = ssd(at, best_ssd);
                if value < best_ssd {
                    (best, best_ssd) = (at, value);
                }
            }
        }
        // Only frames inside whole player blocks have a known play time.
        let Some(played_b) = play_time_us(arrivals_b, best) else {
            continue;
        };
        tried += 1;
        if (best_ssd / (2 * WINDOW) as f64).sqrt() < SAME_AUDIO {
            offsets.push((block.at_us, (played_b - block.at_us as f64) / 1000.0));
        }
    }
    (offsets, tried)
}
