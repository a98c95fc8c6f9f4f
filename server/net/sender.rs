//! The per-session sender: one queue of whole messages, sent in order with non-blocking
//! syscalls, each either the ordinary way or with `MSG_ZEROCOPY`. Which messages go out how
//! is decided in `send_queue` (no sockets there); this module makes the calls and counts.
//!
//! Why zerocopy and ordinary sends can never interleave or race: the session's writer task
//! owns this sender, and the sender is the only code that writes to the socket. It sends the
//! queue strictly in order and a message only after every byte ahead of it was accepted by
//! the kernel. The C++ design's atomic "async write in progress" flag is replaced by that
//! ownership.
//!
//! What goes zerocopy: the leading unsent shared messages of the queue (one chunk, or a
//! batch of chunks queued together) in one `sendmsg(MSG_ZEROCOPY)` when together they reach
//! the threshold, so batching lifts small chunks over it. What remains of "coordination" is
//! defined as follows: when the socket is busy with ordinary bytes ahead (a partly sent
//! ordinary message), the queue is flushed with one ordinary vectored write, and every
//! message at or above the threshold that rides along in that write is a **coordination
//! fallback**.
//!
//! A zerocopy message's `Bytes` (and so its pooled buffer) stays in `in_flight` until a
//! completion notice covers its id; only then can the buffer return to the pool. Dropping the
//! sender (disconnect) releases everything it still holds.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

pub(crate) use super::send_queue::Payload;
pub(crate) use super::send_queue::MAX_IOV;
#[cfg(test)]
pub(crate) use super::send_queue::QUEUE_SLOTS;
use super::send_queue::{InFlight, SendQueue};
use super::send_stats::{SendMode, SendStats};
use super::zerocopy::{self, Completion};

/// What the session asks of its sender.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendPolicy {
    /// Try `SO_ZEROCOPY` on this socket.
    pub(crate) zerocopy: bool,
    /// Messages at least this large go zerocopy.
    pub(crate) threshold: usize,
    /// Stop zerocopy on this socket once the kernel reports a copy.
    pub(crate) auto_fallback: bool,
}

/// Sends one session's messages in order; see the module doc.
#[derive(Debug)]
pub(crate) struct Sender {
    queue: SendQueue,
    in_flight: InFlight,
    zerocopy: bool,
    /// `SO_ZEROCOPY` was set: this socket's tokio write readiness can no longer be trusted
    /// (docs/ZEROCOPY.md, "The tokio trap"), so the writer must never wait on it.
    zerocopy_socket: bool,
    threshold: usize,
    auto_fallback: bool,
    stats: Arc<SendStats>,
    #[cfg(test)]
    inject_enobufs: u32,
}

/// Result of a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// The queue is empty.
    All,
    /// The kernel's buffer is full; bytes remain queued.
    Blocked,
}

impl Sender {
    /// A sender for socket `fd`. When the policy asks for zerocopy and the socket refuses
    /// `SO_ZEROCOPY`, the session runs regular, saying why.
    pub(crate) fn new(
        fd: RawFd,
        policy: SendPolicy,
        stats: Arc<SendStats>,
        peer: std::net::IpAddr,
    ) -> Self {
        let zerocopy = policy.zerocopy
            && match zerocopy::enable(fd) {
                Ok(()) => true,
                Err(err) => {
                    stats.record_zerocopy_refused();
                    info!(%peer, reason = %err, "Creating regular TCP session for {peer} (socket refused SO_ZEROCOPY)");
                    false
                }
            };
        if zerocopy {
            info!(%peer, "Creating zerocopy-enabled session for {peer}");
        } else if !policy.zerocopy {
            info!(%peer, "Creating regular TCP session for {peer}");
        }
        stats.set_mode(if zerocopy {
            SendMode::Zerocopy
        } else {
            SendMode::Regular
        });
        Self {
            queue: SendQueue::default(),
            in_flight: InFlight::default(),
            zerocopy,
            zerocopy_socket: zerocopy,
            threshold: policy.threshold,
            auto_fallback: policy.auto_fallback,
            stats,
            #[cfg(test)]
            inject_enobufs: 0,
        }
    }

    /// Whether tokio's write readiness is unusable for this socket.
    pub(crate) fn is_zerocopy_socket(&self) -> bool {
        self.zerocopy_socket
    }

    /// Nothing left to send.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Zerocopy sends awaiting their completion notice.
    pub(crate) fn outstanding(&self) -> usize {
        self.in_flight.len()
    }

    /// Audio chunks queued and not finished.
    pub(crate) fn queued_audio(&self) -> usize {
        self.queue.queued_audio()
    }

    /// Queues an audio chunk behind everything else.
    pub(crate) fn push_audio(&mut self, bytes: Bytes, timestamp_us: i64) {
        self.queue.push_audio(bytes, timestamp_us);
    }

    /// Queues a control message ahead of queued audio, after earlier control messages and
    /// after a message already partly on the wire.
    pub(crate) fn push_urgent(&mut self, bytes: Payload) {
        self.queue.push_urgent(bytes);
    }

