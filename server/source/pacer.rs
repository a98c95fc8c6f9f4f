//! Cuts a source's bytes into fixed-duration PCM chunks, paced to real time, each stamped
//! with the capture time of its first sample (docs/PROTOCOL.md §2.4), on a timeline that
//! stays contiguous across source pauses.
//!
//! Why the timeline must stay contiguous: snapclient plays chunks back to back. It never
//! plays a gap between two chunks' timestamps as silence; it notices the shift only later and
//! then corrects with a hard resync. So if the chunks after a writer pause were stamped with
//! the later time they arrived at, clients would play them right after the audio before the
//! pause (early), then jump. A pause must reach clients as *silence chunks* covering exactly
//! the time the source was quiet.
//!
//! Rules, and why:
//! - **Pacing.** A chunk is not completed before its last sample would have been captured in
//!   real time, so a writer that runs ahead (a decoder filling the FIFO) is consumed at the
//!   audio rate instead of flooding clients with chunks from the future.
//! - **Reading as frames fall due.** A blocking writer (the pipe full) writes again only when
//!   a read frees room, so when we read sets when it writes, and with it the latency from its
//!   writes to the clients. While a writer has data queued, its frames are read within
//!   `READ_STEP_US` of their time on the timeline and never more than a chunk needs, so that
//!   latency stays the same across a pause, whatever silence the pause inserted (reading a
//!   chunk, or a staging buffer, at a time would tie it to chunk boundaries that a pause
//!   moves against the data).
//! - **The writer's lead.** Real players keep audio queued ahead of real time: a blocking
//!   writer (librespot's pipe backend) fills the pipe, mpd or `ffmpeg -re` stay tens of ms
//!   ahead, a socket holds what was sent. What a writer has handed over but we have not read
//!   yet is visible (the pipe's or socket's queue, FIONREAD, plus our staging buffer), so
//!   the pacer observes `lead = where the received data ends on the timeline − now`, after
//!   every read that waited, after every chunk, and every millisecond of one chunk in each
//!   quarter second (a writer far ahead is never waited for, and a look once a chunk would
//!   always fall at the same phase of its writes). A writer with nothing queued is read as
//!   each write arrives, even when the current chunk is complete, so every one of its writes
//!   is an observation at its arrival: a jittery writer's earliest writes are seen, and its
//!   lead is measured the same way as the burst after its pause is placed (by arrivals).
//!   An arrival found to be a skip is not an observation: it would widen the scatter that
//!   decides whether it was one. Delays only make an observation smaller,
//!   so the largest of the last one to two seconds of playback is the lead (`lead.rs`). It
//!   is not observed while the source is paused, so a pause never ages it out.
//! - **The first data.** Arrivals are collected for `FIRST_SETTLE`; where the first frame
//!   would sit if played the moment it arrived is `arrival − what the writer had handed
//!   over by then`, and the earliest of these wins (one arrival carries the relay's own
//!   wake-up delay). Whatever the writer queued beyond one chunk is kept as its lead (as
//!   snapserver's first read takes one chunk and leaves the rest queued), so a stall that
//!   the writer's queue covers is never heard: the timeline goes on from the queue.
//! - **Pause detection.** A chunk still short `GRACE` (plus how widely this writer's
//!   observations scatter, so a jittery writer is not taken for a paused one) after it was
//!   due means the source paused: the rest of the chunk is silence and it goes out. While
//!   the source stays quiet, every further chunk is silence, sent when due + that grace, so
//!   the encoder's last partial frame of real audio is flushed on time and clients fill
//!   their buffers with the pause.
//! - **Resume: the burst is placed by the lead.** Data that comes back is placed so that the
//!   writer's lead right after it is the lead it had before: its first frame goes at
//!   `min over SETTLE of (arrival − what the writer had handed over) + lead`. A writer that
//!   rebuilds its lead in one burst after a pause therefore lands exactly where its real-time
//!   position is, the silence in front of it is exactly what it skipped, and the latency
//!   after the pause is the latency before it, whatever the lead (0 for a writer that writes
//!   just in time, a full pipe for a blocking one). Data that comes back where the timeline
//!   already is (the writer's queue covered the stall, or a jittery write caught up) simply
//!   continues. Lateness below `TOLERANCE` without a detected pause is absorbed (scheduling
//!   jitter; silence for it would be a click and a lasting shift), whether the first read
//!   shows it or the settled arrivals do (a refill read piece by piece).
//! - **Why this cannot drift.** The timeline only advances by what it publishes, and every
//!   placement is taken from arrival times (absolute) plus one reference lead. The reference
//!   moves only when the observed lead moves by more than a few ms (`lead.rs`), so the
//!   wake-up delay that makes one placement a fraction of a ms late is not learned back as a
//!   larger lead: errors do not carry from one pause to the next, while a writer whose lead
//!   really changed is followed within the window. Each placement is an upper bound on where
//!   the writer's data can go (it arrived after it was written), so the timeline is never
//!   ahead of the source.
//! - **Bridging ends.** After `bridge` (the clients' buffer) of continuous silence nothing
//!   more is sent: the clients hold the pause, and a stopped source costs no bandwidth. The
//!   timeline's end is kept. If data returns while clients may still hold queued silence,
//!   the hole up to the data is filled with silence at once (contiguous again). If it
//!   returns later, every client has played out its buffer and the timeline restarts where
//!   the data belongs (by the same rule, with the same lead), behind `LEAD_IN` of silence:
//!   an encoder may still hold up to one frame of the old timeline, and that frame's unit
//!   carries the old (now stale) timestamp, which sessions drop as too late; the lead-in
//!   makes sure it holds only silence.
//! - Partial frames never get silence in the middle: the staging buffer hands out whole
//!   frames only.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::Reader;
use crate::clock;
use crate::sample_format::SampleFormat;
use lead::Lead;

