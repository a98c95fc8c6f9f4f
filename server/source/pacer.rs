//! Cuts a source's bytes into fixed-duration PCM chunks, paced to real time, each stamped
//! with the capture time of its first sample (snapcast-protocol.md §2.4).
//!
//! Rules, and why:
//! - A chunk is not completed before its last sample would have been captured in real time,
//!   so a writer that runs ahead (a decoder filling the FIFO) is consumed at the audio rate
//!   instead of flooding clients with chunks from the future.
//! - Short reads are never padded with silence: partial data waits for the rest.
//! - Timestamps run on continuously while data keeps up. When the source stalls (a read waits
//!   longer than `idle_threshold + chunk_ms`) or a chunk completes that much behind its due
//!   time, the time base is re-based to "now", so a writer pause never shifts playback for
//!   good.

use std::io;
use std::time::Duration;

use super::Reader;
use crate::clock;
use crate::sample_format::SampleFormat;

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
    /// A full chunk.
    Chunk(PcmChunk<'a>),
    /// The source delivered nothing for the stall timeout; said once per stall.
    Stalled,
}

/// Chunking, pacing and timestamping state for one source.
#[derive(Debug)]
pub(crate) struct Pacer {
    chunk: Vec<u8>,
    filled: usize,
    chunk_us: i64,
    /// Capture time of the next chunk's first frame; `None` until the next chunk re-bases.
    next_ts: Option<i64>,
    /// Whether the current chunk already waited for its due time.
    paced: bool,
    stall_after: Duration,
    resyncs: u64,
}

impl Pacer {
    pub(crate) fn new(format: SampleFormat, chunk_ms: u32, idle_threshold_ms: u32) -> Self {
        let frames = format.frames_in(Duration::from_millis(u64::from(chunk_ms)));
        Self {
            chunk: vec![0; frames * format.frame_size()],
            filled: 0,
            chunk_us: format.duration_of(frames).as_micros() as i64,
            next_ts: None,
            paced: false,
            stall_after: Duration::from_millis(u64::from(idle_threshold_ms + chunk_ms)),
            resyncs: 0,
        }
    }

    /// How often the time base was re-based after a stall or lag.
    pub(crate) fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Waits for the next chunk. Cancel safe: partial data stays in the pacer.
    pub(crate) async fn next(&mut self, reader: &mut Reader) -> io::Result<Paced<'_>> {
        if !self.paced {
            if let Some(ts) = self.next_ts {
                tokio::time::sleep_until(clock::instant_at(ts + self.chunk_us)).await;
            }
            self.paced = true;
        }
        while self.filled < self.chunk.len() {
            let read = reader.read(&mut self.chunk[self.filled..]);
            let n = if self.next_ts.is_some() {
                match tokio::time::timeout(self.stall_after, read).await {
                    Ok(n) => n?,
                    Err(_) => {
                        self.next_ts = None;
                        return Ok(Paced::Stalled);
                    }
                }
            } else {
                read.await?
            };
            self.filled += n;
        }
        self.filled = 0;
        self.paced = false;

        let now = clock::now_micros();
        let max_lag = self.stall_after.as_micros() as i64;
        let ts = match self.next_ts {
            Some(ts) if now - (ts + self.chunk_us) <= max_lag => ts,
            previous => {
                if previous.is_some() {
                    self.resyncs += 1;
                }
                now - self.chunk_us
            }
        };
        self.next_ts = Some(ts + self.chunk_us);
        Ok(Paced::Chunk(PcmChunk {
            timestamp_us: ts,
            data: &self.chunk,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tone::ToneReader;

    fn tone_reader(format: SampleFormat) -> Reader {
        Reader::Tone(ToneReader::new(format, vec![440.0], 0.5))
    }

    #[tokio::test]
    async fn tone_chunks_are_contiguous_and_paced() {
        let format = SampleFormat::default();
        let mut pacer = Pacer::new(format, 20, 100);
        let mut reader = tone_reader(format);
        let start = clock::now_micros();
        let mut stamps = Vec::new();
        for _ in 0..10 {
            match pacer.next(&mut reader).await.unwrap() {
                Paced::Chunk(chunk) => {
                    assert_eq!(chunk.data.len(), 960 * 4);
                    stamps.push(chunk.timestamp_us);
                }
                Paced::Stalled => panic!("a tone never stalls"),
            }
        }
        for pair in stamps.windows(2) {
            assert_eq!(pair[1] - pair[0], 20_000);
        }
        // Ten 20 ms chunks cannot be produced in much less than 180 ms of real time: the
        // first is stamped "now - 20 ms", each later one waits for its due time.
        let elapsed = clock::now_micros() - start;
        assert!(elapsed >= 175_000, "paced too fast: {elapsed} µs");
        assert_eq!(pacer.resyncs(), 0);
    }

    #[tokio::test]
    async fn stall_then_resume_rebases_the_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let format = SampleFormat::default();
        let mut pacer = Pacer::new(format, 20, 100);
        let mut reader = Reader::Pipe(super::super::pipe::PipeReader::new(path.clone(), true));
        if let Reader::Pipe(pipe) = &reader {
            pipe.prepare().unwrap();
        }
        let chunk_bytes = 960 * 4;
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut fifo = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            fifo.write_all(&vec![1u8; chunk_bytes * 2]).unwrap();
            std::thread::sleep(Duration::from_millis(600));
            fifo.write_all(&vec![2u8; chunk_bytes]).unwrap();
        });
        let mut events = Vec::new();
        while events.len() < 4 {
            let event = match pacer.next(&mut reader).await.unwrap() {
                Paced::Chunk(chunk) => Some((chunk.timestamp_us, chunk.data[0])),
                Paced::Stalled => None,
            };
            events.push(event);
        }
        writer.join().unwrap();
        let (t0, first) = events[0].unwrap();
        let (t1, _) = events[1].unwrap();
        assert_eq!(first, 1);
        assert_eq!(t1 - t0, 20_000);
        assert!(events[2].is_none(), "expected a stall, got {events:?}");
        let (t3, data) = events[3].unwrap();
        assert_eq!(data, 2);
        // Re-based to the time the data came back (≈ 600 ms later), not t1 + 20 ms.
        assert!(t3 - t1 > 400_000, "timestamps did not re-base: {events:?}");
    }
}
