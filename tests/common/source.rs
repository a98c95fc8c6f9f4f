//! Feeding the relay's FIFO source: where the FIFO goes and a thread that writes the test
//! signal into it, as a player would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::audio::Signal;

/// Makes a FIFO path inside `dir` for the relay's source.
pub fn source_fifo(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.fifo"))
}

/// A thread writing into the relay's FIFO until stopped.
struct WriterThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WriterThread {
    /// Opens the FIFO for writing in a new thread and runs `write` there; `write` returns
    /// when the flag it gets is set (or the FIFO fails).
    fn spawn(path: &Path, write: impl FnOnce(std::fs::File, &AtomicBool) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = path.to_owned();
        let thread = std::thread::spawn(move || {
            let fifo = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open relay FIFO for writing");
            write(fifo, &flag);
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Writes a test signal into a FIFO from a thread, as a player would.
pub struct FifoWriter {
    thread: WriterThread,
}

impl FifoWriter {
    /// Writes `signal` from frame `start_frame` on, in 20 ms pieces, until stopped. The FIFO
    /// applies back-pressure, so the relay's pacing sets the rate.
    pub fn start(path: &Path, signal: Signal, start_frame: u64) -> Self {
        let thread = WriterThread::spawn(path, move |mut fifo, stop| {
            let mut frame = start_frame;
            let mut buf = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                buf.clear();
                signal.render(frame, 960, &mut buf);
                if fifo.write_all(&buf).is_err() {
                    return;
                }
                frame += 960;
            }
        });
        Self { thread }
    }

    /// Stops writing and closes the FIFO (the relay sees its writer go away).
    pub fn stop(mut self) {
        self.thread.stop();
    }
}

/// A writer that plays the signal in real time, as a live source (a player or a capture
/// device) does: 10 ms pieces, each written when its last frame is due. It pauses for
/// `pause_ms` after `pause_at` frames (none if `pause_ms` is 0), then goes on with the next
/// frame. It records when each piece went into the FIFO.
pub struct RealTimeWriter {
    thread: WriterThread,
    log: Arc<std::sync::Mutex<Vec<(u64, i64)>>>,
}

/// Frames in one 10 ms piece of the real-time writer.
const PIECE_FRAMES: u64 = 480;

impl RealTimeWriter {
    pub fn start(path: &Path, signal: Signal, pause_at: u64, pause_ms: u64) -> Self {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        let thread = WriterThread::spawn(path, move |mut fifo, stop| {
            let start = snaprelay::clock::now_micros();
            let mut frame = 0u64;
            let mut buf = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let paused_us = if pause_ms > 0 && frame >= pause_at {
                    pause_ms as i64 * 1000
                } else {
                    0
                };
                let due = start + ((frame + PIECE_FRAMES) * 1_000_000 / 48_000) as i64 + paused_us;
                let wait = due - snaprelay::clock::now_micros();
                if wait > 0 {
                    std::thread::sleep(std::time::Duration::from_micros(wait as u64));
                }
                buf.clear();
                signal.render(frame, PIECE_FRAMES as usize, &mut buf);
                if fifo.write_all(&buf).is_err() {
                    return;
                }
                sink.lock()
                    .unwrap()
                    .push((frame, snaprelay::clock::now_micros()));
                frame += PIECE_FRAMES;
            }
        });
        Self { thread, log }
    }

    /// When the frame `frame` went into the FIFO, µs on the shared clock, extrapolated from
    /// its piece's write (the piece is written when its last frame is due).
    pub fn written_at(&self, frame: u64) -> Option<i64> {
        let (first, at) = piece_of(&self.log.lock().unwrap(), frame)?;
        Some(at - ((first + PIECE_FRAMES - frame) * 1_000_000 / 48_000) as i64)
    }

    /// Stops writing (the FIFO stays open until the writer is dropped).
    pub fn stop(mut self) {
        self.thread.stop();
    }
}

/// How far a [`LiveWriter`] keeps ahead of real time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lead {
    /// Each 10 ms piece is written this many ms before its last frame is due (0: just in
    /// time, as a capture device; tens of ms, as mpd's fifo output or `ffmpeg -re`).
    Ms(u64),
    /// Writes as fast as the FIFO takes it (librespot's pipe backend): the pipe is always
    /// full and the reader's pace paces it.
    Blocking,
}

/// What a [`LiveWriter`] does: its lead, one pause, and how much its writes scatter.
#[derive(Debug, Clone, Copy)]
pub struct WriterPlan {
    pub lead: Lead,
    /// When the writer stops, ms after it started (real time).
    pub pause_at_ms: u64,
    /// How long it stops (0: never).
    pub pause_ms: u64,
    /// Each write comes up to this many ms early or late (deterministic pseudo-random).
    pub jitter_ms: u64,
}

/// A writer that behaves as real players do: it keeps a lead, pauses once and, as a live
/// source, resumes from the real-time position (skipping what it could not play) and
/// rebuilds its lead in one burst. A blocking writer has no real-time position: it resumes
/// with the next frame. Frame `n` is due at `start + n / 48 kHz` (real-time writers); each
/// piece's write time is logged (blocking writers).
pub struct LiveWriter {
    thread: WriterThread,
    start_us: Arc<std::sync::atomic::AtomicI64>,
    /// (first frame of a piece, when it was written) for every piece.
    log: Arc<std::sync::Mutex<Vec<(u64, i64)>>>,
    plan: WriterPlan,
}

impl LiveWriter {
    /// Writes into the FIFO at `path`.
    pub fn start(path: &Path, signal: Signal, plan: WriterPlan) -> Self {
        let path = path.to_owned();
        Self::start_into(
            move || {
                Box::new(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .expect("open the source FIFO for writing"),
                )
            },
            signal,
            plan,
        )
    }

