//! The stream plugin the tests run (`tests/plugins/recording_plugin.py`) and the client that
//! drives a plugin stream the way Home Assistant does (`tests/python/stream_control_client.py`),
//! with what every server should answer it.

use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest, Md5};
use serde_json::{json, Value};

/// The image the client script has the plugin send inline.
pub const COVER: &[u8] = b"\x89PNG\r\n\x1a\n a cover image for the test";

pub fn plugin_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/recording_plugin.py")
}

/// A directory for the plugin, its GetProperties answer ready: every flag but canGoPrevious,
/// first track "First".
pub fn plugin_dir(parent: &Path) -> PathBuf {
    let dir = parent.join("plugin");
    std::fs::create_dir_all(dir.join("outbox")).unwrap();
    let properties = json!({
        "playbackStatus": "playing", "canGoNext": true, "canGoPrevious": false,
        "canPlay": true, "canPause": true, "canSeek": true, "canControl": true,
        "metadata": {"title": "First", "artist": ["A"]},
    });
    std::fs::write(dir.join("properties.json"), properties.to_string()).unwrap();
    dir
}

/// Fails (never skips) when `python` cannot import `modules`; `what` says what to install.
pub fn require_python(python: &str, modules: &str, what: &str) {
    let probe = Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .expect("python3 must be installed for this test");
    assert!(
        probe.status.success(),
        "{what} missing; run scripts/test.sh"
    );
}

/// The source of a pipe stream `Plug` (its FIFO in `dir`) whose plugin works in
/// `plugin_dir`.
pub fn plug_source(dir: &Path, plugin_dir: &Path) -> String {
    format!(
        "pipe://{}?name=Plug&controlscript={}&controlscriptparams=--dir={}",
        dir.join("plug.fifo").display(),
        plugin_script().display(),
        plugin_dir.display()
    )
}

/// A core relay with the plugin stream `Plug` playing `title` by `artist` with [`COVER`]
/// inline, its HTTP host 127.0.0.1 (the cover's URL).
pub fn core_with_cover(title: &str, artist: &str) -> super::Relay {
    let dir = tempfile::tempdir().unwrap();
    let plugin = plugin_dir(dir.path());
    play_with_cover(&plugin, title, artist);
    let plug = plug_source(dir.path(), &plugin);
    super::Relay::start_in(dir, &["--source", &plug, "--http.host=127.0.0.1"])
}

/// Makes the plugin in `plugin_dir` answer GetProperties with a playing track `title` by
/// `artist`, with [`COVER`] inline.
fn play_with_cover(plugin_dir: &Path, title: &str, artist: &str) {
    use base64::Engine as _;
    let cover = base64::engine::general_purpose::STANDARD.encode(COVER);
    let properties = json!({
        "playbackStatus": "playing", "canControl": true,
        "metadata": {"title": title, "artist": [artist],
                     "artData": {"data": cover, "extension": "png"}},
    });
    std::fs::write(plugin_dir.join("properties.json"), properties.to_string()).unwrap();
}

/// Runs tests/python/stream_control_client.py against a server's JSON-RPC port: `stream`
/// runs the plugin in `plugin_dir` (or relays one that does), `NoPlug` has none.
pub fn client_report(port: u16, stream: &str, plugin_dir: &Path) -> Value {
    require_python(
        "python3",
        "snapcast.control",
        "the python `snapcast` library (PyPI) is",
    );
    python_report(
        "stream_control_client.py",
        &[
            "127.0.0.1".as_ref(),
            port.to_string().as_ref(),
            stream.as_ref(),
            plugin_dir.as_os_str(),
        ],
    )
}

/// Runs the script `tests/python/NAME` with `args` and reads the one JSON report it prints;
/// fails the test with its output when it fails.
pub fn python_report(name: &str, args: &[&std::ffi::OsStr]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name);
    let output = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "{name} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints one JSON report")
}

pub fn cover_name(stream: &str) -> String {
    let mut hash = Md5::new();
    hash.update(stream.as_bytes());
    hash.update(COVER);
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.png")
}