/// How late past its due time a chunk may complete before the source counts as paused.
/// Detection delay only: where the silence goes is measured, not guessed from this.
const GRACE_US: i64 = 40_000;
/// Lateness of returning data absorbed without inserting silence (scheduling jitter).
const TOLERANCE_US: i64 = 15_000;
/// Silence in front of the data when the timeline restarts after clients ran dry; longer
/// than any codec's frame (FLAC's 4096 frames at 22.05 kHz: 186 ms).
const LEAD_IN_US: i64 = 200_000;
/// How long past the point where clients have played out their buffers the timeline is
/// still continued rather than restarted; covers the sessions' late-chunk margin (100 ms).
const RESTART_MARGIN_US: i64 = 300_000;
/// The staging buffer holds at least this much audio.
const STAGING_MIN_US: u64 = 100_000;
/// How long arrivals are collected to place data after a pause: one arrival carries its own
/// wake-up delay, the earliest of several does not.
const SETTLE_US: i64 = 50_000;
/// The same for the very first data, which anchors the timeline: longer (as long as the
/// staging buffer holds), because a relay (and its clients) starting up is busy, and because
/// later reads rarely wait and so rarely tell how far off the anchor is.
const FIRST_SETTLE_US: i64 = STAGING_MIN_US as i64;
/// How often a settle window, or a sampling of the lead, looks at the pipe or socket.
const SAMPLE_US: i64 = 1_000;
/// How much played time passes between two samplings of the lead (each one chunk long).
const SAMPLING_EVERY_US: i64 = 250_000;
/// How often frames are taken in as they fall due while a writer has data queued: the most
/// a blocked writer's writes lag the time of the frames that make room for them.
const READ_STEP_US: i64 = 2_000;

/// One chunk of raw PCM, borrowed from the pacer's buffer.
#[derive(Debug)]
pub(crate) struct PcmChunk<'a> {
    /// Server-clock capture time of the first frame, in µs.
    pub(crate) timestamp_us: i64,
    /// Interleaved frames.
    pub(crate) data: &'a [u8],
}

/// What the pacer has to say next.
#[derive(Debug)]
pub(crate) enum Paced<'a> {
    /// A full chunk (silence where the source was quiet).
    Chunk(PcmChunk<'a>),
    /// The source stayed quiet for the whole bridge: no chunks follow until it returns.
    /// Said once per stall.
    Stalled,
}

