//! The per-session sender: one queue of whole messages, sent in order with non-blocking
//! syscalls, each either the ordinary way or with `MSG_ZEROCOPY`.
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

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use bytes::Bytes;
use tracing::{info, warn};

use super::zerocopy::{self, Completion};

/// Most messages gathered into one vectored write.
const MAX_IOV: usize = 16;

/// How a session sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SendMode {
    /// Ordinary sends only.
    Regular = 0,
    /// Large messages with `MSG_ZEROCOPY`.
    Zerocopy = 1,
    /// Started with zerocopy; fell back to ordinary sends after the kernel copied anyway.
    FellBack = 2,
}

impl SendMode {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Zerocopy,
            2 => Self::FellBack,
            _ => Self::Regular,
        }
    }

    /// Lower-case name for logs and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regular => "regular",
            Self::Zerocopy => "zerocopy",
            Self::FellBack => "zerocopy-fallback",
        }
    }
}

/// A session's send counters; cumulative (periodic reports print differences).
#[derive(Debug, Default)]
pub struct ZerocopyStats {
    mode: AtomicU8,
    /// `sendmsg(MSG_ZEROCOPY)` calls made.
    pub zerocopy_attempts: AtomicU64,
    /// Those the kernel accepted (each took one completion id).
    pub zerocopy_successful: AtomicU64,
    /// Bytes accepted by zerocopy calls.
    pub zerocopy_bytes: AtomicU64,
    /// Messages finished by ordinary sends.
    pub regular_sends: AtomicU64,
    /// Bytes sent the ordinary way.
    pub regular_bytes: AtomicU64,
    /// Zerocopy-eligible messages sent the ordinary way behind ordinary bytes (module doc).
    pub coordination_fallbacks: AtomicU64,
    /// Zerocopy sends the kernel has not completed yet (a gauge).
    pub outstanding: AtomicU64,
    /// Completed zerocopy sends the kernel reported as copied.
    pub copied_completions: AtomicU64,
    /// Messages sent the ordinary way after `ENOBUFS` from a zerocopy call.
    pub enobufs_fallbacks: AtomicU64,
    /// 1 when zerocopy was asked for but the socket refused `SO_ZEROCOPY`.
    pub zerocopy_refused: AtomicU64,
    auto_fallback_engaged: AtomicBool,
}

/// A plain-number copy of [`ZerocopyStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZerocopyStatsSnapshot {
    /// See [`ZerocopyStats::zerocopy_attempts`].
    pub zerocopy_attempts: u64,
    /// See [`ZerocopyStats::zerocopy_successful`].
    pub zerocopy_successful: u64,
    /// See [`ZerocopyStats::zerocopy_bytes`].
    pub zerocopy_bytes: u64,
    /// See [`ZerocopyStats::regular_sends`].
    pub regular_sends: u64,
    /// See [`ZerocopyStats::regular_bytes`].
    pub regular_bytes: u64,
    /// See [`ZerocopyStats::coordination_fallbacks`].
    pub coordination_fallbacks: u64,
    /// See [`ZerocopyStats::outstanding`].
    pub outstanding: u64,
    /// See [`ZerocopyStats::copied_completions`].
    pub copied_completions: u64,
    /// See [`ZerocopyStats::enobufs_fallbacks`].
    pub enobufs_fallbacks: u64,
}

impl ZerocopyStatsSnapshot {
    /// Share of sent bytes that went out with zerocopy, in percent.
    pub fn zerocopy_percent(&self) -> f64 {
        let total = self.zerocopy_bytes + self.regular_bytes;
        if total == 0 {
            0.0
        } else {
            self.zerocopy_bytes as f64 * 100.0 / total as f64
        }
    }

    /// Accepted zerocopy calls per attempt, in percent.
    pub fn success_rate(&self) -> f64 {
        if self.zerocopy_attempts == 0 {
            0.0
        } else {
            self.zerocopy_successful as f64 * 100.0 / self.zerocopy_attempts as f64
        }
    }

