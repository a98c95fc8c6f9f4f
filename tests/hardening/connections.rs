//! Connections that hog slots: ones that never say Hello, and thousands at once against the
//! client cap.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::eventually;
use crate::{
    open_sessions, policy_drops, raise_fd_limit, rss_kib, tone_relay, GoodClient, MAX_LATE,
};

#[test]
fn connections_that_never_say_hello_are_dropped_after_the_hello_timeout() {
    let relay = tone_relay(&["--server.hello_timeout_ms=500"]);
    let good = GoodClient::start(relay.addr, "good");
    let silent: Vec<TcpStream> = (0..50)
        .map(|_| {
            let s = TcpStream::connect(relay.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    for mut s in silent {
        // The relay sends nothing before Hello (docs/PROTOCOL.md §2.1), then closes: EOF or a
        // reset.
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("{n} bytes sent to a client that never said Hello"),
            Err(err) => assert!(
                matches!(err.kind(), ErrorKind::ConnectionReset),
                "unexpected error {err}"
            ),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    eventually(
        Duration::from_secs(5),
        "50 handshake timeouts counted",
        || format!("{:?}", policy_drops(&relay, "handshake_timeout")),
        || (policy_drops(&relay, "handshake_timeout") == 50).then_some(()),
    );
    good.finish("good client", MAX_LATE);
}

#[test]
fn thousands_of_connections_at_once_are_capped_others_play_on() {
    const CONNECTIONS: usize = 2500;
    const CAP: usize = 500;
    let limit = raise_fd_limit();
    assert!(
        limit as usize > CONNECTIONS * 2 + 200,
        "fd limit {limit} too low for {CONNECTIONS} loopback connections"
    );
    let relay = tone_relay(&[
        &format!("--server.max_clients={CAP}"),
        "--server.hello_timeout_ms=3000",
    ]);
    let good = [
        GoodClient::start(relay.addr, "good-1"),
        GoodClient::start(relay.addr, "good-2"),
    ];
    let rss_before = rss_kib(relay.pid());
    let mut held = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        match TcpStream::connect(relay.addr) {
            Ok(s) => held.push(s),
            // A full accept backlog may refuse some; that is the kernel's cap, also fine.
            Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}"),
        }
    }
    let connected = held.len();
    eventually(
        Duration::from_secs(20),
        "every connection beyond the cap refused",
        || {
            relay
                .log()
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        },
        || {
            let refused = policy_drops(&relay, "connection_limit") as usize;
            (refused >= connected - (CAP - 2)).then_some(())
        },
    );
    assert!(open_sessions(&relay) <= CAP as u64);
    let rss = rss_kib(relay.pid());
    assert!(
        rss < rss_before + 128 * 1024,
        "RSS grew from {rss_before} to {rss} KiB"
    );
    drop(held);
    // The held sessions never said Hello: the hello timeout frees their slots.
    eventually(
        Duration::from_secs(20),
        "only the good clients left",
        || format!("{} sessions", open_sessions(&relay)),
        || (open_sessions(&relay) == 2).then_some(()),
    );
    for (i, client) in good.into_iter().enumerate() {
        client.finish(&format!("good client {i}"), MAX_LATE);
    }
}
