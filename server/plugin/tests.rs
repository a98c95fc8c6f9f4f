//! The plugin supervisor against a real plugin process: `tests/plugins/recording_plugin.py`,
//! which records what it receives and says what a test puts in its outbox.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::properties::{Flag, PlaybackStatus};

struct TestPlugin {
    dir: tempfile::TempDir,
    cancel: CancellationToken,
    tracker: TaskTracker,
    control: Arc<StreamControl>,
    env: Arc<PluginEnv>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/recording_plugin.py")
}

impl TestPlugin {
    /// Starts the plugin for stream `radio`, its GetProperties answer set to `properties`.
    fn start(properties: Value, timeout: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("properties.json"), properties.to_string()).unwrap();
        std::fs::create_dir(dir.path().join("outbox")).unwrap();
        let env = Arc::new(PluginEnv {
            http_enabled: true,
            http_host: "relay.example".into(),
            http_port: 1780,
            art_url_base: "http://relay.example:1780".into(),
            images: Arc::default(),
            request_timeout: timeout,
            restart_backoff: Duration::from_secs(3),
        });
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let script = ControlScript {
            path: script(),
            params: vec![format!("--dir={}", dir.path().display())],
        };
        let control =
            StreamControl::start("radio", Some(script), env.clone(), cancel.clone(), &tracker);
        Self {
            dir,
            cancel,
            tracker,
            control,
            env,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes the plugin write `line` to its stdout.
    fn emit(&self, line: &str) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = self.path(&format!("outbox/{n:06}.tmp"));
        std::fs::write(&tmp, line).unwrap();
        std::fs::rename(&tmp, self.path(&format!("outbox/{n:06}.line"))).unwrap();
    }

    fn properties_notification(&self, properties: Value) {
        self.emit(
            &json!({"jsonrpc": "2.0", "method": "Plugin.Stream.Player.Properties", "params": properties})
                .to_string(),
        );
    }

