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

/// Writes a test signal into a FIFO from a thread, as a player would.
pub struct FifoWriter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FifoWriter {
    /// Writes `signal` from frame `start_frame` on, in 20 ms pieces, until stopped. The FIFO
    /// applies back-pressure, so the relay's pacing sets the rate.
    pub fn start(path: &Path, signal: Signal, start_frame: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = path.to_owned();
        let thread = std::thread::spawn(move || {
            let mut fifo = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open relay FIFO for writing");
            let mut frame = start_frame;
            let mut buf = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                buf.clear();
                signal.render(frame, 960, &mut buf);
                if fifo.write_all(&buf).is_err() {
                    return;
                }
                frame += 960;
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops writing and closes the FIFO (the relay sees its writer go away).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FifoWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
