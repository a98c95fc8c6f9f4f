//! The stream API beyond JSON-RPC's (issue 16): gRPC GetStream, AddStream, RemoveStream,
//! ControlStream and SetStreamProperty with their error codes, `snapctl stream` and
//! `snapctl events`, streams added at run time running plugins only from the plugin
//! directory, and the plugin's figures in `/metrics`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{http_get, jsonrpc_call, snapctl, Relay};
use serde_json::{json, Value};
use snaprelay::pb;
use snaprelay::pb::control_client::ControlClient;
use tonic::transport::Channel;
use tonic::Code;

async fn control(relay: &Relay) -> ControlClient<Channel> {
    let channel = Channel::from_shared(relay.grpc_url())
        .unwrap()
        .connect()
        .await
        .expect("connect to the gRPC listener");
    ControlClient::new(channel)
}

/// A plugin directory holding a copy of the recording plugin, and a directory for its
/// records with its GetProperties answer: next and control allowed, track "First" by "A".
fn plugin_setup(parent: &Path) -> (PathBuf, PathBuf) {
    let plugins = parent.join("plug-ins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/recording_plugin.py"),
        plugins.join("recording_plugin.py"),
    )
    .unwrap();
    let records = parent.join("records");
    std::fs::create_dir_all(records.join("outbox")).unwrap();
    let properties = json!({
        "playbackStatus": "playing", "canGoNext": true, "canControl": true, "position": 75.0,
        "metadata": {"title": "First", "artist": ["A"], "duration": 200.0},
    });
    std::fs::write(records.join("properties.json"), properties.to_string()).unwrap();
    (plugins, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_added_at_run_time_run_plugins_only_from_the_plugin_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (plugins, records) = plugin_setup(dir.path());
    let outside = dir.path().join("outside.py");
    std::fs::copy(plugins.join("recording_plugin.py"), &outside).unwrap();
    let fifo = |name: &str| dir.path().join(name).display().to_string();
    let (a, b, c) = (fifo("a.fifo"), fifo("b.fifo"), fifo("c.fifo"));
    let plugin_dir = format!("--stream.plugin_dir={}", plugins.display());
    let relay = Relay::start_in(dir, &["--source", "tone:///?name=tone", &plugin_dir]);
    let addr = relay.jsonrpc_addr();
    let refused = format!("controlscript must be located in '{}'", plugins.display());

    // JSON-RPC: outside the directory (absolute, or climbing out of it) or missing: refused.
    for script in [
        outside.display().to_string(),
        "../outside.py".to_owned(),
        "missing.py".to_owned(),
    ] {
        let uri = format!("pipe://{a}?name=A&controlscript={script}");
        let reply = jsonrpc_call(addr, "Stream.AddStream", json!({"streamUri": uri}));
        assert_eq!(
            reply["error"],
            json!({"code": -32602, "message": "Invalid params", "data": refused}),
            "{script}"
        );
    }
    // Inside it, by a relative name: started, and the plugin runs.
    let uri = format!(
        "pipe://{a}?name=A&controlscript=recording_plugin.py&controlscriptparams=--dir%3D{}",
        records.display()
    );
    let reply = jsonrpc_call(addr, "Stream.AddStream", json!({"streamUri": uri}));
    assert_eq!(reply["result"], json!({"id": "A"}), "{reply}");

    // gRPC: the same rules.
    let mut grpc = control(&relay).await;
    let status = grpc
        .add_stream(pb::AddStreamRequest {
            uri: format!("pipe://{b}?name=B&controlscript={}", outside.display()),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), refused);
    let status = grpc
        .add_stream(pb::AddStreamRequest {
            uri: "process:///bin/cat?name=P".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("scheme 'process' is not allowed"));
    let status = grpc
        .add_stream(pb::AddStreamRequest {
            uri: format!("pipe://{b}?name=A"),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    let added = grpc
        .add_stream(pb::AddStreamRequest {
            uri: format!("pipe://{c}?name=C"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.name, "C");
    assert_eq!(added.plugin, None);

    // The plugin's stream, over gRPC.
    let stream = common::eventually(
        Duration::from_secs(10),
        "the plugin's properties",
        || relay.log(),
        || {
            let stream = get_stream_blocking(grpc.clone(), "A");
            stream
                .properties
                .as_ref()
                .is_some_and(|p| p.can_go_next)
                .then_some(stream)
        },
    );
    let properties = stream.properties.unwrap();
    assert_eq!(properties.playback_status(), pb::PlaybackStatus::Playing);
    assert_eq!(properties.position_s, Some(75.0));
    let metadata = properties.metadata.unwrap();
    assert_eq!(
        (metadata.title.as_str(), metadata.artist),
        ("First", vec!["A".to_owned()])
    );
    assert_eq!(metadata.duration_s, Some(200.0));
    let plugin = stream.plugin.unwrap();
    assert!(plugin.running && plugin.script.ends_with("plug-ins/recording_plugin.py"));

    let done = grpc
        .control_stream(pb::ControlStreamRequest {
            stream: "A".into(),
            command: pb::StreamCommand::Next as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(done.properties.unwrap().can_go_next);
    grpc.set_stream_property(pb::SetStreamPropertyRequest {
        stream: "A".into(),
        value: Some(pb::set_stream_property_request::Value::LoopStatus(
            pb::LoopStatus::Track as i32,
        )),
    })
    .await
    .unwrap();
    let received = std::fs::read_to_string(records.join("received.jsonl")).unwrap();
    assert!(
        received.contains(r#""params": {"command": "next"}"#),
        "{received}"
    );
    assert!(
        received.contains(r#""params": {"loopStatus": "track"}"#),
        "{received}"
    );

    // Refusals, with the codes the proto documents.
    let refuse = |status: tonic::Status, code: Code, words: &str| {
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(words), "{status:?}");
    };
    let previous = pb::ControlStreamRequest {
        stream: "A".into(),
        command: pb::StreamCommand::Previous as i32,
        ..Default::default()
    };
    refuse(
        grpc.control_stream(previous).await.unwrap_err(),
        Code::FailedPrecondition,
        "Stream property canGoPrevious is false",
    );
    let seek = pb::ControlStreamRequest {
        stream: "A".into(),
        command: pb::StreamCommand::Seek as i32,
        ..Default::default()
    };
    refuse(
        grpc.control_stream(seek).await.unwrap_err(),
        Code::InvalidArgument,
        "Seek requires parameter 'offset'",
    );
    let unspecified = pb::ControlStreamRequest {
        stream: "A".into(),
        ..Default::default()
    };
    refuse(
        grpc.control_stream(unspecified).await.unwrap_err(),
        Code::InvalidArgument,
        "PLAY, PAUSE",
    );
    let nowhere = pb::ControlStreamRequest {
        stream: "nowhere".into(),
        command: pb::StreamCommand::Play as i32,
        ..Default::default()
    };
    refuse(
        grpc.control_stream(nowhere).await.unwrap_err(),
        Code::NotFound,
        "no stream named 'nowhere'",
    );
    let loud = pb::SetStreamPropertyRequest {
        stream: "A".into(),
        value: Some(pb::set_stream_property_request::Value::Volume(101)),
    };
    refuse(
        grpc.set_stream_property(loud).await.unwrap_err(),
        Code::InvalidArgument,
        "Value for volume must be an int from 0 to 100",
    );
    let empty = pb::SetStreamPropertyRequest {
        stream: "A".into(),
        value: None,
    };
    refuse(
        grpc.set_stream_property(empty).await.unwrap_err(),
        Code::InvalidArgument,
        "loop_status",
    );
    let plain = pb::SetStreamPropertyRequest {
        stream: "C".into(),
        value: Some(pb::set_stream_property_request::Value::Shuffle(true)),
    };
    refuse(
        grpc.set_stream_property(plain).await.unwrap_err(),
        Code::FailedPrecondition,
        "Stream property canControl is false",
    );
    // The plugin refuses: its message, ABORTED.
    std::fs::write(
        records.join("replies.json"),
        json!({"next": {"error": {"code": -32603, "message": "x", "data": "queue empty"}}})
            .to_string(),
    )
    .unwrap();
    let next = pb::ControlStreamRequest {
        stream: "A".into(),
        command: pb::StreamCommand::Next as i32,
        ..Default::default()
    };
    refuse(
        grpc.control_stream(next).await.unwrap_err(),
        Code::Aborted,
        "Internal error: queue empty",
    );
    refuse(
        grpc.get_stream(pb::GetStreamRequest {
            stream: "nowhere".into(),
        })
        .await
        .unwrap_err(),
        Code::NotFound,
        "nowhere",
    );

    // The plugin's figures in /metrics; streams without one have none.
    let metrics = String::from_utf8(http_get(relay.http_addr(), "/metrics").body).unwrap();
    assert!(
        metrics.contains("snaprelay_stream_plugin_running{stream=\"A\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("snaprelay_stream_plugin_failed_requests_total{stream=\"A\"} 1"));
    assert!(!metrics.contains("snaprelay_stream_plugin_running{stream=\"C\"}"));

    // Removing: its groups move, an unknown name is NOT_FOUND, the last stream stays.
    grpc.remove_stream(pb::RemoveStreamRequest { stream: "C".into() })
        .await
        .unwrap();
    refuse(
        grpc.remove_stream(pb::RemoveStreamRequest { stream: "C".into() })
            .await
            .unwrap_err(),
        Code::NotFound,
        "Stream not found",
    );
    grpc.remove_stream(pb::RemoveStreamRequest { stream: "A".into() })
        .await
        .unwrap();
    refuse(
        grpc.remove_stream(pb::RemoveStreamRequest {
            stream: "tone".into(),
        })
        .await
        .unwrap_err(),
        Code::FailedPrecondition,
        "at least one stream",
    );
}

/// GetStream from a sync closure (the tonic client is cheap to clone).
fn get_stream_blocking(mut grpc: ControlClient<Channel>, name: &str) -> pb::StreamStats {
    let name = name.to_owned();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                grpc.get_stream(pb::GetStreamRequest { stream: name })
                    .await
                    .unwrap()
                    .into_inner()
            })
    })
    .join()
    .unwrap()
}

#[test]
fn snapctl_shows_now_playing_controls_the_player_and_follows_events() {
    let dir = tempfile::tempdir().unwrap();
    let (plugins, records) = plugin_setup(dir.path());
    let source = format!(
        "pipe://{}?name=Radio&controlscript={}&controlscriptparams=--dir%3D{}",
        dir.path().join("radio.fifo").display(),
        plugins.join("recording_plugin.py").display(),
        records.display()
    );
    let relay = Relay::start_in(dir, &["--source", &source]);
    let table = common::eventually(
        Duration::from_secs(10),
        "now playing in `snapctl streams`",
        || relay.log(),
        || {
            let table = snapctl(&relay, &["streams"]);
            table.contains("A – First").then_some(table)
        },
    );
    assert!(
        table.contains("PLAYER") && table.contains("playing"),
        "{table}"
    );
    assert!(table.contains("1:15 / 3:20"), "{table}");
    let shown = snapctl(&relay, &["stream", "show", "Radio"]);
    assert!(shown.contains("now playing  A – First"), "{shown}");
    assert!(shown.contains("can          next, control"), "{shown}");

    // `snapctl events --json`: one object per line, as changes happen.
    let mut events = Command::new(env!("CARGO_BIN_EXE_snapctl"))
        .args(["--server", &relay.grpc_url(), "--json", "events"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("snapctl events");
    let lines = BufReader::new(events.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    assert_eq!(
        snapctl(&relay, &["stream", "control", "Radio", "next"]).trim(),
        "Radio: ok"
    );
    assert_eq!(
        snapctl(&relay, &["stream", "set", "Radio", "shuffle", "on"]).trim(),
        "Radio: ok"
    );
    // The plugin reports a new track until `snapctl events` (whose call opens at its own
    // pace) shows one.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    let event: Value = 'found: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no stream_properties event"
        );
        n += 1;
        let notification = json!({"jsonrpc": "2.0", "method": "Plugin.Stream.Player.Properties",
            "params": {"canGoNext": true, "metadata": {"title": format!("Second {n}"), "artist": ["B"]}}});
        let tmp = records.join(format!("outbox/{n}.tmp"));
        std::fs::write(&tmp, notification.to_string()).unwrap();
        std::fs::rename(&tmp, records.join(format!("outbox/{n}.line"))).unwrap();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            let event: Value = serde_json::from_str(&line).unwrap();
            if event["event"] == "stream_properties" {
                break 'found event;
            }
        }
    };
    let _ = events.kill();
    let _ = events.wait();
    assert_eq!(event["type"], "event");
    assert_eq!(event["data"]["stream"], "Radio");
    assert!(event["data"]["properties"]["metadata"]["title"]
        .as_str()
        .is_some_and(|t| t.starts_with("Second")));
    assert_eq!(
        event["data"]["properties"]["playback_status"],
        "unspecified"
    );

    let received = std::fs::read_to_string(records.join("received.jsonl")).unwrap();
    assert!(received.contains(r#"{"command": "next"}"#), "{received}");
    assert!(received.contains(r#"{"shuffle": true}"#), "{received}");
    // Refused by the server: a clear message and the refusal exit code.
    let output = Command::new(env!("CARGO_BIN_EXE_snapctl"))
        .args([
            "--server",
            &relay.grpc_url(),
            "stream",
            "control",
            "Radio",
            "previous",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Stream property canGoPrevious is false"),
        "{stderr}"
    );
}

/// A control request waiting for its plugin does not hold up the connection it came on:
/// other requests on it are answered meanwhile (as with snapserver), then its own answer
/// comes.
#[test]
fn a_slow_plugin_does_not_hold_up_its_callers_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (plugins, records) = plugin_setup(dir.path());
    std::fs::write(
        records.join("replies.json"),
        json!({"next": {"result": "ok", "delay_ms": 1500}}).to_string(),
    )
    .unwrap();
    let source = format!(
        "pipe://{}?name=Radio&controlscript={}&controlscriptparams=--dir%3D{}",
        dir.path().join("radio.fifo").display(),
        plugins.join("recording_plugin.py").display(),
        records.display()
    );
    let relay = Relay::start_in(dir, &["--source", &source]);
    let addr = relay.jsonrpc_addr();
    common::eventually(
        Duration::from_secs(10),
        "the plugin's properties",
        || relay.log(),
        || {
            let status = jsonrpc_call(addr, "Server.GetStatus", json!({}));
            (status["result"]["server"]["streams"][0]["properties"]["canGoNext"] == true)
                .then_some(())
        },
    );
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let started = std::time::Instant::now();
    for request in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "Stream.Control",
               "params": {"id": "Radio", "command": "next"}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "Server.GetRPCVersion"}),
    ] {
        std::io::Write::write_all(&mut writer, format!("{request}\r\n").as_bytes()).unwrap();
    }
    let mut lines = BufReader::new(stream).lines();
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let line = lines.next().expect("a reply").unwrap();
        let message: Value = serde_json::from_str(&line).unwrap();
        if message.get("id").is_some() {
            replies.push((message, started.elapsed()));
        }
    }
    assert_eq!(
        replies[0].0["id"], 2,
        "the quick request first: {replies:?}"
    );
    assert!(replies[0].1 < Duration::from_millis(1000), "{replies:?}");
    assert_eq!(
        replies[1].0,
        json!({"jsonrpc": "2.0", "id": 1, "result": "ok"})
    );
}
