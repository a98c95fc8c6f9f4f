//! Relay chaining (issue 19): an edge relay takes a stream from an upstream Snapcast server
//! (`snapcast://HOST:PORT?name=...`) and re-serves its encoded chunks unchanged, stamped on
//! its own clock. Real snapclients on the core and on the edge must play the same frame at
//! the same instant, without dropouts, and the edge must report its upstream link. The
//! control side (stream and volume held upstream, now playing, cover art, control requests)
//! is in `relay_control.rs`.

mod common;

use std::time::Duration;

use common::audio::{self, Signal};
use common::edge::{
    edge_metric, edge_named, edge_on, stream_metric, wait_for_link, wait_for_reconnect,
};
use common::{
    assert_hears_the_signal, jsonrpc_call, once_more_if_apart, sync_offset_ms, DelayProxy,
    FifoWriter, Relay, Snapclient,
};
use serde_json::{json, Value};

/// Tests that measure sync take this first: three relays and three snapclients each, two such
/// tests at once on two cores disturb the clients' own timing (and so the measurement), not
/// the relays'.
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn measuring() -> std::sync::MutexGuard<'static, ()> {
    MEASURING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn edge_of(core_port: u16, extra: &[&str]) -> Relay {
    edge_named("Edge", core_port, None, extra)
}

#[test]
fn clients_of_the_core_and_of_an_edge_play_in_sync() {
    let _measuring = measuring();
    for codec in ["pcm", "flac"] {
        let (offsets, edge_log) = once_more_if_apart(|| core_and_edge_session(codec));
        let median = offsets[0];
        assert!(
            median.abs() <= 1.0,
            "{codec}: out of sync by {median:.3} ms\nedge log:\n{edge_log}"
        );
    }
}

/// A core playing the test signal in `codec`, an edge with another buffer, a client on each:
/// checks what they play and what the edge reports, and returns how far apart they play
/// and the edge's log.
fn core_and_edge_session(codec: &str) -> (Vec<f64>, String) {
    let (core, fifo) = Relay::start_with_pipe(codec, &[]);
    let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    // The edge's own buffer differs from the core's: timestamps carry the difference.
    let edge = edge_of(core.port(), &["--buffer", "700"]);
    let a = Snapclient::start(core.port(), "core-client", core.dir.path());
    let b = Snapclient::start(edge.port(), "edge-client", edge.dir.path());
    let median = play_and_measure(&a, &b, &format!("{codec}: core client"));
    assert_offset_error_small(&edge);
    // The edge re-serves the core's codec and reports its link.
    let status = jsonrpc_call(edge.jsonrpc_addr(), "Server.GetStatus", json!({}));
    let stream: &Value = &status["result"]["server"]["streams"][0];
    assert_eq!(stream["id"], "Edge", "{status}");
    assert_eq!(stream["status"], "playing", "{status}");
    assert_eq!(
        edge_metric(&edge, "snaprelay_upstream_connected"),
        Some(1.0)
    );
    let rtt = edge_metric(&edge, "snaprelay_upstream_rtt_seconds").unwrap();
    assert!(rtt > 0.0 && rtt < 0.05, "round trip {rtt} s");
    assert!(edge_metric(&edge, "snaprelay_upstream_chunks_total").unwrap() > 100.0);
    // gRPC and snapctl show the link too.
    let shown = common::snapctl(&edge, &["stream", "show", "Edge"]);
    assert!(
        shown.contains(&format!(
            "upstream     127.0.0.1:{} (connected",
            core.port()
        )),
        "{shown}"
    );
    writer.stop();
    (vec![median], edge.log())
}

