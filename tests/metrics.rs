//! Prometheus `/metrics` on the HTTP listener (issue 8): scraped over real HTTP while a real
//! snapclient plays, and parsed by an independent parser, Python `prometheus-client`'s
//! `text_string_to_metric_families` (installed by scripts/test.sh, or here when missing).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, Relay, Snapclient};

/// The parser is Prometheus's own Python client, not code of ours.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = []
for f in text_string_to_metric_families(sys.stdin.read()):
    families.append({"name": f.name, "type": f.type, "help": f.documentation,
                     "samples": [{"name": s.name, "labels": s.labels, "value": s.value}
                                 for s in f.samples]})
print(json.dumps(families))
"#;

#[derive(Debug, serde::Deserialize)]
struct Family {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    help: String,
    samples: Vec<Sample>,
}

#[derive(Debug, serde::Deserialize)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Makes sure `prometheus_client` imports, installing it with pip when it does not; fails
/// loudly (never skips) when it still cannot.
fn ensure_parser() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let importable = || {
            Command::new("python3")
                .args(["-c", "import prometheus_client.parser"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if !importable() {
            let _ = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--root-user-action=ignore",
                ])
                .arg("prometheus-client")
                .status();
        }
        assert!(
            importable(),
            "python3 prometheus_client is missing and pip could not install it"
        );
    });
}

/// One HTTP/1.1 GET; returns (status code, headers lower-cased, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let response = common::http_get(addr, path);
    let head = response
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", value.to_lowercase()))
        .collect();
    let body = String::from_utf8(response.body).expect("a text body");
    (response.status, head, body)
}

/// Scrapes `/metrics` and parses it with prometheus_client.
fn scrape(relay: &Relay) -> Vec<Family> {
    ensure_parser();
    let (status, head, body) = get(relay.http_addr(), "/metrics");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let mut python = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    python
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client rejected the exposition: {}\n{body}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("parser output is JSON")
}

