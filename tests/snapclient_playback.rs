//! End to end with real Debian snapclients: what they play is analysed for frequency,
//! continuity and sync.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::audio::{self, Signal};
use common::{
    assert_hears_the_signal, once_more_if_apart, steady_frames, sync_offset_ms, FifoWriter, Relay,
    Snapclient, SECOND,
};

fn start_relay_with_pipe() -> (Relay, std::path::PathBuf) {
    start_relay_with_pipe_and(&[])
}

fn start_relay_with_pipe_and(extra: &[&str]) -> (Relay, std::path::PathBuf) {
    Relay::start_with_pipe("pcm", extra)
}

/// `measure_two_clients`, once more with a fresh session if the clients were apart
/// (`common::once_more_if_apart` says why).
fn measure_two_clients_in_sync(relay_extra: &[&str], b_extra: &[&str]) -> (f64, String) {
    let (offsets, log) = once_more_if_apart(|| {
        let (median, log) = measure_two_clients(relay_extra, b_extra);
        (vec![median], log)
    });
    (offsets[0], log)
}

/// Plays the FIFO signal to two clients and returns the median of how far `a` plays ahead
/// of `b`, in ms, after checking both outputs for frequency and continuity.
fn measure_two_clients(relay_extra: &[&str], b_extra: &[&str]) -> (f64, String) {
    let (relay, fifo) = start_relay_with_pipe_and(relay_extra);
    let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    let a = Snapclient::start(relay.port(), "client-a", relay.dir.path());
    let b = Snapclient::start_with(relay.port(), "client-b", relay.dir.path(), b_extra);
    std::thread::sleep(Duration::from_secs(7));

    assert_hears_the_signal(&a);
    assert_hears_the_signal(&b);

    let (median, blocks) = sync_offset_ms(&a, &b);
    writer.stop();
    eprintln!("sync: client-a ahead of client-b by {median:.3} ms (median of {blocks} blocks)");
    (median, relay.log())
}

#[test]
fn two_snapclients_play_the_fifo_signal_in_sync() {
    let (median, log) = measure_two_clients_in_sync(&[], &[]);
    assert!(median.abs() <= 1.0, "clients out of sync by {median:.3} ms");
    assert!(log.contains("ZeroCopy setting: disabled"), "{log}");
    assert!(
        log.contains("Creating regular TCP session for 127.0.0.1"),
        "{log}"
    );
}

/// The same checks with every chunk sent by `sendmsg(MSG_ZEROCOPY)` (auto-fallback off, so
/// the zerocopy path stays in use although loopback copies).
#[test]
fn snapclients_play_in_sync_over_zerocopy_sends() {
    let (median, log) = measure_two_clients_in_sync(
        &[
            "-z",
            "--stream.zerocopy_auto_fallback=false",
            "--server.diagnostics_interval_s=1",
        ],
        &[],
    );
    assert!(median.abs() <= 1.0, "clients out of sync by {median:.3} ms");
    assert!(log.contains("ZeroCopy setting: enabled"), "{log}");
    assert!(
        log.contains("Creating zerocopy-enabled session for 127.0.0.1"),
        "{log}"
    );
    assert!(log.contains("=== Periodic ZeroCopy Status ==="), "{log}");
    assert!(log.contains("=== Buffer Pool Stats ==="), "{log}");
    // Every period's report shows chunks going out with zerocopy on both sessions.
    let zerocopy_lines = log
        .lines()
        .filter(|l| l.contains("mode=zerocopy ") && !l.contains("attempts=0 "))
        .count();
    assert!(zerocopy_lines >= 4, "too few zerocopy reports:\n{log}");
}

/// Proves the sync measurement can see an offset: a client told its sound card has 30 ms of
/// latency plays 30 ms earlier (docs/PROTOCOL.md §2.4: bufferLen = bufferMs - latency).
#[test]
fn sync_measurement_detects_a_client_playing_30ms_early() {
    let (median, _) = measure_two_clients(&[], &["--latency", "30"]);
    assert!(
        (median + 30.0).abs() <= 2.0,
        "expected client-b 30 ms ahead, measured a ahead by {median:.3} ms"
    );
}

