//! The `opus` codec (docs/PROTOCOL.md §3.4): a 12-byte `SUPO` pseudo-header, then one raw
//! Opus packet per WireChunk, restricted-low-delay, as snapserver does.
//!
//! The encoder is libopus 1.3.1 (the version Debian's snapclient decodes with) transpiled to
//! Rust (`unsafe-libopus`), so no C library or C toolchain is needed.
//!
//! Input must be 48000 Hz stereo: other rates are resampled in front of it (`resample.rs`,
//! as snapserver does) and mono is spread to both channels there; more channels are refused
//! at start-up naming the format. Any
//! bit depth is accepted: samples go to libopus as floats, so 24-bit keeps its precision,
//! and the header always says 16 bits as snapserver's does (the client's output depth).

use unsafe_libopus::{
    opus_encode_float, opus_encoder_create, opus_encoder_ctl, opus_encoder_destroy,
    OpusEncoder as RawEncoder, OPUS_APPLICATION_RESTRICTED_LOWDELAY, OPUS_AUTO, OPUS_BITRATE_MAX,
    OPUS_OK, OPUS_SET_BITRATE_REQUEST, OPUS_SET_COMPLEXITY_REQUEST,
};

use super::timeline::Timeline;
use super::{full_scale, sample_at, Encoder, EncoderError, Unit};
use crate::sample_format::SampleFormat;

/// The only rate Opus runs at here (§3.4).
pub(super) const RATE: u32 = 48000;
/// Opus carries stereo only in snapcast (§3.4).
const CHANNELS: u16 = 2;
/// snapserver's defaults (§3.4).
const DEFAULT_BITRATE: i32 = 192_000;
const DEFAULT_COMPLEXITY: i32 = 10;
/// Frame sizes the encoder cuts greedily from each read, longest first (§3.4): 60, 40, 20
/// and 10 ms. A remainder under 10 ms waits for the next read.
const FRAME_SIZES: [usize; 4] = [2880, 1920, 960, 480];
/// Room for the largest packet: 60 ms at 512 kbit/s is 3840 bytes; libopus caps a packet at
/// 1275 bytes per 20 ms frame anyway.
const MAX_PACKET: usize = 4000;

/// Owns one libopus encoder state.
struct RawState(*mut RawEncoder);

// SAFETY: the libopus encoder state is plain memory with no thread affinity; `RawState` owns
// it exclusively and is only used through `&mut self`, so moving it to another thread is
// sound.
unsafe impl Send for RawState {}

impl Drop for RawState {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `opus_encoder_create`, is non-null, and is destroyed
        // exactly once, here.
        unsafe { opus_encoder_destroy(self.0) }
    }
}

/// Streams stereo 48 kHz PCM into Opus packets.
pub(crate) struct OpusEncoder {
    header: [u8; 12],
    state: RawState,
    format: SampleFormat,
    scale: f32,
    /// Interleaved float samples not yet encoded (under one frame after each read).
    pending: Vec<f32>,
    pending_start: u64,
    timeline: Timeline,
    packet: Vec<u8>,
}

/// The parsed `codec=opus:...` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Options {
    bitrate: i32,
    complexity: i32,
}

impl OpusEncoder {
    /// Parses `options` (`BITRATE:<6000..512000|MAX|AUTO>,COMPLEXITY:<1..10>`) and creates
    /// the libopus encoder.
    pub(crate) fn new(options: &str, format: SampleFormat) -> Result<Self, EncoderError> {
        let options = parse_options(options)?;
        if format.rate != RATE || format.channels != CHANNELS {
            return Err(EncoderError::unsupported(
                "opus",
                format,
                "opus takes mono or stereo input (other rates are resampled to 48000 Hz, \
                 mono spread to stereo); use such a source or codec=flac",
            ));
        }
        let init_error = |what: &str, code: i32| EncoderError::Init {
            codec: "opus".into(),
            reason: format!("{what} failed with libopus error {code}"),
        };
        let mut error = 0;
        // SAFETY: valid rate/channels/application constants and a valid out-pointer.
        let raw = unsafe {
            opus_encoder_create(
                RATE as i32,
                i32::from(CHANNELS),
                OPUS_APPLICATION_RESTRICTED_LOWDELAY,
                &mut error,
            )
        };
        if raw.is_null() || error != OPUS_OK {
            return Err(init_error("opus_encoder_create", error));
        }
        let state = RawState(raw);
        // SAFETY: `state.0` is a live encoder; each request takes one i32 argument.
        let code = unsafe { opus_encoder_ctl!(state.0, OPUS_SET_BITRATE_REQUEST, options.bitrate) };
        if code != OPUS_OK {
            return Err(init_error("setting the bitrate", code));
        }
        // SAFETY: as above.
        let code =
            unsafe { opus_encoder_ctl!(state.0, OPUS_SET_COMPLEXITY_REQUEST, options.complexity) };
        if code != OPUS_OK {
            return Err(init_error("setting the complexity", code));
        }
        let mut header = [0u8; 12];
        header[0..4].copy_from_slice(&0x4F50_5553u32.to_le_bytes()); // "SUPO" on the wire
        header[4..8].copy_from_slice(&RATE.to_le_bytes());
        header[8..10].copy_from_slice(&16u16.to_le_bytes());
        header[10..12].copy_from_slice(&CHANNELS.to_le_bytes());
        Ok(Self {
            header,
            state,
            format,
            scale: 1.0 / full_scale(format),
            pending: Vec::with_capacity(2 * FRAME_SIZES[0] * 2),
            pending_start: 0,
            timeline: Timeline::new(RATE),
            packet: vec![0; MAX_PACKET],
        })
    }
}

