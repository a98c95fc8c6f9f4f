//! Player sources (issue 17): librespot run as snapserver runs it, with a stand-in player
//! (`tests/players/librespot`) that behaves like the real one from the outside: its command
//! line, the track its log names reaching the stream's properties, the watchdog restarting it
//! when its log goes quiet, and a real snapclient hearing its 44100 Hz audio.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{audio, http_get, jsonrpc_call, Relay, Snapclient};
use serde_json::{json, Value};

fn fake_player() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/players/librespot")
}

/// Each start's command line, as the stand-in recorded it.
fn starts(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("starts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits for three seconds of the client's audio at `rate`; checks the last second holds the
/// stand-in players' 441 Hz (left) and 882 Hz (right); returns that second.
fn hears_the_player(client: &Snapclient, rate: u32) -> Vec<(i16, i16)> {
    let second = rate as usize;
    let frames = common::eventually(
        Duration::from_secs(20),
        "three seconds of audio",
        || client.log(),
        || {
            let (bytes, _) = client.output();
            let frames = audio::frames(&bytes);
            (frames.len() > 3 * second).then_some(frames)
        },
    );
    let recent = frames[frames.len() - second..].to_vec();
    let left = audio::dominant_frequency_at(&recent, false, rate);
    let right = audio::dominant_frequency_at(&recent, true, rate);
    assert!((left - 441.0).abs() < 3.0, "left {left} Hz");
    assert!((right - 882.0).abs() < 3.0, "right {right} Hz");
    recent
}

fn start_relay(uri: &str, codec: &str) -> (Relay, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("player");
    std::fs::create_dir_all(&records).unwrap();
    let source = format!(
        "librespot://{}?{uri}&codec={codec}",
        fake_player().display()
    );
    let relay = Relay::start_with_env(
        dir,
        &["--source", &source, "--http.host=relay.test"],
        &[("FAKE_PLAYER_DIR", records.to_str().unwrap())],
    );
    (relay, records)
}

#[test]
fn librespot_runs_as_snapserver_runs_it_and_its_track_reaches_the_properties() {
    let (relay, records) = start_relay(
        "name=Spotify&devicename=Kitchen&bitrate=160&volume=42&username=me&password=hunter2",
        "pcm",
    );
    let started = common::eventually(
        Duration::from_secs(10),
        "librespot started",
        || relay.log(),
        || starts(&records).first().cloned(),
    );
    assert_eq!(
        started,
        json!([
            "--name",
            "Kitchen",
            "--username",
            "me",
            "--password",
            "hunter2",
            "--bitrate",
            "160",
            "--backend",
            "pipe",
            "--initial-volume",
            "42",
            "--verbose"
        ])
    );

    let addr = relay.jsonrpc_addr();
    let stream = common::eventually(
        Duration::from_secs(10),
        "the track's metadata",
        || relay.log(),
        || {
            let status = jsonrpc_call(addr, "Server.GetStatus", json!({}));
            let stream = status["result"]["server"]["streams"][0].clone();
            (stream["properties"]["metadata"]["title"] == "Test Track").then_some(stream)
        },
    );
    let metadata = &stream["properties"]["metadata"];
    assert_eq!(metadata["duration"], 200.0);
    // The credentials never show, and the format is librespot's whatever the defaults say.
    let raw = stream["uri"]["raw"].as_str().unwrap();
    assert!(
        !raw.contains("hunter2") && !raw.contains("username=me"),
        "{raw}"
    );
    assert_eq!(stream["uri"]["query"]["sampleformat"], "44100:16:2");
    // Spotify's mark as the cover, served by the relay.
    let url = metadata["artUrl"].as_str().unwrap();
    let http = relay.http_addr();
    let path = url
        .split_once(&format!("relay.test:{}", http.port()))
        .unwrap()
        .1;
    let cover = http_get(http, path);
    assert_eq!(cover.status, 200);
    assert_eq!(cover.header("content-type"), Some("image/svg+xml"));
    assert!(String::from_utf8_lossy(&cover.body).starts_with("<svg"));

    // A real snapclient hears the player's 441/882 Hz at 44100 Hz.
    let client_dir = tempfile::tempdir().unwrap();
    let client = Snapclient::start(relay.port(), "kitchen", client_dir.path());
    hears_the_player(&client, 44_100);
    assert!(client.log().contains("44100:16:2"), "{}", client.log());
}

#[test]
fn a_player_whose_log_goes_quiet_is_restarted_by_the_watchdog() {
    let (relay, records) = start_relay("name=Spotify&wd_timeout=1", "pcm");
    // The stand-in logs only at start: each second of silence is a restart (plus backoff).
    common::eventually(
        Duration::from_secs(15),
        "two watchdog restarts",
        || relay.log(),
        || (starts(&records).len() >= 3).then_some(()),
    );
    assert!(relay.log().contains("wd_timeout"), "{}", relay.log());
    // Counted as the stream's input restarts, where operators look.
    let metrics =
        String::from_utf8_lossy(&http_get(relay.http_addr(), "/metrics").body).into_owned();
    let restarts: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("snaprelay_stream_source_restarts_total{stream=\"Spotify\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no restarts figure in\n{metrics}"));
    assert!(restarts >= 2.0, "{restarts} restarts counted");
}

#[test]
fn a_missing_player_or_bad_parameters_fail_start_up_clearly() {
    let check = |source: &str, words: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_snaprelay"))
            .args(["--check-config", "--source", source])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{source}");
        assert!(stderr.contains(words), "{source}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    };
    check(
        "librespot:///usr/bin/librespot?name=S&username=me",
        "username and password together",
    );
    check(
        "librespot:///usr/bin/librespot?name=S&password=hunter2",
        "username and password together",
    );
    check(
        "librespot:///usr/bin/librespot?name=S&params=--onevent%20x",
        "use onevent=",
    );
    // The player itself is looked for when the stream starts.
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_snaprelay"))
        .args(["--source", "librespot:///nowhere/librespot?name=S"])
        .args([
            "--port",
            "0",
            "--grpc.port=0",
            "--http.port=0",
            "--tcp.port=0",
        ])
        .arg("--datadir")
        .arg(dir.path())
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("librespot not found"), "{stderr}");
}

/// AirPlay: shairport-sync run as snapserver runs it, moved to the next port when another
/// instance holds its own, its metadata pipe's items (garbage among them) reaching the
/// stream's properties, the cover served as JPEG.
#[test]
fn shairport_sync_runs_as_snapserver_runs_it_and_its_metadata_reaches_the_properties() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("player");
    std::fs::create_dir_all(&records).unwrap();
    let player = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/players/shairport-sync");
    let port = common::free_port();
    let source = format!(
        "airplay://{}?name=AirPlay&devicename=Living%20Room&port={port}&password=hunter2&codec=pcm",
        player.display()
    );
    let relay = Relay::start_with_env(
        dir,
        &["--source", &source, "--http.host=relay.test"],
        &[
            ("FAKE_PLAYER_DIR", records.to_str().unwrap()),
            ("FAKE_PLAYER_TAKEN_PORT", &port.to_string()),
        ],
    );
    let addr = relay.jsonrpc_addr();
    let stream = common::eventually(
        Duration::from_secs(20),
        "the cover",
        || relay.log(),
        || {
            let status = jsonrpc_call(addr, "Server.GetStatus", json!({}));
            let stream = status["result"]["server"]["streams"][0].clone();
            stream["properties"]["metadata"]["artUrl"]
                .is_string()
                .then_some(stream)
        },
    );
    let metadata = &stream["properties"]["metadata"];
    assert_eq!(metadata["title"], "Fake Title", "{stream}");
    assert_eq!(metadata["artist"], json!(["Fake Artist"]));
    assert_eq!(metadata["album"], "Fake Album");
    assert!(!stream["uri"]["raw"].as_str().unwrap().contains("hunter2"));
    let http = relay.http_addr();
    let url = metadata["artUrl"].as_str().unwrap();
    assert!(url.ends_with(".jpg"), "{url}");
    let path = url
        .split_once(&format!("relay.test:{}", http.port()))
        .unwrap()
        .1;
    let cover = http_get(http, path);
    assert_eq!(cover.header("content-type"), Some("image/jpeg"));
    assert_eq!(cover.body, b"\xff\xd8\xff\xe0 fake jpeg");

    // The first start found its port taken and the next went one up, pipe and all.
    let all = starts(&records);
    assert!(all.len() >= 2, "{all:?}");
    let pipe = |p: u16| format!("--metadata-pipename=/tmp/shairmeta.{}.{p}", relay.pid());
    let expected = |p: u16| {
        json!([
            "--name=Living Room",
            "--output=stdout",
            "--get-coverart",
            "--password",
            "hunter2",
            pipe(p),
            format!("--port={p}")
        ])
    };
    assert_eq!(all[0], expected(port));
    assert_eq!(all[1], expected(port + 1));
    assert!(
        relay
            .log()
            .contains("unreadable items on the metadata pipe"),
        "{}",
        relay.log()
    );
}

