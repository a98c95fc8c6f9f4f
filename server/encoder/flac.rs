//! The `flac` codec (docs/PROTOCOL.md §3.3): a `fLaC` + STREAMINFO + VORBIS_COMMENT
//! header, then whole FLAC frames of a fixed block size, encoded in pure Rust by flacenc.
//!
//! flacenc encodes one frame from a buffer of exactly one block, so this module does the
//! streaming: samples from each read are queued, every complete block becomes one frame, and
//! the frames completed by one read travel together in one chunk stamped with the capture
//! time of their first sample. A read that completes no block sends nothing (§1.4).

use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, StreamInfo};
use flacenc::error::{Verified, Verify};
use flacenc::source::{Fill, FrameBuf};

use super::timeline::Timeline;
use super::{push_samples_i32, Encoder, EncoderError, Unit};
use crate::sample_format::SampleFormat;

/// snapserver's default compression level (§3.3).
const DEFAULT_LEVEL: u8 = 2;

/// Bit depths flacenc encodes (it stops at 24; FLAC's 32-bit mode is newer than most
/// decoders anyway).
const SUPPORTED_BITS: &[u16] = &[8, 16, 24];

/// FLAC frame numbers are 31-bit; a stream that outlives them (≈1.6 years of 24 ms frames)
/// wraps, which decoders accept for a live stream.
const FRAME_NUMBER_MODULUS: usize = 1 << 31;

/// Streams PCM into FLAC frames.
pub(crate) struct FlacEncoder {
    header: Vec<u8>,
    config: Verified<flacenc::config::Encoder>,
    stream_info: StreamInfo,
    format: SampleFormat,
    /// Frames per FLAC block.
    block: usize,
    /// Interleaved samples waiting for a complete block.
    pending: Vec<i32>,
    frame_buf: FrameBuf,
    frame_number: usize,
    timeline: Timeline,
    /// Index of the first sample in `pending`.
    pending_start: u64,
    /// The frames of the current read, sent as one chunk.
    out: Vec<u8>,
    sink: ByteSink,
}

impl FlacEncoder {
    /// Parses `options` (a compression level 0..=8, empty for the default) and prepares the
    /// header for `format`.
    pub(crate) fn new(options: &str, format: SampleFormat) -> Result<Self, EncoderError> {
        let level = parse_level(options)?;
        if !SUPPORTED_BITS.contains(&format.bits) {
            return Err(EncoderError::unsupported(
                "flac",
                format,
                format!(
                    "{}-bit samples are not supported (supported: 8, 16, 24)",
                    format.bits
                ),
            ));
        }
        let block = block_size(level);
        let config = encoder_config(level, block)
            .into_verified()
            .map_err(|(_, err)| EncoderError::Init {
                codec: "flac".into(),
                reason: err.to_string(),
            })?;
        let channels = usize::from(format.channels);
        let init = |err: flacenc::error::VerifyError| EncoderError::Init {
            codec: "flac".into(),
            reason: err.to_string(),
        };
        let mut stream_info =
            StreamInfo::new(format.rate as usize, channels, usize::from(format.bits))
                .map_err(init)?;
        stream_info.set_block_sizes(block, block).map_err(init)?;
        let frame_buf = FrameBuf::with_size(channels, block).map_err(init)?;
        Ok(Self {
            header: header(format, block),
            config,
            stream_info,
            format,
            block,
            pending: Vec::with_capacity(2 * block * channels),
            frame_buf,
            frame_number: 0,
            timeline: Timeline::new(format.rate),
            pending_start: 0,
            out: Vec::new(),
            sink: ByteSink::new(),
        })
    }
}

impl Encoder for FlacEncoder {
    fn name(&self) -> &'static str {
        "flac"
    }

    fn header(&self) -> &[u8] {
        &self.header
    }

    fn encode(&mut self, timestamp_us: i64, pcm: &[u8], emit: &mut dyn FnMut(Unit<'_>)) {
        let channels = usize::from(self.format.channels);
        self.timeline
            .push(timestamp_us, pcm.len() / self.format.frame_size());
        push_samples_i32(pcm, self.format, &mut self.pending);

        let block_samples = self.block * channels;
        let first_sample = self.pending_start;
        let mut consumed = 0;
        self.out.clear();
        while self.pending.len() - consumed >= block_samples {
            let samples = &self.pending[consumed..consumed + block_samples];
            consumed += block_samples;
            // Filling from our own whole-block slice cannot fail (the size matches the
            // buffer), and samples are in range by construction from `bits`.
            if self.frame_buf.fill_interleaved(samples).is_err() {
                continue;
            }
            match flacenc::encode_fixed_size_frame(
                &self.config,
                &self.frame_buf,
                self.frame_number,
                &self.stream_info,
            ) {
                Ok(frame) => {
                    self.sink.clear();
                    if frame.write(&mut self.sink).is_ok() {
                        self.out.extend_from_slice(self.sink.as_slice());
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "flac frame not encoded; block skipped");
                }
            }
            self.frame_number = (self.frame_number + 1) % FRAME_NUMBER_MODULUS;
        }
        if consumed == 0 {
            return;
        }
        self.pending.drain(..consumed);
        self.pending_start += (consumed / channels) as u64;
        if !self.out.is_empty() {
            emit(Unit::new(
                self.timeline.timestamp_of(first_sample),
                &self.out,
            ));
        }
    }
}