impl Encoder for OpusEncoder {
    fn name(&self) -> &'static str {
        "opus"
    }

    fn header(&self) -> &[u8] {
        &self.header
    }

    fn encode(&mut self, timestamp_us: i64, pcm: &[u8], emit: &mut dyn FnMut(Unit<'_>)) {
        let frames = pcm.len() / self.format.frame_size();
        self.timeline.push(timestamp_us, frames);
        let samples = frames * usize::from(CHANNELS);
        self.pending
            .extend((0..samples).map(|i| sample_at(pcm, self.format, i) as f32 * self.scale));

        let mut consumed = 0;
        loop {
            let available = (self.pending.len() - consumed) / usize::from(CHANNELS);
            let Some(&frame_size) = FRAME_SIZES.iter().find(|&&size| size <= available) else {
                break;
            };
            let input = &self.pending[consumed..consumed + frame_size * usize::from(CHANNELS)];
            // SAFETY: `input` holds `frame_size` interleaved stereo frames, `packet` is
            // writable for its full length, and the encoder state is live.
            let len = unsafe {
                opus_encode_float(
                    self.state.0,
                    input.as_ptr(),
                    frame_size as i32,
                    self.packet.as_mut_ptr(),
                    self.packet.len() as i32,
                )
            };
            let first = self.pending_start + (consumed / usize::from(CHANNELS)) as u64;
            consumed += frame_size * usize::from(CHANNELS);
            match usize::try_from(len) {
                Ok(len) if len > 0 => emit(Unit::new(
                    self.timeline.timestamp_of(first),
                    &self.packet[..len],
                )),
                _ => tracing::warn!(code = len, "opus frame not encoded; skipped"),
            }
        }
        self.pending.drain(..consumed);
        self.pending_start += (consumed / usize::from(CHANNELS)) as u64;
    }
}

