//! A stream end to end below the network: a FIFO written in real time with a pause, through
//! the pacer and each codec's encoder, to the published chunks.

use std::io::Write;
use std::time::Duration;

use super::*;
use crate::encoder::SUPPORTED_CODECS;
use crate::source::SourceDefaults;

/// Starts the stream `uri` describes, with a 1 s buffer and no plugin; it runs until the
/// token is cancelled.
fn start(uri: &str) -> (Stream, CancellationToken) {
    let spec = SourceSpec::parse(uri, &SourceDefaults::default()).unwrap();
    let cancel = CancellationToken::new();
    let stream = Stream::start(
        spec,
        Arc::new(|| 1000),
        BufferPool::new(1 << 20),
        &crate::plugin::PluginEnv::local(),
        &[],
        cancel.clone(),
        &tokio_util::task::TaskTracker::new(),
    )
    .unwrap();
    (stream, cancel)
}

/// Writes `before_ms` of a tone, pauses `pause_ms`, then writes `after_ms`, each
/// 10 ms piece when its last frame is due, as a live source would.
fn write_with_pause(path: std::path::PathBuf, before_ms: u64, pause_ms: u64, after_ms: u64) {
    std::thread::spawn(move || {
        let mut fifo = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let start = std::time::Instant::now();
        let pieces = (before_ms + after_ms) / 10;
        for piece in 0..pieces {
            let mut due = Duration::from_millis((piece + 1) * 10);
            if piece * 10 >= before_ms {
                due += Duration::from_millis(pause_ms);
            }
            if let Some(wait) = (start + due).checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
            let pcm: Vec<u8> = (0..480u32)
                .flat_map(|i| {
                    let t = f64::from(piece as u32 * 480 + i) / 48_000.0;
                    let s = ((std::f64::consts::TAU * 440.0 * t).sin() * 8000.0) as i16;
                    [s.to_le_bytes(), s.to_le_bytes()].concat()
                })
                .collect();
            if fifo.write_all(&pcm).is_err() {
                return;
            }
        }
        // Hold the FIFO open a little: the end of the writer is not part of the test.
        std::thread::sleep(Duration::from_millis(500));
    });
}

/// For every codec: across a 300 ms source pause, the published chunks' timestamps stay on
/// one sample grid with no hole (the pause is in the stream as silence), and the timeline
/// spans the audio plus the pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_keeps_the_encoded_timeline_whole_across_a_pause() {
    for codec in SUPPORTED_CODECS {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let uri = format!(
            "pipe://{}?name=t&codec={codec}&sampleformat=48000:16:2&chunk_ms=20",
            fifo.display()
        );
        let (stream, cancel) = start(&uri);
        let mut chunks = stream.subscribe();
        write_with_pause(fifo, 1000, 300, 1000);

        let mut stamps = Vec::new();
        // Until nothing comes: the writer ended and the bridge after it stopped sending.
        while let Ok(Ok(chunk)) =
            tokio::time::timeout(Duration::from_millis(150), chunks.recv()).await
        {
            stamps.push(chunk.timestamp_us);
        }
        cancel.cancel();
        assert!(stamps.len() > 50, "{codec}: only {} chunks", stamps.len());

        let first = stamps[0];
        for pair in stamps.windows(2) {
            let step = pair[1] - pair[0];
            assert!(
                (1..=100_000).contains(&step),
                "{codec}: a hole of {step} µs in the encoded timeline"
            );
        }
        for &ts in &stamps {
            // Whole frames from the first unit, to the µs the timestamps are kept in.
            let frames = (ts - first) as f64 * 48_000.0 / 1e6;
            assert!(
                (frames - frames.round()).abs() <= 0.05,
                "{codec}: unit at {} µs is off the sample grid",
                ts - first
            );
        }
        // 2 s of audio and the 300 ms pause, as one timeline (the last units may still sit
        // in the encoder, and the bridge after the writer ended adds silence).
        let span = stamps[stamps.len() - 1] - first;
        assert!(span >= 2_200_000, "{codec}: timeline spans only {span} µs");
        // The pause and the writer's end at least; a test writer descheduled for longer
        // than the tolerance on a busy machine is one more (and bridged like any).
        let stalls = stream.stats().stalls.load(Ordering::Relaxed);
        assert!(stalls >= 2, "{codec}: {stalls} pauses seen");
        assert_eq!(stream.stats().resyncs.load(Ordering::Relaxed), 0, "{codec}");
    }
}

/// Quiet input below `silence_threshold_percent` makes the stream idle after
/// `idle_threshold`; with `send_silence=false` nothing is published while it is, and loud
/// input makes it play and publish again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_input_goes_idle_and_is_not_sent_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let uri = format!(
        "pipe://{}?name=t&codec=pcm&chunk_ms=20&idle_threshold=100\
         &silence_threshold_percent=1&send_silence=false",
        fifo.display()
    );
    let (stream, cancel) = start(&uri);
    let mut chunks = stream.subscribe();
    let mut playing = stream.watch_playing();
    // 1 s of hiss at ±200 (0.6 % of full scale), then 1 s of a loud tone, in real time.
    std::thread::spawn(move || {
        let mut out = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let start = std::time::Instant::now();
        for piece in 0..200u32 {
            let due = Duration::from_millis(u64::from(piece + 1) * 10);
            if let Some(wait) = (start + due).checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
            let level = if piece < 100 { 200.0 } else { 8000.0 };
            let pcm: Vec<u8> = (0..480u32)
                .flat_map(|i| {
                    let t = f64::from(piece * 480 + i) / 48_000.0;
                    let s = ((std::f64::consts::TAU * 440.0 * t).sin() * level) as i16;
                    [s.to_le_bytes(), s.to_le_bytes()].concat()
                })
                .collect();
            if out.write_all(&pcm).is_err() {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    });
    let mut stamps = Vec::new();
    let mut idle_seen = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            chunk = chunks.recv() => match chunk {
                Ok(chunk) => stamps.push(chunk.timestamp_us),
                Err(_) => break,
            },
            changed = playing.changed() => {
                if changed.is_ok() && !*playing.borrow() {
                    idle_seen = true;
                }
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    cancel.cancel();
    assert!(idle_seen, "the hiss never made the stream idle");
    // While idle nothing went out: one gap of about the hiss minus the idle threshold.
    let gaps: Vec<i64> = stamps
        .windows(2)
        .map(|p| p[1] - p[0])
        .filter(|step| *step > 100_000)
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!((700_000..=1_000_000).contains(&gaps[0]), "{gaps:?}");
    // The loud second came through whole.
    let after = stamps
        .iter()
        .filter(|t| **t > stamps[0] + 1_000_000)
        .count();
    assert!(after >= 45, "{after} chunks of the loud second");
}
