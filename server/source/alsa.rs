//! ALSA capture (`alsa:///?name=LineIn&device=hw:1,0`), built with the `alsa` cargo feature
//! (it links libasound).
//!
//! A thread of its own owns the device, because every ALSA call may block. It reads about a
//! chunk at a time and hands the blocks to the stream's pacer through a small channel, so the
//! capture is timestamped, paused and resumed like any other live source (a device that
//! delivers nothing is a source pause: silence where it happened).
//!
//! Staying current, as snapserver does: when more than three chunks wait in the device, the
//! capture reads and drops down to a chunk and a half, so a relay that fell behind (or a
//! device clock faster than ours) never adds latency. A device that delivers faster than
//! real time could capture (ALSA's `file` and `null` plugins, a capture replayed from a
//! file) is no live device: it is read at the audio rate, like a `file` source, and nothing
//! is dropped. An overrun is recovered and counted; any other error closes the device and
//! reopens it with backoff while the stream pauses.
//!
//! The device is opened at start-up, so a wrong name or a format it cannot capture is an
//! error that names the device, not a log line.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::channel::ChannelReader;
use super::stats::SourceStats;
use crate::sample_format::SampleFormat;

/// Blocks (about a chunk each) between the capture thread and the pacer.
const QUEUE_BLOCKS: usize = 4;
/// How long one wait for data lasts before the thread checks whether it is still wanted.
const WAIT_MS: u32 = 200;
/// First reopen delay after a device error; doubles up to [`MAX_REOPEN_DELAY`].
const MIN_REOPEN_DELAY: Duration = Duration::from_millis(500);
const MAX_REOPEN_DELAY: Duration = Duration::from_secs(10);

/// Starts capturing from `device` in `format`; the reader yields the captured PCM. The
/// capture stops when the reader is dropped.
pub(crate) fn start(
    stream: &str,
    device: &str,
    format: SampleFormat,
    chunk_ms: u32,
    stats: Arc<SourceStats>,
) -> io::Result<ChannelReader> {
    let pcm = open(device, format)?;
    let chunk_frames = format
        .frames_in(Duration::from_millis(u64::from(chunk_ms)))
        .max(1);
    let (blocks_tx, blocks_rx) = mpsc::channel(QUEUE_BLOCKS);
    let capture = Capture {
        stream: stream.to_owned(),
        device: device.to_owned(),
        format,
        chunk_frames,
        stats,
        blocks: blocks_tx,
    };
    std::thread::Builder::new()
        .name(format!("alsa-{stream}"))
        .spawn(move || capture.run(pcm))?;
    info!(stream, device, %format, "capturing from ALSA");
    Ok(ChannelReader::new(blocks_rx))
}

/// The ALSA sample format for a stream's: snapserver's choices (8-bit signed, 24-bit in the
/// low three bytes of four, little-endian).
fn alsa_format(format: SampleFormat) -> io::Result<Format> {
    Ok(match format.bits {
        8 => Format::S8,
        16 => Format::S16LE,
        24 => Format::S24LE,
        32 => Format::S32LE,
        bits => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ALSA capture of {bits}-bit samples is not supported"),
            ))
        }
    })
}

/// Opens `device` for non-blocking interleaved capture in exactly `format`, and starts it.
fn open(device: &str, format: SampleFormat) -> io::Result<PCM> {
    let failed = |what: &str, err: alsa::Error| {
        io::Error::other(format!("ALSA device '{device}': {what}: {err}"))
    };
    let pcm = PCM::new(device, Direction::Capture, true)
        .map_err(|err| failed("cannot open it for capture", err))?;
    {
        let params = HwParams::any(&pcm).map_err(|err| failed("no parameters", err))?;
        params
            .set_access(Access::RWInterleaved)
            .map_err(|err| failed("no interleaved access", err))?;
        let sample = alsa_format(format)?;
        params
            .set_format(sample)
            .map_err(|err| failed(&format!("cannot capture {}-bit samples", format.bits), err))?;
        params
            .set_channels(u32::from(format.channels))
            .map_err(|err| failed(&format!("cannot capture {} channels", format.channels), err))?;
        let rate = params
            .set_rate_near(format.rate, ValueOr::Nearest)
            .map_err(|err| failed("cannot set the rate", err))?;
        if rate != format.rate {
            // snapserver silently changes the stream's format; clients and the encoder are
            // already set up for this one, so say what would work instead.
            return Err(io::Error::other(format!(
                "ALSA device '{device}' captures at {rate} Hz, not {} Hz: set sampleformat={rate}:{}:{}",
                format.rate, format.bits, format.channels
            )));
        }
        pcm.hw_params(&params)
            .map_err(|err| failed("cannot apply the parameters", err))?;
    }
    pcm.prepare()
        .map_err(|err| failed("cannot prepare it", err))?;
    pcm.start().map_err(|err| failed("cannot start it", err))?;
    Ok(pcm)
}

