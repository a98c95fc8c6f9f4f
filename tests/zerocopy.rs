//! The zerocopy send path end to end, with scripted protocol-level clients: it stays correct
//! on IPv4 and IPv6, and a zerocopy session does not spin (docs/ZEROCOPY.md, "The tokio trap").

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Relay;
use snaprelay::protocol::{Header, Message, HEADER_SIZE};

fn hello(host_id: &str) -> Vec<u8> {
    let json = format!(r#"{{"ID":"{host_id}","Instance":1,"Version":"0.26.0"}}"#);
    let mut out = Vec::new();
    out.extend_from_slice(&5u16.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&[0; 18]);
    out.extend_from_slice(&(4 + json.len() as u32).to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

fn read_message(stream: &mut TcpStream) -> Message {
    let mut head = [0u8; HEADER_SIZE];
    stream.read_exact(&mut head).expect("header");
    let header = Header::decode(&head).expect("valid header");
    let mut payload = vec![0u8; header.size as usize];
    stream.read_exact(&mut payload).expect("payload");
    Message::decode(&header, &payload).expect("valid message")
}

/// CPU ticks (user + system) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clients that read everything until stopped.
struct Listeners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Listeners {
    fn start(relay: &Relay, count: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..count)
            .map(|i| {
                let mut stream = TcpStream::connect(relay.addr).unwrap();
                stream.write_all(&hello(&format!("load-{i}"))).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut total = 0u64;
                    let mut buf = vec![0u8; 1 << 16];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(n) = stream.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            total += n as u64;
                        }
                    }
                    total
                })
            })
            .collect();
        Self { stop, threads }
    }

    fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect()
    }
}

/// Server CPU ticks over a 3 s window with `clients` readers and one client that never reads.
fn server_cpu(relay_args: &[&str], clients: usize) -> (u64, String) {
    let mut args = vec!["--source", "tone:///?name=t&freq=440&codec=pcm"];
    args.extend_from_slice(relay_args);
    let relay = Relay::start(&args);
    let listeners = Listeners::start(&relay, clients);
    let mut stalled = TcpStream::connect(relay.addr).unwrap();
    stalled.write_all(&hello("stalled")).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let before = cpu_ticks(relay.pid());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(relay.pid()) - before;
    let received = listeners.stop();
    assert!(
        received.iter().all(|&bytes| bytes > 100_000),
        "a client starved: {received:?}"
    );
    (used, relay.log())
}

#[test]
fn a_zerocopy_session_does_not_spin() {
    let (regular, _) = server_cpu(&[], 8);
    let (zerocopy, log) = server_cpu(&["-z", "--stream.zerocopy_auto_fallback=false"], 8);
    eprintln!("server CPU ticks over 3 s: regular {regular}, zerocopy {zerocopy}");
    assert!(log.contains("Creating zerocopy-enabled session"), "{log}");
    // A spinning session burns a whole core: ~300 ticks in 3 s. Zerocopy on loopback costs
    // more than plain sends (the kernel copies anyway), but nowhere near that.
    assert!(
        zerocopy <= regular * 3 + 30,
        "zerocopy server used {zerocopy} ticks vs {regular} regular: spinning?"
    );
}

#[test]
fn zerocopy_works_over_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        panic!("this machine has no IPv6 loopback; the IPv6 zerocopy path cannot be tested");
    }
    let relay = Relay::start(&[
        "--source",
        "tone:///?name=t&freq=440&codec=pcm",
        "--bind",
        "::1",
        "-z",
        "--stream.zerocopy_auto_fallback=false",
    ]);
    assert!(relay.addr.is_ipv6());
    let mut client = TcpStream::connect(relay.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(&hello("v6")).unwrap();
    assert!(matches!(
        read_message(&mut client),
        Message::ServerSettings(_)
    ));
    assert!(matches!(read_message(&mut client), Message::CodecHeader(_)));
    let mut last = None;
    for _ in 0..50 {
        let Message::WireChunk(chunk) = read_message(&mut client) else {
            panic!("expected audio")
        };
        let ts = chunk.timestamp.as_micros();
        if let Some(last) = last {
            assert_eq!(ts - last, 20_000);
        }
        last = Some(ts);
    }
    relay.wait_for_log(
        &["Creating zerocopy-enabled session for ::1"],
        Duration::from_secs(2),
    );
}

#[test]
fn auto_fallback_is_logged_and_audio_keeps_flowing() {
    let relay = Relay::start(&["--source", "tone:///?name=t&freq=440&codec=pcm", "-z"]);
    let mut client = TcpStream::connect(relay.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(&hello("fallback")).unwrap();
    let _ = read_message(&mut client);
    let _ = read_message(&mut client);
    for _ in 0..30 {
        assert!(matches!(read_message(&mut client), Message::WireChunk(_)));
    }
    relay.wait_for_log(
        &[
            "kernel copied zerocopy sends",
            "falls back to regular sends",
        ],
        Duration::from_secs(2),
    );
}

#[test]
fn a_threshold_above_the_chunk_size_sends_everything_the_ordinary_way() {
    let relay = Relay::start(&[
        "--source",
        "tone:///?name=t&freq=440&codec=pcm",
        "-z",
        "--stream.zerocopy_auto_fallback=false",
        "--stream.zerocopy_threshold=100000",
        "--server.diagnostics_interval_s=1",
    ]);
    let mut client = TcpStream::connect(relay.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(&hello("small")).unwrap();
    for _ in 0..80 {
        let _ = read_message(&mut client);
    }
    let line = relay.wait_for_log(
        &["mode=zerocopy ", "regular_sends="],
        Duration::from_secs(3),
    );
    assert!(line.contains("attempts=0 "), "{line}");
    assert!(!line.contains("regular_sends=0 "), "{line}");
}
