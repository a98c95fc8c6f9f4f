//! Issue 6 end to end: each codec (flac, opus, ogg) played by two real Debian snapclients.
//!
//! FLAC is lossless, so the test signal's embedded frame counter survives and the full checks
//! of `snapclient_playback.rs` apply: frequency per channel, counter continuity, and sync from
//! the counters. Opus and Vorbis are lossy and wipe the counter out, so for them:
//! - frequency: the dominant FFT bin per channel, as for FLAC;
//! - dropouts: every 10 ms block of each channel keeps its RMS within a band around the
//!   tone's (silence, a collapse or a burst fails), and the tone's phase advances between
//!   consecutive 10 ms blocks by what its frequency predicts (a skipped or repeated stretch
//!   fails; snapclient's single-frame drift corrections stay far below the threshold);
//! - sync: both clients decode the same packets with the same decoder, so they play the same
//!   samples. For each 50 ms block client A played, the 20 ms window at its start is located in
//!   client B's output by least squares, and the two playing times (from the recorded
//!   arrival times of the player's blocks) are compared.

mod common;

use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::audio::{self, Signal, RATE};
use common::matching::sync_by_matching;
use common::{
    assert_continuous, once_more_if_apart, steady_frames, sync_offset_ms, FifoWriter, Relay,
    Snapclient, SECOND,
};

/// The test tones (left, right) and their amplitude (see `audio::Signal`).
const LEFT_HZ: f64 = 440.0;
const RIGHT_HZ: f64 = 660.0;
const AMPLITUDE: f64 = 12_000.0;

/// The playing tests of this file take turns: a real-time snapclient starved of CPU by
/// another test's relay, clients and analysis (2 cores) underruns, which would read as a
/// dropout of the codec under test.
static PLAYING: Mutex<()> = Mutex::new(());

/// Two clients playing one stream with `codec` (URI value, options included).
struct Session {
    _turn: MutexGuard<'static, ()>,
    relay: Relay,
    writer: FifoWriter,
    a: Snapclient,
    b: Snapclient,
}

fn play(codec: &str) -> Session {
    // A test that panicked while holding the turn poisons it; the next one may still play.
    let turn = PLAYING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (relay, fifo) = Relay::start_with_pipe(codec, &[]);
    let writer = FifoWriter::start(&fifo, Signal::new(LEFT_HZ, RIGHT_HZ), 0);
    let a = Snapclient::start(relay.port(), "client-a", relay.dir.path());
    let b = Snapclient::start(relay.port(), "client-b", relay.dir.path());
    std::thread::sleep(Duration::from_secs(7));
    Session {
        _turn: turn,
        relay,
        writer,
        a,
        b,
    }
}

fn assert_frequencies(client: &Snapclient, frames: &[(i16, i16)]) {
    let left = audio::dominant_frequency(frames, false);
    let right = audio::dominant_frequency(frames, true);
    assert!(
        (left - LEFT_HZ).abs() < 3.0,
        "{}: left at {left} Hz",
        client.host_id
    );
    assert!(
        (right - RIGHT_HZ).abs() < 3.0,
        "{}: right at {right} Hz",
        client.host_id
    );
}

/// Lossy continuity: RMS band and phase continuity per 10 ms block (see the module doc).
/// Returns a description of the first problems found, empty when clean.
fn lossy_dropouts(frames: &[(i16, i16)]) -> Vec<String> {
    const BLOCK: usize = 480; // 10 ms
    let expected_rms = AMPLITUDE / 2f64.sqrt();
    let mut problems = Vec::new();
    for (channel, hz) in [(0, LEFT_HZ), (1, RIGHT_HZ)] {
        let omega = std::f64::consts::TAU * hz / f64::from(RATE);
        let mut previous_phase: Option<f64> = None;
        for (k, block) in frames.chunks_exact(BLOCK).enumerate() {
            let samples: Vec<f64> = block
                .iter()
                .map(|f| f64::from(if channel == 0 { f.0 } else { f.1 }))
                .collect();
            let rms = (samples.iter().map(|s| s * s).sum::<f64>() / BLOCK as f64).sqrt();
            if !(0.7 * expected_rms..=1.3 * expected_rms).contains(&rms) {
                problems.push(format!(
                    "channel {channel} block {k} ({} ms): rms {rms:.0}, expected ≈ {expected_rms:.0}",
                    k * 10
                ));
            }
            // Phase of the tone in this block, relative to the block's first sample.
            let (mut re, mut im) = (0.0, 0.0);
            for (i, s) in samples.iter().enumerate() {
                re += s * (omega * i as f64).cos();
                im -= s * (omega * i as f64).sin();
            }
            let phase = im.atan2(re);
            if let Some(previous) = previous_phase {
                let advance = omega * BLOCK as f64;
                let error = (phase - previous - advance + std::f64::consts::PI)
                    .rem_euclid(std::f64::consts::TAU)
                    - std::f64::consts::PI;
                // One dropped or repeated frame moves the phase by ω (< 0.09 rad here); a
                // skipped or repeated stretch of audio moves it arbitrarily.
                if error.abs() > 0.4 {
                    problems.push(format!(
                        "channel {channel} block {k} ({} ms): phase jumps by {error:.2} rad",
                        k * 10
                    ));
                }
            }
            previous_phase = Some(phase);
        }
    }
    problems
}

/// Runs `measure` (a whole session: relay, writer, two clients) and returns its sync offset,
/// measured once more with a fresh session if the clients were apart
/// (`common::once_more_if_apart` says why).
fn with_fresh_clients_once_more_if_apart(measure: impl Fn() -> f64) -> f64 {
    once_more_if_apart(|| (vec![measure()], ())).0[0]
}