/// Lets `upstream_client` (on the upstream) and `edge_client` (on the edge) play for 8 s,
/// checks both hear the signal, and returns how far the first plays ahead of the second, in
/// ms (printed as `who` ahead of the edge's client).
fn play_and_measure(upstream_client: &Snapclient, edge_client: &Snapclient, who: &str) -> f64 {
    std::thread::sleep(Duration::from_secs(8));
    assert_hears_the_signal(upstream_client);
    assert_hears_the_signal(edge_client);
    let (median, blocks) = sync_offset_ms(upstream_client, edge_client);
    eprintln!("{who} ahead of the edge's client by {median:.3} ms ({blocks} blocks)");
    median
}

/// On one host both relays read CLOCK_MONOTONIC, so the clock offset the edge measured is
/// its error: its own share of any sync difference, whatever the clients do.
fn assert_offset_error_small(edge: &Relay) {
    let offset = edge_metric(edge, "snaprelay_upstream_clock_offset_seconds").unwrap();
    eprintln!("the edge's clock offset error: {:.3} ms", offset * 1000.0);
    assert!(offset.abs() <= 0.000_5, "offset error {offset} s");
}

#[test]
fn an_upstream_restart_is_reconnected_and_plays_again() {
    let _measuring = measuring();
    let (offsets, edge_log) = once_more_if_apart(|| {
        let (core, fifo) = Relay::start_with_pipe("pcm", &[]);
        let port = core.port();
        let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
        let edge = edge_of(port, &[]);
        let b = Snapclient::start(edge.port(), "edge-client", edge.dir.path());
        wait_for_link(&edge, true, Duration::from_secs(15));
        writer.stop();
        drop(core);
        wait_for_link(&edge, false, Duration::from_secs(15));
        // A new core on the same port: the edge comes back by itself.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo2");
        let source = format!("pipe://{}?name=default&codec=pcm", fifo.display());
        let port_text = port.to_string();
        let _core = Relay::start_in(dir, &["--source", &source, "--port", &port_text]);
        let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
        wait_for_reconnect(&edge, Duration::from_secs(20));
        // A client of the new core and the edge's client play in sync again.
        let a = Snapclient::start(port, "core-client", edge.dir.path());
        std::thread::sleep(Duration::from_secs(7));
        let left = common::recent_frequency(&b);
        assert!(
            left.is_some_and(|left| (left - 440.0).abs() < 3.0),
            "after the restart: left {left:?} Hz"
        );
        let (median, blocks) = sync_offset_ms(&a, &b);
        eprintln!("after an upstream restart: {median:.3} ms over {blocks} blocks");
        writer.stop();
        (vec![median], edge.log())
    });
    assert!(offsets[0].abs() <= 1.0, "{:.3} ms\n{edge_log}", offsets[0]);
}

/// Two hops, each through a proxy adding 5 ms ± 1 ms each way: a client on the core, one on
/// the first edge and one on the edge of the edge play the same frame at the same instant.
#[test]
fn two_hops_with_5ms_of_delay_each_play_in_sync_with_the_core() {
    let _measuring = measuring();
    assert_two_hops_in_sync(two_delayed_hops_session);
}

/// Measures `session` (once more if its clients start apart) and checks that the clients of
/// both edges play within 1 ms of the core's.
fn assert_two_hops_in_sync(session: fn() -> (Vec<f64>, String)) {
    let (offsets, logs) = once_more_if_apart(session);
    for (hops, offset) in offsets.iter().enumerate() {
        assert!(
            offset.abs() <= 1.0,
            "{} hop(s): {offset:.3} ms\n{logs}",
            hops + 1
        );
    }
}