#[test]
fn fifo_writer_closing_and_reopening_resumes_audio() {
    let (relay, fifo) = start_relay_with_pipe();
    let client = Snapclient::start(relay.port(), "reopen", relay.dir.path());
    let first = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    std::thread::sleep(Duration::from_secs(3));
    first.stop();
    relay.wait_for_log(&["stream idle"], Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    let (before, _) = client.output();
    let second = FifoWriter::start(&fifo, Signal::new(880.0, 660.0), 1_000_000);
    std::thread::sleep(Duration::from_secs(4));
    second.stop();

    let (bytes, _) = client.output();
    let resumed = audio::frames(&bytes[before.len()..]);
    let start = audio::first_sound(&resumed).expect("audio resumed after the writer came back");
    let frames = &resumed[start + SECOND / 2..];
    assert!(frames.len() > SECOND, "too little audio after the reopen");
    let left = audio::dominant_frequency(frames, false);
    assert!(
        (left - 880.0).abs() < 3.0,
        "second writer's tone at {left} Hz"
    );
    let report = audio::continuity(&frames[..frames.len() - SECOND / 2]);
    assert!(
        report.breaks.is_empty(),
        "dropouts after resuming: {:?}",
        report.breaks
    );
    let log = relay.log();
    assert!(log.contains("stream playing"), "{log}");
}

#[test]
fn a_client_sending_garbage_does_not_disturb_a_playing_client() {
    let (relay, fifo) = start_relay_with_pipe();
    let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    let good = Snapclient::start(relay.port(), "good", relay.dir.path());
    std::thread::sleep(Duration::from_secs(2));

    let garbage: [&[u8]; 3] = [
        // Type 99: no version of the protocol has it.
        &[
            99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        // A Hello announcing a 5 MB payload.
        &[
            5, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x4b, 0x4c, 0,
        ],
        // Random text, then a hang-up mid-message.
        b"GET / HTTP/1.1\r\nHost: x\r\n",
    ];
    for bytes in garbage {
        let mut bad = TcpStream::connect(relay.addr).unwrap();
        bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        bad.write_all(bytes).unwrap();
        if bytes.len() < 26 {
            drop(bad);
            continue;
        }
        let mut sink = [0u8; 1024];
        let closed = loop {
            match bad.read(&mut sink) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        assert!(closed, "relay kept a garbage connection open");
    }
    relay.wait_for_log(
        &["session closed", "unknown message type 99"],
        Duration::from_secs(5),
    );
    relay.wait_for_log(
        &["session closed", "exceeds the limit"],
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_secs(3));

    let (frames, _) = steady_frames(&good);
    let report = audio::continuity(&frames);
    assert!(
        report.breaks.is_empty(),
        "good client disturbed: {:?}",
        report.breaks
    );
    writer.stop();
}

#[test]
fn tone_source_plays_per_channel_frequencies() {
    let relay = Relay::start(&["--source", "tone:///?name=test&freq=523,784&codec=pcm"]);
    let mut client = Snapclient::start(relay.port(), "tone", relay.dir.path());
    std::thread::sleep(Duration::from_secs(4));
    assert!(client.is_running(), "snapclient exited: {}", client.log());
    let (bytes, _) = client.output();
    let frames = audio::frames(&bytes);
    let start = audio::first_sound(&frames).expect("tone was played");
    let frames = &frames[start..];
    let left = audio::dominant_frequency(frames, false);
    let right = audio::dominant_frequency(frames, true);
    assert!((left - 523.0).abs() < 3.0, "left at {left} Hz");
    assert!((right - 784.0).abs() < 3.0, "right at {right} Hz");
    assert!(client.log().contains("Codec: pcm"), "{}", client.log());
}
