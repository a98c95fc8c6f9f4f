//! Encoders: PCM chunk in, encoded units plus the codec header out (docs/PROTOCOL.md §3).
//! Each stream has exactly one encoder, so every chunk is encoded once whatever the number
//! of clients. Encoders do no I/O and never block; the stream runs them on its own thread
//! so that a slow encode can never delay a time-sync reply on the runtime.
//!
//! Codecs: `pcm` (§3.2), `flac` (§3.3, pure Rust via flacenc), `opus` (§3.4, libopus 1.3.1
//! transpiled to Rust), `ogg` (§3.5, libvorbis/libogg built from bundled C sources).

mod flac;
mod ogg;
mod opus;
mod pcm;
mod probe;
pub use probe::header_format;
mod resample;

pub(crate) use resample::PcmResampler;
mod timeline;

use crate::sample_format::SampleFormat;

/// Codecs a stream may use, in the order `-hh` and error messages list them. This is the one
/// list: config validation and source-URI parsing both check against it.
pub(crate) const SUPPORTED_CODECS: &[&str] = &["flac", "ogg", "opus", "pcm"];

/// The "codec" of a stream no client plays: it only feeds meta streams and is hidden from
/// clients and notifications (snapserver's `codec=null`). Not a default codec.
pub(crate) const NULL_CODEC: &str = "null";

/// The codec a stream uses when neither its URI nor `[stream] codec` names one; snapserver's
/// default too (§3.7).
pub(crate) const DEFAULT_CODEC: &str = "flac";

/// Why an encoder could not be built. Each variant names the offending value, since these
/// are start-up errors a person reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncoderError {
    /// A codec name we do not implement.
    #[error("codec '{0}' is not supported (supported: {list})", list = SUPPORTED_CODECS.join(", "))]
    UnknownCodec(String),
    /// Options the codec does not take.
    #[error("codec '{codec}' does not accept options '{options}': {reason}")]
    BadOptions {
        /// Codec name.
        codec: String,
        /// The option string.
        options: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The codec cannot carry this sample format.
    #[error("codec '{codec}' cannot encode sample format {format}: {reason}")]
    UnsupportedFormat {
        /// Codec name.
        codec: String,
        /// The source's `rate:bits:channels`.
        format: String,
        /// What the codec needs instead.
        reason: String,
    },
    /// The codec library refused to initialise.
    #[error("codec '{codec}' failed to initialise: {reason}")]
    Init {
        /// Codec name.
        codec: String,
        /// The library's complaint.
        reason: String,
    },
}

impl EncoderError {
    fn bad_options(codec: &str, options: &str, reason: impl Into<String>) -> Self {
        Self::BadOptions {
            codec: codec.into(),
            options: options.into(),
            reason: reason.into(),
        }
    }

    fn unsupported(codec: &str, format: SampleFormat, reason: impl Into<String>) -> Self {
        Self::UnsupportedFormat {
            codec: codec.into(),
            format: format.to_string(),
            reason: reason.into(),
        }
    }
}

/// One encoded unit: what one WireChunk carries.
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a> {
    /// Capture time of its first sample, µs on the server clock (§2.4).
    pub timestamp_us: i64,
    /// The codec's bytes.
    pub data: &'a [u8],
    /// When a decoder that *starts* with this unit (a client just sent the CodecHeader)
    /// plays less of it than one that decoded the units before, the capture time of the
    /// first sample it does play. Vorbis: a fresh decoder outputs nothing for its first
    /// packet, so its first chunk starts one half-block later than the page says.
    pub fresh_decoder_timestamp_us: Option<i64>,
}

impl<'a> Unit<'a> {
    /// A unit every decoder plays from its first sample.
    pub fn new(timestamp_us: i64, data: &'a [u8]) -> Self {
        Self {
            timestamp_us,
            data,
            fresh_decoder_timestamp_us: None,
        }
    }
}

/// Turns PCM chunks into the units a codec sends per WireChunk.
pub trait Encoder: Send {
    /// The codec name clients see in the CodecHeader.
    fn name(&self) -> &'static str;

    /// The codec-specific header bytes, produced once at init (§2.6).
    fn header(&self) -> &[u8];