/// Runs the lossy checks for `codec` and returns the median sync offset in ms.
fn lossy_codec_plays_in_sync(codec: &str) -> f64 {
    let session = play(codec);
    for client in [&session.a, &session.b] {
        let (frames, _) = steady_frames(client);
        assert_frequencies(client, &frames);
        let problems = lossy_dropouts(&frames);
        assert!(
            problems.is_empty(),
            "{} ({codec}): {} dropouts in {} frames, first: {:?}",
            client.host_id,
            problems.len(),
            frames.len(),
            &problems[..problems.len().min(10)]
        );
    }
    let (_, from_a) = steady_frames(&session.a);
    let (timed, tried) = sync_by_matching(&session.a.output(), &session.b.output(), from_a);
    let offsets: Vec<f64> = timed.iter().map(|(_, offset)| *offset).collect();
    session.writer.stop();
    // A block whose 20 ms window is nowhere near B's position at that instant (beyond
    // ±50 ms) finds no identical audio; a few such blocks are arrival-time jitter, many
    // mean the clients are far apart.
    assert!(
        offsets.len() >= 20 && offsets.len() * 4 >= tried * 3,
        "{codec}: only {} of {tried} blocks found in the other client's output",
        offsets.len()
    );
    let median = audio::median(&offsets);
    eprintln!(
        "sync ({codec}): client-a ahead of client-b by {median:.3} ms (median of {} of {tried} \
         blocks)",
        offsets.len()
    );
    assert!(
        session.relay.log().contains("stream started"),
        "{}",
        session.relay.log()
    );
    median
}

#[test]
fn flac_plays_bit_exact_in_sync_on_two_snapclients() {
    let median = with_fresh_clients_once_more_if_apart(|| {
        let session = play("flac");
        for client in [&session.a, &session.b] {
            let (frames, _) = steady_frames(client);
            assert_frequencies(client, &frames);
            // Lossless: the embedded frame counter must run on without a break.
            assert_continuous(client, &frames);
        }
        let (median, blocks) = sync_offset_ms(&session.a, &session.b);
        session.writer.stop();
        eprintln!(
            "sync (flac): client-a ahead of client-b by {median:.3} ms (median of {blocks} \
             blocks)"
        );
        median
    });
    assert!(
        median.abs() <= 1.0,
        "flac clients out of sync by {median:.3} ms"
    );
}

#[test]
fn opus_plays_in_sync_on_two_snapclients() {
    let median = with_fresh_clients_once_more_if_apart(|| lossy_codec_plays_in_sync("opus"));
    assert!(
        median.abs() <= 1.0,
        "opus clients out of sync by {median:.3} ms"
    );
}

#[test]
fn ogg_vorbis_plays_in_sync_on_two_snapclients() {
    let median = with_fresh_clients_once_more_if_apart(|| lossy_codec_plays_in_sync("ogg"));
    assert!(
        median.abs() <= 1.0,
        "ogg clients out of sync by {median:.3} ms"
    );
}

/// Codec options as snapserver spells them reach the encoder (a client still plays).
#[test]
fn codec_options_are_accepted_and_play() {
    let session = play("opus:BITRATE:96000,COMPLEXITY:5");
    let (frames, _) = steady_frames(&session.a);
    assert_frequencies(&session.a, &frames);
    session.writer.stop();
}

/// The lossy checks must catch a real dropout, or a passing test proves nothing.
#[test]
fn lossy_dropout_check_catches_a_gap_and_a_skip() {
    let mut bytes = Vec::new();
    Signal::new(LEFT_HZ, RIGHT_HZ).render(0, SECOND, &mut bytes);
    let clean = audio::frames(&bytes);
    assert!(
        lossy_dropouts(&clean).is_empty(),
        "{:?}",
        lossy_dropouts(&clean)
    );
    let mut gap = clean.clone();
    gap[20_000..20_960].fill((0, 0));
    assert!(!lossy_dropouts(&gap).is_empty());
    let mut skip = clean.clone();
    skip.drain(20_000..20_700); // 14.6 ms of audio missing, no silence
    assert!(!lossy_dropouts(&skip).is_empty());
    let mut corrected = clean;
    corrected.remove(20_000); // one frame: snapclient's drift correction, not a dropout
    assert!(lossy_dropouts(&corrected).is_empty());
}

fn start_up_error(uri: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_snaprelay"))
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--grpc.port=0",
            "--source",
            uri,
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run snaprelay");
    assert!(!output.status.success(), "snaprelay started with {uri}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn unusable_codec_settings_fail_at_start_up_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("f");
    let uri = |query: &str| format!("pipe://{}?name=a&{query}", fifo.display());
    // 44100 Hz is resampled for opus (tests/players.rs), mono spread to stereo; six
    // channels are refused.
    let err = start_up_error(&uri("sampleformat=48000:16:6&codec=opus"));
    assert!(err.contains("48000:16:6") && err.contains("opus"), "{err}");
    let err = start_up_error(&uri("sampleformat=48000:32:2&codec=flac"));
    assert!(
        err.contains("48000:32:2") && err.contains("32-bit"),
        "{err}"
    );
    let err = start_up_error(&uri("codec=flac:11"));
    assert!(err.contains("'11'"), "{err}");
    let err = start_up_error(&uri("codec=ogg:VBR:3"));
    assert!(err.contains("'VBR:3'"), "{err}");
}