/// What every server should answer to the client script's requests (snapserver's codes and
/// words; the cases where 0.26 differs are left out and named in the differential test).
pub fn expected_errors() -> Value {
    let invalid = |data: &str| json!({"code": -32602, "message": "Invalid params", "data": data});
    let flag = |code: i64, name: &str| json!({"code": code, "message": format!("Stream property {name} is false")});
    json!({
        "unknown_command": invalid("Command 'jump' not supported"),
        "seek_without_offset": invalid("Seek requires parameter 'offset'"),
        "position_without_position": invalid("setPosition requires parameter 'position'"),
        "unknown_stream": {"code": -32603, "message": "Internal error", "data": "Stream not found"},
        "shuffle_not_bool": invalid("Value for shuffle must be bool"),
        "volume_not_int": invalid("Value for volume must be an int from 0 to 100"),
        "loop_unknown": invalid("Value for loopStatus must be one of 'none', 'track', 'playlist'"),
        "rate_not_number": invalid("Value for rate must be float"),
        "unknown_property": invalid("Property 'colour' not supported"),
        "flag_next": flag(2, "canGoNext"),
        "flag_previous": flag(3, "canGoPrevious"),
        "flag_play": flag(4, "canPlay"),
        "flag_pause": flag(5, "canPause"),
        "flag_stop": flag(7, "canControl"),
        "flag_seek": flag(6, "canSeek"),
        "flag_setPosition": flag(6, "canSeek"),
        "flag_setproperty": flag(7, "canControl"),
        "plain_next": flag(2, "canGoNext"),
        "plain_setproperty": flag(7, "canControl"),
    })
}

pub fn six_flags_false() -> Value {
    json!({"canControl": false, "canGoNext": false, "canGoPrevious": false,
           "canPause": false, "canPlay": false, "canSeek": false})
}

/// Checks the client script's report on `stream`, whose plugin showed the cover at `art_url`:
/// what Home Assistant reads, what reached the plugin, and every refusal in snapserver's
/// words.
pub fn assert_home_assistant_report(report: &Value, stream: &str, art_url: &str) {
    assert_eq!(report["plain_properties"], six_flags_false(), "{report}");
    assert_eq!(
        report["initial_metadata"],
        json!({"title": "First", "artist": ["A"]})
    );
    assert_eq!(report["initial_properties"]["playbackStatus"], "playing");
    assert_eq!(report["initial_properties"]["canGoNext"], true);

    // The plugin's push reaches every connection as params.properties, its inline cover as
    // `art_url`.
    let note = &report["notification"];
    assert_eq!(note["params"]["id"], stream);
    assert_eq!(
        note["params"]["properties"],
        json!({
            "playbackStatus": "playing", "loopStatus": "none", "shuffle": false, "volume": 40,
            "position": 12.5, "canGoNext": true, "canGoPrevious": true, "canPlay": true,
            "canPause": true, "canSeek": true, "canControl": true,
            "metadata": {"title": "Second", "artist": ["B1", "B2"], "album": "Al",
                         "duration": 200.5, "trackNumber": 3, "genre": ["Jazz"],
                         "artUrl": art_url},
        })
    );
    assert_eq!(report["library_metadata"]["title"], "Second");
    assert_eq!(report["library_properties"]["position"], 12.5);

    for key in [
        "control_next",
        "control_seek",
        "set_shuffle",
        "set_loop",
        "set_volume",
    ] {
        assert_eq!(report[key], "ok", "{key}: {report}");
    }
    assert_eq!(
        report["plugin_received"],
        json!([
            {"command": "next"},
            {"command": "seek", "params": {"offset": 5.0}},
            {"shuffle": true},
            {"loopStatus": "playlist"},
            {"volume": 30},
        ])
    );
    assert_eq!(
        report["plugin_error"],
        json!({"code": -32603, "message": "Internal error: player gone"})
    );
    assert_eq!(report["errors"], expected_errors(), "{report}");
    // The last push had no metadata: the metadata stays.
    assert_eq!(report["final_metadata"]["title"], "Second");
}
