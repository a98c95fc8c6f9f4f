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
use tokio::io::{Interest, Ready};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::SessionEnv;
use super::{Outbound, SessionError, SessionInfo};
use crate::clock;
use crate::net::sender::{Flushed, Payload, SendPolicy, Sender, MAX_IOV};
use crate::protocol::{Message, Time, Tv, WireChunk};
use crate::stream::{Chunk, Stream};

/// Upstream drops queued chunks older than the buffer plus this (§2.4).
const LATE_MARGIN_US: i64 = 100_000;

/// Audio chunks a session takes ahead of its socket beyond two batch windows, and so the
/// fewest it takes without batching (see [`audio_ahead`]).
const MIN_AUDIO_AHEAD: usize = 4;

/// First and longest retry delay while a zerocopy socket is full.
const RETRY_MIN: Duration = Duration::from_millis(2);
const RETRY_MAX: Duration = Duration::from_millis(50);

pub(super) async fn run(
    socket: OwnedWriteHalf,
    env: &SessionEnv,
    info: &SessionInfo,
) -> Result<(), SessionError> {
    let stream: &TcpStream = socket.as_ref();
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
    // The last take from the stream's ring stopped at [`audio_ahead`] with chunks left.
    let mut backlog = false;
    loop {
        let blocked = blocked_since.is_some();
        // select! builds every branch's future on every turn, enabled or not, and each one
        // is part of the session's task for its whole life: one timer and one readiness wait
        // serve every reason to wake, and the clock is read only when a retry is due.
        let retry_at =
            (blocked && sender.is_zerocopy_socket()).then(|| Instant::now() + retry_delay);
        // A client that stops reading must still be noticed when the session has nothing
        // new to send it (its queue full, audio left in the stream's ring).
        let send_timeout = env.settings.send_timeout();
        let stall_at = blocked_since.map(|since| since + send_timeout);
        let wake_at = earliest(earliest(batch_deadline, retry_at), stall_at);
        let readiness = readiness_wanted(&sender, blocked);
        let room_for_audio = sender.queued_audio() < audio_ahead(env, audio.as_ref());
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
            ready = ready_for(stream, readiness), if readiness.is_some() => {
                if ready?.is_error() {
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
            }
            () = sleep_until_some(wake_at), if wake_at.is_some() => {
                let now = Instant::now();
                if stall_at.is_some_and(|at| at <= now) {
                    return Err(SessionError::SendTimedOut(send_timeout));
                }
                if batch_deadline.is_some_and(|at| at <= now) {
                    // The batch window closed: take what the stream published meanwhile.
                    batch_deadline = None;
                    backlog = take_waiting(&mut audio, &mut sender, &mut fresh_decoder, env, info);
                }
                if retry_at.is_some_and(|at| at <= now) {
                    retry_delay = (retry_delay * 2).min(RETRY_MAX);
                }
            }
            received = next_chunk(&mut audio), if batch_deadline.is_none() && room_for_audio => match received {
                Ok(chunk) => {
                    if let Some((playing, _)) = &audio {
                        queue_chunk(&mut sender, chunk, &mut fresh_decoder, env, info, playing);
                    }
                    // Read live: `UpdateConfig stream.buffer` changes the window.
                    let batch = env.settings.send_batch();
                    if backlog {
                        // The last take stopped at the limit with more waiting: that goes
                        // out a full send at a time, without waiting for a window.
                        backlog = take_waiting(&mut audio, &mut sender, &mut fresh_decoder, env, info);
                    } else if !batch.is_zero() && !blocked {
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
            // write-readiness wait above is a real wait, not a spin.
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

/// Audio chunks a session takes from its stream's ring ahead of its socket: two batch windows'
/// worth and four more, at most one vectored write's. A session that falls further behind (a
/// client that stops reading) leaves the rest in the stream's ring, which every session
/// shares and which holds a whole client buffer, instead of copying the references into a
/// queue of its own that would keep its largest size for the session's life: memory per
/// client stays flat under load. The room above one window is what a session whose timer
/// fires late (a busy machine) gathers into its next send; a tighter limit split those
/// catch-up sends and cost ~20 % more CPU per client at 3200 clients (docs/PERFORMANCE.md,
/// "Memory per client").
fn audio_ahead(env: &SessionEnv, audio: Option<&(Stream, broadcast::Receiver<Chunk>)>) -> usize {
    let chunk_ms = audio.map_or(20, |(stream, _)| stream.spec().chunk_ms);
    audio_ahead_for(env.settings.send_batch(), chunk_ms)
}

/// [`audio_ahead`] for a batch window and a chunk length.
fn audio_ahead_for(batch: Duration, chunk_ms: u32) -> usize {
    let batch_chunks = batch.as_millis() as usize / chunk_ms.max(1) as usize;
    (2 * batch_chunks + MIN_AUDIO_AHEAD).min(MAX_IOV)
}

/// Takes what the stream has published and the session has not, up to [`audio_ahead`].
/// Returns whether it stopped at that limit (chunks may be left in the ring) rather than
/// because none was left.
fn take_waiting(
    audio: &mut Option<(Stream, broadcast::Receiver<Chunk>)>,
    sender: &mut Sender,
    fresh_decoder: &mut bool,
    env: &SessionEnv,
    info: &SessionInfo,
) -> bool {
    let ahead = audio_ahead(env, audio.as_ref());
    while sender.queued_audio() < ahead {
        let Some((playing, receiver)) = audio.as_mut() else {
            return false;
        };
        match receiver.try_recv() {
            Ok(chunk) => queue_chunk(sender, chunk, fresh_decoder, env, info, playing),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                count_dropped(info, playing, missed);
            }
            Err(broadcast::error::TryRecvError::Empty) => return false,
            Err(broadcast::error::TryRecvError::Closed) => *audio = None,
        }
    }
    true
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

/// The earlier of two optional times.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the writer waits on the socket for: completion notices (error readiness) while
/// zerocopy sends are outstanding, room in a full regular socket (write readiness; never
/// for a zerocopy socket, see the module doc).
fn readiness_wanted(sender: &Sender, blocked: bool) -> Option<Interest> {
    let completions = (sender.outstanding() > 0).then_some(Interest::ERROR);
    let room = (blocked && !sender.is_zerocopy_socket()).then_some(Interest::WRITABLE);
    match (completions, room) {
        (Some(completions), Some(room)) => Some(completions | room),
        (completions, room) => completions.or(room),
    }
}

/// Waits for `interest` on the socket, or forever without one.
async fn ready_for(stream: &TcpStream, interest: Option<Interest>) -> io::Result<Ready> {
    match interest {
        Some(interest) => stream.ready(interest).await,
        None => std::future::pending().await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_takes_two_batch_windows_and_four_chunks_ahead() {
        // The default: a 60 ms window of 20 ms chunks.
        assert_eq!(audio_ahead_for(Duration::from_millis(60), 20), 10);
        // No batching: a few chunks, so a client that stops reading costs little.
        assert_eq!(audio_ahead_for(Duration::ZERO, 20), MIN_AUDIO_AHEAD);
        // A long window (or short chunks) never beyond one vectored write.
        assert_eq!(audio_ahead_for(Duration::from_millis(300), 20), MAX_IOV);
        assert_eq!(audio_ahead_for(Duration::from_millis(60), 5), MAX_IOV);
        // A nonsensical chunk length does not divide by zero.
        assert_eq!(audio_ahead_for(Duration::from_millis(60), 0), MAX_IOV);
    }

    #[test]
    fn a_session_at_its_limit_fits_its_queue_without_growing() {
        // Ten chunks ahead at the default window, and a Time reply and one other control
        // message beside them: the queue's first allocation holds them all.
        let ahead = audio_ahead_for(Duration::from_millis(60), 20);
        assert!(ahead + 2 <= crate::net::sender::QUEUE_SLOTS);
    }

    #[test]
    fn the_earliest_of_two_wake_ups() {
        let now = Instant::now();
        let later = now + Duration::from_millis(5);
        assert_eq!(earliest(Some(later), Some(now)), Some(now));
        assert_eq!(earliest(None, Some(later)), Some(later));
        assert_eq!(earliest(Some(now), None), Some(now));
        assert_eq!(earliest(None, None), None);
    }
}
