//! Several streams, groups and live switching, tcp and process sources, and persistent state,
//! end to end with real snapclients, driven through `snapctl`.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::audio::{self, Signal};
use common::{eventually, snapctl, Relay, Snapclient};
use serde_json::Value;

fn snapctl_json(relay: &Relay, args: &[&str]) -> Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    serde_json::from_str(&snapctl(relay, &full)).expect("snapctl --json prints JSON")
}

/// The id of the group `client` belongs to.
fn group_of(relay: &Relay, client: &str) -> String {
    let groups = snapctl_json(relay, &["groups"]);
    groups
        .as_array()
        .expect("a JSON array")
        .iter()
        .find(|g| {
            g["clients"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["client_id"] == client))
        })
        .and_then(|g| g["id"].as_str())
        .unwrap_or_else(|| panic!("{client} is in no group: {groups}"))
        .to_owned()
}

/// Waits until the client is listed as connected.
fn wait_connected(relay: &Relay, client: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("{client} connected"),
        || snapctl(relay, &["clients"]),
        || {
            let clients = snapctl_json(relay, &["clients"]);
            clients
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["id"] == client))
                .and_then(|c| c["connected"].as_bool())
                .filter(|connected| *connected)
        },
    );
}

/// Dominant frequency of what the client played in its last `seconds`.
fn recent_frequency(client: &Snapclient, seconds: f64) -> f64 {
    let (bytes, _) = client.output();
    let frames = audio::frames(&bytes);
    let take = (seconds * 48_000.0) as usize;
    assert!(
        frames.len() > take,
        "{} played too little: {}",
        client.host_id,
        client.log()
    );
    audio::dominant_frequency(&frames[frames.len() - take..], false)
}

#[test]
fn groups_hear_their_own_stream_and_switch_live_without_reconnecting() {
    let relay = Relay::start(&[
        "--source",
        "tone:///?name=low&freq=440",
        "--source",
        "tone:///?name=high&freq=880",
    ]);
    let a = Snapclient::start(relay.port(), "room-a", relay.dir.path());
    let b = Snapclient::start(relay.port(), "room-b", relay.dir.path());
    wait_connected(&relay, "room-a");
    wait_connected(&relay, "room-b");
    let group_a = group_of(&relay, "room-a");
    let group_b = group_of(&relay, "room-b");
    assert_ne!(group_a, group_b, "each new client gets its own group");

    let streams = snapctl_json(&relay, &["streams"]);
    assert!(streams
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == "high"));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        (recent_frequency(&b, 1.0) - 440.0).abs() < 3.0,
        "both start on the default stream"
    );

    let switched = snapctl_json(&relay, &["group", "stream", &group_b, "high"]);
    assert_eq!(switched["stream"], "high");
    std::thread::sleep(Duration::from_secs(3));
    let fa = recent_frequency(&a, 1.0);
    let fb = recent_frequency(&b, 1.0);
    assert!((fa - 440.0).abs() < 3.0, "group a kept its stream: {fa} Hz");
    assert!(
        (fb - 880.0).abs() < 3.0,
        "group b switched: {fb} Hz; client log:\n{}",
        b.log()
    );
    // Live: the client never reconnected, it just got a new CodecHeader.
    assert_eq!(b.log().matches("Connected to").count(), 1, "{}", b.log());
    assert_eq!(b.log().matches("Codec: ").count(), 2, "{}", b.log());

    // Moving a into b's group switches it too; b's group now holds both.
    let groups = snapctl_json(&relay, &["group", "clients", &group_b, "room-a", "room-b"]);
    assert_eq!(
        groups.as_array().unwrap().len(),
        1,
        "a's emptied group is gone: {groups}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let fa = recent_frequency(&a, 1.0);
    assert!(
        (fa - 880.0).abs() < 3.0,
        "a followed its new group: {fa} Hz"
    );

    // Muting the group stops audio to both (send_to_muted is off): silence follows.
    snapctl(&relay, &["group", "mute", &group_b, "on"]);
    std::thread::sleep(Duration::from_secs(3));
    let (bytes, _) = a.output();
    let tail = audio::frames(&bytes[bytes.len() - 48_000 * 4 / 2..]);
    assert!(
        tail.iter().all(|f| *f == (0, 0)),
        "a muted group still plays"
    );
    let human = snapctl(&relay, &["groups"]);
    assert!(human.contains(&group_b) && human.contains("yes"), "{human}");
}

