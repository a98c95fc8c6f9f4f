//! The `snaprelay` binary's flags, config handling, start-up errors and shutdown.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Relay;

fn snaprelay(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_snaprelay"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run snaprelay");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn short_help_lists_flags_and_double_h_lists_every_config_key() {
    let (ok, short, _) = snaprelay(&["-h"]);
    assert!(ok);
    assert!(
        short.contains("--config") && short.contains("--source"),
        "{short}"
    );
    assert!(
        !short.contains("Configuration keys"),
        "-h should stay short"
    );
    let (ok, long, _) = snaprelay(&["-hh"]);
    assert!(ok);
    for key in [
        "stream.port",
        "stream.source",
        "stream.buffer",
        "stream.sampleformat",
    ] {
        assert!(long.contains(key), "-hh lacks {key}:\n{long}");
    }
    assert!(long.contains("SNAPRELAY_STREAM__BUFFER"), "{long}");
}

#[test]
fn invalid_values_fail_start_up_naming_key_value_and_allowed() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--buffer", "5"], &["stream.buffer", "'5'"]),
        (
            &["--stream.sampleformat=48000:12:2"],
            &["stream.sampleformat", "12"],
        ),
        (
            &["--source", "pipe:///tmp/x?name=a&sampleformat=44100:16:99"],
            &["stream.source", "99 channels"],
        ),
        (&["--source", "pipe:///tmp/x"], &["stream.source", "name="]),
        (
            &["--source", "jack:///?name=a"],
            &["stream.source", "not supported yet"],
        ),
        (&["--stream.bufer=100"], &["stream.bufer", "did you mean"]),
        (
            &["--bind", "not-an-ip"],
            &["stream.bind_to_address", "not-an-ip"],
        ),
    ];
    for (args, needles) in cases {
        let (ok, _, stderr) = snaprelay(args);
        assert!(!ok, "{args:?} should fail");
        for needle in *needles {
            assert!(
                stderr.contains(needle),
                "{args:?}: '{needle}' not in: {stderr}"
            );
        }
        assert!(stderr.starts_with("snaprelay: error:"), "{stderr}");
    }
}

#[test]
fn typed_flags_reject_garbage_with_usage_errors() {
    for (flag, value) in [
        ("--port", "http"),
        ("--buffer", "1s"),
        ("--sampleformat", "48000:12:2"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_snaprelay"))
            .args([flag, value])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag) && stderr.contains(value), "{stderr}");
    }
}

#[test]
fn an_unmodified_snapserver_conf_starts_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("snapfifo");
    let conf = dir.path().join("snapserver.conf");
    std::fs::write(
        &conf,
        format!(
            "# snapserver.conf as Debian ships it, with our FIFO\n\
             [server]\n#threads = -1\n\n[http]\nenabled = true\ndoc_root = /usr/share/snapserver/snapweb\n\n\
             [tcp]\nenabled = true\n\n[stream]\nsource = pipe://{}?name=default\n\
             source = tone:///?name=test&freq=500\nbuffer = 800\n\n[logging]\n",
            fifo.display()
        ),
    )
    .unwrap();
    let relay = Relay::start_in(dir, &["-c", conf.to_str().unwrap()]);
    if !std::path::Path::new("/usr/share/snapserver/snapweb").is_dir() {
        // Debian names Snapweb's path even where it is not installed: a warning, not a failure.
        relay.wait_for_log(
            &[
                "http.doc_root '/usr/share/snapserver/snapweb'",
                "serving the status page",
            ],
            Duration::from_secs(5),
        );
    }
    relay.wait_for_log(
        &["stream started", "stream=default"],
        Duration::from_secs(5),
    );
    relay.wait_for_log(&["stream started", "stream=test"], Duration::from_secs(5));
    assert!(std::fs::metadata(&fifo).is_ok(), "the FIFO was created");
}

#[test]
fn a_port_in_use_is_a_clear_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (ok, _, stderr) = snaprelay(&[
        "--bind",
        "127.0.0.1",
        "--port",
        &port,
        "--source",
        "tone:///?name=t",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot listen on 127.0.0.1") && stderr.contains("in use"),
        "{stderr}"
    );
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let relay = Relay::start(&["--source", "tone:///?name=t"]);
    let status = relay.terminate();
    assert!(status.success(), "exit status {status:?}");
}
