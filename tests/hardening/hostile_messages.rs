//! Hostile message streams: a Time request flood, and garbage, unknown or oversized messages,
//! each dropped by policy and counted while the others play on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::eventually;
use crate::{
    header, hello, json_message, policy_drops, rss_kib, time_request, tone_relay, GoodClient,
    MAX_LATE, RSS_BOUND_KIB,
};

#[test]
fn a_time_request_flood_is_dropped_others_play_on() {
    let relay = tone_relay(&[]);
    let good = GoodClient::start(relay.addr, "good");
    eventually(
        Duration::from_secs(5),
        "the good client playing",
        || relay.log(),
        || (good.chunks() > 10).then_some(()),
    );

    let mut flood = TcpStream::connect(relay.addr).unwrap();
    flood.write_all(&hello(2, "flooder")).unwrap();
    let mut reader = flood.try_clone().unwrap();
    // Read (and discard) what the relay sends, so this is a pure rate flood, not a stall.
    let drain = std::thread::spawn(move || {
        let mut sink = [0u8; 65536];
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
    });
    let started = Instant::now();
    let mut sent = 0u32;
    let mut burst = Vec::new();
    for id in 0..100u16 {
        burst.extend_from_slice(&time_request(id + 1));
    }
    // 100 requests per write, as fast as the socket takes them, until the relay hangs up.
    while started.elapsed() < Duration::from_secs(10) {
        if flood.write_all(&burst).is_err() {
            break;
        }
        sent += 100;
    }
    drain.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the flood ({sent} requests) was never cut off"
    );
    assert_eq!(policy_drops(&relay, "time_flood"), 1);
    relay.wait_for_log(
        &["session closed", "time request flood"],
        Duration::from_secs(5),
    );
    let rss = rss_kib(relay.pid());
    assert!(rss < RSS_BOUND_KIB, "relay RSS {rss} KiB");
    good.finish("good client", MAX_LATE);
}

#[test]
fn garbage_and_oversized_messages_are_dropped_and_counted() {
    let relay = tone_relay(&[]);
    let good = GoodClient::start(relay.addr, "good");
    let cases: [Vec<u8>; 3] = [
        header(5, 2, 0, 2_000_000),      // oversized (§1.3)
        header(42, 2, 0, 0),             // unknown type
        json_message(5, 2, r#"{"ID":"#), // Hello with broken JSON
    ];
    for bytes in &cases {
        let mut s = TcpStream::connect(relay.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bytes).unwrap();
        let mut buf = [0u8; 64];
        // Closed without a reply: EOF or a reset.
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    }
    eventually(
        Duration::from_secs(5),
        "3 bad messages counted",
        || relay.log(),
        || (policy_drops(&relay, "bad_message") == 3).then_some(()),
    );
    good.finish("good client", MAX_LATE);
}