/// A core, an edge of it and an edge of that edge, each hop through a delaying proxy, a
/// client on each: checks what they play and the measured round trips, and returns how far
/// the edges' clients play from the core's and the edges' logs.
fn two_delayed_hops_session() -> (Vec<f64>, String) {
    let (core, fifo) = Relay::start_with_pipe("flac", &[]);
    let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    let delay = Duration::from_millis(5);
    let jitter = Duration::from_millis(1);
    let hop1 = DelayProxy::start(([127, 0, 0, 1], core.port()).into(), delay, jitter);
    let edge1 = edge_named(
        "Edge1",
        hop1.port(),
        Some(core.jsonrpc_addr().port()),
        &["--buffer", "900"],
    );
    let hop2 = DelayProxy::start(([127, 0, 0, 1], edge1.port()).into(), delay, jitter);
    let edge2 = edge_named(
        "Edge2",
        hop2.port(),
        Some(edge1.jsonrpc_addr().port()),
        &["--buffer", "800"],
    );
    let a = Snapclient::start(core.port(), "core-client", core.dir.path());
    let b = Snapclient::start(edge1.port(), "edge1-client", edge1.dir.path());
    let c = Snapclient::start(edge2.port(), "edge2-client", edge2.dir.path());
    std::thread::sleep(Duration::from_secs(9));
    for client in [&a, &b, &c] {
        assert_hears_the_signal(client);
    }
    let (one_hop, blocks1) = sync_offset_ms(&a, &b);
    let (two_hops, blocks2) = sync_offset_ms(&a, &c);
    eprintln!(
        "core ahead of edge1 by {one_hop:.3} ms ({blocks1} blocks), of edge2 by {two_hops:.3} ms ({blocks2} blocks)"
    );
    // The proxies' 10 ms round trip shows in the measured round trip.
    for (relay, stream) in [(&edge1, "Edge1"), (&edge2, "Edge2")] {
        let rtt = stream_metric(relay, stream, "snaprelay_upstream_rtt_seconds").unwrap();
        assert!((0.008..0.03).contains(&rtt), "{stream}: round trip {rtt} s");
    }
    writer.stop();
    (
        vec![one_hop, two_hops],
        format!("edge1:\n{}\nedge2:\n{}", edge1.log(), edge2.log()),
    )
}

/// A core playing the test signal in pcm, and an edge that reaches its stream port through a
/// proxy the test can hold (1 ms each way).
fn core_and_edge_through_a_proxy() -> (Relay, FifoWriter, DelayProxy, Relay) {
    let (core, fifo) = Relay::start_with_pipe("pcm", &[]);
    let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    let proxy = DelayProxy::start(
        ([127, 0, 0, 1], core.port()).into(),
        Duration::from_millis(1),
        Duration::ZERO,
    );
    let edge = edge_named("Edge", proxy.port(), Some(core.jsonrpc_addr().port()), &[]);
    (core, writer, proxy, edge)
}

/// A 2 s partition (every byte held, none lost) is heard as silence at the edge, which then
/// plays on in sync, without reconnecting.
#[test]
fn a_partition_is_silence_then_sync_again() {
    let _measuring = measuring();
    let (offsets, edge_log) = once_more_if_apart(|| {
        let (core, writer, proxy, edge) = core_and_edge_through_a_proxy();
        let a = Snapclient::start(core.port(), "core-client", core.dir.path());
        let b = Snapclient::start(edge.port(), "edge-client", edge.dir.path());
        std::thread::sleep(Duration::from_secs(4));
        proxy.hold(true);
        std::thread::sleep(Duration::from_secs(2));
        proxy.hold(false);
        let released_us = snaprelay::clock::now_micros();
        std::thread::sleep(Duration::from_secs(6));
        // Late chunks were dropped at the edge, not played late.
        assert!(edge_metric(&edge, "snaprelay_upstream_late_chunks_total").unwrap() > 10.0);
        assert_eq!(
            edge_metric(&edge, "snaprelay_upstream_reconnects_total"),
            Some(0.0)
        );
        // After the partition (from 2 s after the path came back, once the edge's client has
        // refilled its buffer): in sync again.
        let (median, blocks) = sync_after(&a, &b, released_us + 2_000_000);
        eprintln!("after a partition: {median:.3} ms over {blocks} blocks");
        writer.stop();
        (vec![median], edge.log())
    });
    assert!(offsets[0].abs() <= 1.0, "{:.3} ms\n{edge_log}", offsets[0]);
}