    /// Writes into whatever `open` gives it (a TCP connection, a process's FIFO).
    pub fn start_into(
        open: impl FnOnce() -> Box<dyn Write + Send> + Send + 'static,
        signal: Signal,
        plan: WriterPlan,
    ) -> Self {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let start_us = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let (sink, start_at) = (log.clone(), start_us.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut out = open();
            let now = snaprelay::clock::now_micros;
            let start = now();
            start_at.store(start, Ordering::Relaxed);
            let due = |frame: u64| start + (frame * 1_000_000 / 48_000) as i64;
            let pause_start = start + plan.pause_at_ms as i64 * 1000;
            let mut paused = plan.pause_ms == 0;
            let mut frame = 0u64;
            let mut piece = 0u64;
            let mut buf = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let write_at = match plan.lead {
                    Lead::Ms(lead) => {
                        due(frame + PIECE_FRAMES) - lead as i64 * 1000
                            + jitter_us(piece, plan.jitter_ms)
                    }
                    Lead::Blocking => now(),
                };
                if !paused && write_at > pause_start {
                    paused = true;
                    let resume = pause_start + plan.pause_ms as i64 * 1000;
                    sleep_until(resume);
                    if let Lead::Ms(_) = plan.lead {
                        // A live source: what was due while it was away is gone.
                        let position = ((resume - start) * 48_000 / 1_000_000) as u64;
                        frame = frame.max(position / PIECE_FRAMES * PIECE_FRAMES);
                    }
                    continue;
                }
                sleep_until(write_at);
                buf.clear();
                signal.render(frame, PIECE_FRAMES as usize, &mut buf);
                if out.write_all(&buf).is_err() {
                    return;
                }
                sink.lock().unwrap().push((frame, now()));
                frame += PIECE_FRAMES;
                piece += 1;
            }
        });
        Self {
            thread: WriterThread {
                stop,
                thread: Some(thread),
            },
            start_us,
            log,
            plan,
        }
    }

    /// When frame `frame` was due (real-time writers) or written (blocking writers), µs on
    /// the shared clock; `None` for a frame never written.
    pub fn due_at(&self, frame: u64) -> Option<i64> {
        let (first, written) = piece_of(&self.log.lock().unwrap(), frame)?;
        Some(match self.plan.lead {
            Lead::Ms(_) => {
                self.start_us.load(Ordering::Relaxed) + (frame * 1_000_000 / 48_000) as i64
            }
            Lead::Blocking => {
                written - ((first + PIECE_FRAMES - frame) * 1_000_000 / 48_000) as i64
            }
        })
    }

    /// The frames the writer skipped at its pause (it was away longer than its lead), as
    /// (last frame before, first frame after); `None` when it skipped nothing.
    pub fn skipped(&self) -> Option<(u64, u64)> {
        let log = self.log.lock().unwrap();
        log.windows(2)
            .find(|pair| pair[1].0 != pair[0].0 + PIECE_FRAMES)
            .map(|pair| (pair[0].0 + PIECE_FRAMES - 1, pair[1].0))
    }

    /// The last frame written before the pause.
    pub fn last_before_pause(&self) -> Option<u64> {
        let pause_start =
            self.start_us.load(Ordering::Relaxed) + self.plan.pause_at_ms as i64 * 1000;
        let log = self.log.lock().unwrap();
        log.iter()
            .take_while(|(_, written)| *written < pause_start)
            .last()
            .map(|(first, _)| first + PIECE_FRAMES - 1)
    }

    pub fn plan(&self) -> WriterPlan {
        self.plan
    }

    /// Stops writing and closes its output.
    pub fn stop(mut self) {
        self.thread.stop();
    }
}

/// The logged piece (its first frame, when it was written) that holds `frame`.
fn piece_of(log: &[(u64, i64)], frame: u64) -> Option<(u64, i64)> {
    let index = log
        .partition_point(|(first, _)| *first <= frame)
        .checked_sub(1)?;
    let (first, at) = log[index];
    (frame < first + PIECE_FRAMES).then_some((first, at))
}

/// A piece's deviation from its schedule, in [−jitter, +jitter] ms, the same every run.
fn jitter_us(piece: u64, jitter_ms: u64) -> i64 {
    if jitter_ms == 0 {
        return 0;
    }
    // A fixed hash of the piece number (splitmix64's finaliser).
    let mut x = piece.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let span = 2 * jitter_ms * 1000 + 1;
    (x % span) as i64 - (jitter_ms * 1000) as i64
}

fn sleep_until(at_us: i64) {
    let wait = at_us - snaprelay::clock::now_micros();
    if wait > 0 {
        std::thread::sleep(std::time::Duration::from_micros(wait as u64));
    }
}
