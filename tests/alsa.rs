//! ALSA capture (issue 17), built with the `alsa` feature. These machines have no sound card,
//! so the device is ALSA's own `file` plugin over its `null` plugin, defined in a private
//! configuration: it captures the test signal from a file (and silence once the file ends),
//! as fast as it is asked (so it also shows that a device faster than real time is read at
//! the audio rate with nothing dropped). A real snapclient must hear every frame of the file
//! in order, then silence; the stream must play while the file lasts and go idle after.
#![cfg(feature = "alsa")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::audio::{self, Signal};
use common::{jsonrpc_call, Relay, Snapclient};
use serde_json::json;

/// Seconds of test signal the device captures before it turns silent.
const SIGNAL_SECONDS: usize = 8;

/// An ALSA configuration (the system's, plus a capture device `linein` reading `infile`),
/// as `ALSA_CONFIG_PATH` takes it.
fn device_config(dir: &Path, infile: &Path) -> String {
    let conf = dir.join("asound.conf");
    std::fs::write(
        &conf,
        format!(
            "pcm.linein {{\n  type file\n  slave.pcm {{ type null }}\n  file \"/dev/null\"\n  \
             infile \"{}\"\n  format \"raw\"\n}}\n",
            infile.display()
        ),
    )
    .unwrap();
    format!("/usr/share/alsa/alsa.conf:{}", conf.display())
}

fn stream_status(relay: &Relay) -> String {
    let status = jsonrpc_call(relay.jsonrpc_addr(), "Server.GetStatus", json!({}));
    status["result"]["server"]["streams"][0]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn an_alsa_capture_is_heard_frame_for_frame_then_its_silence_makes_the_stream_idle() {
    let dir = tempfile::tempdir().unwrap();
    let infile = dir.path().join("signal.raw");
    let mut signal = Vec::new();
    Signal::new(441.0, 882.0).render(0, SIGNAL_SECONDS * audio::RATE as usize, &mut signal);
    // Then silence: past the file's end the plugin hands back whatever the read buffer held,
    // which after this is silence too.
    signal.resize(
        signal.len() + 3 * audio::RATE as usize * audio::FRAME_BYTES,
        0,
    );
    std::fs::write(&infile, &signal).unwrap();
    let alsa_config = device_config(dir.path(), &infile);
    let client_dir = dir.path().join("client");
    std::fs::create_dir_all(&client_dir).unwrap();
    let relay = Relay::start_with_env(
        dir,
        &[
            "--source",
            "alsa:///?name=LineIn&device=linein&codec=pcm&sampleformat=48000:16:2",
        ],
        &[("ALSA_CONFIG_PATH", &alsa_config)],
    );
    let client = Snapclient::start(relay.port(), "alsa-listener", &client_dir);
    // The pacer collects the first data for a tenth of a second before the stream plays.
    common::eventually(
        Duration::from_secs(5),
        "the capture stream plays",
        || relay.log(),
        || (stream_status(&relay) == "playing").then_some(()),
    );

    // Played out: the file's last frame reached the client, then silence.
    let last_counter = (SIGNAL_SECONDS * audio::RATE as usize - 1) as u16;
    let frames = common::eventually(
        Duration::from_secs(SIGNAL_SECONDS as u64 + 15),
        "the whole capture played, then silence",
        || client.log(),
        || {
            let (bytes, _) = client.output();
            let frames = audio::frames(&bytes);
            let last_sound = frames.iter().rposition(|f| *f != (0, 0))?;
            (frames.len() > last_sound + audio::RATE as usize / 2
                && audio::counter(frames[last_sound]) == last_counter)
                .then_some(frames)
        },
    );
    let first = audio::first_sound(&frames).unwrap();
    let last = frames.iter().rposition(|f| *f != (0, 0)).unwrap();
    let heard = &frames[first..=last];
    assert!(
        heard.len() > 3 * audio::RATE as usize,
        "only {} frames of the capture were heard",
        heard.len()
    );
    let left = audio::dominant_frequency(heard, false);
    let right = audio::dominant_frequency(heard, true);
    assert!((left - 441.0).abs() < 3.0, "left {left} Hz");
    assert!((right - 882.0).abs() < 3.0, "right {right} Hz");
    // Every frame, in order: nothing dropped to "catch up" with a device that is always
    // ahead, nothing repeated (single-frame corrections are snapclient's drift control).
    let continuity = audio::continuity(heard);
    assert!(
        continuity.breaks.is_empty(),
        "breaks in the captured signal: {:?}",
        &continuity.breaks[..continuity.breaks.len().min(10)]
    );
    // The silence after the file is exact silence, not noise.
    assert!(frames[last + 1..].iter().all(|f| *f == (0, 0)));

    common::eventually(
        Duration::from_secs(5),
        "the stream idle after its silence",
        || relay.log(),
        || (stream_status(&relay) == "idle").then_some(()),
    );
    let metrics =
        String::from_utf8_lossy(&common::http_get(relay.http_addr(), "/metrics").body).into_owned();
    for family in [
        "snaprelay_stream_source_overruns_total{stream=\"LineIn\"} 0",
        "snaprelay_stream_source_restarts_total{stream=\"LineIn\"} 0",
        "snaprelay_stream_source_dropped_frames_total{stream=\"LineIn\"} 0",
    ] {
        assert!(metrics.contains(family), "{family} missing in\n{metrics}");
    }
    assert!(
        relay.log().contains("delivers faster than real time"),
        "{}",
        relay.log()
    );
}

#[test]
fn a_missing_alsa_device_fails_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_snaprelay"))
        .args(["--bind", "127.0.0.1", "--datadir"])
        .arg(dir.path())
        .arg(format!("--stream.port={}", common::free_port()))
        .arg(format!("--tcp.port={}", common::free_port()))
        .arg(format!("--http.port={}", common::free_port()))
        .arg(format!("--grpc.port={}", common::free_port()))
        .args([
            "--source",
            "alsa:///?name=LineIn&device=snaprelay_no_such_card",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ALSA device 'snaprelay_no_such_card': cannot open it for capture"),
        "{stderr}"
    );
}