/// The median of how far `a` plays ahead of `b` (ms) over what both played from `from_us`
/// on, and how many player blocks it compares: at least 20, played for as long as that takes
/// (up to 15 s more). A block counts only when the test read it in one piece, and a busy
/// machine's reads take several at once, so a fixed time may give too few.
fn sync_after(a: &Snapclient, b: &Snapclient, from_us: i64) -> (f64, usize) {
    let positions = |client: &Snapclient| {
        let (bytes, arrivals) = client.output();
        let from_frame = arrivals
            .iter()
            .find(|arrival| arrival.at_us >= from_us)
            .map_or(bytes.len(), |arrival| arrival.offset)
            / audio::FRAME_BYTES;
        audio::block_positions(&bytes, &arrivals, from_frame)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let offsets = audio::sync_offsets_ms(&positions(a), &positions(b));
        if offsets.len() >= 20 {
            return (audio::median(&offsets), offsets.len());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "too few blocks to compare: {}",
            offsets.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A black-holed upstream (nothing arrives for longer than the edge waits) is dropped and
/// reconnected; the edge plays again once the path is back.
#[test]
fn a_black_holed_upstream_is_reconnected() {
    let (_core, writer, proxy, edge) = core_and_edge_through_a_proxy();
    let client = Snapclient::start(edge.port(), "edge-client", edge.dir.path());
    wait_for_link(&edge, true, Duration::from_secs(15));
    proxy.hold(true);
    wait_for_link(&edge, false, Duration::from_secs(15));
    assert!(
        edge.log().contains("nothing received for"),
        "{}",
        edge.log()
    );
    let shown = common::snapctl(&edge, &["streams"]);
    assert!(shown.contains("reconnecting"), "{shown}");
    proxy.hold(false);
    wait_for_reconnect(&edge, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    let left = common::recent_frequency(&client);
    assert!(
        left.is_some_and(|left| (left - 440.0).abs() < 3.0),
        "after the black hole: left {left:?} Hz"
    );
    assert!(common::snapctl(&edge, &["streams"]).contains("ok, rtt"));
    writer.stop();
}

/// An upstream that answers with garbage is dropped and tried again; the edge keeps running.
#[test]
fn an_upstream_sending_garbage_is_dropped_and_retried() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = std::io::Write::write_all(&mut stream, &[0xAB; 4096]);
        }
    });
    let edge = edge_of(port, &[]);
    common::eventually(
        Duration::from_secs(15),
        "two reconnects",
        || edge.log(),
        || {
            edge_metric(&edge, "snaprelay_upstream_reconnects_total")
                .filter(|n| *n >= 2.0)
                .map(|_| ())
        },
    );
    assert!(edge.log().contains("bad"), "{}", edge.log());
    assert_eq!(
        edge_metric(&edge, "snaprelay_upstream_connected"),
        Some(0.0)
    );
}

/// Debian's snapserver 0.26 as the upstream: its client and the edge's play in sync.
#[test]
fn snapserver_026_as_the_upstream() {
    let _measuring = measuring();
    let (offsets, edge_log) = once_more_if_apart(|| {
        let dir = tempfile::tempdir().unwrap();
        let fifo = common::source_fifo(dir.path(), "music");
        let server = common::Snapserver::start(
            dir.path(),
            &format!(
                "pipe://{}?name=default&sampleformat=48000:16:2&codec=flac&mode=create",
                fifo.display()
            ),
            "",
        );
        let (port, control) = (server.port, server.control);
        let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
        let edge = edge_named("Edge", port, Some(control), &[]);
        let a = Snapclient::start(port, "snapserver-client", dir.path());
        let b = Snapclient::start(edge.port(), "edge-client", edge.dir.path());
        let median = play_and_measure(&a, &b, "snapserver's client");
        // snapserver 0.26 also reads CLOCK_MONOTONIC.
        assert_offset_error_small(&edge);
        drop(server);
        writer.stop();
        (vec![median], edge.log())
    });
    assert!(offsets[0].abs() <= 1.0, "{:.3} ms\n{edge_log}", offsets[0]);
}

