//! The write side of a session: the single owner of the socket's write half.
//!
//! Everything the client receives goes through here, control messages first (a biased
//! `select!`), so time replies never wait behind queued audio and no two writers can ever
//! interleave bytes on the wire.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{broadcast, mpsc};

use super::{Outbound, SessionError, SessionInfo};
use crate::clock;
use crate::protocol::{Message, Time};
use crate::server::Shared;
use crate::stream::Chunk;

/// Upstream drops queued chunks older than the buffer plus this (§2.4, §7.5).
const LATE_MARGIN_US: i64 = 100_000;

pub(super) async fn run(
    mut socket: OwnedWriteHalf,
    mut outbound: mpsc::Receiver<Outbound>,
    shared: &Shared,
    info: &SessionInfo,
) -> Result<(), SessionError> {
    let send_timeout = shared.settings.send_timeout;
    let late_after_us = i64::from(shared.settings.buffer_ms) * 1000 + LATE_MARGIN_US;
    let stats = &info.stats;
    let mut audio: Option<broadcast::Receiver<Chunk>> = None;
    let mut scratch = Vec::with_capacity(128);
    loop {
        tokio::select! {
            biased;
            message = outbound.recv() => {
                let Some(message) = message else { return Ok(()) };
                scratch.clear();
                match message {
                    Outbound::TimeReply { request_id, latency } => {
                        Message::Time(Time { latency })
                            .encode_into(&mut scratch, request_id, request_id, clock::now());
                        stats.time_replies.fetch_add(1, Ordering::Relaxed);
                        send(&mut socket, &scratch, send_timeout, info).await?;
                    }
                    Outbound::Welcome { hello_id, settings, stream } => {
                        Message::ServerSettings(settings)
                            .encode_into(&mut scratch, 0, hello_id, clock::now());
                        send(&mut socket, &scratch, send_timeout, info).await?;
                        send(&mut socket, &stream.codec_header(), send_timeout, info).await?;
                        // Subscribing only now guarantees no chunk precedes the header.
                        audio = Some(stream.subscribe());
                    }
                    Outbound::Settings(settings) => {
                        Message::ServerSettings(settings)
                            .encode_into(&mut scratch, 0, 0, clock::now());
                        send(&mut socket, &scratch, send_timeout, info).await?;
                    }
                }
            }
            received = next_chunk(&mut audio) => match received {
                Ok(chunk) => {
                    if clock::now_micros() - chunk.timestamp_us > late_after_us {
                        stats.chunks_late.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    send(&mut socket, &chunk.message, send_timeout, info).await?;
                    stats.chunks_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    stats.chunks_lagged.fetch_add(missed, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => audio = None,
            },
        }
    }
}

async fn next_chunk(
    audio: &mut Option<broadcast::Receiver<Chunk>>,
) -> Result<Chunk, broadcast::error::RecvError> {
    match audio {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes one whole message; a client that cannot take it within `limit` is not reading.
async fn send(
    socket: &mut OwnedWriteHalf,
    bytes: &[u8],
    limit: Duration,
    info: &SessionInfo,
) -> Result<(), SessionError> {
    tokio::time::timeout(limit, socket.write_all(bytes))
        .await
        .map_err(|_| SessionError::SendTimedOut(limit))??;
    info.stats
        .bytes_sent
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok(())
}