/// How many chunks the pacer may produce at once when data returns after a bridged pause
/// (the hole is filled with silence in one go), for sizing the queue behind it.
pub(crate) fn max_burst_chunks(chunk_ms: u32, buffer_ms: u32) -> usize {
    let burst_us = u64::from(buffer_ms) * 1000 + (RESTART_MARGIN_US + LEAD_IN_US) as u64;
    (burst_us / (u64::from(chunk_ms.max(1)) * 1000)) as usize + 2
}

/// A staged read: the whole frames the writer had handed over by then (staged, plus what
/// still waits in its pipe or socket) and, if the read had to wait, when it arrived.
struct Arrival {
    backlog_frames: usize,
    waited_at: Option<i64>,
}

/// Chunking, pacing and timestamping state for one source.
#[derive(Debug)]
pub(crate) struct Pacer {
    format: SampleFormat,
    chunk: Vec<u8>,
    filled: usize,
    chunk_us: i64,
    /// Bytes read but not yet placed: `staged[start..end]`.
    staged: Vec<u8>,
    staged_start: usize,
    staged_end: usize,
    /// Silence (whole frames, in bytes) to place before the staged data.
    silence_owed: usize,
    /// Capture time of the current chunk's first frame; `None` while no timeline runs.
    next_ts: Option<i64>,
    /// Where the timeline ended when bridging stopped.
    ended_at: Option<i64>,
    /// Whether the current chunk already waited for its due time.
    paced: bool,
    /// A deadline passed with no data and none came since.
    quiet: bool,
    /// Silence sent in a row while quiet, µs.
    bridged_us: i64,
    bridge_us: i64,
    /// Whether a read that waits means data produced in real time (pipe, tcp, process).
    live: bool,
    /// How far ahead of real time the writer keeps its data.
    lead: Lead,
    /// Played time since the lead was last sampled, µs.
    unsampled_us: i64,
    stall_pending: bool,
    pauses: u64,
    resyncs: u64,
}

impl Pacer {
    /// A pacer for chunks of `chunk_ms`, bridging pauses for up to `bridge_ms` (the clients'
    /// buffer) with silence. `live` says whether reads that wait mean fresh real-time data.
    pub(crate) fn new(format: SampleFormat, chunk_ms: u32, bridge_ms: u32, live: bool) -> Self {
        let frames = format.frames_in(Duration::from_millis(u64::from(chunk_ms)));
        let chunk_bytes = frames * format.frame_size();
        let staging_frames = format.frames_in(Duration::from_micros(STAGING_MIN_US));
        let staging = (staging_frames * format.frame_size()).max(4 * chunk_bytes);
        Self {
            format,
            chunk: vec![0; chunk_bytes],
            filled: 0,
            chunk_us: format.duration_of(frames).as_micros() as i64,
            staged: vec![0; staging],
            staged_start: 0,
            staged_end: 0,
            silence_owed: 0,
            next_ts: None,
            ended_at: None,
            paced: false,
            quiet: false,
            bridged_us: 0,
            bridge_us: i64::from(bridge_ms) * 1000,
            live,
            lead: Lead::default(),
            unsampled_us: 0,
            stall_pending: false,
            pauses: 0,
            resyncs: 0,
        }
    }

    /// Source pauses detected (each bridged with silence).
    pub(crate) fn pauses(&self) -> u64 {
        self.pauses
    }

    /// How far ahead of real time the writer keeps its data, µs (0 until known).
    pub(crate) fn lead_us(&self) -> i64 {
        self.lead.reference()
    }

