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

/// One client: reads and checks every message until `stop`.
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
    let Ok(stream) = socket.connect(server).await else {
        tally.disconnects.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (mut reader, mut writer) = stream.into_split();
    if writer
        .write_all(&hello(&format!("load-{index}")))
        .await
        .is_err()
    {
        return;
    }
    let pending_time = Arc::new(AtomicU64::new(0));
    let timer_pending = pending_time.clone();
    let timer_stop = stop.clone();
    let time_task = tokio::spawn(async move {
        let mut id = 10u16;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !timer_stop.load(Ordering::Relaxed) {
            tick.tick().await;
            id = if id >= 9999 { 10 } else { id + 1 };
            timer_pending.store(snaprelay::clock::now_micros() as u64, Ordering::Relaxed);
            let request = Message::Time(snaprelay::protocol::Time {
                latency: Tv::default(),
            })
            .encode(id, 0, snaprelay::clock::now());
            if writer.write_all(&request).await.is_err() {
                return;
            }
        }
    });
    let mut head = [0u8; HEADER_SIZE];
    let mut payload = Vec::with_capacity(8192);
    let mut last_ts: Option<i64> = None;
    while !stop.load(Ordering::Relaxed) {
        if reader.read_exact(&mut head).await.is_err() {
            tally.disconnects.fetch_add(1, Ordering::Relaxed);
            break;
        }
        let Ok(header) = Header::decode(&head) else {
            break;
        };
        payload.resize(header.size as usize, 0);
        if reader.read_exact(&mut payload).await.is_err() {
            tally.disconnects.fetch_add(1, Ordering::Relaxed);
            break;
        }
        match header.type_id {
            2 if payload.len() >= 12 => {
                let ts = Tv {
                    sec: i32::from_le_bytes(payload[0..4].try_into().expect("4 bytes")),
                    usec: i32::from_le_bytes(payload[4..8].try_into().expect("4 bytes")),
                }
                .as_micros();
                let age_ms = (snaprelay::clock::now_micros() - ts) / 1000;
                if age_ms > BUFFER_MS - LATE_MARGIN_MS {
                    tally.late.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(last) = last_ts {
                    // Timestamps step by one chunk; a bigger step is a chunk we never got.
                    if ts - last > 30_000 {
                        tally.gaps.fetch_add(1, Ordering::Relaxed);
                    }
                }
                last_ts = Some(ts);
                tally.chunks.fetch_add(1, Ordering::Relaxed);
                tally
                    .bytes
                    .fetch_add((HEADER_SIZE + payload.len()) as u64, Ordering::Relaxed);
            }
            4 => {
                let sent = pending_time.load(Ordering::Relaxed);
                let now = snaprelay::clock::now_micros() as u64;
                tally.time_replies.fetch_add(1, Ordering::Relaxed);
                tally
                    .time_reply_us_total
                    .fetch_add(now.saturating_sub(sent), Ordering::Relaxed);
            }
            _ => {}
        }
    }
    time_task.abort();
}
