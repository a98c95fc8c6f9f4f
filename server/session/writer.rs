//! The write side of a session (docs/PROTOCOL.md §2): the single owner of the socket's write
//! half.
//!
//! Everything the client receives goes through one [`Sender`] queue, control messages ahead
//! of queued audio, so time replies never wait behind audio and no two writers can ever
//! interleave bytes on the wire (see `net::sender` for how zerocopy fits in).
//!
//! Waiting for socket space: a regular socket waits on tokio's write readiness. A socket
//! with `SO_ZEROCOPY` never does (docs/ZEROCOPY.md, "The tokio trap": its write readiness
//! sticks once a completion notice is pending); it retries on the next message or a short
//! backing-off timer instead, and waits for completion notices on tokio's *error* readiness,
//! which is cleared properly. An idle session therefore has no timer and costs no CPU.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::SessionEnv;
use super::{Outbound, SessionError, SessionInfo};
use crate::clock;
use crate::net::sender::{Flushed, Payload, SendPolicy, Sender};
use crate::protocol::{Message, Time, Tv, WireChunk};
use crate::stream::{Chunk, Stream};

/// Upstream drops queued chunks older than the buffer plus this (§2.4).
const LATE_MARGIN_US: i64 = 100_000;

/// First and longest retry delay while a zerocopy socket is full.
const RETRY_MIN: Duration = Duration::from_millis(2);
const RETRY_MAX: Duration = Duration::from_millis(50);