/// The upstream switches the edge to a stream of another codec: the new CodecHeader passes
/// through the edge live, and the edge's client (still connected) plays the new stream.
#[test]
fn a_codec_change_upstream_reaches_the_edge_clients_live() {
    let dir = tempfile::tempdir().unwrap();
    let core = Relay::start_in(
        dir,
        &[
            "--source",
            "tone:///?name=A&freq=440&codec=pcm",
            "--source",
            "tone:///?name=B&freq=880&codec=flac",
        ],
    );
    // The edge's own default format differs: it shows the upstream's, from its codec header.
    let edge = edge_named(
        "Edge",
        core.port(),
        Some(core.jsonrpc_addr().port()),
        &["--sampleformat", "44100:24:2"],
    );
    let client = Snapclient::start(edge.port(), "edge-client", edge.dir.path());
    common::eventually(
        Duration::from_secs(20),
        "the edge client hearing A",
        || client.log(),
        || common::recent_frequency(&client).filter(|f| (f - 440.0).abs() < 5.0),
    );
    // On the core, move the edge's group to B (flac).
    let (group, _) = edge_on(&core).expect("the edge is a client of the core");
    let reply = jsonrpc_call(
        core.jsonrpc_addr(),
        "Group.SetStream",
        json!({"id": group, "stream_id": "B"}),
    );
    assert_eq!(reply["result"]["stream_id"], "B", "{reply}");
    common::eventually(
        Duration::from_secs(20),
        "the edge client hearing B",
        || client.log(),
        || common::recent_frequency(&client).filter(|f| (f - 880.0).abs() < 5.0),
    );
    // The edge reports the codec it now relays.
    let streams: Value =
        serde_json::from_str(&common::snapctl(&edge, &["--json", "streams"])).unwrap();
    let shown = streams
        .as_array()
        .or_else(|| streams["streams"].as_array())
        .and_then(|list| list.iter().find(|s| s["name"] == "Edge"))
        .map(|s| (s["codec"].clone(), s["sample_format"].clone()));
    assert_eq!(
        shown,
        Some((json!("flac"), json!("48000:16:2"))),
        "{streams}"
    );
}