    /// Counter differences since `earlier`; `outstanding` stays the current gauge.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            zerocopy_attempts: self.zerocopy_attempts - earlier.zerocopy_attempts,
            zerocopy_successful: self.zerocopy_successful - earlier.zerocopy_successful,
            zerocopy_bytes: self.zerocopy_bytes - earlier.zerocopy_bytes,
            regular_sends: self.regular_sends - earlier.regular_sends,
            regular_bytes: self.regular_bytes - earlier.regular_bytes,
            coordination_fallbacks: self.coordination_fallbacks - earlier.coordination_fallbacks,
            outstanding: self.outstanding,
            copied_completions: self.copied_completions - earlier.copied_completions,
            enobufs_fallbacks: self.enobufs_fallbacks - earlier.enobufs_fallbacks,
        }
    }

    /// Sums two snapshots (for server-wide totals).
    pub fn add(&mut self, other: &Self) {
        self.zerocopy_attempts += other.zerocopy_attempts;
        self.zerocopy_successful += other.zerocopy_successful;
        self.zerocopy_bytes += other.zerocopy_bytes;
        self.regular_sends += other.regular_sends;
        self.regular_bytes += other.regular_bytes;
        self.coordination_fallbacks += other.coordination_fallbacks;
        self.outstanding += other.outstanding;
        self.copied_completions += other.copied_completions;
        self.enobufs_fallbacks += other.enobufs_fallbacks;
    }
}