fn parse_level(options: &str) -> Result<u8, EncoderError> {
    if options.is_empty() {
        return Ok(DEFAULT_LEVEL);
    }
    match options.parse::<u8>() {
        Ok(level) if level <= 8 => Ok(level),
        _ => Err(EncoderError::bad_options(
            "flac",
            options,
            "expected a compression level 0..8 (default 2), e.g. codec=flac:5",
        )),
    }
}

/// libFLAC's block sizes per level, which snapserver inherits (§3.3): 1152 frames for levels
/// 0–2 (24 ms at 48 kHz, so low latency), 4096 for 3–8.
fn block_size(level: u8) -> usize {
    if level <= 2 {
        1152
    } else {
        4096
    }
}

/// An approximation of libFLAC's presets with flacenc's knobs: levels 0–2 use only fixed
/// predictors (libFLAC's levels 0–2 have no LPC either), 3–8 use LPC of rising order. Level 0
/// also skips stereo decorrelation, as libFLAC's does.
fn encoder_config(level: u8, block: usize) -> flacenc::config::Encoder {
    let mut config = flacenc::config::Encoder::default();
    config.block_size = block;
    // The stream already runs the encoder on a thread of its own; one frame at a time has
    // nothing to parallelise.
    config.multithread = false;
    if level == 0 {
        config.stereo_coding.use_leftside = false;
        config.stereo_coding.use_rightside = false;
        config.stereo_coding.use_midside = false;
    }
    if level <= 2 {
        config.subframe_coding.use_lpc = false;
    } else {
        config.subframe_coding.qlpc.lpc_order = match level {
            3 => 6,
            4..=6 => 8,
            _ => 12,
        };
    }
    config
}