    /// Encodes one chunk of interleaved little-endian PCM in the stream's sample format whose
    /// first frame was captured at `timestamp_us`. Hands each finished unit, with the capture
    /// time of *its* first sample (§2.4), to `emit`. A codec that buffers may emit nothing for
    /// a chunk (§1.4), or several units (opus with long reads).
    fn encode(&mut self, timestamp_us: i64, pcm: &[u8], emit: &mut dyn FnMut(Unit<'_>));
}

/// Encodes nothing: a `codec=null` stream's chunks go only to the meta streams that play it.
struct NullEncoder;

impl Encoder for NullEncoder {
    fn name(&self) -> &'static str {
        NULL_CODEC
    }

    fn header(&self) -> &[u8] {
        &[]
    }

    fn encode(&mut self, _timestamp_us: i64, _pcm: &[u8], _emit: &mut dyn FnMut(Unit<'_>)) {}
}

/// Builds the encoder for `codec` with `options` (the text after the first `:` of `codec=`).
///
/// # Errors
/// [`EncoderError`] naming the codec, the option or the sample format that is not usable.
pub fn new_encoder(
    codec: &str,
    options: &str,
    format: SampleFormat,
) -> Result<Box<dyn Encoder>, EncoderError> {
    match codec {
        "pcm" if options.is_empty() => Ok(Box::new(pcm::PcmEncoder::new(format))),
        NULL_CODEC => Ok(Box::new(NullEncoder)),
        "pcm" => Err(EncoderError::bad_options(codec, options, "pcm takes none")),
        "flac" => Ok(Box::new(flac::FlacEncoder::new(options, format)?)),
        // Opus takes 48000 Hz stereo only: other rates are resampled first, as snapserver
        // does, and mono is spread to both channels.
        "opus" if format.rate != opus::RATE || format.channels == 1 => {
            let target = SampleFormat::new(opus::RATE, 16, 2)
                .map_err(|err| EncoderError::unsupported(codec, format, err.to_string()))?;
            let opus = opus::OpusEncoder::new(options, target)?;
            Ok(Box::new(resample::Resampling::new(
                Box::new(opus),
                format,
                target,
            )?))
        }
        "opus" => Ok(Box::new(opus::OpusEncoder::new(options, format)?)),
        "ogg" => Ok(Box::new(ogg::OggEncoder::new(options, format)?)),
        other => Err(EncoderError::UnknownCodec(other.into())),
    }
}

/// Checks `codec[:options]` as written in config or a URI by building a throw-away encoder.
#[cfg(test)]
fn validate(codec_spec: &str, format: SampleFormat) -> Result<(), EncoderError> {
    let (codec, options) = codec_spec.split_once(':').unwrap_or((codec_spec, ""));
    new_encoder(codec, options, format).map(drop)
}

/// Reads sample `index` of an interleaved chunk as a signed integer of `format.bits`
/// significant bits: 8-bit is signed (§3.1), 24-bit sits in the low three bytes of a 4-byte
/// little-endian container (its top byte is ignored and the value sign-extended).
fn sample_at(pcm: &[u8], format: SampleFormat, index: usize) -> i32 {
    match format.bits {
        8 => i32::from(pcm[index] as i8),
        16 => i32::from(i16::from_le_bytes([pcm[2 * index], pcm[2 * index + 1]])),
        24 => {
            let b = &pcm[4 * index..4 * index + 3];
            (i32::from_le_bytes([0, b[0], b[1], b[2]])) >> 8
        }
        _ => i32::from_le_bytes([
            pcm[4 * index],
            pcm[4 * index + 1],
            pcm[4 * index + 2],
            pcm[4 * index + 3],
        ]),
    }
}

/// Appends the interleaved samples of `pcm` (whole frames only) to `out` as integers, as
/// [`sample_at`] reads them. One loop per bit depth, not a per-sample dispatch: this runs
/// over every sample of a FLAC stream (docs/PERFORMANCE.md, profiles).
fn push_samples_i32(pcm: &[u8], format: SampleFormat, out: &mut Vec<i32>) {
    let samples = pcm.len() / format.frame_size() * usize::from(format.channels);
    let pcm = &pcm[..samples * format.sample_size()];
    out.reserve(samples);
    match format.bits {
        8 => out.extend(pcm.iter().map(|&b| i32::from(b as i8))),
        16 => out.extend(
            pcm.chunks_exact(2)
                .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]]))),
        ),
        24 => out.extend(
            pcm.chunks_exact(4)
                .map(|b| i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8),
        ),
        _ => out.extend(
            pcm.chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
    }
}