    /// Every message the plugin received.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("received.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

fn controllable() -> Value {
    json!({
        "playbackStatus": "playing", "canGoNext": true, "canPlay": true, "canPause": true,
        "canSeek": true, "canControl": true, "position": 3.5,
        "metadata": {"title": "First", "artist": ["A"], "duration": 200.0},
    })
}

#[tokio::test]
async fn control_reaches_the_plugin_and_its_answer_the_caller() {
    let plugin = TestPlugin::start(controllable(), REQUEST_TIMEOUT);
    plugin
        .wait_for("GetProperties answered", |p| {
            p.control.properties().can_go_next
        })
        .await;
    let argv: Value =
        serde_json::from_str(&std::fs::read_to_string(plugin.path("argv.json")).unwrap()).unwrap();
    assert_eq!(
        argv,
        json!([
            format!("--dir={}", plugin.dir.path().display()),
            "--stream=radio",
            "--snapcast-port=1780",
            "--snapcast-host=relay.example"
        ])
    );
    let properties = plugin.control.properties();
    assert_eq!(properties.position, Some(3.5));
    assert_eq!(
        properties.metadata.as_ref().and_then(|m| m.text("title")),
        Some("First")
    );

    plugin.control.control(Command::Next).await.unwrap();
    plugin
        .control
        .control(Command::Seek { offset_s: -5.0 })
        .await
        .unwrap();
    plugin
        .control
        .set_property(PropertyChange::Shuffle(true))
        .await
        .unwrap();
    // canGoPrevious is false: refused here, never sent.
    assert_eq!(
        plugin.control.control(Command::Previous).await,
        Err(ControlError::NotAllowed(Flag::GoPrevious))
    );
    let received = plugin.received();
    let methods: Vec<(&str, Value)> = received
        .iter()
        .map(|m| {
            (
                m["method"].as_str().unwrap(),
                m.get("params").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    assert_eq!(
        methods,
        [
            ("Plugin.Stream.Player.GetProperties", Value::Null),
            ("Plugin.Stream.Player.Control", json!({"command": "next"})),
            (
                "Plugin.Stream.Player.Control",
                json!({"command": "seek", "params": {"offset": -5.0}})
            ),
            ("Plugin.Stream.Player.SetProperty", json!({"shuffle": true})),
        ]
    );
    let ids: Vec<u64> = received.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4], "ids count up per plugin run");
    assert_eq!(
        plugin
            .control
            .stats()
            .failed_requests
            .load(Ordering::Relaxed),
        0
    );
    plugin.stop().await;
}

#[tokio::test]
async fn plugin_errors_and_silence_reach_the_caller() {
    let plugin = TestPlugin::start(controllable(), Duration::from_secs(2));
    std::fs::write(
        plugin.path("replies.json"),
        json!({
            "next": {"error": {"code": -32603, "message": "Oops", "data": "player gone"}},
            "play": {"error": {"code": -32601, "message": "Method not found"}},
            "pause": {"result": "ok", "delay_ms": 3000},
        })
        .to_string(),
    )
    .unwrap();
    plugin
        .wait_for("properties", |p| p.control.properties().can_go_next)
        .await;
    assert_eq!(
        plugin.control.control(Command::Next).await,
        Err(ControlError::Plugin {
            code: -32603,
            message: "Internal error: player gone".into()
        })
    );
    assert_eq!(
        plugin.control.control(Command::Play).await,
        Err(ControlError::Plugin {
            code: -32601,
            message: "Method not found".into()
        })
    );
    let started = Instant::now();
    assert_eq!(
        plugin.control.control(Command::Pause).await,
        Err(ControlError::Timeout(2000))
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The late answer (after 3 s) reaches nobody and counts as a stray line; the next
    // request gets its own answer.
    plugin
        .wait_for("the late answer", |p| {
            p.control.stats().bad_lines.load(Ordering::Relaxed) == 1
        })
        .await;
    plugin
        .control
        .control(Command::Seek { offset_s: 1.0 })
        .await
        .unwrap();
    let failed = plugin
        .control
        .stats()
        .failed_requests
        .load(Ordering::Relaxed);
    assert_eq!(failed, 3);
    plugin.stop().await;
}

#[tokio::test]
async fn a_plugin_that_ends_is_restarted_and_its_player_forgotten_meanwhile() {
    let plugin = TestPlugin::start(controllable(), REQUEST_TIMEOUT);
    let changes = plugin.control.subscribe();
    plugin
        .wait_for("properties", |p| p.control.properties().can_go_next)
        .await;
    std::fs::write(plugin.path("exit"), "").unwrap();
    plugin
        .wait_for("the player forgotten", |p| {
            *p.control.properties() == Properties::default()
        })
        .await;
    assert!(changes.has_changed().unwrap());
    // Down (3 s before the restart): refused at once, the flags gone with the player.
    assert_eq!(
        plugin.control.control(Command::Next).await,
        Err(ControlError::NotAllowed(Flag::GoNext))
    );
    assert!(!plugin.control.stats().running.load(Ordering::Relaxed));
    plugin
        .wait_for("the restart", |p| {
            p.control.stats().restarts.load(Ordering::Relaxed) == 1
                && p.control.properties().can_go_next
        })
        .await;
    assert!(plugin.control.stats().running.load(Ordering::Relaxed));
    plugin.control.control(Command::Next).await.unwrap();
    plugin.stop().await;
}

#[tokio::test]
async fn malformed_lines_are_counted_and_ignored() {
    let plugin = TestPlugin::start(json!({}), REQUEST_TIMEOUT);
    plugin
        .wait_for("GetProperties", |p| !p.received().is_empty())
        .await;
    plugin.emit("this is not json");
    plugin.emit("[1, 2, 3]");
    plugin.emit(r#"{"jsonrpc":"2.0","id":77,"method":"Plugin.Stream.Player.Whatever"}"#);
    plugin.emit(r#"{"jsonrpc":"2.0","id":999,"result":"ok"}"#);
    plugin.emit(r#"{"jsonrpc":"2.0","method":"Plugin.Stream.Log","params":{"severity":"Error","message":"from the plugin"}}"#);
    plugin.properties_notification(json!({"canPlay": true, "volume": "loud"}));
    plugin
        .wait_for("the good properties", |p| p.control.properties().can_play)
        .await;
    assert_eq!(
        plugin.control.properties().volume,
        None,
        "the bad key dropped"
    );
    assert_eq!(plugin.control.stats().bad_lines.load(Ordering::Relaxed), 4);
    plugin
        .wait_for("the method-not-found answer", |p| {
            p.received()
                .iter()
                .any(|m| m["id"] == 77 && m["error"]["code"] == -32601)
        })
        .await;
    assert!(plugin.control.stats().running.load(Ordering::Relaxed));
    plugin.stop().await;
}

#[tokio::test]
async fn inline_cover_art_is_cached_and_absent_metadata_kept() {
    use base64::Engine as _;
    let plugin = TestPlugin::start(json!({}), REQUEST_TIMEOUT);
    let image = b"\x89PNG\r\n\x1a\nfake image".to_vec();
    let data = base64::engine::general_purpose::STANDARD.encode(&image);
    plugin.properties_notification(json!({
        "canPlay": true,
        "metadata": {"title": "Cover", "artData": {"data": data, "extension": "png"}},
    }));
    plugin
        .wait_for("the cover", |p| p.control.properties().metadata.is_some())
        .await;
    let metadata = plugin.control.properties().metadata.clone().unwrap();
    let url = metadata.text("artUrl").unwrap().to_owned();
    let name = url
        .strip_prefix("http://relay.example:1780/__image_cache?name=")
        .unwrap();
    assert!(metadata.art_data().is_none(), "served by URL only");
    let cached = plugin.env.images.get(name).unwrap();
    assert_eq!(
        (cached.content_type, &cached.data[..]),
        ("image/png", &image[..])
    );

    // No metadata: the old metadata (and its cover) stays.
    plugin.properties_notification(json!({"canPlay": true, "position": 10.0}));
    plugin
        .wait_for("the position", |p| {
            p.control.properties().position == Some(10.0)
        })
        .await;
    assert_eq!(
        plugin
            .control
            .properties()
            .metadata
            .as_ref()
            .unwrap()
            .text("artUrl"),
        Some(url.as_str())
    );
    assert!(plugin.env.images.get(name).is_some());

    // New metadata without a cover: the cached image goes.
    plugin.properties_notification(json!({"canPlay": true, "metadata": {"title": "Next"}}));
    plugin
        .wait_for("the next title", |p| {
            p.control
                .properties()
                .metadata
                .as_ref()
                .and_then(|m| m.text("title"))
                == Some("Next")
        })
        .await;
    assert!(plugin.env.images.get(name).is_none());
    plugin.stop().await;
}

#[tokio::test]
async fn without_a_plugin_every_request_is_refused_by_its_flag() {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let control = StreamControl::start("plain", None, PluginEnv::local(), cancel, &tracker);
    assert_eq!(
        control.control(Command::Next).await,
        Err(ControlError::NotAllowed(Flag::GoNext))
    );
    assert_eq!(
        control.control(Command::Stop).await,
        Err(ControlError::NotAllowed(Flag::Control))
    );
    assert_eq!(
        control.set_property(PropertyChange::Volume(10)).await,
        Err(ControlError::NotAllowed(Flag::Control))
    );
    assert!(control.script().is_none());
}

#[tokio::test]
async fn a_meta_stream_starts_playback_where_snapserver_would() {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let start =
        |name: &str| StreamControl::start(name, None, PluginEnv::local(), cancel.clone(), &tracker);
    let (meta, a, b, c) = (start("Mix"), start("A"), start("B"), start("C"));
    let can_play = |playing: bool| {
        Arc::new(Properties {
            can_play: true,
            playback_status: Some(if playing {
                PlaybackStatus::Playing
            } else {
                PlaybackStatus::Paused
            }),
            ..Properties::default()
        })
    };
    // A shown (it plays, but its player cannot be told to play), B idle and able to play, C
    // idle and not able.
    b.mirror(can_play(false));
    let (a_plays, a_playing) = watch::channel(true);
    let (_b_plays, b_playing) = watch::channel(false);
    let (_c_plays, c_playing) = watch::channel(false);
    meta.set_meta_inputs(vec![
        MetaInput {
            control: a.clone(),
            playing: a_playing,
        },
        MetaInput {
            control: c.clone(),
            playing: c_playing,
        },
        MetaInput {
            control: b.clone(),
            playing: b_playing,
        },
    ]);
    meta.follow(Some(a.clone()));
    let target = |command| {
        let (to, command) = meta.route(a.clone(), command);
        (to.stream.clone(), command)
    };
    // play: A cannot play, so the first idle input that can (B, after C that cannot).
    assert_eq!(target(Command::Play), ("B".to_owned(), Command::Play));
    // playPause on a playing input stays a toggle of it; anything else goes to it too.
    assert_eq!(
        target(Command::PlayPause),
        ("A".to_owned(), Command::PlayPause)
    );
    assert_eq!(target(Command::Next), ("A".to_owned(), Command::Next));
    // An idle shown input: playPause means play.
    a_plays.send_replace(false);
    assert_eq!(target(Command::PlayPause), ("B".to_owned(), Command::Play));
    // A shown input that can play and is paused gets the play itself.
    a.mirror(can_play(false));
    assert_eq!(target(Command::Play), ("A".to_owned(), Command::Play));
    // Nobody else can: the shown input answers.
    a.mirror(can_play(true));
    b.mirror(Arc::new(Properties::default()));
    assert_eq!(target(Command::Play), ("A".to_owned(), Command::Play));
    // And over the real entry point: B's refusal (no plugin behind its flag) is the answer.
    b.mirror(can_play(false));
    assert_eq!(
        meta.control(Command::Play).await,
        Err(ControlError::Unavailable("it has no stream plugin"))
    );
}