/// The capture thread's state.
struct Capture {
    stream: String,
    device: String,
    format: SampleFormat,
    chunk_frames: usize,
    stats: Arc<SourceStats>,
    blocks: mpsc::Sender<Vec<u8>>,
}

/// What one attempt to read found.
enum Step {
    /// Go on reading.
    Continue,
    /// The device failed: close it and open it again.
    Reopen,
    /// Nobody reads any more: stop.
    Stop,
}

impl Capture {
    fn run(self, pcm: PCM) {
        let mut pcm = Some(pcm);
        let mut backlog = Backlog::new(self.format.rate, self.chunk_frames);
        let mut delay = MIN_REOPEN_DELAY;
        let mut buf = vec![0u8; self.chunk_frames * self.format.frame_size()];
        while !self.blocks.is_closed() {
            let Some(device) = pcm.as_ref() else {
                std::thread::sleep(delay);
                match open(&self.device, self.format) {
                    Ok(reopened) => {
                        info!(stream = %self.stream, device = %self.device, "ALSA device reopened");
                        self.stats.count_restart();
                        pcm = Some(reopened);
                        backlog = Backlog::new(self.format.rate, self.chunk_frames);
                        delay = MIN_REOPEN_DELAY;
                    }
                    Err(err) => {
                        warn!(stream = %self.stream, error = %err, retry_in = ?delay, "cannot reopen the ALSA device");
                        delay = (delay * 2).min(MAX_REOPEN_DELAY);
                    }
                }
                continue;
            };
            match self.step(device, &mut backlog, &mut buf) {
                Step::Continue => {}
                Step::Reopen => pcm = None,
                Step::Stop => break,
            }
        }
        debug!(stream = %self.stream, "ALSA capture stopped");
    }

    /// Waits for data, catches up if far behind, reads up to a chunk and hands it on.
    fn step(&self, pcm: &PCM, backlog: &mut Backlog, buf: &mut [u8]) -> Step {
        match pcm.wait(Some(WAIT_MS)) {
            Ok(true) => {}
            // Nothing yet: the pacer turns a long wait into silence.
            Ok(false) => return Step::Continue,
            Err(err) => return self.recover(pcm, err),
        }
        let avail = match pcm.avail() {
            Ok(frames) => usize::try_from(frames).unwrap_or(0),
            Err(err) => return self.recover(pcm, err),
        };
        let io = pcm.io_bytes();
        let frame_size = self.format.frame_size();
        let mut excess = backlog.excess(avail);
        if excess > 0 {
            debug!(stream = %self.stream, avail, dropping = excess, "capture far behind the device; catching up");
        }
        while excess > 0 {
            let frames = excess.min(self.chunk_frames);
            match io.readi(&mut buf[..frames * frame_size]) {
                Ok(0) => break,
                Ok(read) => {
                    excess = excess.saturating_sub(read);
                    backlog.delivered(read);
                    self.stats
                        .frames_dropped
                        .fetch_add(read as u64, Ordering::Relaxed);
                }
                Err(err) => return self.recover(pcm, err),
            }
        }
        let read = match io.readi(buf) {
            Ok(read) => read,
            Err(err) if err.errno() == libc::EAGAIN => return Step::Continue,
            Err(err) => return self.recover(pcm, err),
        };
        backlog.delivered(read);
        if read == 0 {
            return Step::Continue;
        }
        // Blocks the thread while the pacer is a queue ahead: that is what paces a device
        // that delivers faster than real time.
        match self.blocks.blocking_send(buf[..read * frame_size].to_vec()) {
            Ok(()) => Step::Continue,
            Err(_) => Step::Stop,
        }
    }