pub(super) async fn run(
    socket: OwnedWriteHalf,
    env: &SessionEnv,
    info: &SessionInfo,
) -> Result<(), SessionError> {
    let stream: &tokio::net::TcpStream = socket.as_ref();
    let fd = stream.as_raw_fd();
    let policy = SendPolicy {
        zerocopy: env.settings.zerocopy_enabled(),
        threshold: env.settings.zerocopy_threshold(),
        auto_fallback: env.settings.zerocopy_auto_fallback,
    };
    let mut sender = Sender::new(fd, policy, info.send_stats.clone(), info.peer.ip());
    let stats = &info.stats;
    // The stream playing (its counters see this session's late and dropped chunks) and the
    // receiver of its chunks.
    let mut audio: Option<(Stream, broadcast::Receiver<Chunk>)> = None;
    // The client's decoder is new (a CodecHeader went out) and no chunk has followed yet.
    let mut fresh_decoder = false;
    // Grows to the largest control message once (~95 bytes), then is reused: no steady-state
    // allocation, and no unused capacity paid per client.
    let mut scratch = Vec::new();
    let mut blocked_since: Option<Instant> = None;
    let mut retry_delay = RETRY_MIN;
    let mut batch_deadline: Option<Instant> = None;
    loop {
        let blocked = blocked_since.is_some();
        let retrying = blocked && sender.is_zerocopy_socket();
        tokio::select! {
            biased;
            message = info.mailbox.recv() => {
                scratch.clear();
                match message {
                    Outbound::TimeReply { request_id, latency } => {
                        // `sent` is stamped here, as late as the queue allows (§2.3).
                        Message::Time(Time { latency })
                            .encode_into(&mut scratch, request_id, request_id, clock::now());
                        stats.time_replies.fetch_add(1, Ordering::Relaxed);
                        sender.push_urgent(Payload::copy_from(&scratch));
                    }
                    Outbound::Welcome { hello_id, settings, stream: audio_stream } => {
                        Message::ServerSettings(settings)
                            .encode_into(&mut scratch, 0, hello_id, clock::now());
                        sender.push_urgent(Payload::copy_from(&scratch));
                        // Subscribed before the header is read: a codec change in between
                        // arrives in the chunk channel, so no chunk goes out under an old
                        // header (chunks reach the socket only after this header).
                        let receiver = audio_stream.subscribe();
                        if let Some(header) = audio_stream.codec_header() {
                            sender.push_urgent(Payload::Shared(header));
                        }
                        audio = Some((audio_stream.clone(), receiver));
                        fresh_decoder = true;
                    }
                    Outbound::Settings(settings) => {
                        Message::ServerSettings(settings)
                            .encode_into(&mut scratch, 0, 0, clock::now());
                        sender.push_urgent(Payload::copy_from(&scratch));
                    }
                    Outbound::SwitchStream(next) => {
                        // Old-stream audio not yet on the wire would only fail to decode
                        // after the new header (§2.6): drop it, then header, then new chunks.
                        sender.drop_queued_audio();
                        let receiver = next.subscribe();
                        if let Some(header) = next.codec_header() {
                            sender.push_urgent(Payload::Shared(header));
                        }
                        audio = Some((next.clone(), receiver));
                        fresh_decoder = true;
                    }
                }
            }
            ready = stream.ready(Interest::ERROR), if sender.outstanding() > 0 => {
                ready?;
                // Draining to EAGAIN inside try_io clears tokio's error readiness.
                let reaped = stream.try_io(Interest::ERROR, || {
                    sender.reap_completions(fd)?;
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
                if let Err(err) = reaped {
                    if err.kind() != io::ErrorKind::WouldBlock {
                        return Err(err.into());
                    }
                }
            }
            writable = stream.writable(), if blocked && !sender.is_zerocopy_socket() => {
                writable?;
            }
            // select! builds every branch's future on every turn, enabled or not: only read
            // the clock and make a timer when the branch can fire.
            () = sleep_until_some(retrying.then(|| Instant::now() + retry_delay)), if retrying => {
                retry_delay = (retry_delay * 2).min(RETRY_MAX);
            }
            () = sleep_until_some(batch_deadline) => {
                // The batch window closed: take everything the stream published meanwhile.
                batch_deadline = None;
                while let Some((playing, receiver)) = audio.as_mut() {
                    match receiver.try_recv() {
                        Ok(chunk) => queue_chunk(
                            &mut sender,
                            chunk,
                            &mut fresh_decoder,
                            env,
                            info,
                            playing,
                        ),
                        Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                            count_dropped(info, playing, missed);
                        }
                        Err(broadcast::error::TryRecvError::Empty) => break,
                        Err(broadcast::error::TryRecvError::Closed) => audio = None,
                    }
                }
            }
            received = next_chunk(&mut audio), if batch_deadline.is_none() => match received {
                Ok(chunk) => {
                    if let Some((playing, _)) = &audio {
                        queue_chunk(&mut sender, chunk, &mut fresh_decoder, env, info, playing);
                    }
                    // Read live: `UpdateConfig stream.buffer` changes the window.
                    let batch = env.settings.send_batch();
                    if !batch.is_zero() && !blocked {
                        // Send this chunk with the ones that follow in the next `batch`:
                        // fewer, larger sends (docs/PERFORMANCE.md, "The per-client
                        // floor"); time replies and other control messages still go at once.
                        batch_deadline = Some(Instant::now() + batch);
                        continue;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    if let Some((playing, _)) = &audio {
                        count_dropped(info, playing, missed);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => audio = None,
            },
        }

        if sender.is_empty() {
            continue;
        }
        let flushed = if sender.is_zerocopy_socket() {
            sender.flush(fd)?
        } else {
            // try_io clears tokio's write readiness when the kernel says EAGAIN, so the
            // `writable()` wait above is a real wait, not a spin.
            match stream.try_io(Interest::WRITABLE, || match sender.flush(fd)? {
                Flushed::All => Ok(Flushed::All),
                Flushed::Blocked => Err(io::ErrorKind::WouldBlock.into()),
            }) {
                Ok(flushed) => flushed,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => Flushed::Blocked,
                Err(err) => return Err(err.into()),
            }
        };
        match flushed {
            Flushed::All => {
                blocked_since = None;
                retry_delay = RETRY_MIN;
            }
            Flushed::Blocked => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                let send_timeout = env.settings.send_timeout();
                if since.elapsed() > send_timeout {
                    return Err(SessionError::SendTimedOut(send_timeout));
                }
            }
        }
    }
}

/// Counts chunks lost because the session fell a whole queue behind, for the session and its
/// stream (both monotonic).
fn count_dropped(info: &SessionInfo, playing: &Stream, missed: u64) {
    info.stats
        .chunks_dropped
        .fetch_add(missed, Ordering::Relaxed);
    playing
        .stats()
        .chunks_dropped
        .fetch_add(missed, Ordering::Relaxed);
}

/// Queues one chunk unless it is too late to play or the client is muted. The first chunk a
/// fresh decoder gets carries the time that decoder really starts playing at.
fn queue_chunk(
    sender: &mut Sender,
    chunk: Chunk,
    fresh_decoder: &mut bool,
    env: &SessionEnv,
    info: &SessionInfo,
    playing: &Stream,
) {
    if let Some(header) = chunk.codec_header {
        // The stream's codec changed: what is queued would not decode after the new header.
        sender.drop_queued_audio();
        sender.push_urgent(Payload::Shared(header));
        *fresh_decoder = true;
        return;
    }
    let stats = &info.stats;
    let cutoff = clock::now_micros() - i64::from(env.settings.buffer_ms()) * 1000 - LATE_MARGIN_US;
    let late = sender.drop_stale_audio(cutoff) + u64::from(chunk.timestamp_us < cutoff);
    if late > 0 {
        stats.chunks_late.fetch_add(late, Ordering::Relaxed);
        playing
            .stats()
            .chunks_late
            .fetch_add(late, Ordering::Relaxed);
    }
    if info.is_muted() && !env.settings.send_to_muted {
        // §2.5: muted clients get no audio; fresh timestamps resume it.
        return;
    }
    if chunk.timestamp_us >= cutoff {
        let message = match chunk.fresh_decoder_timestamp_us {
            // One copy per joining decoder, not per chunk.
            Some(start) if *fresh_decoder => {
                Bytes::from(WireChunk::restamped(&chunk.message, Tv::from_micros(start)))
            }
            _ => chunk.message,
        };
        *fresh_decoder = false;
        sender.push_audio(message, chunk.timestamp_us);
        stats.chunks_sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn next_chunk(
    audio: &mut Option<(Stream, broadcast::Receiver<Chunk>)>,
) -> Result<Chunk, broadcast::error::RecvError> {
    match audio {
        Some((_, receiver)) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