/// Full scale of `format.bits` as a float, for converting to the [-1, 1) range lossy
/// codecs take.
fn full_scale(format: SampleFormat) -> f32 {
    (1u64 << (format.bits - 1)) as f32
}

/// 48000:16:2 test PCM for the lossy encoders' tests: 440 Hz left, 1000 Hz right, from
/// frame `start` on.
#[cfg(test)]
fn test_tone(frames: usize, start: usize) -> Vec<u8> {
    let mut pcm = Vec::with_capacity(frames * 4);
    for i in start..start + frames {
        let t = i as f64 / 48000.0;
        let l = ((std::f64::consts::TAU * 440.0 * t).sin() * 12000.0) as i16;
        let r = ((std::f64::consts::TAU * 1000.0 * t).sin() * 12000.0) as i16;
        pcm.extend_from_slice(&l.to_le_bytes());
        pcm.extend_from_slice(&r.to_le_bytes());
    }
    pcm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_decode_per_bit_depth() {
        let f8 = SampleFormat::new(48000, 8, 1).unwrap();
        assert_eq!(sample_at(&[0xFF], f8, 0), -1);
        let f24 = SampleFormat::new(48000, 24, 1).unwrap();
        // -2 in 24 bits with a garbage top byte that must be ignored.
        assert_eq!(sample_at(&[0xFE, 0xFF, 0xFF, 0x12], f24, 0), -2);
        assert_eq!(sample_at(&[0xFF, 0xFF, 0x7F, 0x00], f24, 0), 0x7F_FFFF);
        let f16 = SampleFormat::new(48000, 16, 2).unwrap();
        let mut out = Vec::new();
        push_samples_i32(&[0x00, 0x80, 0xFF, 0x7F, 0x01], f16, &mut out);
        assert_eq!(out, vec![-32768, 32767], "a partial frame is not read");
    }

    #[test]
    fn bulk_conversion_matches_sample_at_for_every_depth() {
        let pcm: Vec<u8> = (0..=255u8).cycle().take(96).collect();
        for bits in [8u16, 16, 24, 32] {
            let format = SampleFormat::new(48000, bits, 2).unwrap();
            let mut out = Vec::new();
            push_samples_i32(&pcm, format, &mut out);
            let samples = pcm.len() / format.frame_size() * 2;
            let expected: Vec<i32> = (0..samples).map(|i| sample_at(&pcm, format, i)).collect();
            assert_eq!(out, expected, "{bits}-bit");
        }
    }

    #[test]
    fn every_listed_codec_builds_at_the_default_format() {
        for codec in SUPPORTED_CODECS {
            let encoder = new_encoder(codec, "", SampleFormat::default())
                .unwrap_or_else(|e| panic!("{codec}: {e}"));
            assert_eq!(encoder.name(), *codec);
            assert!(!encoder.header().is_empty());
        }
        assert!(SUPPORTED_CODECS.contains(&DEFAULT_CODEC));
    }

    #[test]
    fn unknown_codec_and_bad_options_are_named() {
        let err = validate("mp3", SampleFormat::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "codec 'mp3' is not supported (supported: flac, ogg, opus, pcm)"
        );
        let err = validate("pcm:x", SampleFormat::default()).unwrap_err();
        assert!(err.to_string().contains("'x'"), "{err}");
    }

    #[test]
    fn opus_takes_any_rate_and_mono_but_not_more_than_stereo() {
        for format in ["44100:16:2", "48000:16:1", "22050:24:1", "48000:32:2"] {
            let encoder = validate("opus", format.parse().unwrap());
            assert!(encoder.is_ok(), "{format}: {encoder:?}");
        }
        let err = validate("opus", "48000:16:6".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("48000:16:6"), "{err}");
    }
}
