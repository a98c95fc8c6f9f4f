//! The sender's queue policy, with no sockets: what is queued where, which messages go out
//! together and how (zerocopy or ordinary), how written bytes are taken off the queue and
//! counted, and which zerocopy buffers stay held until the kernel's completion notice.
//! `sender.rs` makes the syscalls these decisions call for; see its module doc for why
//! zerocopy and ordinary sends never interleave.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Bytes;

use super::zerocopy::Completion;

/// Most messages gathered into one vectored write.
pub(crate) const MAX_IOV: usize = 16;

/// Largest control message kept inline: Time replies are 34 bytes (a 26-byte header and an
/// 8-byte time), and they are the only control messages of a session's steady state. Rarer
/// ones (ServerSettings, ~95 bytes) take shared bytes. Exactly a Time reply: every queue slot
/// of every session carries it.
pub(crate) const INLINE_CAPACITY: usize = 34;

/// Slots a send queue starts with (see [`SendQueue::default`]).
pub(crate) const QUEUE_SLOTS: usize = 12;

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

// Every session keeps a queue of these (docs/PERFORMANCE.md, "Memory per client").
const _: () = assert!(std::mem::size_of::<Pending>() <= 64);

impl Pending {
    /// Inline payloads live in the queue entry itself, which is gone before a completion
    /// could arrive, so only shared bytes may go zerocopy.
    fn is_unsent_shared(&self) -> bool {
        self.sent == 0 && matches!(self.bytes, Payload::Shared(_))
    }
}

/// What an ordinary write finished, for the session's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OrdinaryDone {
    /// Messages the write finished.
    pub(crate) finished: u64,
    /// Of those, zerocopy-eligible ones no zerocopy call had handled: they rode along
    /// behind ordinary bytes (coordination fallbacks, `net::sender`).
    pub(crate) coordination_fallbacks: u64,
}

/// One session's queue of whole messages, sent strictly in order.
#[derive(Debug)]
pub(crate) struct SendQueue {
    queue: VecDeque<Pending>,
}

impl Default for SendQueue {
    fn default() -> Self {
        // What a session's writer queues at most in steady state (ten chunks ahead at the
        // default batch window, see `session::writer`, and a few control messages), so the
        // queue never grows: its memory is paid once per client, and kept for good.
        Self {
            queue: VecDeque::with_capacity(QUEUE_SLOTS),
        }
    }
}

impl SendQueue {
    /// Nothing left to send.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Audio chunks queued (started or not): what the session took from its stream's ring
    /// and has not finished sending.
    pub(crate) fn queued_audio(&self) -> usize {
        self.queue.iter().filter(|p| !p.urgent).count()
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
        let start = usize::from(self.head_started());
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

    /// The head message is partly on the wire.
    fn head_started(&self) -> bool {
        self.queue.front().is_some_and(|p| p.sent > 0)
    }

    /// How many messages at the head go out together in one zerocopy send: the leading
    /// unsent shared messages (a batch of chunks coalesces here), when together they reach
    /// `threshold`; 0 when the head must go the ordinary way.
    pub(crate) fn zerocopy_run(&self, threshold: usize) -> usize {
        let mut total = 0;
        let mut count = 0;
        for pending in self.queue.iter().take(MAX_IOV) {
            if !pending.is_unsent_shared() {
                break;
            }
            total += pending.bytes.len();
            count += 1;
        }
        if total >= threshold {
            count
        } else {
            0
        }
    }

    /// Points `iov` at the first `run` messages (a [`Self::zerocopy_run`], all unsent).
    pub(crate) fn zerocopy_slices<'a>(&'a self, run: usize, iov: &mut [IoSlice<'a>; MAX_IOV]) {
        for (slot, pending) in iov.iter_mut().zip(self.queue.iter()).take(run) {
            *slot = IoSlice::new(pending.bytes.as_slice());
        }
    }

    /// Points `iov` at what one ordinary write sends from the head of the queue, returning
    /// how many slices. With `zerocopy` on, unsent shared messages after the head join only
    /// when the head is already partly sent (the socket is backed up with ordinary bytes) or
    /// `gather_all`; otherwise the write stops before them so they can go zerocopy next.
    pub(crate) fn ordinary_slices<'a>(
        &'a self,
        zerocopy: bool,
        gather_all: bool,
        iov: &mut [IoSlice<'a>; MAX_IOV],
    ) -> usize {
        let mut count = 0;
        let busy = gather_all || self.head_started();
        for (i, pending) in self.queue.iter().take(MAX_IOV).enumerate() {
            if i > 0 && zerocopy && !busy && pending.is_unsent_shared() {
                break;
            }
            iov[count] = IoSlice::new(&pending.bytes.as_slice()[pending.sent..]);
            count += 1;
        }
        count
    }

    /// Marks the first `run` messages as handled by a zerocopy call the kernel refused
    /// (`ENOBUFS`): finishing them the ordinary way is no coordination fallback.
    pub(crate) fn mark_zerocopy_tried(&mut self, run: usize) {
        for pending in self.queue.iter_mut().take(run) {
            pending.zerocopy_tried = true;
        }
    }

    /// Takes the `written` bytes of an accepted zerocopy send off the queue: every message
    /// the kernel took pages from stays held in `in_flight` under the send's id until its
    /// completion. A message left partly sent goes on the ordinary way (it is no longer
    /// unsent).
    pub(crate) fn take_zerocopy_written(&mut self, written: usize, in_flight: &mut InFlight) {
        let id = in_flight.next_send_id();
        self.advance(written, |head, _finished| {
            head.zerocopy_tried = true;
            let Payload::Shared(bytes) = &head.bytes else {
                unreachable!("zerocopy runs hold shared payloads only")
            };
            in_flight.hold(id, bytes.clone());
        });
    }

    /// Takes the `written` bytes of an ordinary write off the queue and classifies what it
    /// finished: with `zerocopy` on, a finished message of at least `threshold` bytes that
    /// no zerocopy call handled is a coordination fallback.
    pub(crate) fn take_ordinary_written(
        &mut self,
        written: usize,
        zerocopy: bool,
        threshold: usize,
    ) -> OrdinaryDone {
        let mut done = OrdinaryDone::default();
        self.advance(written, |head, finished| {
            if finished {
                done.finished += 1;
                if zerocopy && !head.zerocopy_tried && head.bytes.len() >= threshold {
                    done.coordination_fallbacks += 1;
                }
            }
        });
        done
    }

    /// Takes `written` bytes off the front of the queue: `visit` sees each message they
    /// reached, with whether they finished it; finished messages are then removed, and the
    /// last one reached keeps count of its bytes sent.
    fn advance(&mut self, mut written: usize, mut visit: impl FnMut(&mut Pending, bool)) {
        while written > 0 {
            let head = self
                .queue
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
            self.queue.pop_front();
        }
    }

    /// Pretends the head message is partly on the wire.
    #[cfg(test)]
    pub(crate) fn pretend_head_sent(&mut self, sent: usize) {
        self.queue[0].sent = sent;
    }

    /// The first byte of every queued message, in order.
    #[cfg(test)]
    fn first_bytes(&self) -> Vec<u8> {
        self.queue.iter().map(|p| p.bytes.as_slice()[0]).collect()
    }
}

/// The buffers of zerocopy sends the kernel has not completed, under the u32 id each
/// accepted send takes (wrapping), and released by the id ranges completions cover.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    held: VecDeque<(u32, Bytes)>,
    next_id: u32,
}

