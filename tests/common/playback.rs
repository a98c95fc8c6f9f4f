//! Assertions on what snapclients played: the steady part of their output, its continuity,
//! and how far apart in time two clients play.

use super::audio;
use super::snapclient::Snapclient;

/// Frames in one second of the 48 kHz test signal.
pub const SECOND: usize = 48_000;

/// What a client played from half a second after its first sound on (start-up settled), and
/// that index; fails the test when it played only silence or too little.
pub fn steady_frames(client: &Snapclient) -> (Vec<(i16, i16)>, usize) {
    let (bytes, _) = client.output();
    let frames = audio::frames(&bytes);
    let start = audio::first_sound(&frames).unwrap_or_else(|| {
        panic!(
            "client {} played only silence ({} frames); its log:\n{}",
            client.host_id,
            frames.len(),
            client.log()
        )
    });
    let from = start + SECOND / 2;
    assert!(
        frames.len() > from + 2 * SECOND,
        "client {} played too little after start-up: {} frames; its log:\n{}",
        client.host_id,
        frames.len().saturating_sub(start),
        client.log()
    );
    (frames[from..].to_vec(), from)
}

/// Asserts that the frame counter in what `client` played runs on without a break: no
/// dropout, no silence, no garbage (lossless playback of the test signal).
pub fn assert_continuous(client: &Snapclient, frames: &[(i16, i16)]) {
    let report = audio::continuity(frames);
    assert!(
        report.breaks.is_empty(),
        "{}: dropouts in {} frames: {:?}",
        client.host_id,
        report.frames,
        &report.breaks[..report.breaks.len().min(10)]
    );
}

/// Asserts that `client`'s steady output is the FIFO test signal (`Signal::new(440.0,
/// 660.0)`: 440 Hz left, 660 Hz right) without a break.
pub fn assert_hears_the_signal(client: &Snapclient) {
    let (frames, _) = steady_frames(client);
    let left = audio::dominant_frequency(&frames, false);
    let right = audio::dominant_frequency(&frames, true);
    assert!(
        (left - 440.0).abs() < 3.0,
        "{}: left at {left} Hz",
        client.host_id
    );
    assert!(
        (right - 660.0).abs() < 3.0,
        "{}: right at {right} Hz",
        client.host_id
    );
    assert_continuous(client, &frames);
}

/// Median of how far client `a` plays ahead of client `b`, in ms, over their steady output
/// (see `audio::sync_offsets_ms`), and how many player blocks it compares; fails the test
/// with fewer than 20 comparable blocks.
pub fn sync_offset_ms(a: &Snapclient, b: &Snapclient) -> (f64, usize) {
    let (bytes_a, arrivals_a) = a.output();
    let (bytes_b, arrivals_b) = b.output();
    let (_, from_a) = steady_frames(a);
    let (_, from_b) = steady_frames(b);
    let positions_a = audio::block_positions(&bytes_a, &arrivals_a, from_a);
    let positions_b = audio::block_positions(&bytes_b, &arrivals_b, from_b);
    let offsets = audio::sync_offsets_ms(&positions_a, &positions_b);
    assert!(
        offsets.len() >= 20,
        "too few comparable blocks: {}",
        offsets.len()
    );
    (audio::median(&offsets), offsets.len())
}

/// The strongest frequency of the left channel in the last half second `client` played;
/// `None` before it played that much.
pub fn recent_frequency(client: &Snapclient) -> Option<f64> {
    let (bytes, _) = client.output();
    let frames = audio::frames(&bytes);
    let take = SECOND / 2;
    (frames.len() > take).then(|| audio::dominant_frequency(&frames[frames.len() - take..], false))
}

/// Runs `measure` (a whole session: servers, writer, clients) and returns the sync offsets it
/// measured, in ms, with whatever else it returns; if one offset is over 1 ms, measures once
/// more with a fresh session and returns that (a counted retry, `retry::once_more_if`).
/// Snapclients started on a busy machine now and then settle 1–5 ms from where they should
/// and stay there for many seconds (their soft correction moves 0.5 ms a second): seen
/// between two clients of the same server, so it is a client's start, while a server defect
/// shows in every session. A functional check that fails inside `measure` fails the test.
pub fn once_more_if_apart<T>(measure: impl Fn() -> (Vec<f64>, T)) -> (Vec<f64>, T) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    super::retry::once_more_if(
        &test,
        |(offsets, _)| offsets.iter().all(|offset| offset.abs() <= 1.0),
        |(offsets, _)| format!("clients {offsets:.3?} ms apart"),
        measure,
    )
}