fn parse_options(options: &str) -> Result<Options, EncoderError> {
    let mut parsed = Options {
        bitrate: DEFAULT_BITRATE,
        complexity: DEFAULT_COMPLEXITY,
    };
    let bad = |reason: &str| {
        EncoderError::bad_options(
            "opus",
            options,
            format!(
                "{reason}; expected BITRATE:<6000..512000|MAX|AUTO>,COMPLEXITY:<1..10> \
                 (default BITRATE:192000,COMPLEXITY:10)"
            ),
        )
    };
    for option in options.split(',').filter(|o| !o.is_empty()) {
        let (key, value) = option
            .split_once(':')
            .ok_or_else(|| bad(&format!("'{option}' is not KEY:VALUE")))?;
        match key.to_ascii_uppercase().as_str() {
            "BITRATE" => {
                parsed.bitrate = match value.to_ascii_uppercase().as_str() {
                    "MAX" => OPUS_BITRATE_MAX,
                    "AUTO" => OPUS_AUTO,
                    number => match number.parse::<i32>() {
                        Ok(bps) if (6000..=512_000).contains(&bps) => bps,
                        _ => return Err(bad(&format!("bitrate '{value}' is out of range"))),
                    },
                }
            }
            "COMPLEXITY" => {
                parsed.complexity = match value.parse::<i32>() {
                    Ok(c) if (1..=10).contains(&c) => c,
                    _ => return Err(bad(&format!("complexity '{value}' is out of range"))),
                }
            }
            _ => return Err(bad(&format!("unknown option '{key}'"))),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::super::test_tone as tone;
    use super::*;
    use unsafe_libopus::{opus_decode, opus_decoder_create, opus_decoder_destroy};

    #[test]
    fn header_is_the_12_byte_supo_pseudo_header() {
        let encoder = OpusEncoder::new("", SampleFormat::default()).unwrap();
        assert_eq!(
            encoder.header(),
            [0x53, 0x55, 0x50, 0x4F, 0x80, 0xBB, 0x00, 0x00, 0x10, 0x00, 0x02, 0x00]
        );
    }

    #[test]
    fn options_parse_as_snapserver_spells_them() {
        assert_eq!(
            parse_options("BITRATE:128000,COMPLEXITY:8").unwrap(),
            Options {
                bitrate: 128_000,
                complexity: 8
            }
        );
        assert_eq!(parse_options("").unwrap().bitrate, DEFAULT_BITRATE);
        assert_eq!(
            parse_options("BITRATE:MAX").unwrap().bitrate,
            OPUS_BITRATE_MAX
        );
        for bad in [
            "BITRATE:5000",
            "COMPLEXITY:0",
            "LOUD:1",
            "BITRATE",
            "COMPLEXITY:x",
        ] {
            let err = parse_options(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn formats_other_than_48k_stereo_are_refused_naming_the_format() {
        let err = OpusEncoder::new("", SampleFormat::new(44100, 16, 2).unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("codec 'opus' cannot encode sample format 44100:16:2"),
            "{err}"
        );
        assert!(OpusEncoder::new("", SampleFormat::new(48000, 16, 1).unwrap()).is_err());
        assert!(OpusEncoder::new("", SampleFormat::new(48000, 24, 2).unwrap()).is_ok());
    }

    /// One packet per 20 ms read, stamped with its read's time; a 25 ms read carries 5 ms
    /// over. The packets decode back to the tone (lossy: energy and zero crossings checked).
    #[test]
    fn reads_become_packets_that_decode_to_the_tone() {
        let mut encoder = OpusEncoder::new("", SampleFormat::default()).unwrap();
        let mut packets = Vec::new();
        for n in 0..50 {
            encoder.encode(n as i64 * 20_000, &tone(960, n * 960), &mut |unit| {
                packets.push((unit.timestamp_us, unit.data.to_vec()))
            });
        }
        assert_eq!(packets.len(), 50, "one packet per 20 ms read");
        for (n, (ts, _)) in packets.iter().enumerate() {
            assert_eq!(*ts, n as i64 * 20_000);
        }
        let mut uneven = Vec::new();
        for n in 0..4 {
            encoder.encode(2_000_000 + n * 25_000, &tone(1200, 0), &mut |unit| {
                uneven.push((unit.timestamp_us, unit.data.len()))
            });
        }
        // 4 × 25 ms = 100 ms, cut greedily into 20 and 10 ms packets; each is stamped with
        // the capture time of its own first sample, wherever in the reads that falls.
        let stamps: Vec<i64> = uneven.iter().map(|(ts, _)| *ts).collect();
        assert_eq!(
            stamps,
            [2_000_000, 2_020_000, 2_040_000, 2_050_000, 2_070_000, 2_090_000]
        );

        let mut error = 0;
        // SAFETY: test-only decoder, created and destroyed here.
        let decoder = unsafe { opus_decoder_create(48000, 2, &mut error) };
        assert!(!decoder.is_null());
        let mut out = Vec::new();
        let mut pcm = vec![0i16; 5760 * 2];
        for (_, packet) in &packets {
            // SAFETY: valid packet slice and an output buffer of 5760 stereo frames.
            let n = unsafe {
                opus_decode(
                    decoder,
                    packet.as_ptr(),
                    packet.len() as i32,
                    pcm.as_mut_ptr(),
                    5760,
                    0,
                )
            };
            assert_eq!(n, 960);
            out.extend_from_slice(&pcm[..1920]);
        }
        // SAFETY: created above, destroyed once.
        unsafe { opus_decoder_destroy(decoder) };
        // Skip the first 100 ms (codec start-up), then count zero crossings per channel.
        let tail = &out[9600..];
        let crossings = |ch: usize| {
            tail.chunks_exact(2)
                .map(|f| f[ch])
                .collect::<Vec<_>>()
                .windows(2)
                .filter(|w| (w[0] < 0) != (w[1] < 0))
                .count()
        };
        let seconds = tail.len() as f64 / 2.0 / 48000.0;
        let left_hz = crossings(0) as f64 / 2.0 / seconds;
        let right_hz = crossings(1) as f64 / 2.0 / seconds;
        assert!((left_hz - 440.0).abs() < 10.0, "left at {left_hz} Hz");
        assert!((right_hz - 1000.0).abs() < 10.0, "right at {right_hz} Hz");
        let rms =
            (tail.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
        assert!((rms - 12000.0 / 2f64.sqrt()).abs() < 1500.0, "rms {rms}");
    }
}
