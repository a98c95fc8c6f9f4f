//! An upstream Snapcast server (another snaprelay, or snapserver) as a stream's input:
//! `snapcast://HOST[:PORT]?name=NAME`. The relay connects as a Snapcast client would (Hello
//! with a stable id, so the upstream remembers it; Time requests; ServerSettings, CodecHeader
//! and WireChunks in), keeps the upstream's clock offset with a filtered median of Time round
//! trips, and hands on the encoded chunks unchanged, stamped on our clock. It reconnects with
//! backoff when the upstream ends, drops the connection or goes silent; nothing waits
//! forever.

mod art;
mod codec;
mod control;
mod time_sync;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock;
use crate::plugin::{Request, StreamControl};
use crate::protocol::{CodecHeader, Hello, Message, MessageType, Time, Tv, WireChunk};
use time_sync::{RoundTrip, TimeSync, Translation, SETTLED_SAMPLES};

/// Default stream port of an upstream.
pub(crate) const DEFAULT_PORT: u16 = 1704;
/// Default JSON-RPC port of an upstream.
pub(crate) const DEFAULT_CONTROL_PORT: u16 = 1705;

/// Giving up on a connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An upstream that sends nothing for this long (not even a Time reply) is gone.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect delays: doubling from the first to the last.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Time requests: a quick burst after connecting (the offset settles in a third of a second),
/// then four a second. An edge is one client to its upstream, and its estimate is what every
/// client below it plays by: more round trips than snapclient's one a second are cheap and
/// make it steadier. (Both stay inside an upstream snaprelay's per-client budget.)
const BURST_REQUESTS: u32 = 40;
const BURST_INTERVAL: Duration = Duration::from_millis(10);
const STEADY_INTERVAL: Duration = Duration::from_millis(250);
/// Chunks that arrive before the offset settles wait for it, up to this many (5 s of
/// 20 ms chunks); the upstream sends its whole buffer at once when we connect.
const MAX_WAITING_CHUNKS: usize = 256;

/// Where the upstream is and what to ask of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upstream {
    /// Host name or address.
    pub(crate) host: String,
    /// Its stream port.
    pub(crate) port: u16,
    /// Its JSON-RPC (TCP) port, for choosing the stream and holding the volume.
    pub(crate) control_port: u16,
    /// The upstream stream to play (`stream=`); `None`: whatever it plays to us.
    pub(crate) stream: Option<String>,
}

/// What the upstream connection reports, for gRPC, `snapctl` and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct UpstreamStats {
    /// Connected and through the handshake.
    pub(crate) connected: AtomicBool,
    /// Upstream clock minus ours, µs (the filtered median).
    pub(crate) offset_us: AtomicI64,
    /// How much the offset estimates spread, µs.
    pub(crate) jitter_us: AtomicI64,
    /// Median Time round trip, µs.
    pub(crate) rtt_us: AtomicI64,
    /// The upstream's buffer, ms (its ServerSettings).
    pub(crate) buffer_ms: AtomicI64,
    /// Chunks received.
    pub(crate) chunks: AtomicU64,
    /// Chunks dropped because too many came before the clock offset settled.
    pub(crate) chunks_dropped: AtomicU64,
    /// Chunks that arrived after the moment they were to be played (a partition, a stalled
    /// hop): dropped, never played late.
    pub(crate) chunks_late: AtomicU64,
    /// Connections made after the first.
    pub(crate) reconnects: AtomicU64,
}

/// What the connection hands to the stream.
#[derive(Debug)]
pub(crate) enum Event {
    /// The upstream's codec (again, after a reconnect, or a new one).
    Header(CodecHeader),
    /// One encoded chunk, as the upstream sent it, with its capture time on our clock and
    /// the upstream's buffer (clients of both play it at capture time + that buffer).
    Chunk {
        /// Capture time of its first sample, µs on our clock.
        timestamp_us: i64,
        /// The upstream's buffer, ms.
        upstream_buffer_ms: i64,
        /// The encoded bytes, unchanged.
        data: Bytes,
    },
    /// The connection is gone; chunks stop until it is back.
    Disconnected,
}

/// The client id the relay introduces itself with: stable across restarts, so the upstream
/// keeps its group and settings for us.
pub(crate) fn client_id(stream_name: &str) -> String {
    let host = crate::host::name();
    let host = if host.is_empty() { "relay" } else { &host };
    format!("snaprelay-{host}-{stream_name}")
}

