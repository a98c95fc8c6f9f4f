//! The protocol-level client: what it tallies, the Hello it sends, and the task that times
//! its Time requests and reads and checks every chunk the server sends it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use snaprelay::protocol::{Header, Message, Tv, HEADER_SIZE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A chunk arriving with less than this much of the buffer left counts as late.
const LATE_MARGIN_MS: i64 = 100;
const BUFFER_MS: i64 = 1000;

#[derive(Debug, Default)]
pub struct Tally {
    pub chunks: AtomicU64,
    pub bytes: AtomicU64,
    pub late: AtomicU64,
    pub gaps: AtomicU64,
    pub time_replies: AtomicU64,
    pub time_reply_us_total: AtomicU64,
    pub disconnects: AtomicU64,
}

fn hello(id: &str) -> Vec<u8> {
    let json = format!(
        r#"{{"Arch":"x86_64","ClientName":"LoadClient","HostName":"bench","ID":"{id}","Instance":1,"MAC":"00:00:00:00:00:00","OS":"Linux","SnapStreamProtocolVersion":2,"Version":"0.26.0"}}"#
    );
    let mut out = Message::Hello(serde_json::from_str(&json).expect("hello json")).encode(
        2,
        0,
        Tv::default(),
    );
    out.shrink_to_fit();
    out
}

/// Bytes one read may take: a whole batch of chunks (three 20 ms pcm chunks at 48000:16:2
/// are ~11.6 KB) in one system call.
const READ_BUFFER: usize = 16 * 1024;

/// One client: reads and checks every message until `stop`, and sends a Time request every
/// second. One task per client and one read per wake-up (messages are cut out of the read
/// buffer in place), so the tool itself costs as little as it can: it shares the machine's
/// two cores with the server it measures.
pub async fn client(index: usize, server: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    // 127.0.0.x source addresses spread the flows like distinct hosts would.
    let source = IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        (index / 250) as u8,
        (index % 250) as u8 + 2,
    ));
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    let _ = socket.bind(SocketAddr::new(source, 0));
    let Ok(mut stream) = socket.connect(server).await else {
        tally.disconnects.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if stream
        .write_all(&hello(&format!("load-{index}")))
        .await
        .is_err()
    {
        return;
    }
    // Spread the clients' Time requests over the second instead of all at once.
    let offset = Duration::from_micros((index as u64 * 7_919) % 1_000_000);
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + offset, Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut time_id = 10u16;
    let mut time_sent_us = 0i64;
    let mut buf = vec![0u8; READ_BUFFER];
    let mut filled = 0usize;
    let mut last_ts: Option<i64> = None;
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            biased;
            read = stream.read(&mut buf[filled..]) => {
                match read {
                    Ok(n) if n > 0 => filled += n,
                    _ => {
                        tally.disconnects.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                let mut at = 0;
                while filled - at >= HEADER_SIZE {
                    let Ok(header) = Header::decode(&buf[at..at + HEADER_SIZE]) else {
                        return;
                    };
                    let end = at + HEADER_SIZE + header.size as usize;
                    if end > filled {
                        break;
                    }
                    let payload = &buf[at + HEADER_SIZE..end];
                    match header.type_id {
                        2 => tally_chunk(&tally, payload, &mut last_ts),
                        4 => {
                            let now = snaprelay::clock::now_micros();
                            tally.time_replies.fetch_add(1, Ordering::Relaxed);
                            tally
                                .time_reply_us_total
                                .fetch_add((now - time_sent_us).max(0) as u64, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                    at = end;
                }
                buf.copy_within(at..filled, 0);
                filled -= at;
                if filled == buf.len() {
                    // A message larger than the buffer (a big codec header or chunk).
                    buf.resize(buf.len() * 2, 0);
                }
            }
            _ = tick.tick() => {
                time_id = if time_id >= 9999 { 10 } else { time_id + 1 };
                time_sent_us = snaprelay::clock::now_micros();
                let request = Message::Time(snaprelay::protocol::Time {
                    latency: Tv::default(),
                })
                .encode(time_id, 0, snaprelay::clock::now());
                if stream.write_all(&request).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Checks one chunk: late (older than the buffer less a margin on arrival) or after a gap.
fn tally_chunk(tally: &Tally, payload: &[u8], last_ts: &mut Option<i64>) {
    if payload.len() < 12 {
        return;
    }
    let field = |at: usize| {
        i32::from_le_bytes([
            payload[at],
            payload[at + 1],
            payload[at + 2],
            payload[at + 3],
        ])
    };
    let ts = Tv {
        sec: field(0),
        usec: field(4),
    }
    .as_micros();
    let age_ms = (snaprelay::clock::now_micros() - ts) / 1000;
    if age_ms > BUFFER_MS - LATE_MARGIN_MS {
        tally.late.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(last) = *last_ts {
        // Timestamps step by one chunk; a bigger step is a chunk we never got.
        if ts - last > 30_000 {
            tally.gaps.fetch_add(1, Ordering::Relaxed);
        }
    }
    *last_ts = Some(ts);
    tally.chunks.fetch_add(1, Ordering::Relaxed);
    tally
        .bytes
        .fetch_add((HEADER_SIZE + payload.len()) as u64, Ordering::Relaxed);
}
