//! mDNS / DNS-SD publishing (issue 18), browsed with python-zeroconf (Home Assistant's
//! library) inside a private network namespace (`unshare -n`), so nothing reaches a real
//! network: every snapserver service type, old and new names, with the right ports; gRPC
//! announced when it listens beyond loopback; the records gone at shutdown and back after a
//! restart. The per-listener `publish` keys and `server.mdns_enabled` leave services out.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs the browse with the relay started with `args`; `expected` services are waited for.
fn browse(expected: usize, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/mdns_check.py");
    let output = Command::new("unshare")
        .args(["-n", "--", "python3"])
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_snaprelay"))
        .arg(dir.path())
        .args(["--source", "tone:///?name=Chime"])
        .args(args)
        .env("MDNS_EXPECT", expected.to_string())
        .output()
        .expect("run unshare");
    let log = std::fs::read_to_string(dir.path().join("relay.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "the browse failed: {}\nrelay log:\n{log}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "no report ({err}): {}\nrelay log:\n{log}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn published_ports(report: &Value) -> Vec<(String, u64)> {
    let mut ports: Vec<(String, u64)> = report["published"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(kind, service)| {
            assert_eq!(service["name"], format!("Snapcast.{kind}"), "{report}");
            assert_eq!(service["addresses"][0], "127.0.0.1", "{report}");
            (kind.clone(), service["port"].as_u64().unwrap())
        })
        .collect();
    ports.sort();
    ports
}

#[test]
fn every_service_is_published_withdrawn_at_shutdown_and_republished() {
    // A fresh namespace has every port free: snapserver's defaults, gRPC on the network.
    let report = browse(7, &["--grpc.bind_to_address=0.0.0.0"]);
    let expected: Vec<(String, u64)> = [
        ("_snapcast-ctrl._tcp.local.", 1705),
        ("_snapcast-http._tcp.local.", 1780),
        ("_snapcast-jsonrpc._tcp.local.", 1705),
        ("_snapcast-stream._tcp.local.", 1704),
        ("_snapcast-tcp._tcp.local.", 1705),
        ("_snapcast._tcp.local.", 1704),
        ("_snaprelay-grpc._tcp.local.", 1710),
    ]
    .iter()
    .map(|(k, p)| ((*k).to_owned(), *p))
    .collect();
    assert_eq!(published_ports(&report), expected, "{report}");
    assert_eq!(report["exit_code"], 0, "{report}");
    assert_eq!(report["gone_after_stop"], true, "{report}");
    let republished: Vec<String> = serde_json::from_value(report["republished"].clone()).unwrap();
    let kinds: Vec<String> = expected.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(republished, kinds, "{report}");
}

#[test]
fn publish_keys_leave_services_out() {
    let report = browse(
        3,
        &[
            "--tcp_streaming.publish=false",
            "--http.publish_http=false",
            "--stream.port=1804",
            "--tcp.port=1805",
        ],
    );
    let kinds: Vec<(String, u64)> = published_ports(&report);
    assert_eq!(
        kinds,
        [
            ("_snapcast-ctrl._tcp.local.".to_owned(), 1805),
            ("_snapcast-jsonrpc._tcp.local.".to_owned(), 1805),
            ("_snapcast-tcp._tcp.local.".to_owned(), 1805),
        ],
        "{report}"
    );
    let report = browse(0, &["--server.mdns_enabled=false"]);
    assert!(published_ports(&report).is_empty(), "{report}");
}

/// A real snapclient given no host browses `_snapcast._tcp` through avahi (run inside the
/// namespace with its own D-Bus) and plays the relay's tone.
#[test]
fn a_snapclient_without_a_host_finds_the_relay_through_avahi() {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mdns/avahi_snapclient.sh");
    let status = Command::new("unshare")
        .args(["-n", "-m", "--", "sh"])
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_snaprelay"))
        .arg(dir.path())
        .args(["--source", "tone:///?name=Chime&freq=440,660"])
        .status()
        .expect("run unshare");
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    assert!(status.success(), "relay log:\n{}", log("relay.log"));
    let audio = std::fs::read(dir.path().join("client.raw")).unwrap_or_default();
    let frames = common::audio::frames(&audio);
    assert!(
        frames.len() > common::audio::RATE as usize * 3,
        "the client played {} frames; its log:\n{}\nrelay log:\n{}",
        frames.len(),
        log("client.log"),
        log("relay.log")
    );
    let last_second = &frames[frames.len() - common::audio::RATE as usize..];
    let left = common::audio::dominant_frequency(last_second, false);
    let right = common::audio::dominant_frequency(last_second, true);
    assert!((left - 440.0).abs() < 3.0, "left {left} Hz");
    assert!((right - 660.0).abs() < 3.0, "right {right} Hz");
}
