//! Relay chaining (issue 19): an edge relay takes a stream from an upstream Snapcast server
//! (`snapcast://HOST:PORT?name=...`) and re-serves its encoded chunks unchanged, stamped on
//! its own clock. Real snapclients on the core and on the edge must play the same frame at
//! the same instant, without dropouts, and the edge must report its upstream link.

mod common;

use std::time::Duration;

use common::audio::{self, Signal};
use common::{
    assert_continuous, jsonrpc_call, steady_frames, sync_offset_ms, FifoWriter, Relay, Snapclient,
};
use serde_json::{json, Value};

/// Checks a client's steady output for the test signal, without breaks.
fn hears_the_signal(client: &Snapclient) {
    let (frames, _) = steady_frames(client);
    let left = audio::dominant_frequency(&frames, false);
    let right = audio::dominant_frequency(&frames, true);
    assert!(
        (left - 440.0).abs() < 3.0,
        "{}: left {left} Hz",
        client.host_id
    );
    assert!(
        (right - 660.0).abs() < 3.0,
        "{}: right {right} Hz",
        client.host_id
    );
    assert_continuous(client, &frames);
}

/// The relayed stream Edge's sample of the `/metrics` family `family`.
fn metric(relay: &Relay, family: &str) -> Option<f64> {
    let body = common::http_get(relay.http_addr(), "/metrics").body;
    let text = String::from_utf8_lossy(&body).into_owned();
    let prefix = format!("{family}{{stream=\"Edge\",");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn edge_of(core_port: u16, extra: &[&str]) -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let source = format!("snapcast://127.0.0.1:{core_port}?name=Edge");
    let mut args = vec!["--source", source.as_str()];
    args.extend_from_slice(extra);
    Relay::start_in(dir, &args)
}

#[test]
fn clients_of_the_core_and_of_an_edge_play_in_sync() {
    for codec in ["pcm", "flac"] {
        let (core, fifo) = Relay::start_with_pipe(codec, &[]);
        let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
        // The edge's own buffer differs from the core's: timestamps carry the difference.
        let edge = edge_of(core.port(), &["--buffer", "700"]);
        let a = Snapclient::start(core.port(), "core-client", core.dir.path());
        let b = Snapclient::start(edge.port(), "edge-client", edge.dir.path());
        std::thread::sleep(Duration::from_secs(8));
        hears_the_signal(&a);
        hears_the_signal(&b);
        let (median, blocks) = sync_offset_ms(&a, &b);
        eprintln!(
            "{codec}: core client ahead of the edge client by {median:.3} ms ({blocks} blocks)"
        );
        assert!(
            median.abs() <= 1.0,
            "{codec}: out of sync by {median:.3} ms\nedge log:\n{}",
            edge.log()
        );
        // The edge re-serves the core's codec and reports its link.
        let status = jsonrpc_call(edge.jsonrpc_addr(), "Server.GetStatus", json!({}));
        let stream: &Value = &status["result"]["server"]["streams"][0];
        assert_eq!(stream["id"], "Edge", "{status}");
        assert_eq!(stream["status"], "playing", "{status}");
        assert_eq!(metric(&edge, "snaprelay_upstream_connected"), Some(1.0));
        let rtt = metric(&edge, "snaprelay_upstream_rtt_seconds").unwrap();
        assert!(rtt > 0.0 && rtt < 0.05, "round trip {rtt} s");
        assert!(metric(&edge, "snaprelay_upstream_chunks_total").unwrap() > 100.0);
        writer.stop();
    }
}

#[test]
fn an_upstream_restart_is_reconnected_and_plays_again() {
    let (core, fifo) = Relay::start_with_pipe("pcm", &[]);
    let port = core.port();
    let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    let edge = edge_of(port, &[]);
    let b = Snapclient::start(edge.port(), "edge-client", edge.dir.path());
    common::eventually(
        Duration::from_secs(15),
        "the edge playing",
        || edge.log(),
        || (metric(&edge, "snaprelay_upstream_connected") == Some(1.0)).then_some(()),
    );
    writer.stop();
    drop(core);
    common::eventually(
        Duration::from_secs(15),
        "the edge noticing",
        || edge.log(),
        || (metric(&edge, "snaprelay_upstream_connected") == Some(0.0)).then_some(()),
    );
    // A new core on the same port: the edge comes back by itself.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo2");
    let source = format!("pipe://{}?name=default&codec=pcm", fifo.display());
    let port_text = port.to_string();
    let _core = Relay::start_in(dir, &["--source", &source, "--port", &port_text]);
    let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    common::eventually(
        Duration::from_secs(20),
        "the edge reconnected",
        || edge.log(),
        || {
            (metric(&edge, "snaprelay_upstream_reconnects_total").is_some_and(|n| n >= 1.0)
                && metric(&edge, "snaprelay_upstream_connected") == Some(1.0))
            .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(4));
    let (bytes, _) = b.output();
    let frames = audio::frames(&bytes);
    let last_second = &frames[frames.len().saturating_sub(48_000)..];
    let left = audio::dominant_frequency(last_second, false);
    assert!(
        (left - 440.0).abs() < 3.0,
        "after the restart: left {left} Hz"
    );
    writer.stop();
}
