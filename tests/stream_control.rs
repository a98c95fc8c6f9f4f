//! Stream properties, metadata and control through a stream plugin (issue 16), driven the way
//! Home Assistant does (the python `snapcast` library) and compared with Debian's snapserver
//! 0.26 running the same plugin: `tests/plugins/recording_plugin.py`, which records what it
//! receives and says what the test asks. `scripts/test.sh` installs snapserver and the Python
//! library; these tests fail (never skip) when either is missing.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::stream_plugin::{
    assert_home_assistant_report, client_report, cover_name, plug_source, plugin_dir,
    plugin_script, python_report, require_python, COVER,
};
use common::{free_port, http_get, Relay};
use serde_json::{json, Value};

/// Sources: `Plug` with the plugin (its directory as controlscriptparams), `NoPlug` without.
fn start_relay(dir: tempfile::TempDir, plugin_dir: &Path) -> Relay {
    let plug = plug_source(dir.path(), plugin_dir);
    let plain = format!(
        "pipe://{}?name=NoPlug",
        dir.path().join("plain.fifo").display()
    );
    Relay::start_in(
        dir,
        &[
            "--source",
            &plug,
            "--source",
            &plain,
            "--http.host=relay.test",
        ],
    )
}

#[test]
fn home_assistants_library_reads_now_playing_and_controls_a_plugin_stream() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = plugin_dir(dir.path());
    let relay = start_relay(dir, &plugin);
    let report = client_report(relay.jsonrpc_addr().port(), "Plug", &plugin);

    // The plugin's push: every connection gets params.properties; the inline cover is served
    // by URL (on http.host and the HTTP port), not repeated in every notification.
    let http = relay.http_addr();
    let art_url = format!(
        "http://relay.test:{}/__image_cache?name={}",
        http.port(),
        cover_name("Plug")
    );
    assert_home_assistant_report(&report, "Plug", &art_url);

    // The cover as the plugin sent it; no other name is served.
    let path = art_url.split_once(&format!(":{}", http.port())).unwrap().1;
    let image = http_get(http, path);
    assert_eq!(image.status, 200);
    assert_eq!(image.header("content-type"), Some("image/png"));
    assert_eq!(image.body, COVER);
    for bad in [
        "/__image_cache?name=0123456789abcdef0123456789abcdef.png",
        "/__image_cache?name=../../etc/passwd",
        "/__image_cache",
    ] {
        assert_eq!(http_get(http, bad).status, 404, "{bad}");
    }

    let argv: Value =
        serde_json::from_str(&std::fs::read_to_string(plugin.join("argv.json")).unwrap()).unwrap();
    assert_eq!(
        argv,
        json!([
            format!("--dir={}", plugin.display()),
            "--stream=Plug",
            format!("--snapcast-port={}", http.port()),
            "--snapcast-host=relay.test"
        ])
    );
}

/// Debian's snapserver 0.26 on free ports with the same two streams; the plugin finds its
/// directory in the environment (0.26 has no controlscriptparams).
struct Snapserver {
    child: Child,
    port: u16,
    http_port: u16,
    _dir: tempfile::TempDir,
}

impl Snapserver {
    fn start(plugin_dir: &Path) -> Self {
        let binary = Path::new("/usr/bin/snapserver");
        assert!(
            binary.exists(),
            "Debian's snapserver is missing; run scripts/test.sh or `apt-get install snapserver`"
        );
        let dir = tempfile::tempdir().unwrap();
        let (port, http_port, stream_port) = (free_port(), free_port(), free_port());
        let conf = format!(
            "[server]\ndatadir = {data}\n[http]\nenabled = true\nbind_to_address = 127.0.0.1\n\
             port = {http_port}\n[tcp]\nenabled = true\nbind_to_address = 127.0.0.1\n\
             port = {port}\n[stream]\nbind_to_address = 127.0.0.1\nport = {stream_port}\n\
             source = pipe://{plug}?name=Plug&controlscript={script}\n\
             source = pipe://{plain}?name=NoPlug\n[logging]\nfilter = *:info\n",
            data = dir.path().display(),
            plug = dir.path().join("plug.fifo").display(),
            plain = dir.path().join("plain.fifo").display(),
            script = plugin_script().display(),
        );
        let conf_path = dir.path().join("snapserver.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .env("RECORDING_PLUGIN_DIR", plugin_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start snapserver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "snapserver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            http_port,
            _dir: dir,
        }
    }
}