/// The value of the sample `name` whose labels include `labels`.
fn value(families: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| &f.samples)
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn must(families: &[Family], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(families, name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

const COUNTERS: &[&str] = &[
    "snaprelay_client_connections_total",
    "snaprelay_sent_bytes_total",
    "snaprelay_sent_chunks_total",
    "snaprelay_late_chunks_total",
    "snaprelay_dropped_chunks_total",
    "snaprelay_time_sync_replies_total",
    "snaprelay_zerocopy_attempts_total",
    "snaprelay_zerocopy_successes_total",
    "snaprelay_zerocopy_sent_bytes_total",
    "snaprelay_zerocopy_copied_total",
    "snaprelay_regular_sends_total",
    "snaprelay_regular_sent_bytes_total",
    "snaprelay_pool_buffers_created_total",
    "snaprelay_pool_buffers_reused_total",
    "snaprelay_pool_cleanups_total",
];

#[test]
fn scrape_parses_with_prometheus_client_and_follows_a_real_client() {
    let relay = Relay::start(&["--source", "tone:///?name=tone&freq=440"]);
    let families = scrape(&relay);

    // Naming rules (docs/DEPLOY.md, "Metrics"): prefix, HELP and TYPE on every family, counters
    // exposed with `_total` (the parser strips it from the family name, not the samples).
    assert!(families.len() >= 25, "{families:#?}");
    for family in &families {
        assert!(family.name.starts_with("snaprelay_"), "{}", family.name);
        assert!(!family.help.is_empty(), "{} has no HELP", family.name);
        assert!(!family.samples.is_empty(), "{} has no samples", family.name);
        assert!(
            ["counter", "gauge"].contains(&family.kind.as_str()),
            "{} is {}",
            family.name,
            family.kind
        );
        if family.kind == "counter" {
            for sample in &family.samples {
                assert!(sample.name.ends_with("_total"), "{}", sample.name);
            }
        }
    }
    let kind = |name: &str| {
        families
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.kind.clone())
    };
    for counter in COUNTERS {
        let family = counter.trim_end_matches("_total");
        assert_eq!(kind(family).as_deref(), Some("counter"), "{counter}");
    }
    assert_eq!(
        kind("snaprelay_clients_connected").as_deref(),
        Some("gauge")
    );
    assert_eq!(
        must(
            &families,
            "snaprelay_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(must(&families, "snaprelay_clients_connected", &[]), 0.0);
    assert_eq!(
        must(&families, "snaprelay_streams", &[("state", "idle")])
            + must(&families, "snaprelay_streams", &[("state", "playing")]),
        1.0
    );

    // A real snapclient: the figures follow it.
    let mut client = Snapclient::start(relay.port(), "metrics-client", relay.dir.path());
    let playing = eventually(
        Duration::from_secs(15),
        "the snapclient shows in /metrics with chunks and time replies",
        || format!("relay:\n{}\nclient:\n{}", relay.log(), client.log()),
        || {
            let families = scrape(&relay);
            let ready = must(&families, "snaprelay_clients_connected", &[]) == 1.0
                && must(&families, "snaprelay_sent_chunks_total", &[]) >= 10.0
                && must(&families, "snaprelay_time_sync_replies_total", &[]) >= 1.0;
            ready.then_some(families)
        },
    );
    assert!(client.is_running(), "{}", client.log());
    let f = &playing;
    assert_eq!(must(f, "snaprelay_sessions", &[("mode", "regular")]), 1.0);
    assert_eq!(must(f, "snaprelay_sessions", &[("mode", "zerocopy")]), 0.0);
    assert_eq!(
        must(f, "snaprelay_stream_playing", &[("stream", "tone")]),
        1.0
    );
    assert_eq!(must(f, "snaprelay_streams", &[("state", "playing")]), 1.0);
    assert_eq!(
        must(f, "snaprelay_stream_clients", &[("stream", "tone")]),
        1.0
    );
    assert!(must(f, "snaprelay_stream_chunks_total", &[("stream", "tone")]) >= 10.0);
    // 20 ms chunks by default.
    let input = must(
        f,
        "snaprelay_stream_input_seconds_total",
        &[("stream", "tone")],
    );
    let chunks = must(f, "snaprelay_stream_chunks_total", &[("stream", "tone")]);
    assert!((input - chunks * 0.02).abs() < 1e-6, "{input} {chunks}");
    // Every byte went the ordinary way: zerocopy is off by default.
    let sent = must(f, "snaprelay_sent_bytes_total", &[]);
    assert!(sent > 0.0);
    assert_eq!(must(f, "snaprelay_regular_sent_bytes_total", &[]), sent);
    assert_eq!(must(f, "snaprelay_zerocopy_attempts_total", &[]), 0.0);
    assert!(must(f, "snaprelay_pool_buffers_created_total", &[]) >= 1.0);
    assert!(must(f, "snaprelay_pool_bytes", &[]) > 0.0);
    assert!(must(f, "snaprelay_client_connections_total", &[]) >= 1.0);

    // Counters never go down: the client leaves, its figures stay in the totals.
    drop(client);
    let after = eventually(
        Duration::from_secs(10),
        "the departed client leaves clients_connected",
        || relay.log(),
        || {
            let families = scrape(&relay);
            (must(&families, "snaprelay_clients_connected", &[]) == 0.0).then_some(families)
        },
    );
    for counter in COUNTERS {
        assert!(
            must(&after, counter, &[]) >= must(f, counter, &[]),
            "{counter} went down after the client left"
        );
    }
    assert_eq!(
        must(&after, "snaprelay_stream_clients", &[("stream", "tone")]),
        0.0
    );
}

#[test]
fn metrics_off_means_404_and_other_paths_are_404() {
    let relay = Relay::start(&["--source", "tone:///?name=t", "--http.metrics=false"]);
    let (status, _, _) = get(relay.http_addr(), "/metrics");
    assert_eq!(status, 404);

    let relay = Relay::start(&["--source", "tone:///?name=t"]);
    let (status, _, _) = get(relay.http_addr(), "/nothing-here");
    assert_eq!(status, 404);
}

#[tokio::test]
async fn http_bind_honours_enabled_and_reports_a_port_in_use() {
    let mut config = snaprelay::config::Config::default();
    config.http.enabled = false;
    assert!(snaprelay::http::bind(&config).await.unwrap().is_none());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.http.enabled = true;
    config.http.bind_to_address = vec!["127.0.0.1".into()];
    config.http.port = taken.local_addr().unwrap().port();
    let err = snaprelay::http::bind(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot listen for HTTP on 127.0.0.1:") && err.contains("in use"),
        "{err}"
    );
}
