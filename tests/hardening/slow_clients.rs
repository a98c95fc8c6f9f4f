//! Slow readers: clients that stop reading or read a byte a second are dropped for a send
//! stall, while the others play on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::eventually;
use crate::{
    hello, open_sessions, policy_drops, rss_kib, tone_relay, GoodClient, MAX_LATE, RSS_BOUND_KIB,
};

#[test]
fn clients_that_stop_reading_or_read_a_byte_a_second_are_dropped_others_play_on() {
    let relay = tone_relay(&[]);
    let good = [
        GoodClient::start(relay.addr, "good-1"),
        GoodClient::start(relay.addr, "good-2"),
    ];

    // A small receive buffer so the relay's queue for them fills in seconds, not minutes.
    let offender = |host: &str| {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&relay.addr.into()).expect("connect");
        let mut stream: TcpStream = socket.into();
        stream.write_all(&hello(2, host)).unwrap();
        stream
    };
    let _stopped = offender("stops-reading");
    let mut trickle = offender("reads-a-byte-a-second");
    let trickling = Arc::new(AtomicBool::new(true));
    let keep_trickling = trickling.clone();
    let trickler = std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        // Its kernel buffer still holds kilobytes after the relay hangs up, so at a byte a
        // second it would never see the end itself: it trickles until told to stop.
        while keep_trickling.load(Ordering::Relaxed) && trickle.read(&mut byte).is_ok() {
            std::thread::sleep(Duration::from_secs(1));
        }
    });

    // Send timeout is max(buffer, 2 s); the queue must fill first.
    eventually(
        Duration::from_secs(30),
        "both slow readers dropped for a send stall",
        || relay.log(),
        || (policy_drops(&relay, "send_stall") >= 2).then_some(()),
    );
    trickling.store(false, Ordering::Relaxed);
    trickler.join().unwrap();
    assert_eq!(open_sessions(&relay), 2, "only the good clients remain");
    let rss = rss_kib(relay.pid());
    assert!(rss < RSS_BOUND_KIB, "relay RSS {rss} KiB");
    for (i, client) in good.into_iter().enumerate() {
        client.finish(&format!("good client {i}"), MAX_LATE);
    }
}

/// A client that stops reading for less than its buffer (a Wi-Fi stall, a busy device) gets
/// every chunk when it reads again: what its socket could not take waits in the relay (a few
/// chunks in its session's queue, the rest in the stream's ring) and goes out at once.
#[test]
fn a_client_that_stops_reading_for_700ms_catches_up_with_every_chunk() {
    let relay = tone_relay(&[]);
    // A small receive buffer, so the kernel holds little of the backlog: the relay must.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&relay.addr.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&hello(2, "stalls-700ms")).unwrap();

    let mut timestamps = Vec::new();
    let read_chunks = |stream: &mut TcpStream, count: usize, timestamps: &mut Vec<i64>| {
        let until = timestamps.len() + count;
        while timestamps.len() < until {
            match crate::read_message(stream) {
                Ok((_, snaprelay::protocol::Message::WireChunk(chunk))) => {
                    timestamps.push(chunk.timestamp.as_micros());
                }
                Ok(_) => {}
                Err(err) => panic!("after {} chunks: {err}\n{}", timestamps.len(), relay.log()),
            }
        }
    };
    read_chunks(&mut stream, 50, &mut timestamps);
    // 35 chunks' worth of silence from this client; its send timeout is 2 s.
    std::thread::sleep(Duration::from_millis(700));
    read_chunks(&mut stream, 100, &mut timestamps);

    for pair in timestamps.windows(2) {
        let step = pair[1] - pair[0];
        assert!(
            (crate::CHUNK_US - 1_000..=crate::CHUNK_US + 1_000).contains(&step),
            "gap in the chunk timestamps: {step} µs after {} µs",
            pair[0]
        );
    }
    let metrics = crate::metrics(&relay);
    for counter in [
        "snaprelay_late_chunks_total",
        "snaprelay_dropped_chunks_total",
    ] {
        assert_eq!(metrics.get(counter).copied(), Some(0.0), "{counter}");
    }
    assert_eq!(policy_drops(&relay, "send_stall"), 0);
    assert_eq!(open_sessions(&relay), 1, "the client is still connected");
}