    /// Times the timeline restarted because the source was away longer than clients buffer.
    pub(crate) fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Waits for the next chunk. Cancel safe: partial data stays in the pacer.
    pub(crate) async fn next(&mut self, reader: &mut Reader) -> io::Result<Paced<'_>> {
        if std::mem::take(&mut self.stall_pending) {
            return Ok(Paced::Stalled);
        }
        let ts = match self.next_ts {
            Some(ts) => ts,
            None => self.start_timeline(reader).await?,
        };
        let due = ts + self.chunk_us;
        if !self.paced {
            self.wait_until_due(reader, ts, due).await?;
            self.paced = true;
        }
        let frame = self.format.frame_size();
        loop {
            self.place_received();
            let space = self.chunk.len() - self.filled;
            if space == 0 {
                break;
            }
            // A writer that scatters its writes gets as much more patience as it scatters.
            let grace = GRACE_US + self.lead.spread();
            // No more than the chunk needs: what is left stays with the writer until due.
            match self.stage(reader, Some(due + grace), space).await? {
                None => {
                    // Nothing by the deadline: the source paused at this frame.
                    if !self.quiet {
                        self.quiet = true;
                        self.pauses += 1;
                        debug!(at_us = ts + self.micros_of(self.filled), "source paused");
                        let partial = self.staged_end - self.staged_start;
                        if partial > 0 {
                            warn!(
                                bytes = partial,
                                frame_bytes = frame,
                                "source paused in the middle of a frame; the partial frame waits for the rest of it"
                            );
                        }
                    }
                    self.chunk[self.filled..].fill(0);
                    self.filled = self.chunk.len();
                }
                Some(arrival) => self.take_in(reader, ts, arrival).await?,
            }
        }
        self.filled = 0;
        self.paced = false;
        let end = ts + self.chunk_us;
        self.next_ts = Some(end);
        if self.live && !self.quiet {
            self.observe_lead(reader, end);
            self.lead.played(self.chunk_us);
            self.unsampled_us += self.chunk_us;
        }
        if self.quiet {
            self.bridged_us += self.chunk_us;
            if self.bridged_us >= self.bridge_us {
                // Clients now hold the whole pause they can use; stop sending.
                self.next_ts = None;
                self.ended_at = Some(end);
                self.stall_pending = true;
            }
        }
        Ok(Paced::Chunk(PcmChunk {
            timestamp_us: ts,
            data: &self.chunk,
        }))
    }

    /// Waits until the chunk starting at `ts` is `due`, meanwhile sampling the writer's lead
    /// (one chunk in each `SAMPLING_EVERY_US`) and taking in its frames as they fall due.
    ///
    /// Sampling: a writer whose lead is larger than the staging buffer is never waited for,
    /// so its writes are seen only when we look; looking once a chunk, always at the same
    /// phase of its period, would take its lead for up to one period less than it is.
    ///
    /// Taking frames in as they fall due: a writer blocked on a full pipe or socket writes
    /// again only when a read frees room, so *when we read* sets when it writes. Reading a
    /// whole chunk at once when the chunk is due would tie its writes to the chunk
    /// boundaries, and those move against the data by whatever silence a pause inserted, so
    /// its latency after a pause would differ from before by up to a chunk. Reading each
    /// frame within `READ_STEP_US` of its time keeps it the same.
    async fn wait_until_due(&mut self, reader: &mut Reader, ts: i64, due: i64) -> io::Result<()> {
        let flowing = self.live && !self.quiet;
        let sampling = flowing && self.unsampled_us >= SAMPLING_EVERY_US;
        if sampling {
            self.unsampled_us = 0;
        }
        loop {
            let now = clock::now_micros();
            if now >= due {
                return Ok(());
            }
            let queued = reader.pending_bytes() > 0;
            self.place_received();
            if flowing && !queued && self.all_placed() {
                // The writer has nothing queued, so it is not waiting for us: read its next
                // write as it comes, even when this chunk is complete (a jittery writer's
                // earliest writes come then). Its arrival tells exactly how far ahead it
                // writes and whether it skipped; what came before it is placed already (in
                // this chunk), so a silence for a skip goes exactly in between.
                if let Some(arrival) = self.stage(reader, Some(due), usize::MAX).await? {
                    self.take_in(reader, ts, arrival).await?;
                }
                continue;
            }
            // Only a writer with data queued can be held back by when we read, and only
            // frames of this chunk fall due before it is.
            let keeping_pace = flowing && queued && self.filled < self.chunk.len();
            let step = match (sampling, keeping_pace) {
                (true, _) => SAMPLE_US,
                (false, true) => READ_STEP_US,
                (false, false) => due - now,
            };
            tokio::time::sleep_until(clock::instant_at((now + step).min(due))).await;
            if keeping_pace {
                self.take_in_due_frames(reader, ts).await?;
            }
            if sampling {
                self.observe_lead(reader, ts);
            }
        }
    }

    /// Whether everything received is placed: no silence owed, no whole frame staged.
    fn all_placed(&self) -> bool {
        self.silence_owed == 0 && self.staged_end - self.staged_start < self.format.frame_size()
    }

    /// Places what is owed and received into the current chunk, as far as it has room: the
    /// silence owed, then the whole frames staged.
    fn place_received(&mut self) {
        let frame = self.format.frame_size();
        let space = self.chunk.len() - self.filled;
        let silence = self.silence_owed.min(space);
        self.chunk[self.filled..self.filled + silence].fill(0);
        self.filled += silence;
        self.silence_owed -= silence;
        let whole = (self.staged_end - self.staged_start) / frame * frame;
        let n = whole.min(self.chunk.len() - self.filled);
        self.chunk[self.filled..self.filled + n]
            .copy_from_slice(&self.staged[self.staged_start..self.staged_start + n]);
        self.filled += n;
        self.staged_start += n;
    }

    /// Reads, without waiting, the writer's frames whose time on the timeline (the current
    /// chunk starts at `ts`) has come.
    async fn take_in_due_frames(&mut self, reader: &mut Reader, ts: i64) -> io::Result<()> {
        let held = self.staged_end - self.staged_start;
        let received_until = ts + self.micros_of(self.filled + self.silence_owed + held);
        let due_bytes = self.bytes_of(clock::now_micros() - received_until);
        if due_bytes > 0 {
            self.stage_waiting(reader, due_bytes).await?;
        }
        Ok(())
    }

    /// Observes the writer's lead: where the data it handed over ends on the timeline (the
    /// current chunk starts at `ts`), against the clock.
    fn observe_lead(&mut self, reader: &Reader, ts: i64) {
        let received = self.filled + self.silence_owed + self.unplaced_bytes(reader);
        let observed = ts + self.micros_of(received) - clock::now_micros();
        self.lead.observe(observed, false);
    }

    /// What the writer handed over that is not placed yet: staged, and still in its pipe or
    /// socket.
    fn unplaced_bytes(&self, reader: &Reader) -> usize {
        self.staged_end - self.staged_start + reader.pending_bytes()
    }

    /// Decides where data that just came in goes: right here, or behind silence for the time
    /// the source was away.
    async fn take_in(&mut self, reader: &mut Reader, ts: i64, arrival: Arrival) -> io::Result<()> {
        let was_quiet = std::mem::take(&mut self.quiet);
        self.bridged_us = 0;
        if !self.live {
            return Ok(());
        }
        // Data that was already waiting is simply next in line (when it arrived is unknown:
        // the time we looked is no measure of it, timer wake-ups being late by a steady bit).
        let Some(at) = arrival.waited_at else {
            return Ok(());
        };
        let here = ts + self.micros_of(self.filled);
        let observed = here + self.micros_of_frames(arrival.backlog_frames) - at;
        // Behind the writer's usual lead by this much: it skipped that much (or is late). A
        // writer whose writes scatter is late by as much as they scatter all the time.
        let late_by = self.lead.reference() - observed;
        // The scatter as it was before this arrival: a skip must not widen the patience
        // that decides whether it was one.
        let tolerance = if was_quiet {
            0
        } else {
            TOLERANCE_US.max(self.lead.spread())
        };
        if late_by <= tolerance {
            if !was_quiet {
                self.lead.observe(observed, true);
            }
            return Ok(());
        }
        // A pause ended (or the writer skipped). One arrival carries its own wake-up delay,
        // and a jittery writer's next write may come early again: the best of the next few
        // says where the data belongs.
        // The more a writer's writes scatter, the more of them it takes to find its earliest.
        let window = SETTLE_US + 2 * self.lead.spread();
        let belongs_at = self.settle(reader, arrival, window).await? + self.lead.reference();
        let silence = belongs_at - here;
        // The same tolerance once the arrivals are settled: a writer whose queue covered its
        // stall but who came back a few ms late (its first read caught only the first piece
        // of the refill) has skipped nothing, and silence for it would be a lasting shift.
        if silence <= tolerance {
            // Late, and then on time again: how this writer's writes scatter.
            if !was_quiet {
                self.lead.observe(observed, true);
            }
            return Ok(());
        }
        self.silence_owed = self.bytes_of(silence);
        if !was_quiet {
            self.pauses += 1;
        }
        debug!(
            at_us = here,
            silence_us = silence,
            lead_us = self.lead.reference(),
            spread_us = self.lead.spread(),
            settled_over_us = window,
            "source resumed; pause bridged"
        );
        Ok(())
    }

    /// Where the writer's data starts, were it played the moment it arrived, as tightly as
    /// `window_us` of arrivals tell: data arrives at or after it was written, so each read
    /// gives an upper bound and wake-up delays only loosen it.
    async fn settle(
        &mut self,
        reader: &mut Reader,
        first: Arrival,
        window_us: i64,
    ) -> io::Result<i64> {
        Ok(self.settle_arrivals(reader, first, window_us).await?.0)
    }

    /// The arrivals of `window_us`: where the data starts (as [`Self::settle`]), what the
    /// writer had queued up, and the most its data ran ahead of that start at an arrival.
    async fn settle_arrivals(
        &mut self,
        reader: &mut Reader,
        first: Arrival,
        window_us: i64,
    ) -> io::Result<(i64, i64, i64)> {
        // (arrival, how much of the writer's data it had by then, µs)
        let seen = |pacer: &Self, arrival: &Arrival| {
            (
                arrival.waited_at.unwrap_or_else(clock::now_micros),
                pacer.micros_of_frames(arrival.backlog_frames),
            )
        };
        let mut arrivals = vec![seen(self, &first)];
        let until = clock::now_micros() + window_us;
        loop {
            if self.staged_end - self.staged_start < self.staged.len() {
                match self.stage(reader, Some(until), usize::MAX).await? {
                    Some(arrival) => arrivals.push(seen(self, &arrival)),
                    None => break,
                }
                continue;
            }
            // A burst larger than the staging buffer goes on arriving in the pipe or socket,
            // which we cannot wait on without reading it: look at what it holds every
            // millisecond instead. (Looking only at the window's end would see each write
            // a random part of its period late: half a writer's period off on average.)
            let now = clock::now_micros();
            if now >= until {
                break;
            }
            let next = (now + SAMPLE_US).min(until);
            tokio::time::sleep_until(clock::instant_at(next)).await;
            arrivals.push((
                clock::now_micros(),
                self.micros_of(self.unplaced_bytes(reader)),
            ));
        }
        // Data that is already waiting at the window's end counts too.
        tokio::time::sleep_until(clock::instant_at(until)).await;
        arrivals.push((
            clock::now_micros(),
            self.micros_of(self.unplaced_bytes(reader)),
        ));
        let start = arrivals
            .iter()
            .map(|(at, had)| at - had)
            .min()
            .unwrap_or_else(clock::now_micros);
        let first_at = arrivals.first().map_or(0, |(at, _)| *at);
        let queued = arrivals
            .iter()
            .map(|(at, had)| had - (at - first_at))
            .max()
            .unwrap_or(0);
        let ahead = arrivals
            .iter()
            .map(|(at, had)| start + had - at)
            .max()
            .unwrap_or(0);
        Ok((start, queued, ahead))
    }

    /// With no timeline running, waits for data and decides where the timeline goes on.
    async fn start_timeline(&mut self, reader: &mut Reader) -> io::Result<i64> {
        let arrival = loop {
            if let Some(arrival) = self.stage(reader, None, usize::MAX).await? {
                break arrival;
            }
        };
        self.quiet = false;
        self.bridged_us = 0;
        self.paced = false;
        // Where the data goes, related to its arrival as the data before it was: with the
        // writer's learned lead; the very first data keeps all but one chunk of what the
        // writer queued ahead as its lead (as snapserver's first read does), so a stall the
        // writer's queue covers is never heard.
        let belongs_at = if self.live {
            if self.ended_at.is_some() {
                let window = SETTLE_US + 2 * self.lead.spread();
                self.settle(reader, arrival, window).await? + self.lead.reference()
            } else {
                let (start, queued, ahead) = self
                    .settle_arrivals(reader, arrival, FIRST_SETTLE_US)
                    .await?;
                let lead = (queued - self.chunk_us).max(0);
                // The lead this timeline starts with, as its arrivals showed it (the writer
                // may already have paused again by now), until playback shows more of it.
                self.lead.observe(lead + ahead, false);
                if lead > 0 {
                    info!(
                        lead_ms = lead / 1000,
                        "source writes ahead of real time; keeping its lead"
                    );
                }
                start + lead
            }
        } else {
            clock::now_micros() - self.chunk_us
        };
        let now = clock::now_micros();
        let ts = match self.ended_at.take() {
            // Clients may still hold silence from the bridge: fill up to the data.
            Some(end) if now < end + self.bridge_us + RESTART_MARGIN_US => {
                self.silence_owed = self.bytes_of(belongs_at - end);
                end
            }
            Some(_) => {
                self.resyncs += 1;
                self.silence_owed = self.bytes_of(LEAD_IN_US);
                belongs_at - LEAD_IN_US
            }
            None => belongs_at,
        };
        self.next_ts = Some(ts);
        Ok(ts)
    }

    /// Moves the staged bytes to the front of the staging buffer; returns how many there are.
    fn compact_staging(&mut self) -> usize {
        let held = self.staged_end - self.staged_start;
        self.staged
            .copy_within(self.staged_start..self.staged_end, 0);
        self.staged_start = 0;
        self.staged_end = held;
        held
    }

    /// Reads up to `max` bytes into the staging buffer if the writer has data waiting;
    /// never waits.
    async fn stage_waiting(&mut self, reader: &mut Reader, max: usize) -> io::Result<()> {
        let held = self.compact_staging();
        let end = (held + max).min(self.staged.len());
        let mut read = pin!(reader.read(&mut self.staged[held..end]));
        if let Poll::Ready(result) =
            std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await
        {
            self.staged_end += result?;
        }
        Ok(())
    }

    /// Reads up to `max` more bytes into the staging buffer, which must have room. `None`
    /// when `deadline` (µs, server clock) passed first.
    async fn stage(
        &mut self,
        reader: &mut Reader,
        deadline: Option<i64>,
        max: usize,
    ) -> io::Result<Option<Arrival>> {
        let held = self.compact_staging();
        let end = held.saturating_add(max).min(self.staged.len());
        let (n, waited_at) = {
            let mut read = pin!(reader.read(&mut self.staged[held..end]));
            // One poll tells whether data was already waiting (then it is simply next in
            // line) or the read has to wait (then its arrival time says where it belongs).
            let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
            match first {
                Poll::Ready(result) => (result?, None),
                Poll::Pending => {
                    let result = match deadline {
                        Some(deadline) => {
                            match tokio::time::timeout_at(clock::instant_at(deadline), read).await {
                                Ok(result) => result,
                                Err(_) => return Ok(None),
                            }
                        }
                        None => read.await,
                    };
                    (result?, Some(clock::now_micros()))
                }
            }
        };
        self.staged_end += n;
        let backlog = self.unplaced_bytes(reader);
        Ok(Some(Arrival {
            backlog_frames: backlog / self.format.frame_size(),
            waited_at,
        }))
    }

    fn micros_of_frames(&self, frames: usize) -> i64 {
        self.format.duration_of(frames).as_micros() as i64
    }

    fn micros_of(&self, bytes: usize) -> i64 {
        self.micros_of_frames(bytes / self.format.frame_size())
    }

    /// Whole frames' worth of bytes for `micros` (none for a negative span).
    fn bytes_of(&self, micros: i64) -> usize {
        let span = Duration::from_micros(u64::try_from(micros).unwrap_or(0));
        self.format.frames_in(span) * self.format.frame_size()
    }
}

mod lead;
#[cfg(test)]
mod tests;
