//! Issue 15: real snapclients joining a running lossy stream play in sync from their first
//! sample. Vorbis: a fresh decoder outputs nothing for the first packet it sees, so without
//! the fresh-decoder timestamp a joining client plays one block (21.3 ms) early until its
//! drift control jumps. Opus: pairs of clients joining at different moments all agree.
//!
//! Now and then a joining snapclient 0.26 starts playing a few ms (once 23 ms) away from the
//! others and stays there, on two busy cores, with FLAC as with Opus and on the previous
//! relay as on this one, while its clock offset to the server agrees with the others' to
//! 0.02 ms (issue 15's note has the numbers). What these tests hold the relay to is what it
//! controls: no systematic offset for a joiner. The Ogg joiner must stay within 5 ms in each
//! of its first ten seconds that could be measured (the defect was 21.3 ms, every joiner),
//! and joining pairs must agree within 1 ms in the median; every pair's offset is printed.
//!
//! Both tests print their measurements (`--nocapture`).

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::audio::{self, Signal};
use common::matching::sync_by_matching;
use common::{FifoWriter, Relay, Snapclient};

/// The tests of this file take turns: each runs several real-time clients and a relay's
/// encoder (a debug build's Opus encoder is heavy), and clients starved of CPU by the other
/// test would measure the machine, not the relay.
static PLAYING: Mutex<()> = Mutex::new(());

fn take_turn() -> MutexGuard<'static, ()> {
    // A test that panicked while holding the turn poisons it; the next one may still play.
    PLAYING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn relay_playing(codec: &str) -> (Relay, FifoWriter) {
    let (relay, fifo) = Relay::start_with_pipe(codec, &[]);
    let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    (relay, writer)
}

/// Where `client` first played sound, as an index into its output frames.
fn first_sound(client: &Snapclient) -> usize {
    let (bytes, _) = client.output();
    audio::first_sound(&audio::frames(&bytes)).unwrap_or_else(|| {
        panic!(
            "{} played only silence; its log:\n{}",
            client.host_id,
            client.log()
        )
    })
}

/// A client joining an Ogg stream that another client has played for 7 s (long past its own
/// start) plays in sync with it over every second of its first 10 s.
#[test]
fn a_client_joining_an_ogg_stream_plays_in_sync_from_its_first_second() {
    let _turn = take_turn();
    let (relay, writer) = relay_playing("ogg");
    let settled = Snapclient::start(relay.port(), "settled", relay.dir.path());
    std::thread::sleep(Duration::from_secs(7));
    let joiner = Snapclient::start(relay.port(), "joiner", relay.dir.path());
    std::thread::sleep(Duration::from_millis(11_500));
    writer.stop();

    let start = first_sound(&joiner);
    let joined = joiner.output();
    let (timed, tried) = sync_by_matching(&joined, &settled.output(), start);
    let first_at = joined
        .1
        .iter()
        .find(|a| a.offset >= start * audio::FRAME_BYTES)
        .expect("joiner's first sound arrived")
        .at_us;
    // Per second since the joiner's first sound: how many of its blocks were found in the
    // settled client's output, and the median of how far ahead it plays (ms).
    let report: Vec<(usize, f64)> = (0..10)
        .map(|second| {
            let window = first_at + second * 1_000_000..first_at + (second + 1) * 1_000_000;
            let offsets: Vec<f64> = timed
                .iter()
                .filter(|(at, _)| window.contains(at))
                .map(|(_, offset)| *offset)
                .collect();
            let median = if offsets.is_empty() {
                f64::NAN
            } else {
                audio::median(&offsets)
            };
            (offsets.len(), median)
        })
        .collect();
    eprintln!(
        "joiner vs settled client per second since it joined (blocks matched, ms ahead), \
         {tried} blocks tried: {report:.3?}"
    );
    // A second counts when at least three of its blocks were found in the other client's
    // output; blocks read two at a time under load have no arrival time of their own.
    let measured: Vec<(usize, f64)> = report
        .iter()
        .enumerate()
        .filter(|(_, (matched, _))| *matched >= 3)
        .map(|(second, (_, offset))| (second, *offset))
        .collect();
    assert!(
        measured.iter().filter(|(second, _)| *second < 5).count() >= 3,
        "too few of the joiner's first five seconds could be measured: {report:.3?}"
    );
    for (second, offset) in measured {
        assert!(
            offset.abs() <= 5.0,
            "second {second} after joining, the joiner plays {offset:.3} ms ahead; every \
             second: {report:.3?}"
        );
    }
}

/// Twenty-one pairs of clients, the second of each joining 0–500 ms after the first (three
/// pairs play at a time), agree in the median (see the module doc for single pairs).
#[test]
fn opus_clients_joining_at_different_moments_agree() {
    let _turn = take_turn();
    let (relay, writer) = relay_playing("opus");
    let mut results = Vec::new();
    let mut unmeasured = Vec::new();
    for round in 0..7u64 {
        let mut pairs = Vec::new();
        for pair in 0..3u64 {
            let n = round * 3 + pair;
            let a = Snapclient::start(relay.port(), &format!("a{n}"), relay.dir.path());
            // 0, 25, …, 500 ms: every 20 ms chunk phase and then some.
            std::thread::sleep(Duration::from_millis(n * 25));
            let b = Snapclient::start(relay.port(), &format!("b{n}"), relay.dir.path());
            pairs.push((n, a, b));
        }
        std::thread::sleep(Duration::from_millis(4_000));
        for (n, a, b) in pairs {
            let (bytes_b, _) = b.output();
            let from = audio::first_sound(&audio::frames(&bytes_b)).unwrap_or(0) + 12_000;
            let (timed, tried) = sync_by_matching(&b.output(), &a.output(), from);
            let offsets: Vec<f64> = timed.iter().map(|(_, offset)| *offset).collect();
            // Both clients must have played; a pair whose blocks could not be compared (the
            // measurement, not the relay: the harness needs whole player blocks read in
            // time) is reported and left out, a few at most.
            let (a_frames, b_frames) = (
                audio::frames(&a.output().0).len(),
                audio::frames(&bytes_b).len(),
            );
            assert!(
                a_frames > 2 * 48_000 && b_frames > 2 * 48_000,
                "pair {n}: a played {a_frames} frames, b {b_frames}; logs:\n{}\n{}",
                a.log(),
                b.log()
            );
            if offsets.len() < 5 {
                eprintln!(
                    "pair {n}: only {} of {tried} blocks matched (a played {a_frames} frames, \
                     b {b_frames} from frame {from}); left out",
                    offsets.len()
                );
                unmeasured.push(n);
                continue;
            }
            results.push((n, audio::median(&offsets)));
        }
    }
    writer.stop();
    eprintln!("b ahead of a, ms, per pair (b joined n × 25 ms after a): {results:.3?}");
    assert!(
        unmeasured.len() <= 3,
        "{} of 21 pairs could not be measured: {unmeasured:?}",
        unmeasured.len()
    );
    let magnitudes: Vec<f64> = results.iter().map(|(_, ms)| ms.abs()).collect();
    let typical = audio::median(&magnitudes);
    assert!(
        typical <= 1.0,
        "pairs typically {typical:.3} ms apart: {results:.3?}"
    );
    let apart = results.iter().filter(|(_, ms)| ms.abs() > 5.0).count();
    eprintln!("{apart} of {} pairs more than 5 ms apart", results.len());
}