    /// Drops queued audio that has not started and was captured before `cutoff_us`.
    /// Returns how many chunks were dropped.
    pub(crate) fn drop_stale_audio(&mut self, cutoff_us: i64) -> u64 {
        self.queue.drop_stale_audio(cutoff_us)
    }

    /// Drops every queued audio chunk that has not started (a stream switch).
    pub(crate) fn drop_queued_audio(&mut self) {
        self.queue.drop_stale_audio(i64::MAX);
    }

    /// Sends as much of the queue as the kernel takes now.
    pub(crate) fn flush(&mut self, fd: RawFd) -> io::Result<Flushed> {
        while !self.queue.is_empty() {
            let run = if self.zerocopy {
                self.queue.zerocopy_run(self.threshold)
            } else {
                0
            };
            let progressed = if run > 0 {
                self.send_zerocopy_run(fd, run)?
            } else {
                self.send_ordinary(fd, false)?
            };
            if !progressed {
                return Ok(Flushed::Blocked);
            }
        }
        Ok(Flushed::All)
    }

    /// Sends the first `run` messages in one `sendmsg(MSG_ZEROCOPY)`. Returns false when the
    /// socket is full.
    fn send_zerocopy_run(&mut self, fd: RawFd, run: usize) -> io::Result<bool> {
        let injected = self.take_injected_enobufs();
        SendStats::bump(&self.stats.zerocopy_attempts, 1);
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        self.queue.zerocopy_slices(run, &mut iov);
        let result = injected.map_or_else(|| zerocopy::send(fd, &iov[..run], true), Err);
        match result {
            Ok(written) => {
                SendStats::bump(&self.stats.zerocopy_successful, 1);
                SendStats::bump(&self.stats.zerocopy_bytes, written as u64);
                self.queue
                    .take_zerocopy_written(written, &mut self.in_flight);
                self.stats.set_outstanding(self.in_flight.len());
                Ok(true)
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                // optmem exhausted: these messages go the ordinary way (docs/ZEROCOPY.md).
                SendStats::bump(&self.stats.enobufs_fallbacks, run as u64);
                self.queue.mark_zerocopy_tried(run);
                self.send_ordinary(fd, true)
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// One vectored ordinary write from the head of the queue (what joins it:
    /// `SendQueue::ordinary_slices`). Returns false when the socket is full.
    fn send_ordinary(&mut self, fd: RawFd, gather_all: bool) -> io::Result<bool> {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let count = self
            .queue
            .ordinary_slices(self.zerocopy, gather_all, &mut iov);
        let written = match zerocopy::send(fd, &iov[..count], false) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(err) => return Err(err),
        };
        SendStats::bump(&self.stats.regular_bytes, written as u64);
        let done = self
            .queue
            .take_ordinary_written(written, self.zerocopy, self.threshold);
        SendStats::bump(&self.stats.regular_sends, done.finished);
        if done.coordination_fallbacks > 0 {
            SendStats::bump(
                &self.stats.coordination_fallbacks,
                done.coordination_fallbacks,
            );
        }
        Ok(true)
    }

    /// Reads every pending completion notice and releases the buffers it covers.
    pub(crate) fn reap_completions(&mut self, fd: RawFd) -> io::Result<()> {
        if self.in_flight.is_empty() {
            return Ok(());
        }
        let mut notices: [Option<Completion>; 8] = [None; 8];
        loop {
            let mut n = 0;
            let mut overflow = false;
            zerocopy::drain(fd, &mut |c| {
                if n < notices.len() {
                    notices[n] = Some(c);
                    n += 1;
                } else {
                    overflow = true;
                }
            })?;
            for completion in notices[..n].iter().flatten() {
                self.complete(completion);
            }
            if !overflow {
                return Ok(());
            }
        }
    }

    fn complete(&mut self, completion: &Completion) {
        let released = self.in_flight.complete(completion);
        self.stats.set_outstanding(self.in_flight.len());
        if completion.copied {
            SendStats::bump(&self.stats.copied_completions, released);
            if self.auto_fallback && self.zerocopy {
                self.zerocopy = false;
                self.stats.engage_auto_fallback();
                warn!("kernel copied zerocopy sends (loopback or NIC without support); this session falls back to regular sends");
            }
        }
    }

    #[cfg(test)]
    fn take_injected_enobufs(&mut self) -> Option<io::Error> {
        if self.inject_enobufs > 0 {
            self.inject_enobufs -= 1;
            Some(io::Error::from_raw_os_error(libc::ENOBUFS))
        } else {
            None
        }
    }

    #[cfg(not(test))]
    fn take_injected_enobufs(&mut self) -> Option<io::Error> {
        None
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // The kernel keeps its own page references; our buffers can go back now.
        self.in_flight.clear();
        self.stats.set_outstanding(0);
    }
}

#[cfg(test)]
mod tests;
