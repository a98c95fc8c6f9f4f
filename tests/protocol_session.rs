//! The session rules of docs/PROTOCOL.md §2 and §5, checked at the byte level with a
//! scripted client. Requests are written from that document by hand, not with our encoder.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Relay;
use snaprelay::protocol::{Header, Message, HEADER_SIZE};

fn header(type_id: u16, id: u16, sent_sec: i32, sent_usec: i32, size: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&type_id.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&sent_sec.to_le_bytes());
    out.extend_from_slice(&sent_usec.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&size.to_le_bytes());
    out
}

fn hello(id: u16, host_id: &str) -> Vec<u8> {
    let json = format!(
        r#"{{"Arch":"x86_64","ClientName":"Snapclient","HostName":"test","ID":"{host_id}","Instance":1,"MAC":"00:11:22:33:44:55","OS":"Linux","SnapStreamProtocolVersion":2,"Version":"0.26.0"}}"#
    );
    let mut out = header(5, id, 0, 0, 4 + json.len() as u32);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

fn time_request(id: u16, sent_sec: i32) -> Vec<u8> {
    let mut out = header(4, id, sent_sec, 0, 8);
    out.extend_from_slice(&[0; 8]);
    out
}

fn read_message(stream: &mut TcpStream) -> (Header, Message) {
    let mut head = [0u8; HEADER_SIZE];
    stream.read_exact(&mut head).expect("a message header");
    let header = Header::decode(&head).expect("a valid header");
    let mut payload = vec![0u8; header.size as usize];
    stream.read_exact(&mut payload).expect("the payload");
    let message = Message::decode(&header, &payload).expect("a valid message");
    (header, message)
}

fn connect(relay: &Relay) -> TcpStream {
    let stream = TcpStream::connect(relay.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

fn tone_relay(extra: &[&str]) -> Relay {
    let mut args = vec!["--source", "tone:///?name=test&freq=440&codec=pcm"];
    args.extend_from_slice(extra);
    Relay::start(&args)
}

#[test]
fn time_before_hello_then_settings_header_and_chunks_in_order() {
    let relay = tone_relay(&[]);
    let mut client = connect(&relay);

    // 0.26 clients send Time in parallel with Hello: it must be answered before Hello.
    client.write_all(&time_request(2, 7)).unwrap();
    let (reply_header, reply) = read_message(&mut client);
    assert_eq!(reply_header.refers_to, 2);
    let Message::Time(time) = reply else {
        panic!("expected a Time reply, got {reply:?}")
    };
    // latency = server receive time - 7 s: the server clock (seconds since boot) is larger.
    assert!(reply_header.sent.sec > 0 && time.latency.sec >= 0);

    client.write_all(&hello(3, "proto-client")).unwrap();
    let (h, settings) = read_message(&mut client);
    assert_eq!(h.refers_to, 3, "ServerSettings must answer the Hello");
    let Message::ServerSettings(settings) = settings else {
        panic!("first reply to Hello must be ServerSettings, got {settings:?}")
    };
    assert_eq!(settings.buffer_ms, 1000);
    assert_eq!(settings.volume, 100);

    let (h, codec) = read_message(&mut client);
    assert_eq!(h.refers_to, 0);
    let Message::CodecHeader(codec) = codec else {
        panic!("second message must be the CodecHeader, got {codec:?}")
    };
    assert_eq!(codec.codec, "pcm");
    assert_eq!(codec.header.len(), 44);
    assert_eq!(&codec.header[0..4], b"RIFF");

    let mut last_ts = None;
    for _ in 0..10 {
        let (h, chunk) = read_message(&mut client);
        assert_eq!(h.refers_to, 0);
        let Message::WireChunk(chunk) = chunk else {
            panic!("expected audio, got {chunk:?}")
        };
        assert_eq!(chunk.data.len(), 960 * 4);
        let ts = chunk.timestamp.as_micros();
        if let Some(last) = last_ts {
            assert_eq!(ts - last, 20_000, "chunks must be contiguous");
        }
        last_ts = Some(ts);
    }
    // Chunk timestamps and Time replies use the same clock: a chunk is stamped about one
    // chunk before it is sent.
    let now = snaprelay::clock::now_micros();
    let age = now - last_ts.unwrap();
    assert!((0..1_000_000).contains(&age), "chunk age {age} µs");
}

#[test]
fn time_replies_are_not_queued_behind_audio() {
    let relay = tone_relay(&[]);
    let mut client = connect(&relay);
    client.write_all(&hello(2, "timing")).unwrap();
    let mut replies = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut id = 10;
    while replies < 20 && Instant::now() < deadline {
        let sent_at = Instant::now();
        client.write_all(&time_request(id, 1)).unwrap();
        loop {
            let (h, message) = read_message(&mut client);
            if let Message::Time(_) = message {
                assert_eq!(h.refers_to, id);
                // Generous bound: a reply must not wait for a backlog of audio.
                assert!(sent_at.elapsed() < Duration::from_millis(500));
                break;
            }
        }
        replies += 1;
        id += 1;
    }
    assert_eq!(replies, 20);
}

#[test]
fn a_client_that_never_says_hello_is_dropped() {
    let relay = tone_relay(&["--server.hello_timeout_ms=300"]);
    let mut client = connect(&relay);
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = client.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "no data before Hello, then a close");
    assert!(started.elapsed() < Duration::from_secs(4));
    relay.wait_for_log(&["session closed", "no Hello"], Duration::from_secs(2));
}

#[test]
fn malformed_messages_end_only_that_session_with_a_warning_naming_the_peer() {
    let relay = tone_relay(&[]);
    let mut good = connect(&relay);
    good.write_all(&hello(2, "good")).unwrap();
    let _ = read_message(&mut good);
    let _ = read_message(&mut good);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown message type 42", header(42, 0, 0, 0, 0)),
        ("exceeds the limit", header(5, 2, 0, 0, 2_000_000)),
        ("invalid Hello JSON", {
            let mut m = header(5, 2, 0, 0, 4 + 5);
            m.extend_from_slice(&5u32.to_le_bytes());
            m.extend_from_slice(b"{oops");
            m
        }),
        ("Time payload has 9 bytes", {
            let mut m = header(4, 2, 0, 0, 9);
            m.extend_from_slice(&[0; 9]);
            m
        }),
        ("disconnected mid-message", header(4, 2, 0, 0, 8)),
    ];
    for (expected, bytes) in cases {
        let mut bad = connect(&relay);
        let local = bad.local_addr().unwrap();
        bad.write_all(&bytes).unwrap();
        if expected == "disconnected mid-message" {
            bad.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut sink = [0u8; 256];
        while let Ok(n) = bad.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
        let line = relay.wait_for_log(&["session closed", expected], Duration::from_secs(3));
        assert!(
            line.contains(&local.to_string()),
            "warning does not name the peer {local}: {line}"
        );
    }

    // The well-behaved client kept receiving audio throughout.
    for _ in 0..5 {
        let (_, message) = read_message(&mut good);
        assert!(matches!(message, Message::WireChunk(_)));
    }
}

#[test]
fn client_info_is_recorded_and_does_not_disturb_the_session() {
    let relay = tone_relay(&[]);
    let mut client = connect(&relay);
    client.write_all(&hello(2, "mixer")).unwrap();
    let _ = read_message(&mut client);
    let _ = read_message(&mut client);
    let json = br#"{"muted":true,"volume":42}"#;
    let mut info = header(7, 0, 0, 0, 4 + json.len() as u32);
    info.extend_from_slice(&(json.len() as u32).to_le_bytes());
    info.extend_from_slice(json);
    client.write_all(&info).unwrap();
    relay.wait_for_log(
        &["client mixer changed", "volume=42", "muted=true"],
        Duration::from_secs(3),
    );
    for _ in 0..3 {
        let (_, message) = read_message(&mut client);
        assert!(matches!(message, Message::WireChunk(_)));
    }
}

#[test]
fn a_file_source_is_read_at_real_time_pace_and_loops() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("short.raw");
    // 100 ms of PCM: the file ends and starts over every five chunks.
    std::fs::write(&raw, vec![7u8; 4800 * 4]).unwrap();
    let uri = format!("file://{}?name=file&codec=pcm", raw.display());
    let relay = Relay::start_in(dir, &["--source", &uri]);
    let mut client = connect(&relay);
    client.write_all(&hello(2, "file-listener")).unwrap();
    let _ = read_message(&mut client);
    let _ = read_message(&mut client);
    let started = Instant::now();
    let mut stamps = Vec::new();
    while stamps.len() < 25 {
        let (_, message) = read_message(&mut client);
        let Message::WireChunk(chunk) = message else {
            continue;
        };
        assert!(chunk.data.iter().all(|b| *b == 7), "file content, looped");
        stamps.push(chunk.timestamp.as_micros());
    }
    for pair in stamps.windows(2) {
        assert_eq!(pair[1] - pair[0], 20_000, "contiguous 20 ms chunks");
    }
    // 25 chunks of 20 ms cannot arrive much faster than real time (the first is stamped
    // "now - 20 ms"; batching may hold the last ones back by up to 60 ms more).
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "file read faster than real time: {:?}",
        started.elapsed()
    );
}
