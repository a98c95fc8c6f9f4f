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
        let log = self.log.lock().unwrap();
        let index = log
            .partition_point(|(first, _)| *first <= frame)
            .checked_sub(1)?;
        let (first, at) = log[index];
        (frame < first + PIECE_FRAMES)
            .then(|| at - ((first + PIECE_FRAMES - frame) * 1_000_000 / 48_000) as i64)
    }

    /// Stops writing (the FIFO stays open until the writer is dropped).
    pub fn stop(mut self) {
        self.thread.stop();
    }
}