#[test]
fn a_tcp_source_is_heard_and_a_second_producer_is_refused() {
    let port = common::free_port();
    let uri = format!("tcp://127.0.0.1:{port}?name=net&mode=server");
    let relay = Relay::start(&["--source", &uri]);
    relay.wait_for_log(&["tcp source listening"], Duration::from_secs(5));
    let client = Snapclient::start(relay.port(), "tcp-listener", relay.dir.path());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let producer = std::thread::spawn(move || {
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let signal = Signal::new(660.0, 660.0);
        let mut frame = 0;
        let mut buf = Vec::new();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            buf.clear();
            signal.render(frame, 960, &mut buf);
            if socket.write_all(&buf).is_err() {
                return;
            }
            frame += 960;
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let mut second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    second.write_all(&[0; 64]).unwrap();
    relay.wait_for_log(&["second PCM producer refused"], Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    let f = recent_frequency(&client, 1.0);
    assert!((f - 660.0).abs() < 3.0, "tcp source heard at {f} Hz");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer.join().unwrap();
}

#[test]
fn a_process_source_is_heard_and_restarted_when_killed() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tone.py");
    let pidfile = dir.path().join("tone.pid");
    std::fs::write(
        &script,
        format!(
            "import math, os, struct, sys\n\
             open({pidfile:?}, 'w').write(str(os.getpid()))\n\
             out = sys.stdout.buffer\n\
             n = 0\n\
             while True:\n\
             \x20   block = b''.join(struct.pack('<hh', v, v) for v in\n\
             \x20       (int(12000 * math.sin(2 * math.pi * 523 * (n + i) / 48000)) for i in range(960)))\n\
             \x20   out.write(block)\n\
             \x20   out.flush()\n\
             \x20   n += 960\n",
            pidfile = pidfile.to_str().unwrap()
        ),
    )
    .unwrap();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let python = which(&python).expect("python3 runs the test's tone process");
    let uri = format!(
        "process://{}?name=proc&params={}",
        python.display(),
        script.display()
    );
    let relay = Relay::start_in(dir, &["--source", &uri]);
    let client = Snapclient::start(relay.port(), "proc-listener", relay.dir.path());
    std::thread::sleep(Duration::from_secs(4));
    let f = recent_frequency(&client, 1.0);
    assert!((f - 523.0).abs() < 3.0, "process source heard at {f} Hz");

    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the test's own tone process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    relay.wait_for_log(
        &["source process ended; restarting"],
        Duration::from_secs(5),
    );
    relay.wait_for_log(
        &["source process started", "starts=2"],
        Duration::from_secs(10),
    );
    let before = client.output().0.len();
    std::thread::sleep(Duration::from_secs(4));
    let (bytes, _) = client.output();
    let after = audio::frames(&bytes[before..]);
    let start = audio::first_sound(&after).expect("audio resumed after the restart");
    let f = audio::dominant_frequency(&after[start..], false);
    assert!((f - 523.0).abs() < 3.0, "restarted process heard at {f} Hz");
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

#[test]
fn client_settings_and_groups_survive_a_restart() {
    let state_dir = tempfile::tempdir().unwrap();
    let datadir = state_dir.path().to_str().unwrap().to_owned();
    let args = [
        "--source",
        "tone:///?name=low&freq=440",
        "--source",
        "tone:///?name=high&freq=880",
        "--datadir",
        &datadir,
    ];
    let relay = Relay::start(&args);
    let port = relay.port();
    let client = Snapclient::start(port, "persisted", relay.dir.path());
    wait_connected(&relay, "persisted");
    snapctl(&relay, &["volume", "persisted", "37"]);
    snapctl(&relay, &["name", "persisted", "Study"]);
    let group = group_of(&relay, "persisted");
    snapctl(&relay, &["group", "stream", &group, "high"]);
    snapctl(&relay, &["group", "name", &group, "Upstairs"]);
    assert!(relay.terminate().success());
    drop(client);
    let saved = std::fs::read_to_string(state_dir.path().join("server.json")).unwrap();
    assert!(
        saved.contains("\"Study\"") && saved.contains("\"percent\":37"),
        "{saved}"
    );

    let relay = Relay::start(&args);
    let clients = snapctl_json(&relay, &["clients"]);
    let known = &clients.as_array().unwrap()[0];
    assert_eq!(known["id"], "persisted");
    assert_eq!(known["connected"], false);
    assert_eq!(known["name"], "Study");
    let reconnected = Snapclient::start(relay.port(), "persisted", relay.dir.path());
    wait_connected(&relay, "persisted");
    assert_eq!(
        group_of(&relay, "persisted"),
        group,
        "same group id after restart"
    );
    eventually(
        Duration::from_secs(10),
        "the client got its persisted volume",
        || reconnected.log(),
        || reconnected.log().contains("volume: 37").then_some(()),
    );
    std::thread::sleep(Duration::from_secs(3));
    let f = recent_frequency(&reconnected, 1.0);
    assert!((f - 880.0).abs() < 3.0, "persisted group stream: {f} Hz");

    // A disconnected client can be deleted; a connected one cannot.
    let refused = Command::new(env!("CARGO_BIN_EXE_snapctl"))
        .args([
            "--server",
            &relay.grpc_url(),
            "client",
            "delete",
            "persisted",
        ])
        .output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(1),
        "deleting a connected client is refused"
    );
    drop(reconnected);
    eventually(
        Duration::from_secs(10),
        "client disconnected",
        || snapctl(&relay, &["clients"]),
        || {
            let clients = snapctl_json(&relay, &["clients"]);
            (clients[0]["connected"] == false).then_some(())
        },
    );
    snapctl(&relay, &["client", "delete", "persisted"]);
    assert_eq!(snapctl_json(&relay, &["clients"]), serde_json::json!([]));
}

#[test]
fn a_corrupt_state_file_is_moved_aside_and_the_relay_starts_clean() {
    let state_dir = tempfile::tempdir().unwrap();
    std::fs::write(state_dir.path().join("server.json"), b"{\"Groups\": [{oops").unwrap();
    let relay = Relay::start(&[
        "--source",
        "tone:///?name=t",
        "--datadir",
        state_dir.path().to_str().unwrap(),
    ]);
    relay.wait_for_log(&["STATE FILE IS CORRUPT"], Duration::from_secs(5));
    let aside = std::fs::read_dir(state_dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().contains("corrupt"))
        .expect("the corrupt file was kept aside");
    assert_eq!(std::fs::read(aside.path()).unwrap(), b"{\"Groups\": [{oops");
    assert_eq!(snapctl_json(&relay, &["clients"]), serde_json::json!([]));
}