/// Opus takes 48000 Hz only: a 44100 Hz player's audio is resampled once in the relay, and a
/// real snapclient hears the same tones at 48000 Hz.
#[test]
fn opus_from_a_44100_hz_player_is_resampled_and_heard() {
    let (relay, _records) = start_relay("name=Spotify", "opus");
    let client_dir = tempfile::tempdir().unwrap();
    let client = Snapclient::start(relay.port(), "kitchen", client_dir.path());
    let recent = hears_the_player(&client, 48_000);
    assert!(client.log().contains("48000:16:2"), "{}", client.log());
    let recent = &recent[..];
    // Continuous: no dropouts once playing (a second of it has no silent stretch).
    let longest_quiet = recent
        .split(|f| f.0.unsigned_abs() > 1000)
        .map(<[(i16, i16)]>::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_quiet < 100,
        "a silent stretch of {longest_quiet} frames"
    );
}

/// Debian's snapserver.conf with Spotify, AirPlay and a meta stream of them added starts
/// snaprelay as it is (the players found on PATH, as snapserver finds them); the meta
/// stream plays Spotify, the first input playing, and shows its track.
#[test]
fn debians_snapserver_conf_with_players_and_a_meta_stream_starts_as_it_is() {
    let debian = include_str!("../server/config/testdata/debian-snapserver.conf");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("snapfifo");
    let added = format!(
        "source = pipe://{}?name=default\n\
                 source = librespot:///usr/bin/librespot?name=Spotify&devicename=Kitchen\n\
                 source = airplay:///usr/bin/shairport-sync?name=AirPlay&devicename=Kitchen\n\
                 source = meta:///Spotify/AirPlay/default?name=Mix\n",
        fifo.display()
    );
    // The file as Debian ships it, but for its FIFO (kept apart from other runs) and the
    // sources added.
    let conf_text = debian.replace("source = pipe:///tmp/snapfifo?name=default\n", &added);
    assert_ne!(
        conf_text, debian,
        "the Debian file names its default source"
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("snapserver.conf");
    std::fs::write(&conf, conf_text).unwrap();
    let records = dir.path().join("player");
    std::fs::create_dir_all(&records).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_snaprelay"))
        .arg("--check-config")
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let players = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/players");
    let path = format!(
        "{}:{}",
        players.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let conf_arg = conf.display().to_string();
    let relay = Relay::start_with_env(
        dir,
        &["-c", &conf_arg],
        &[
            ("PATH", &path),
            ("FAKE_PLAYER_DIR", records.to_str().unwrap()),
        ],
    );
    let addr = relay.jsonrpc_addr();
    let mix = common::eventually(
        Duration::from_secs(20),
        "Mix playing Spotify's track",
        || relay.log(),
        || {
            let status = jsonrpc_call(addr, "Server.GetStatus", json!({}));
            let streams = status["result"]["server"]["streams"].as_array()?.clone();
            let ids: Vec<&str> = streams.iter().filter_map(|s| s["id"].as_str()).collect();
            assert_eq!(ids, ["default", "Spotify", "AirPlay", "Mix"]);
            let mix = streams.iter().find(|s| s["id"] == "Mix")?.clone();
            (mix["status"] == "playing" && mix["properties"]["metadata"]["title"] == "Test Track")
                .then_some(mix)
        },
    );
    assert_eq!(mix["uri"]["scheme"], "meta");
}