/// The codec header of §3.3: `fLaC`, STREAMINFO (not last), then a small VORBIS_COMMENT
/// flagged as the last metadata block. snapserver also writes 1234 bytes of PADDING; we
/// leave it out because the client copies the whole header into libFLAC's read buffer
/// unchecked, so smaller is safer.
fn header(format: SampleFormat, block: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(128);
    h.extend_from_slice(b"fLaC");
    // STREAMINFO: type 0, not last, 34 bytes.
    h.extend_from_slice(&[0x00, 0x00, 0x00, 34]);
    let block = block as u16;
    h.extend_from_slice(&block.to_be_bytes()); // min block size
    h.extend_from_slice(&block.to_be_bytes()); // max block size
    h.extend_from_slice(&[0; 3]); // min frame size: unknown
    h.extend_from_slice(&[0; 3]); // max frame size: unknown
    let packed: u64 = (u64::from(format.rate) << 44)
        | (u64::from(format.channels - 1) << 41)
        | (u64::from(format.bits - 1) << 36); // total samples (36 bits): 0 = unknown
    h.extend_from_slice(&packed.to_be_bytes());
    h.extend_from_slice(&[0; 16]); // MD5: unknown for a live stream

    // VORBIS_COMMENT: type 4, last; its fields are little-endian as in Vorbis.
    let vendor = concat!("snaprelay ", env!("CARGO_PKG_VERSION"));
    let comments = [
        "TITLE=SnapStream".to_owned(),
        format!("VERSION={}", env!("CARGO_PKG_VERSION")),
    ];
    let mut body = Vec::new();
    body.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    body.extend_from_slice(vendor.as_bytes());
    body.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for comment in &comments {
        body.extend_from_slice(&(comment.len() as u32).to_le_bytes());
        body.extend_from_slice(comment.as_bytes());
    }
    h.push(0x80 | 4);
    h.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    h.extend_from_slice(&body);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frames: usize, start: usize) -> Vec<u8> {
        let mut pcm = Vec::with_capacity(frames * 4);
        for i in start..start + frames {
            let t = i as f64 / 48000.0;
            let l = ((std::f64::consts::TAU * 440.0 * t).sin() * 12000.0) as i16;
            let r = ((std::f64::consts::TAU * 660.0 * t).sin() * 9000.0) as i16 ^ (i as i16 & 7);
            pcm.extend_from_slice(&l.to_le_bytes());
            pcm.extend_from_slice(&r.to_le_bytes());
        }
        pcm
    }

    #[test]
    fn streaminfo_is_byte_exact_for_48000_16_2() {
        let h = header(SampleFormat::default(), 1152);
        let expected_streaminfo = [
            0x66, 0x4C, 0x61, 0x43, // fLaC
            0x00, 0x00, 0x00, 0x22, // STREAMINFO, not last, 34 bytes
            0x04, 0x80, 0x04, 0x80, // block sizes 1152, 1152
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // frame sizes unknown
            // 48000 Hz (20 bits) = 0x0BB80, channels-1 = 1, bits-1 = 15, total samples 0
            0x0B, 0xB8, 0x02, 0xF0, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(h[..26], expected_streaminfo);
        assert_eq!(h[26..42], [0; 16]);
        assert_eq!(h[42], 0x84, "VORBIS_COMMENT is the last block");
        let len = u32::from_be_bytes([0, h[43], h[44], h[45]]) as usize;
        assert_eq!(h.len(), 46 + len);
        assert!(h.len() < 200, "header kept small: {}", h.len());
    }

    #[test]
    fn levels_choose_libflac_block_sizes_and_bad_levels_are_refused() {
        let f = SampleFormat::default();
        let h = FlacEncoder::new("5", f).unwrap().header;
        assert_eq!(u16::from_be_bytes([h[8], h[9]]), 4096);
        for bad in ["9", "-1", "fast", "2,3"] {
            let err = FlacEncoder::new(bad, f).err().unwrap();
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn thirty_two_bit_input_is_refused_with_its_format() {
        let err = FlacEncoder::new("", SampleFormat::new(48000, 32, 2).unwrap())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "codec 'flac' cannot encode sample format 48000:32:2: 32-bit samples are not \
             supported (supported: 8, 16, 24)"
        );
    }

    /// Encodes 20 ms reads, checks chunk framing and timestamps, and decodes the stream
    /// with claxon (an independent decoder) bit-exact against the input.
    #[test]
    fn twenty_ms_reads_become_whole_frames_that_decode_bit_exact() {
        let mut encoder = FlacEncoder::new("", SampleFormat::default()).unwrap();
        let mut stream = encoder.header().to_vec();
        let mut chunks = Vec::new();
        let reads = 60; // 1.2 s = 57600 frames = 50 blocks of 1152
        let mut input = Vec::new();
        for n in 0..reads {
            let pcm = tone(960, n * 960);
            input.extend_from_slice(&pcm);
            let ts = 1_000_000 + n as i64 * 20_000;
            let mut emitted = 0;
            encoder.encode(ts, &pcm, &mut |unit| {
                chunks.push((unit.timestamp_us, unit.data.len()));
                stream.extend_from_slice(unit.data);
                emitted += 1;
            });
            assert!(emitted <= 1, "one chunk per read at most");
        }
        // 57600 / 1152 = 50 frames, some reads completing none (no chunk sent for those).
        assert!(chunks.len() < reads);
        // Each chunk is stamped with the capture time of its first sample.
        let mut frames_before = 0u64;
        for (ts, _) in &chunks {
            assert_eq!(*ts, 1_000_000 + (frames_before * 1_000_000 / 48000) as i64);
            frames_before += 1152;
        }
        assert_eq!(frames_before, 57600);

        let mut reader = claxon::FlacReader::new(std::io::Cursor::new(stream)).unwrap();
        assert_eq!(reader.streaminfo().sample_rate, 48000);
        assert_eq!(reader.streaminfo().max_block_size, 1152);
        assert_eq!(reader.get_tag("TITLE").next(), Some("SnapStream"));
        let decoded: Vec<i32> = reader.samples().map(|s| s.unwrap()).collect();
        let original: Vec<i32> = input
            .chunks_exact(2)
            .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]])))
            .collect();
        assert_eq!(decoded.len(), original.len());
        assert!(decoded == original, "FLAC round trip is not bit-exact");
    }

    #[test]
    fn other_depths_and_levels_round_trip() {
        for (format, level) in [
            (SampleFormat::new(44100, 24, 2).unwrap(), "8"),
            (SampleFormat::new(44100, 8, 1).unwrap(), "0"),
        ] {
            let mut encoder = FlacEncoder::new(level, format).unwrap();
            let mut stream = encoder.header().to_vec();
            let frames = 882;
            let mut original = Vec::new();
            for n in 0..30 {
                let mut pcm = Vec::new();
                for i in 0..frames * usize::from(format.channels) {
                    let v = (((n * 7919 + i * 31) % 2000) as i32 - 1000) * 37;
                    let v = if format.bits == 8 { v >> 9 } else { v };
                    original.push(v);
                    match format.bits {
                        8 => pcm.push(v as i8 as u8),
                        _ => pcm.extend_from_slice(&(v | (0x55 << 24)).to_le_bytes()[..4]),
                    }
                }
                // The 24-bit container's top byte is garbage on purpose: it must be ignored.
                if format.bits == 24 {
                    for c in pcm.chunks_exact_mut(4) {
                        c[3] = if c[2] & 0x80 != 0 { 0xAA } else { 0x55 };
                    }
                }
                encoder.encode(0, &pcm, &mut |unit| stream.extend_from_slice(unit.data));
            }
            let mut reader = claxon::FlacReader::new(std::io::Cursor::new(stream)).unwrap();
            let decoded: Vec<i32> = reader.samples().map(|s| s.unwrap()).collect();
            assert!(!decoded.is_empty());
            assert!(
                decoded[..] == original[..decoded.len()],
                "{format} level {level} not bit-exact"
            );
        }
    }
}