    /// Recovers from an overrun (counted) or a suspend; anything else reopens the device.
    fn recover(&self, pcm: &PCM, err: alsa::Error) -> Step {
        let errno = err.errno();
        if errno == libc::EPIPE {
            self.stats.overruns.fetch_add(1, Ordering::Relaxed);
            debug!(stream = %self.stream, "ALSA capture overrun");
        }
        if (errno == libc::EPIPE || errno == libc::ESTRPIPE) && pcm.try_recover(err, true).is_ok() {
            // A recovered capture is prepared but not running.
            return match pcm.start() {
                Ok(()) => Step::Continue,
                Err(err) => {
                    warn!(stream = %self.stream, device = %self.device, error = %err, "cannot restart the ALSA capture; reopening");
                    Step::Reopen
                }
            };
        }
        warn!(stream = %self.stream, device = %self.device, error = %err, "ALSA capture failed; reopening");
        Step::Reopen
    }
}

/// Decides how much of a device's backlog to drop, and notices a device that delivers faster
/// than real time (which is never dropped from).
#[derive(Debug)]
struct Backlog {
    started: Instant,
    rate: u32,
    chunk_frames: usize,
    /// Frames the device delivered since it started (read or dropped).
    delivered: u64,
    /// It delivered more than real time could have captured.
    unpaced: bool,
}

impl Backlog {
    fn new(rate: u32, chunk_frames: usize) -> Self {
        Self {
            started: Instant::now(),
            rate,
            chunk_frames,
            delivered: 0,
            unpaced: false,
        }
    }

    fn delivered(&mut self, frames: usize) {
        self.delivered += frames as u64;
    }

    /// Frames to drop now that `avail` wait in the device.
    fn excess(&mut self, avail: usize) -> usize {
        self.excess_at(avail, self.started.elapsed())
    }

    fn excess_at(&mut self, avail: usize, elapsed: Duration) -> usize {
        if !self.unpaced {
            // A capture cannot hold more than real time has produced since it started; 1%
            // and two chunks of slack cover a fast device clock and the start-up.
            let possible = elapsed.as_secs_f64() * f64::from(self.rate) * 1.01
                + 2.0 * self.chunk_frames as f64;
            if (self.delivered + avail as u64) as f64 > possible {
                self.unpaced = true;
                info!(
                    "the ALSA device delivers faster than real time (a file or null plugin?): \
                     read at the audio rate, nothing dropped"
                );
            }
        }
        if self.unpaced || avail <= 3 * self.chunk_frames {
            0
        } else {
            avail - self.chunk_frames * 3 / 2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_device_far_behind_is_caught_up_to_a_chunk_and_a_half() {
        // 20 ms chunks at 48 kHz: 960 frames.
        let mut backlog = Backlog::new(48_000, 960);
        let second = Duration::from_secs(1);
        // Two chunks waiting a second in: normal.
        assert_eq!(backlog.excess_at(1920, second), 0);
        // Three chunks is still fine; beyond that, drop to 1.5 chunks.
        assert_eq!(backlog.excess_at(2880, second), 0);
        assert_eq!(backlog.excess_at(4000, second), 4000 - 1440);
        backlog.delivered(48_000);
        assert_eq!(
            backlog.excess_at(9600, Duration::from_millis(1200)),
            9600 - 1440
        );
    }

    #[test]
    fn a_device_faster_than_real_time_is_never_dropped_from() {
        let mut backlog = Backlog::new(48_000, 960);
        // ALSA's null plugin: its whole buffer is available at once, right after the start.
        assert_eq!(backlog.excess_at(16_384, Duration::from_millis(5)), 0);
        assert!(backlog.unpaced);
        // And stays so, however far behind it then looks.
        assert_eq!(backlog.excess_at(16_384, Duration::from_secs(100)), 0);
    }

    #[test]
    fn formats_are_snapservers() {
        let format = |text: &str| alsa_format(text.parse().unwrap()).unwrap();
        assert_eq!(format("48000:8:2"), Format::S8);
        assert_eq!(format("48000:16:2"), Format::S16LE);
        assert_eq!(format("48000:24:2"), Format::S24LE);
        assert_eq!(format("48000:32:2"), Format::S32LE);
    }

    #[test]
    fn a_missing_device_is_an_error_naming_it() {
        let err = open("snaprelay_no_such_device", SampleFormat::default())
            .map(|_| ())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("ALSA device 'snaprelay_no_such_device': cannot open it for capture"),
            "{text}"
        );
    }
}