impl Drop for Snapserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same report from snapserver 0.26 and snaprelay, compared field by field. Differences
/// are ours on purpose, each named: the inline image stays in 0.26's notifications (snaprelay
/// sends its URL only) and the URL's host is each server's own.
#[test]
fn the_same_plugin_gives_snapserver_026s_shapes() {
    let theirs_dir = tempfile::tempdir().unwrap();
    let their_plugin = plugin_dir(theirs_dir.path());
    let snapserver = Snapserver::start(&their_plugin);
    let mut theirs = client_report(snapserver.port, "Plug", &their_plugin);

    let dir = tempfile::tempdir().unwrap();
    let our_plugin = plugin_dir(dir.path());
    let relay = start_relay(dir, &our_plugin);
    let mut ours = client_report(relay.jsonrpc_addr().port(), "Plug", &our_plugin);

    // The cover: the same name (md5 of stream id and image) under each server's host.
    for (report, port) in [
        (&mut theirs, snapserver.http_port),
        (&mut ours, relay.http_addr().port()),
    ] {
        for key in ["library_metadata", "final_metadata"] {
            normalize_cover(&mut report[key], port);
        }
        normalize_cover(&mut report["library_properties"]["metadata"], port);
        normalize_cover(
            &mut report["notification"]["params"]["properties"]["metadata"],
            port,
        );
    }
    for key in [
        "initial_properties",
        "initial_metadata",
        "plain_properties",
        "notification",
        "library_metadata",
        "library_properties",
        "control_next",
        "control_seek",
        "set_shuffle",
        "set_loop",
        "set_volume",
        "plugin_received",
        "plugin_error",
        "final_metadata",
    ] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    // Request errors: the same except where snaprelay says more (volume's range).
    let mut their_errors = theirs["errors"].clone();
    their_errors["volume_not_int"]["data"] = "Value for volume must be an int from 0 to 100".into();
    assert_eq!(ours["errors"], their_errors);
    assert_eq!(
        theirs["errors"]["volume_not_int"]["data"],
        "Value for volume must be an int"
    );
}

/// Drops the inline image snapserver keeps and the host:port part of the cover's URL.
fn normalize_cover(metadata: &mut Value, http_port: u16) {
    let Some(object) = metadata.as_object_mut() else {
        return;
    };
    object.remove("artData");
    if let Some(url) = object.get("artUrl").and_then(Value::as_str) {
        let marker = format!(":{http_port}/__image_cache?name=");
        let name = url.split_once(&marker).map(|(_, n)| n.to_owned());
        object.insert(
            "artUrl".into(),
            name.unwrap_or_else(|| url.to_owned()).into(),
        );
    }
}

/// What home automation needs pushed, never polled: a volume change made over JSON-RPC and a
/// new track reported by the plugin arrive as typed WatchEvents at a Python grpcio client that
/// knows the API through reflection only, and as `Stream.OnProperties` on a WebSocket.
#[test]
fn changes_are_pushed_to_grpc_watchers_and_websockets() {
    require_python(
        "python3",
        "grpc, grpc_reflection.v1alpha",
        "grpcio and grpcio-reflection (PyPI) are",
    );
    let dir = tempfile::tempdir().unwrap();
    let plugin = plugin_dir(dir.path());
    let relay = start_relay(dir, &plugin);
    let _client = common::hello_client(&relay, "watched");
    common::eventually(
        Duration::from_secs(10),
        "the plugin's first request",
        String::new,
        || {
            std::fs::read_to_string(plugin.join("received.jsonl"))
                .ok()
                .filter(|t| !t.is_empty())
        },
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = relay.http_addr();
    let mut ws = runtime.block_on(async {
        tokio_tungstenite::connect_async(format!("ws://{http}/jsonrpc"))
            .await
            .expect("websocket /jsonrpc")
            .0
    });

    let seen = python_report(
        "watch_events_client.py",
        &[
            relay.grpc_addr().to_string().as_ref(),
            relay.jsonrpc_addr().port().to_string().as_ref(),
            "watched".as_ref(),
            "Plug".as_ref(),
            plugin.as_os_str(),
        ],
    );
    let volume = &seen["client_volume"];
    assert!(volume["at_us"]
        .as_str()
        .is_some_and(|t| t.parse::<i64>().unwrap() > 0));
    assert_eq!(volume["client_volume"]["volume_percent"], 23);
    let properties = &seen["stream_properties"]["stream_properties"]["properties"];
    assert_eq!(
        properties["playback_status"], "PLAYBACK_STATUS_PLAYING",
        "{seen}"
    );
    assert_eq!(properties["position_s"], 61.0);
    assert_eq!(properties["can_play"], true);
    assert_eq!(properties["metadata"]["title"], "Watched");
    assert_eq!(properties["metadata"]["artist"], json!(["W"]));
    assert_eq!(properties["metadata"]["duration_s"], 180.0);

    runtime.block_on(async {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let message = tokio::time::timeout_at(deadline, ws.next())
                .await
                .expect("Stream.OnProperties on the websocket")
                .expect("websocket open")
                .expect("websocket message");
            let Message::Text(text) = message else {
                continue;
            };
            let note: Value = serde_json::from_str(&text).unwrap();
            if note["method"] == "Stream.OnProperties"
                && note["params"]["properties"]["metadata"]["title"] == "Watched"
            {
                assert_eq!(note["params"]["id"], "Plug");
                assert_eq!(note["params"]["properties"]["position"], 61.0);
                break;
            }
        }
    });
}