/// A named network namespace with loopback up; deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Self {
        ip(&["netns", "add", &name]);
        let ns = Self(name);
        ip(&["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The command prefix that runs a program inside it.
    fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.0]
    }

    /// A veth link from this process's namespace (`host_ip`/24 on `host_if`) to this one
    /// (`ns_ip`/24); removed with the namespace.
    fn link(&self, host_if: &str, host_ip: &str, ns_ip: &str) {
        let peer = format!("{host_if}p");
        ip(&[
            "link", "add", host_if, "type", "veth", "peer", "name", &peer, "netns", &self.0,
        ]);
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", host_if]);
        ip(&["link", "set", host_if, "up"]);
        ip(&[
            "netns",
            "exec",
            &self.0,
            "ip",
            "addr",
            "add",
            &format!("{ns_ip}/24"),
            "dev",
            &peer,
        ]);
        ip(&["netns", "exec", &self.0, "ip", "link", "set", &peer, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth ends, and with them the host's.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("run ip (iproute2)");
    assert!(status.success(), "ip {args:?} failed");
}

/// The same two hops as above, but every relay and its client in a network namespace of its
/// own (a host each), linked to this process's namespace by veth pairs, where the delaying
/// proxies sit between them.
#[test]
fn two_hops_across_network_namespaces_play_in_sync() {
    let _measuring = measuring();
    assert_two_hops_in_sync(two_hops_in_namespaces_session);
}

/// The hosts of the test above, set up, played and measured: the edges' clients' offsets
/// from the core's, and the edges' logs.
fn two_hops_in_namespaces_session() -> (Vec<f64>, String) {
    // Names and subnets of their own per session: a session measured once more must not meet
    // the last one's veth ends, which the kernel may still be removing.
    static SESSIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let session = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = (std::process::id() % 1_000) * 10 + session % 10;
    let net = 100 + (std::process::id() + session * 37) % 100;
    let core_ns = Netns::new(format!("srcore{tag}"));
    let edge1_ns = Netns::new(format!("sredge1{tag}"));
    let edge2_ns = Netns::new(format!("sredge2{tag}"));
    core_ns.link(
        &format!("src{tag}"),
        &format!("10.{net}.1.1"),
        &format!("10.{net}.1.2"),
    );
    edge1_ns.link(
        &format!("sre{tag}"),
        &format!("10.{net}.2.1"),
        &format!("10.{net}.2.2"),
    );
    edge2_ns.link(
        &format!("srf{tag}"),
        &format!("10.{net}.3.1"),
        &format!("10.{net}.3.2"),
    );
    let host_ip =
        |subnet: u32| -> std::net::IpAddr { format!("10.{net}.{subnet}.1").parse().unwrap() };
    let ns_addr = |subnet: u32, port: u16| -> std::net::SocketAddr {
        format!("10.{net}.{subnet}.2:{port}").parse().unwrap()
    };

    let dir = tempfile::tempdir().unwrap();
    let fifo = common::source_fifo(dir.path(), "music");
    let source = format!("pipe://{}?name=music&codec=flac", fifo.display());
    let core = Relay::start_wrapped(
        &core_ns.exec(),
        dir,
        &["--source", &source, "--bind", "0.0.0.0"],
        &[],
    );
    let writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    let (delay, jitter) = (Duration::from_millis(5), Duration::from_millis(1));
    let hop1 = DelayProxy::start_on(host_ip(2), ns_addr(1, core.port()), delay, jitter);
    let upstream1 = format!("snapcast://{}:{}?name=Edge1", host_ip(2), hop1.port());
    let edge1 = Relay::start_wrapped(
        &edge1_ns.exec(),
        tempfile::tempdir().unwrap(),
        &["--source", &upstream1, "--bind", "0.0.0.0"],
        &[],
    );
    let hop2 = DelayProxy::start_on(host_ip(3), ns_addr(2, edge1.port()), delay, jitter);
    let upstream2 = format!("snapcast://{}:{}?name=Edge2", host_ip(3), hop2.port());
    let edge2 = Relay::start_wrapped(
        &edge2_ns.exec(),
        tempfile::tempdir().unwrap(),
        &["--source", &upstream2, "--bind", "0.0.0.0"],
        &[],
    );
    // A client on each host, of the relay there.
    let [a, b, c] = [
        (&core_ns, &core, "ns-core"),
        (&edge1_ns, &edge1, "ns-edge1"),
        (&edge2_ns, &edge2, "ns-edge2"),
    ]
    .map(|(ns, relay, name)| {
        Snapclient::start_wrapped(&ns.exec(), relay.port(), name, relay.dir.path(), &[])
    });
    std::thread::sleep(Duration::from_secs(10));
    for client in [&a, &b, &c] {
        assert_hears_the_signal(client);
    }
    let (one_hop, _) = sync_offset_ms(&a, &b);
    let (two_hops, _) = sync_offset_ms(&a, &c);
    eprintln!("namespaces: core ahead of edge1 by {one_hop:.3} ms, of edge2 by {two_hops:.3} ms");
    writer.stop();
    let logs = format!("edge1:\n{}\nedge2:\n{}", edge1.log(), edge2.log());
    // The namespaces go after everything running in them.
    drop((a, b, c, edge2, edge1, core));
    (vec![one_hop, two_hops], logs)
}
