//! Hardening (issue 10): hostile and slow clients, connection churn with zerocopy, and faults
//! in sources and the data dir. Each test runs the built relay and drives it with scripted
//! protocol-level clients whose bytes are written from docs/PROTOCOL.md §1, not with our
//! encoder. What is tried and what held is summarised in docs/HARDENING.md.
//!
//! Every offender is checked three ways: the others keep receiving every chunk on time, the
//! relay's memory stays bounded, and the offender is dropped by policy and counted in
//! `/metrics` (`snaprelay_policy_drops_total`).
//!
//! This file holds what the tests share: the protocol bytes the scripted clients send, what
//! the relay reports (`/metrics`, `/proc`), and the well-behaved client that checks it gets
//! every chunk on time. The tests themselves live in one module per concern.

#[path = "../common/mod.rs"]
mod common;

mod churn;
mod connections;
mod disk;
mod fifo;
mod hostile_messages;
mod processes;
mod slow_clients;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{eventually, Relay};
use snaprelay::protocol::{Header, Message, HEADER_SIZE};

/// The tone source's chunk length (the relay's default `chunk_ms`).
const CHUNK_US: i64 = 20_000;

// ---- protocol bytes, from docs/PROTOCOL.md §1.2–1.5 ----

fn header(type_id: u16, id: u16, sent_sec: i32, size: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_SIZE + size as usize);
    out.extend_from_slice(&type_id.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // refersTo
    out.extend_from_slice(&sent_sec.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // received: set by the receiver
    out.extend_from_slice(&size.to_le_bytes());
    out
}

fn json_message(type_id: u16, id: u16, json: &str) -> Vec<u8> {
    let mut out = header(type_id, id, 0, 4 + json.len() as u32);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

fn hello(id: u16, host_id: &str) -> Vec<u8> {
    json_message(
        5,
        id,
        &format!(
            r#"{{"Arch":"x86_64","ClientName":"Snapclient","HostName":"hardening","ID":"{host_id}","Instance":1,"MAC":"00:11:22:33:44:55","OS":"Linux","SnapStreamProtocolVersion":2,"Version":"0.26.0"}}"#
        ),
    )
}

fn time_request(id: u16) -> Vec<u8> {
    let mut out = header(4, id, 1, 8);
    out.extend_from_slice(&[0; 8]);
    out
}

fn client_info(volume: u16) -> Vec<u8> {
    json_message(7, 0, &format!(r#"{{"volume":{volume},"muted":false}}"#))
}

fn read_message(stream: &mut TcpStream) -> std::io::Result<(Header, Message)> {
    let mut head = [0u8; HEADER_SIZE];
    stream.read_exact(&mut head)?;
    let header = Header::decode(&head).map_err(std::io::Error::other)?;
    let mut payload = vec![0u8; header.size as usize];
    stream.read_exact(&mut payload)?;
    let message = Message::decode(&header, &payload).map_err(std::io::Error::other)?;
    Ok((header, message))
}

fn tone_relay(extra: &[&str]) -> Relay {
    let mut args = vec!["--source", "tone:///?name=test&freq=440&codec=pcm"];
    args.extend_from_slice(extra);
    Relay::start(&args)
}

// ---- what the relay reports ----

/// `GET /metrics`, parsed into `name{labels}` → value.
fn metrics(relay: &Relay) -> HashMap<String, f64> {
    let mut stream = TcpStream::connect(relay.http_addr()).expect("connect to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read /metrics");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn policy_drops(relay: &Relay, reason: &str) -> u64 {
    let key = format!("snaprelay_policy_drops_total{{reason=\"{reason}\"}}");
    metrics(relay).get(&key).copied().unwrap_or(0.0) as u64
}

fn open_sessions(relay: &Relay) -> u64 {
    let m = metrics(relay);
    ["zerocopy", "regular"]
        .iter()
        .map(|mode| {
            m.get(&format!("snaprelay_sessions{{mode=\"{mode}\"}}"))
                .copied()
                .unwrap_or(0.0) as u64
        })
        .sum()
}

/// Resident memory of a process, KiB (VmRSS in /proc/<pid>/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd dir")
        .count()
}

/// Raises this process's soft fd limit to its hard limit, for tests that open thousands of
/// sockets; the relay, a child, inherits it.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

// ---- a well-behaved client that checks it gets every chunk on time ----

/// What a good client saw: chunk timestamps (server clock, µs) with the local arrival time.
#[derive(Default)]
struct Reception {
    chunks: Vec<(i64, Instant)>,
    error: Option<String>,
}

/// A protocol-level client that says Hello, answers nothing, sends a Time request a second
/// as snapclient does, and records every chunk, until stopped.
struct GoodClient {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Reception>>,
    thread: Option<JoinHandle<()>>,
}

impl GoodClient {
    fn start(addr: SocketAddr, host_id: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Reception::default()));
        let mut stream = TcpStream::connect(addr).expect("good client connects");
        stream.write_all(&hello(2, host_id)).unwrap();
        // Time requests from their own thread: the reader blocks on whole messages (a read
        // timeout in the middle of one would lose its start).
        let mut writer = stream.try_clone().unwrap();
        let stop_writer = stop.clone();
        std::thread::spawn(move || {
            let mut id = 3u16;
            while !stop_writer.load(Ordering::Relaxed) {
                if writer.write_all(&time_request(id)).is_err() {
                    return;
                }
                id = id % 9000 + 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match read_message(&mut stream) {
                    Ok((_, Message::WireChunk(chunk))) => seen2
                        .lock()
                        .unwrap()
                        .chunks
                        .push((chunk.timestamp.as_micros(), Instant::now())),
                    Ok(_) => {}
                    Err(_) if stop2.load(Ordering::Relaxed) => return,
                    Err(err) => {
                        seen2.lock().unwrap().error = Some(err.to_string());
                        return;
                    }
                }
            }
        });
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn chunks(&self) -> usize {
        self.seen.lock().unwrap().chunks.len()
    }

    /// Stops the client and asserts it got every chunk of the stream, in order, none late:
    /// consecutive timestamps one chunk apart, and no chunk arriving more than `max_late`
    /// later (relative to its timestamp) than the earliest one did.
    fn finish(mut self, what: &str, max_late: Duration) -> usize {
        // At least two seconds of audio, so an offender's effect has had time to show.
        eventually(
            Duration::from_secs(10),
            &format!("{what}: 100 chunks"),
            || format!("{} chunks", self.chunks()),
            || (self.chunks() >= 100).then_some(()),
        );
        self.stop.store(true, Ordering::Relaxed);
        // The relay keeps sending, so the blocked reader wakes within one chunk and sees stop.
        self.thread.take().unwrap().join().unwrap();
        let seen = self.seen.lock().unwrap();
        assert!(
            seen.error.is_none(),
            "{what}: connection failed: {:?}",
            seen.error
        );
        let chunks = &seen.chunks;
        assert!(chunks.len() > 50, "{what}: only {} chunks", chunks.len());
        for pair in chunks.windows(2) {
            let step = pair[1].0 - pair[0].0;
            assert!(
                (CHUNK_US - 1_000..=CHUNK_US + 1_000).contains(&step),
                "{what}: gap in the chunk timestamps: {} µs after {} µs",
                step,
                pair[0].0
            );
        }
        let (first_ts, first_at) = chunks[0];
        let lateness = chunks.iter().map(|&(ts, at)| {
            // Arrival time minus what it would have been at the first chunk's pace.
            let since = at.duration_since(first_at).as_micros() as i64;
            since - (ts - first_ts)
        });
        let earliest = lateness.clone().min().unwrap();
        let worst = lateness.max().unwrap() - earliest;
        assert!(
            worst < max_late.as_micros() as i64,
            "{what}: a chunk arrived {worst} µs later than its pace"
        );
        chunks.len()
    }
}

impl Drop for GoodClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A generous bound on the relay's memory: tone streams and a few sessions need tens of MiB.
const RSS_BOUND_KIB: u64 = 256 * 1024;

/// Chunks may wait up to this long behind others' trouble and still play: well inside the
/// default 1000 ms buffer.
const MAX_LATE: Duration = Duration::from_millis(400);