impl InFlight {
    /// Buffers held.
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// Nothing held.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Takes the id of the next accepted zerocopy send.
    fn next_send_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn hold(&mut self, id: u32, bytes: Bytes) {
        self.held.push_back((id, bytes));
    }

    /// Releases every buffer `completion` covers, returning how many. Matched by range, not
    /// by "front of queue" (docs/ZEROCOPY.md, "The kernel contract").
    pub(crate) fn complete(&mut self, completion: &Completion) -> u64 {
        let before = self.held.len();
        self.held.retain(|(id, _)| !completion.covers(*id));
        (before - self.held.len()) as u64
    }

    /// Releases everything (the kernel keeps its own page references).
    pub(crate) fn clear(&mut self) {
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(fill: u8, len: usize) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    fn completion(first: u32, last: u32) -> Completion {
        Completion {
            first,
            last,
            copied: false,
        }
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
        assert!(matches!(Payload::copy_from(&[0; 95]), Payload::Shared(_)));
    }

    #[test]
    fn urgent_messages_keep_their_order_and_never_split_a_started_message() {
        let mut queue = SendQueue::default();
        queue.push_audio(message(1, 10), 0);
        queue.pretend_head_sent(5); // partly on the wire
        queue.push_audio(message(2, 10), 1);
        queue.push_urgent(Payload::copy_from(&[3; 10]));
        queue.push_urgent(Payload::copy_from(&[4; 10]));
        assert_eq!(queue.first_bytes(), vec![1, 3, 4, 2]);
    }

    #[test]
    fn stale_unstarted_audio_is_dropped() {
        let mut queue = SendQueue::default();
        queue.push_audio(message(1, 10), 100);
        queue.pretend_head_sent(1);
        queue.push_audio(message(2, 10), 200);
        queue.push_urgent(Payload::copy_from(&[3; 10]));
        queue.push_audio(message(4, 10), 900);
        assert_eq!(queue.drop_stale_audio(500), 1);
        assert_eq!(queue.first_bytes(), vec![1, 3, 4]);
        assert_eq!(queue.drop_stale_audio(i64::MAX), 1, "a stream switch");
        assert_eq!(queue.first_bytes(), vec![1, 3]);
    }

    #[test]
    fn leading_shared_messages_reaching_the_threshold_go_zerocopy_together() {
        let mut queue = SendQueue::default();
        queue.push_audio(message(1, 400), 0);
        assert_eq!(queue.zerocopy_run(1000), 0, "one small chunk alone");
        queue.push_audio(message(2, 400), 1);
        queue.push_audio(message(3, 400), 2);
        assert_eq!(queue.zerocopy_run(1000), 3, "a batch lifts them over");
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        queue.zerocopy_slices(3, &mut iov);
        let lens: Vec<usize> = iov.iter().map(|s| s.len()).collect();
        assert_eq!(&lens[..4], &[400, 400, 400, 0]);

        // An inline control message at the head goes the ordinary way, alone.
        queue.push_urgent(Payload::copy_from(&[9; 34]));
        assert_eq!(queue.zerocopy_run(1000), 0);
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        assert_eq!(queue.ordinary_slices(true, false, &mut iov), 1);
        // Without zerocopy, or with every message gathered, the whole queue rides along.
        assert_eq!(queue.ordinary_slices(false, false, &mut iov), 4);
        assert_eq!(queue.ordinary_slices(true, true, &mut iov), 4);
    }

    #[test]
    fn a_run_never_exceeds_the_iov_limit_and_stops_at_a_started_message() {
        let mut queue = SendQueue::default();
        for i in 0..(MAX_IOV + 4) {
            queue.push_audio(message(1, 100), i as i64);
        }
        assert_eq!(queue.zerocopy_run(100), MAX_IOV);
        assert_eq!(queue.zerocopy_run(MAX_IOV * 100 + 1), 0);
        queue.pretend_head_sent(10);
        assert_eq!(
            queue.zerocopy_run(1),
            0,
            "a started head goes the ordinary way"
        );
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        assert_eq!(
            queue.ordinary_slices(true, false, &mut iov),
            MAX_IOV,
            "behind ordinary bytes, the rest rides along"
        );
        assert_eq!(iov[0].len(), 90);
    }

    #[test]
    fn ordinary_writes_count_finished_messages_and_coordination_fallbacks() {
        let mut queue = SendQueue::default();
        queue.push_urgent(Payload::copy_from(&[4; 100]));
        queue.pretend_head_sent(40);
        queue.push_audio(message(8, 3000), 1);
        queue.push_audio(message(8, 3000), 2);
        queue.mark_zerocopy_tried(3);
        queue.push_audio(message(8, 3000), 3);
        // Rest of the control message, two tried chunks, half the last one.
        let done = queue.take_ordinary_written(60 + 6000 + 1500, true, 1024);
        assert_eq!(
            done,
            OrdinaryDone {
                finished: 3,
                coordination_fallbacks: 0
            }
        );
        let done = queue.take_ordinary_written(1500, true, 1024);
        assert_eq!(
            done,
            OrdinaryDone {
                finished: 1,
                coordination_fallbacks: 1
            },
            "an untried chunk above the threshold rode along"
        );
        assert!(queue.is_empty());
        queue.push_audio(message(8, 3000), 4);
        let done = queue.take_ordinary_written(3000, false, 1024);
        assert_eq!(done.coordination_fallbacks, 0, "no zerocopy, no fallback");
    }

    #[test]
    fn zerocopy_sends_hold_their_buffers_until_a_completion_covers_them() {
        let mut queue = SendQueue::default();
        let mut in_flight = InFlight::default();
        let chunk = message(1, 1000);
        for i in 0..3 {
            queue.push_audio(chunk.clone(), i);
        }
        // First send: all of one chunk and half of the next, both held under id 0.
        queue.take_zerocopy_written(1500, &mut in_flight);
        assert_eq!(in_flight.len(), 2);
        assert_eq!(
            queue.zerocopy_run(1),
            0,
            "the half-sent chunk is no longer unsent"
        );
        let done = queue.take_ordinary_written(500, true, 100);
        assert_eq!(
            done.coordination_fallbacks, 0,
            "zerocopy already handled it"
        );
        // Second send (id 1): the last chunk.
        queue.take_zerocopy_written(1000, &mut in_flight);
        assert!(queue.is_empty());
        assert_eq!(in_flight.len(), 3);
        assert_eq!(in_flight.complete(&completion(1, 1)), 1);
        assert_eq!(in_flight.complete(&completion(5, 9)), 0);
        assert_eq!(in_flight.complete(&completion(0, 0)), 2);
        assert!(in_flight.is_empty());
        assert!(chunk.is_unique(), "every buffer released");
    }

    #[test]
    fn completion_ranges_release_across_id_wrap() {
        let mut in_flight = InFlight {
            next_id: u32::MAX - 1,
            ..InFlight::default()
        };
        let mut queue = SendQueue::default();
        for i in 0..4 {
            queue.push_audio(message(1, 10), i);
            queue.take_zerocopy_written(10, &mut in_flight);
        }
        let ids: Vec<u32> = in_flight.held.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![u32::MAX - 1, u32::MAX, 0, 1]);
        assert_eq!(in_flight.complete(&completion(u32::MAX, 0)), 2);
        let ids: Vec<u32> = in_flight.held.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![u32::MAX - 1, 1]);
        in_flight.clear();
        assert!(in_flight.is_empty());
    }
}