/// What one upstream link works with, across its connections.
pub(crate) struct Link {
    /// Our stream's name.
    pub(crate) name: String,
    pub(crate) upstream: Upstream,
    pub(crate) stats: Arc<UpstreamStats>,
    /// Where chunks and codec headers go.
    pub(crate) events: mpsc::Sender<Event>,
    /// Our stream's control side: it shows the upstream stream's properties, and its
    /// requests (`StreamControl::forward_requests`) are carried out upstream.
    pub(crate) control: Arc<StreamControl>,
    pub(crate) cancel: CancellationToken,
}

/// Keeps a connection to the upstream until `cancel` fires, sending what it gets to
/// `events` and carrying out `requests` there.
pub(crate) async fn run(link: Link, mut requests: mpsc::Receiver<Request>) {
    let (name, upstream, stats, cancel) = (&link.name, &link.upstream, &link.stats, &link.cancel);
    let id = client_id(name);
    let mut backoff = MIN_BACKOFF;
    let mut connections: u64 = 0;
    loop {
        let session = tokio::select! {
            () = cancel.cancelled() => return,
            session = connect(upstream) => session,
        };
        match session {
            Ok(socket) => {
                if connections > 0 {
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                connections += 1;
                info!(stream = %name, host = %upstream.host, port = upstream.port, "connected to the upstream");
                let started = std::time::Instant::now();
                let ended = serve(&link, &id, socket, &mut requests).await;
                stats.connected.store(false, Ordering::Relaxed);
                link.control.forget_upstream();
                if link.events.send(Event::Disconnected).await.is_err() {
                    return;
                }
                if cancel.is_cancelled() {
                    return;
                }
                warn!(stream = %name, host = %upstream.host, reason = %ended, retry_in = ?backoff, "upstream connection ended; reconnecting");
                if started.elapsed() > MAX_BACKOFF {
                    backoff = MIN_BACKOFF;
                }
            }
            Err(err) => {
                debug!(stream = %name, host = %upstream.host, error = %err, retry_in = ?backoff, "cannot reach the upstream");
            }
        }
        let retry = tokio::time::sleep(backoff);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = &mut retry => break,
                Some(request) = requests.recv() => control::refuse(request),
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect(upstream: &Upstream) -> std::io::Result<TcpStream> {
    let address = (upstream.host.as_str(), upstream.port);
    let socket = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    socket.set_nodelay(true)?;
    Ok(socket)
}

/// One connection, until it fails: the reason.
async fn serve(
    link: &Link,
    id: &str,
    socket: TcpStream,
    requests: &mut mpsc::Receiver<Request>,
) -> String {
    let Link {
        name,
        upstream,
        stats,
        events,
        control,
        cancel,
    } = link;
    let (read, write) = socket.into_split();
    let mut frames = FramedRead::new(read, codec::Frames);
    let mut out = FramedWrite::new(write, codec::Frames);
    let hello = Message::Hello(Hello {
        mac: "00:00:00:00:00:00".to_owned(),
        host_name: crate::host::name(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        client_name: "snaprelay".to_owned(),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        instance: 1,
        id: id.to_owned(),
        protocol_version: 2,
    });
    match tokio::time::timeout(SILENCE_TIMEOUT, out.send(hello.encode(0, 0, clock::now()))).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return format!("cannot send Hello: {err}"),
        Err(_) => return "the upstream took no Hello".to_owned(),
    }
    // Choosing the stream, holding volume 100/unmuted, its properties and control requests
    // go through its control API, for as long as this connection lasts.
    let holding = control::hold(name, upstream, id, control, requests);
    tokio::pin!(holding);

    let mut sync = TimeSync::default();
    let mut translation = Translation::default();
    // The offset estimate once enough round trips are in.
    let mut settled: Option<i64> = None;
    let mut waiting: std::collections::VecDeque<WireChunk> = std::collections::VecDeque::new();
    let mut pending: Vec<(u16, i64)> = Vec::new();
    let mut next_request_id: u16 = 1;
    let mut requests_sent: u32 = 0;
    let mut next_request = tokio::time::Instant::now();
    let mut upstream_buffer_ms: i64 = 0;
    // Time requests go out whatever arrives: the silence deadline counts from the last frame.
    let mut silent_after = tokio::time::Instant::now() + SILENCE_TIMEOUT;
    loop {
        let frame = tokio::select! {
            () = cancel.cancelled() => return "stopping".to_owned(),
            () = tokio::time::sleep_until(next_request) => {
                let sent = clock::now();
                let request = Message::Time(Time { latency: Tv::default() })
                    .encode(next_request_id, 0, sent);
                pending.retain(|(_, at)| sent.as_micros() - at < 10_000_000);
                pending.push((next_request_id, sent.as_micros()));
                next_request_id = next_request_id.wrapping_add(1).max(1);
                requests_sent += 1;
                next_request += if requests_sent < BURST_REQUESTS { BURST_INTERVAL } else { STEADY_INTERVAL };
                // A black hole that stops reading must not hold this task on a full socket.
                match tokio::time::timeout(SILENCE_TIMEOUT, out.send(request)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => return format!("cannot send a Time request: {err}"),
                    Err(_) => return format!("the upstream read nothing for {SILENCE_TIMEOUT:?}"),
                }
                continue;
            }
            () = tokio::time::sleep_until(silent_after) => {
                return format!("nothing received for {SILENCE_TIMEOUT:?}");
            }
            () = &mut holding => return "the upstream control ended".to_owned(),
            frame = frames.next() => frame,
        };
        let (header, payload) = match frame {
            None => return "closed by the upstream".to_owned(),
            Some(Err(err)) => return format!("bad data from the upstream: {err}"),
            Some(Ok(frame)) => frame,
        };
        silent_after = tokio::time::Instant::now() + SILENCE_TIMEOUT;
        let received_us = clock::now_micros();
        let message = match Message::decode_shared(&header, &payload) {
            Ok(message) => message,
            Err(err) => return format!("bad message from the upstream: {err}"),
        };
        match message {
            Message::ServerSettings(settings) => {
                upstream_buffer_ms = i64::from(settings.buffer_ms);
                stats.buffer_ms.store(upstream_buffer_ms, Ordering::Relaxed);
                stats.connected.store(true, Ordering::Relaxed);
            }
            Message::CodecHeader(codec_header) => {
                info!(stream = %name, codec = %codec_header.codec, "upstream codec");
                // Chunks still waiting for the offset were encoded under the old header.
                let stale = waiting.len() as u64;
                waiting.clear();
                stats.chunks_dropped.fetch_add(stale, Ordering::Relaxed);
                if events.send(Event::Header(codec_header)).await.is_err() {
                    return "stream stopped".to_owned();
                }
            }
            Message::Time(time) => {
                let Some(index) = pending.iter().position(|(id, _)| *id == header.refers_to) else {
                    continue;
                };
                // Answered: a reply that comes twice is not counted twice.
                pending.swap_remove(index);
                sync.add(RoundTrip {
                    server_latency_us: time.latency.as_micros(),
                    server_sent_us: header.sent.as_micros(),
                    received_us,
                });
                // Worked out once per reply, not per chunk (it sorts the window).
                settled = sync
                    .offset_us()
                    .filter(|_| sync.samples() >= SETTLED_SAMPLES);
                if let (Some(offset), Some(jitter), Some(rtt)) =
                    (sync.offset_us(), sync.jitter_us(), sync.rtt_us())
                {
                    stats.offset_us.store(offset, Ordering::Relaxed);
                    stats.jitter_us.store(jitter, Ordering::Relaxed);
                    stats.rtt_us.store(rtt, Ordering::Relaxed);
                }
            }
            Message::WireChunk(chunk) => {
                stats.chunks.fetch_add(1, Ordering::Relaxed);
                if waiting.len() == MAX_WAITING_CHUNKS {
                    waiting.pop_front();
                    stats.chunks_dropped.fetch_add(1, Ordering::Relaxed);
                }
                waiting.push_back(chunk);
            }
            Message::Error(error) => {
                return format!(
                    "the upstream refused us: {} ({})",
                    error.error, error.message
                );
            }
            other => {
                if other.message_type() != MessageType::Base {
                    debug!(stream = %name, kind = ?other.message_type(), "ignored upstream message");
                }
            }
        }
        // Stamped on our clock once the offset has settled (the chunks that came before it
        // waited here); stamped with a guess they would play at the wrong moment.
        let Some(estimate) = settled else {
            continue;
        };
        while let Some(chunk) = waiting.pop_front() {
            let offset = translation.follow(estimate, clock::now_micros());
            let event = Event::Chunk {
                timestamp_us: chunk.timestamp.as_micros() - offset,
                upstream_buffer_ms,
                data: chunk.data,
            };
            if events.send(event).await.is_err() {
                return "stream stopped".to_owned();
            }
        }
    }
}