/// snapserver's own plugin, unchanged: Debian's `meta_mpd.py` (a relative `controlscript`,
/// found in the plugin directory) against a small fake MPD. Its now-playing reaches
/// JSON-RPC, and `next` and a volume change reach MPD.
#[test]
fn snapservers_meta_mpd_plugin_runs_unchanged() {
    let plugin = Path::new("/usr/share/snapserver/plug-ins/meta_mpd.py");
    assert!(
        plugin.exists(),
        "{} is missing; run scripts/test.sh or `apt-get install snapserver`",
        plugin.display()
    );
    // The plugin runs with `env python3`: Debian's, which has its modules.
    require_python(
        "/usr/bin/python3",
        "mpd, musicbrainzngs, dbus, gi",
        "meta_mpd.py's modules (python3-mpd, python3-musicbrainzngs, python3-dbus, python3-gi) are",
    );
    let dir = tempfile::tempdir().unwrap();
    let mpd_log = dir.path().join("mpd.log");
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/fake_mpd.py");
    let mut mpd = KillOnDrop(
        Command::new("python3")
            .arg(fake)
            .arg(&mpd_log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the fake MPD"),
    );
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(mpd.0.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    let source = format!(
        "pipe://{}?name=MPD&controlscript=meta_mpd.py&controlscriptparams=--mpd-host%3D127.0.0.1%20--mpd-port%3D{}",
        dir.path().join("mpd.fifo").display(),
        port.trim()
    );
    let path = format!(
        "/usr/bin:/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let relay = Relay::start_with_env(dir, &["--source", &source], &[("PATH", &path)]);
    let addr = relay.jsonrpc_addr();
    let properties = || {
        let status = common::jsonrpc_call(addr, "Server.GetStatus", json!({}));
        status["result"]["server"]["streams"][0]["properties"].clone()
    };
    let now = common::eventually(
        Duration::from_secs(20),
        "meta_mpd's properties",
        || relay.log(),
        || {
            let p = properties();
            (p["metadata"]["title"] == "Fake Title").then_some(p)
        },
    );
    assert_eq!(now["playbackStatus"], "playing", "{now}");
    assert_eq!(now["metadata"]["album"], "Fake Album");
    assert_eq!(now["metadata"]["trackNumber"], 3);
    assert_eq!(now["canGoNext"], true);
    assert_eq!(now["volume"], 40);

    let reply = common::jsonrpc_call(
        addr,
        "Stream.Control",
        json!({"id": "MPD", "command": "next"}),
    );
    assert_eq!(reply["result"], "ok", "{reply}");
    common::eventually(
        Duration::from_secs(20),
        "the next track",
        || relay.log(),
        || (properties()["metadata"]["title"] == "Track 2").then_some(()),
    );
    let reply = common::jsonrpc_call(
        addr,
        "Stream.SetProperty",
        json!({"id": "MPD", "property": "volume", "value": 30}),
    );
    assert_eq!(reply["result"], "ok", "{reply}");
    let log = std::fs::read_to_string(&mpd_log).unwrap();
    assert!(log.lines().any(|l| l == "next"), "{log}");
    assert!(log.lines().any(|l| l == "setvol \"30\""), "{log}");

    // The relay killed outright: its plugin does not outlive it (meta_mpd.py would spin on
    // its closed stdin).
    let pattern = format!("mpd-port={}", port.trim());
    let running = || {
        Command::new("pgrep")
            .args(["-f", &pattern])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(running(), "meta_mpd.py runs while the relay does");
    drop(relay);
    let deadline = Instant::now() + Duration::from_secs(5);
    while running() {
        assert!(Instant::now() < deadline, "meta_mpd.py outlived the relay");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A helper process that ends with the test, pass or fail.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