impl ZerocopyStats {
    /// The session's current mode.
    pub fn mode(&self) -> SendMode {
        SendMode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// Whether auto-fallback switched this session to ordinary sends.
    pub fn auto_fallback_engaged(&self) -> bool {
        self.auto_fallback_engaged.load(Ordering::Relaxed)
    }

    /// Current values.
    pub fn snapshot(&self) -> ZerocopyStatsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ZerocopyStatsSnapshot {
            zerocopy_attempts: load(&self.zerocopy_attempts),
            zerocopy_successful: load(&self.zerocopy_successful),
            zerocopy_bytes: load(&self.zerocopy_bytes),
            regular_sends: load(&self.regular_sends),
            regular_bytes: load(&self.regular_bytes),
            coordination_fallbacks: load(&self.coordination_fallbacks),
            outstanding: load(&self.outstanding),
            copied_completions: load(&self.copied_completions),
            enobufs_fallbacks: load(&self.enobufs_fallbacks),
        }
    }

    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

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

/// A queued message: shared chunk bytes, or a small control message kept inline so that
/// time replies cost no allocation.
#[derive(Debug)]
pub(crate) enum Payload {
    /// Shared, reference-counted bytes (audio, codec headers).
    Shared(Bytes),
    /// Up to [`INLINE_CAPACITY`] bytes copied in place.
    Inline {
        /// Storage.
        buf: [u8; INLINE_CAPACITY],
        /// Bytes used.
        len: u8,
    },
}

/// Largest control message kept inline: Time replies are 34 bytes, and they are the only
/// control messages of a session's steady state. Rarer ones (ServerSettings, ~95 bytes)
/// take shared bytes. Kept small: every queue slot of every session carries it.
pub(crate) const INLINE_CAPACITY: usize = 40;

impl Payload {
    /// Copies a small message inline, or into shared bytes when it does not fit.
    pub(crate) fn copy_from(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE_CAPACITY {
            let mut buf = [0u8; INLINE_CAPACITY];
            buf[..bytes.len()].copy_from_slice(bytes);
            Self::Inline {
                buf,
                len: bytes.len() as u8,
            }
        } else {
            Self::Shared(Bytes::copy_from_slice(bytes))
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Shared(bytes) => bytes,
            Self::Inline { buf, len } => &buf[..usize::from(*len)],
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }
}

#[derive(Debug)]
struct Pending {
    bytes: Payload,
    sent: usize,
    /// Control message: goes before queued audio (but never splits a started message).
    urgent: bool,
    /// Capture time of audio, for dropping stale chunks that have not started; unused for
    /// control messages, which are never stale.
    timestamp_us: i64,
    /// A zerocopy call (or its ENOBUFS fallback) already handled this message, so finishing
    /// it the ordinary way is not a coordination fallback.
    zerocopy_tried: bool,
}

/// Sends one session's messages in order; see the module doc.
#[derive(Debug)]
pub(crate) struct Sender {
    queue: VecDeque<Pending>,
    in_flight: VecDeque<(u32, Bytes)>,
    next_id: u32,
    zerocopy: bool,
    /// `SO_ZEROCOPY` was set: this socket's tokio write readiness can no longer be trusted
    /// (zerocopy.md, "The tokio trap"), so the writer must never wait on it.
    zerocopy_socket: bool,
    threshold: usize,
    auto_fallback: bool,
    stats: std::sync::Arc<ZerocopyStats>,
    #[cfg(test)]
    inject_enobufs: u32,
}

/// Takes `written` bytes off the front of `queue`: `visit` sees each message they reached,
/// with whether they finished it; finished messages are then removed, and the last one
/// reached keeps count of its bytes sent.
fn advance(
    queue: &mut VecDeque<Pending>,
    mut written: usize,
    mut visit: impl FnMut(&mut Pending, bool),
) {
    while written > 0 {
        let head = queue
            .front_mut()
            .expect("written bytes came from the queue");
        let remaining = head.bytes.len() - head.sent;
        let finished = written >= remaining;
        visit(head, finished);
        if !finished {
            head.sent += written;
            break;
        }
        written -= remaining;
        queue.pop_front();
    }
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
        stats: std::sync::Arc<ZerocopyStats>,
        peer: std::net::IpAddr,
    ) -> Self {
        let zerocopy = policy.zerocopy
            && match zerocopy::enable(fd) {
                Ok(()) => true,
                Err(err) => {
                    stats.zerocopy_refused.store(1, Ordering::Relaxed);
                    info!(%peer, reason = %err, "Creating regular TCP session for {peer} (socket refused SO_ZEROCOPY)");
                    false
                }
            };
        if zerocopy {
            info!(%peer, "Creating zerocopy-enabled session for {peer}");
        } else if !policy.zerocopy {
            info!(%peer, "Creating regular TCP session for {peer}");
        }
        let mode = if zerocopy {
            SendMode::Zerocopy
        } else {
            SendMode::Regular
        };
        stats.mode.store(mode as u8, Ordering::Relaxed);
        Self {
            // Small to start: a healthy session rarely queues more than one batch, and the
            // memory of every idle slot is paid once per client.
            queue: VecDeque::with_capacity(8),
            in_flight: VecDeque::new(),
            next_id: 0,
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

    /// Queues an audio chunk behind everything else.
    pub(crate) fn push_audio(&mut self, bytes: Bytes, timestamp_us: i64) {
        self.queue.push_back(Pending {
            bytes: Payload::Shared(bytes),
            sent: 0,
            urgent: false,
            timestamp_us,
            zerocopy_tried: false,
        });
    }

    /// Queues a control message ahead of queued audio, after earlier control messages and
    /// after a message already partly on the wire.
    pub(crate) fn push_urgent(&mut self, bytes: Payload) {
        let start = usize::from(self.queue.front().is_some_and(|p| p.sent > 0));
        let at = (start..self.queue.len())
            .find(|&i| !self.queue[i].urgent)
            .unwrap_or(self.queue.len());
        self.queue.insert(
            at,
            Pending {
                bytes,
                sent: 0,
                urgent: true,
                timestamp_us: 0,
                zerocopy_tried: false,
            },
        );
    }

    /// Drops queued audio that has not started and was captured before `cutoff_us`.
    /// Returns how many chunks were dropped.
    pub(crate) fn drop_stale_audio(&mut self, cutoff_us: i64) -> u64 {
        let before = self.queue.len();
        let mut index = 0;
        self.queue.retain(|p| {
            let keep = (index == 0 && p.sent > 0) || p.urgent || p.timestamp_us >= cutoff_us;
            index += 1;
            keep
        });
        (before - self.queue.len()) as u64
    }

    /// Drops every queued audio chunk that has not started (a stream switch).
    pub(crate) fn drop_queued_audio(&mut self) {
        self.drop_stale_audio(i64::MAX);
    }

    /// Sends as much of the queue as the kernel takes now.
    pub(crate) fn flush(&mut self, fd: RawFd) -> io::Result<Flushed> {
        while !self.queue.is_empty() {
            let run = self.zerocopy_run();
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

    /// How many messages at the head go out together in one zerocopy send: the leading
    /// unsent shared messages (a batch of chunks coalesces here), when together they reach
    /// the threshold; 0 when the head must go the ordinary way.
    fn zerocopy_run(&self) -> usize {
        if !self.zerocopy {
            return 0;
        }
        let mut total = 0;
        let mut count = 0;
        for pending in self.queue.iter().take(MAX_IOV) {
            if !Self::is_unsent_shared(pending) {
                break;
            }
            total += pending.bytes.len();
            count += 1;
        }
        if total >= self.threshold {
            count
        } else {
            0
        }
    }

    /// Inline payloads live in the queue entry itself, which is gone before a completion
    /// could arrive, so only shared bytes may go zerocopy.
    fn is_unsent_shared(pending: &Pending) -> bool {
        pending.sent == 0 && matches!(pending.bytes, Payload::Shared(_))
    }

    /// Sends the first `run` messages in one `sendmsg(MSG_ZEROCOPY)`. Returns false when the
    /// socket is full.
    fn send_zerocopy_run(&mut self, fd: RawFd, run: usize) -> io::Result<bool> {
        let injected = self.take_injected_enobufs();
        ZerocopyStats::bump(&self.stats.zerocopy_attempts, 1);
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        for (slot, pending) in iov.iter_mut().zip(self.queue.iter()) {
            *slot = IoSlice::new(pending.bytes.as_slice());
        }
        let result = injected.map_or_else(|| zerocopy::send(fd, &iov[..run], true), Err);
        match result {
            Ok(written) => {
                ZerocopyStats::bump(&self.stats.zerocopy_successful, 1);
                ZerocopyStats::bump(&self.stats.zerocopy_bytes, written as u64);
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1);
                let in_flight = &mut self.in_flight;
                // A message left partly sent goes on the ordinary way (it is no longer unsent).
                advance(&mut self.queue, written, |head, _finished| {
                    head.zerocopy_tried = true;
                    let Payload::Shared(bytes) = &head.bytes else {
                        unreachable!("zerocopy runs hold shared payloads only")
                    };
                    // Every message the kernel took pages from stays referenced under this
                    // send's id until its completion.
                    in_flight.push_back((id, bytes.clone()));
                });
                self.stats
                    .outstanding
                    .store(self.in_flight.len() as u64, Ordering::Relaxed);
                Ok(true)
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                // optmem exhausted: these messages go the ordinary way (zerocopy.md).
                ZerocopyStats::bump(&self.stats.enobufs_fallbacks, run as u64);
                for pending in self.queue.iter_mut().take(run) {
                    pending.zerocopy_tried = true;
                }
                self.send_ordinary(fd, true)
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// One vectored ordinary write from the head of the queue. With zerocopy on, unsent
    /// shared messages after the head join only when the head is already partly sent (the
    /// socket is backed up with ordinary bytes) or `gather_all`; otherwise the write stops
    /// before them so they can go zerocopy next.
    fn send_ordinary(&mut self, fd: RawFd, gather_all: bool) -> io::Result<bool> {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut count = 0;
        let busy = gather_all || self.queue.front().is_some_and(|p| p.sent > 0);
        for (i, pending) in self.queue.iter().take(MAX_IOV).enumerate() {
            if i > 0 && self.zerocopy && !busy && Self::is_unsent_shared(pending) {
                break;
            }
            iov[count] = IoSlice::new(&pending.bytes.as_slice()[pending.sent..]);
            count += 1;
        }
        let written = match zerocopy::send(fd, &iov[..count], false) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(err) => return Err(err),
        };
        ZerocopyStats::bump(&self.stats.regular_bytes, written as u64);
        let (stats, zerocopy, threshold) = (&self.stats, self.zerocopy, self.threshold);
        advance(&mut self.queue, written, |head, finished| {
            if finished {
                ZerocopyStats::bump(&stats.regular_sends, 1);
                if zerocopy && !head.zerocopy_tried && head.bytes.len() >= threshold {
                    ZerocopyStats::bump(&stats.coordination_fallbacks, 1);
                }
            }
        });
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
                self.complete(*completion);
            }
            if !overflow {
                return Ok(());
            }
        }
    }

    fn complete(&mut self, completion: Completion) {
        let before = self.in_flight.len();
        // Match by range, not by "front of queue" (zerocopy.md).
        self.in_flight.retain(|(id, _)| !completion.covers(*id));
        let released = (before - self.in_flight.len()) as u64;
        self.stats
            .outstanding
            .store(self.in_flight.len() as u64, Ordering::Relaxed);
        if completion.copied {
            ZerocopyStats::bump(&self.stats.copied_completions, released);
            if self.auto_fallback && self.zerocopy {
                self.zerocopy = false;
                self.stats
                    .mode
                    .store(SendMode::FellBack as u8, Ordering::Relaxed);
                self.stats
                    .auto_fallback_engaged
                    .store(true, Ordering::Relaxed);
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
        self.stats.outstanding.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn pair(addr: &str) -> Option<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind(addr).ok()?;
        let client = TcpStream::connect(listener.local_addr().ok()?).ok()?;
        let (server, _) = listener.accept().ok()?;
        client.set_nonblocking(true).ok()?;
        Some((client, server))
    }

    fn policy(zerocopy: bool, auto_fallback: bool) -> SendPolicy {
        SendPolicy {
            zerocopy,
            threshold: 1024,
            auto_fallback,
        }
    }

    fn sender(socket: &TcpStream, policy: SendPolicy) -> (Sender, Arc<ZerocopyStats>) {
        let stats = Arc::new(ZerocopyStats::default());
        let ip = socket.peer_addr().unwrap().ip();
        (
            Sender::new(socket.as_raw_fd(), policy, stats.clone(), ip),
            stats,
        )
    }

    #[test]
    fn a_queue_slot_stays_small() {
        // Every session keeps at least eight slots: their size is paid once per client
        // (docs/PERFORMANCE.md, memory per client). A time reply still fits inline.
        assert!(std::mem::size_of::<Pending>() <= 72);
        assert!(matches!(
            Payload::copy_from(&[0; 34]),
            Payload::Inline { .. }
        ));
    }

    fn reap_until_idle(sender: &mut Sender, fd: RawFd) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while sender.outstanding() > 0 {
            sender.reap_completions(fd).unwrap();
            assert!(Instant::now() < deadline, "completions never arrived");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn message(fill: u8, len: usize) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    #[test]
    fn zerocopy_sends_complete_and_release_their_buffers() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let Some((client, mut server)) = pair(addr) else {
                assert!(addr.starts_with('['));
                continue;
            };
            let fd = client.as_raw_fd();
            let (mut sender, stats) = sender(&client, policy(true, false));
            assert_eq!(stats.mode(), SendMode::Zerocopy);
            let chunk = message(3, 4000);
            for i in 0..10 {
                sender.push_audio(chunk.clone(), i);
            }
            assert_eq!(sender.flush(fd).unwrap(), Flushed::All);
            let mut got = vec![0u8; 40_000];
            server.read_exact(&mut got).unwrap();
            assert!(got.iter().all(|b| *b == 3));
            // The chunk stays referenced by the kernel's in-flight entries until completion.
            assert!(sender.outstanding() > 0);
            assert!(!chunk.is_unique());
            reap_until_idle(&mut sender, fd);
            assert!(
                chunk.is_unique(),
                "{addr}: buffers released after completion"
            );
            let snap = stats.snapshot();
            // The ten queued chunks went out coalesced, in one zerocopy call.
            assert_eq!(snap.zerocopy_attempts, 1);
            assert_eq!(snap.zerocopy_successful, 1);
            assert_eq!(snap.zerocopy_bytes, 40_000);
            assert_eq!(snap.outstanding, 0);
            assert_eq!(
                snap.copied_completions, 10,
                "{addr}: loopback always copies"
            );
            assert_eq!(
                stats.mode(),
                SendMode::Zerocopy,
                "no auto-fallback asked for"
            );
        }
    }

    #[test]
    fn auto_fallback_engages_on_copied_completions() {
        let (client, mut server) = pair("127.0.0.1:0").unwrap();
        let fd = client.as_raw_fd();
        let (mut sender, stats) = sender(&client, policy(true, true));
        sender.push_audio(message(1, 4000), 0);
        sender.flush(fd).unwrap();
        reap_until_idle(&mut sender, fd);
        assert_eq!(stats.mode(), SendMode::FellBack);
        assert!(stats.auto_fallback_engaged());
        sender.push_audio(message(2, 4000), 1);
        sender.flush(fd).unwrap();
        let mut got = vec![0u8; 8000];
        server.read_exact(&mut got).unwrap();
        let snap = stats.snapshot();
        assert_eq!(snap.zerocopy_attempts, 1);
        assert_eq!(
            snap.regular_sends, 1,
            "after fallback the chunk went the ordinary way"
        );
        assert!(
            sender.is_zerocopy_socket(),
            "tokio readiness stays off-limits"
        );
    }

    #[test]
    fn enobufs_sends_that_message_the_ordinary_way() {
        let (client, mut server) = pair("127.0.0.1:0").unwrap();
        let fd = client.as_raw_fd();
        let (mut sender, stats) = sender(&client, policy(true, false));
        sender.inject_enobufs = 1;
        sender.push_audio(message(5, 2000), 0);
        sender.push_audio(message(6, 2000), 1);
        assert_eq!(sender.flush(fd).unwrap(), Flushed::All);
        let mut got = vec![0u8; 4000];
        server.read_exact(&mut got).unwrap();
        assert!(got[..2000].iter().all(|b| *b == 5) && got[2000..].iter().all(|b| *b == 6));
        let snap = stats.snapshot();
        assert_eq!(
            snap.enobufs_fallbacks, 2,
            "both messages of the refused run"
        );
        assert_eq!(snap.zerocopy_attempts, 1);
        assert_eq!(snap.zerocopy_successful, 0);
        assert_eq!(snap.regular_sends, 2);
        assert_eq!(sender.outstanding(), 0);
        // The next message goes zerocopy again.
        sender.push_audio(message(7, 2000), 2);
        assert_eq!(sender.flush(fd).unwrap(), Flushed::All);
        let mut got = vec![0u8; 2000];
        server.read_exact(&mut got).unwrap();
        assert_eq!(stats.snapshot().zerocopy_successful, 1);
        reap_until_idle(&mut sender, fd);
    }

    #[test]
    fn small_messages_go_the_ordinary_way_and_riders_count_as_coordination_fallbacks() {
        let (client, mut server) = pair("127.0.0.1:0").unwrap();
        let fd = client.as_raw_fd();
        let (mut sender, stats) = sender(&client, policy(true, false));
        // A fresh time reply ahead of a large chunk: the reply goes alone, the chunk zerocopy.
        sender.push_audio(message(9, 3000), 0);
        sender.push_urgent(Payload::copy_from(&[1; 34]));
        assert_eq!(sender.flush(fd).unwrap(), Flushed::All);
        let mut got = vec![0u8; 3034];
        server.read_exact(&mut got).unwrap();
        assert!(
            got[..34].iter().all(|b| *b == 1),
            "urgent message went first"
        );
        let snap = stats.snapshot();
        assert_eq!((snap.regular_sends, snap.zerocopy_successful), (1, 1));
        assert_eq!(snap.coordination_fallbacks, 0);

        // An ordinary message partly on the wire (socket backed up): the large chunk behind
        // it rides along in the same ordinary write, a coordination fallback.
        sender.push_urgent(Payload::copy_from(&[4; 100]));
        sender.queue[0].sent = 40;
        sender.push_audio(message(8, 3000), 1);
        assert_eq!(sender.flush(fd).unwrap(), Flushed::All);
        let mut got = vec![0u8; 3060];
        server.read_exact(&mut got).unwrap();
        assert!(got[..60].iter().all(|b| *b == 4) && got[60..].iter().all(|b| *b == 8));
        let snap = stats.snapshot();
        assert_eq!(snap.regular_sends, 3);
        assert_eq!(snap.coordination_fallbacks, 1);
        assert_eq!(snap.zerocopy_attempts, 1);
        reap_until_idle(&mut sender, fd);
    }

    #[test]
    fn chunks_below_the_threshold_coalesce_into_one_zerocopy_send() {
        let (client, mut server) = pair("127.0.0.1:0").unwrap();
        let fd = client.as_raw_fd();
        let stats = Arc::new(ZerocopyStats::default());
        let policy = SendPolicy {
            zerocopy: true,
            threshold: 10_000,
            auto_fallback: false,
        };
        let mut sender = Sender::new(fd, policy, stats.clone(), "127.0.0.1".parse().unwrap());
        // One 3,878-byte chunk alone stays below the threshold: ordinary.
        sender.push_audio(message(1, 3878), 0);
        sender.flush(fd).unwrap();
        // Three queued together (a batch) cross it: one zerocopy call.
        for i in 0..3 {
            sender.push_audio(message(2, 3878), i);
        }
        sender.flush(fd).unwrap();
        let mut got = vec![0u8; 4 * 3878];
        server.read_exact(&mut got).unwrap();
        let snap = stats.snapshot();
        assert_eq!((snap.regular_sends, snap.zerocopy_successful), (1, 1));
        assert_eq!(snap.zerocopy_bytes, 3 * 3878);
        assert_eq!(
            sender.outstanding(),
            3,
            "each chunk held until the completion"
        );
        reap_until_idle(&mut sender, fd);
    }

    #[test]
    fn urgent_messages_keep_their_order_and_never_split_a_started_message() {
        let (client, _server) = pair("127.0.0.1:0").unwrap();
        let (mut sender, _) = sender(&client, policy(false, false));
        sender.push_audio(message(1, 10), 0);
        sender.queue[0].sent = 5; // partly on the wire
        sender.push_audio(message(2, 10), 1);
        sender.push_urgent(Payload::copy_from(&[3; 10]));
        sender.push_urgent(Payload::copy_from(&[4; 10]));
        let order: Vec<u8> = sender.queue.iter().map(|p| p.bytes.as_slice()[0]).collect();
        assert_eq!(order, vec![1, 3, 4, 2]);
    }

    #[test]
    fn stale_unstarted_audio_is_dropped() {
        let (client, _server) = pair("127.0.0.1:0").unwrap();
        let (mut sender, _) = sender(&client, policy(false, false));
        sender.push_audio(message(1, 10), 100);
        sender.queue[0].sent = 1;
        sender.push_audio(message(2, 10), 200);
        sender.push_urgent(Payload::copy_from(&[3; 10]));
        sender.push_audio(message(4, 10), 900);
        assert_eq!(sender.drop_stale_audio(500), 1);
        let order: Vec<u8> = sender.queue.iter().map(|p| p.bytes.as_slice()[0]).collect();
        assert_eq!(order, vec![1, 3, 4]);
    }

    #[test]
    fn a_full_socket_blocks_without_losing_bytes_and_drop_releases_in_flight() {
        let (client, mut server) = pair("127.0.0.1:0").unwrap();
        let fd = client.as_raw_fd();
        let (mut sender, stats) = sender(&client, policy(true, false));
        let chunk = message(7, 64 * 1024);
        let mut pushed = 0;
        loop {
            sender.push_audio(chunk.clone(), pushed);
            pushed += 1;
            if sender.flush(fd).unwrap() == Flushed::Blocked {
                break;
            }
            assert!(pushed < 10_000, "socket never filled");
        }
        assert!(!sender.is_empty());
        drop(sender);
        assert_eq!(stats.snapshot().outstanding, 0);
        assert!(chunk.is_unique(), "disconnect released every held buffer");
        // Everything accepted by the kernel is a whole prefix of the stream.
        server.set_nonblocking(true).unwrap();
        let mut total = 0;
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = server.read(&mut buf) {
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|b| *b == 7));
            total += n;
        }
        assert!(total > 0);
    }

    /// The steady-state hot path: one chunk serialized once into a pooled buffer, shared by
    /// several sessions, each queueing, sending and (zerocopy) reaping it. After warm-up,
    /// sending allocates nothing and the pool creates no new buffers.
    #[test]
    fn steady_state_sends_allocate_nothing_and_the_pool_stays_flat() {
        use crate::pool::BufferPool;
        use crate::protocol::{Tv, WireChunk};

        let pool = BufferPool::default();
        let mut sessions: Vec<_> = (0..4)
            .map(|i| {
                let (client, server) = pair("127.0.0.1:0").unwrap();
                let (sender, _) = sender(&client, policy(i % 2 == 0, false));
                server.set_nonblocking(true).unwrap();
                (client, server, sender)
            })
            .collect();
        let pcm = vec![0u8; 3840];
        let mut sink = vec![0u8; 1 << 16];
        let mut send_allocations = 0;
        let mut created_after_warmup = 0;
        for round in 0..500 {
            let mut buf = pool.get(WireChunk::message_len(pcm.len()));
            WireChunk::encode_message(buf.vec(), Tv::default(), Tv::default(), &pcm);
            let chunk = Bytes::from_owner(buf); // one allocation per chunk, not per send
            let before = crate::alloc_counter::allocations();
            for (client, _, sender) in &mut sessions {
                sender.push_audio(chunk.clone(), round);
                assert_eq!(sender.flush(client.as_raw_fd()).unwrap(), Flushed::All);
                sender.reap_completions(client.as_raw_fd()).unwrap();
            }
            if round >= 100 {
                send_allocations += crate::alloc_counter::allocations() - before;
            }
            drop(chunk);
            for (client, server, sender) in &mut sessions {
                while let Ok(n) = server.read(&mut sink) {
                    if n == 0 {
                        break;
                    }
                }
                if round % 50 == 0 {
                    reap_until_idle(sender, client.as_raw_fd());
                }
            }
            if round == 100 {
                created_after_warmup = pool.stats().buffers_created;
            }
        }
        assert_eq!(send_allocations, 0, "allocations on the send path");
        for (client, _, sender) in &mut sessions {
            reap_until_idle(sender, client.as_raw_fd());
        }
        let stats = pool.stats();
        assert_eq!(
            stats.buffers_created, created_after_warmup,
            "steady streaming created new buffers: {stats:?}"
        );
        assert_eq!(stats.buffers_created + stats.buffers_reused, 500);
        assert_eq!(stats.available_buffers, stats.total_buffers, "all returned");
    }

    #[test]
    fn a_socket_refusing_so_zerocopy_runs_a_regular_session() {
        // AF_UNIX sockets reject SO_ZEROCOPY, like a kernel or container without support.
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let stats = Arc::new(ZerocopyStats::default());
        let mut sender = Sender::new(
            ours.as_raw_fd(),
            policy(true, true),
            stats.clone(),
            "127.0.0.1".parse().unwrap(),
        );
        assert_eq!(stats.mode(), SendMode::Regular);
        assert_eq!(stats.zerocopy_refused.load(Ordering::Relaxed), 1);
        assert!(!sender.is_zerocopy_socket());
        sender.push_audio(message(4, 5000), 0);
        assert_eq!(sender.flush(ours.as_raw_fd()).unwrap(), Flushed::All);
        let mut got = vec![0u8; 5000];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(stats.snapshot().regular_sends, 1);
        assert_eq!(stats.snapshot().zerocopy_attempts, 0);
    }
}
