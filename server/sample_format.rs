//! PCM sample formats in snapserver's `rate:bits:channels` notation
//! (docs/PROTOCOL.md §3.1): parsing, validation and frame arithmetic.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Sample rates a source may declare. Snapclient resamples nothing itself, so we accept the
/// rates real sound cards and players produce.
pub(crate) const SUPPORTED_RATES: &[u32] = &[
    8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000,
];

/// Bit depths a source may declare (8-bit is signed, 24-bit travels in 4-byte containers).
pub(crate) const SUPPORTED_BITS: &[u16] = &[8, 16, 24, 32];

/// The most channels snapclient's players handle.
pub(crate) const MAX_CHANNELS: u16 = 8;

/// A PCM layout: interleaved, signed little-endian samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleFormat {
    /// Frames per second.
    pub(crate) rate: u32,
    /// Significant bits per sample.
    pub(crate) bits: u16,
    /// Interleaved channels per frame.
    pub(crate) channels: u16,
}

/// Why a sample format string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleFormatError {
    /// Not three `:`-separated numbers.
    #[error("'{0}' is not of the form rate:bits:channels (e.g. 48000:16:2)")]
    Syntax(String),
    /// Rate outside `SUPPORTED_RATES`.
    #[error("sample rate {0} is not supported (allowed: {allowed})", allowed = join(SUPPORTED_RATES))]
    Rate(u32),
    /// Bits outside `SUPPORTED_BITS`.
    #[error("bit depth {0} is not supported (allowed: {allowed})", allowed = join(SUPPORTED_BITS))]
    Bits(u16),
    /// Channels outside 1..=`MAX_CHANNELS`.
    #[error("{0} channels is not supported (allowed: 1 to {MAX_CHANNELS})")]
    Channels(u16),
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl SampleFormat {
    /// Builds a format, checking each field against what we support.
    pub(crate) fn new(rate: u32, bits: u16, channels: u16) -> Result<Self, SampleFormatError> {
        if !SUPPORTED_RATES.contains(&rate) {
            return Err(SampleFormatError::Rate(rate));
        }
        if !SUPPORTED_BITS.contains(&bits) {
            return Err(SampleFormatError::Bits(bits));
        }
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(SampleFormatError::Channels(channels));
        }
        Ok(Self {
            rate,
            bits,
            channels,
        })
    }

    /// Bytes one sample occupies: 24-bit samples live in 4-byte containers (§3.1).
    pub(crate) fn sample_size(&self) -> usize {
        match self.bits {
            24 => 4,
            bits => usize::from(bits / 8),
        }
    }

    /// Bytes per frame (one sample of every channel).
    pub(crate) fn frame_size(&self) -> usize {
        self.sample_size() * usize::from(self.channels)
    }

    /// Frames covering `duration`, rounded down.
    pub(crate) fn frames_in(&self, duration: Duration) -> usize {
        (u128::from(self.rate) * duration.as_nanos() / 1_000_000_000) as usize
    }

    /// Playing time of `frames` frames.
    pub(crate) fn duration_of(&self, frames: usize) -> Duration {
        Duration::from_nanos((frames as u128 * 1_000_000_000 / u128::from(self.rate)) as u64)
    }

    /// Whether every sample of `pcm` is at most `percent` % of full scale in magnitude
    /// (snapserver's `silence_threshold_percent`; 0 means exact zeros).
    pub(crate) fn is_silent(&self, pcm: &[u8], percent: f64) -> bool {
        if percent <= 0.0 {
            return pcm.iter().all(|b| *b == 0);
        }
        let full_scale = (1u64 << (self.bits - 1)) as f64;
        let limit = (full_scale * percent / 100.0) as i64;
        let size = self.sample_size();
        pcm.chunks_exact(size).all(|s| {
            let value: i64 = match self.bits {
                8 => i64::from(s[0] as i8),
                16 => i64::from(i16::from_le_bytes([s[0], s[1]])),
                // 24-bit in the low three bytes of four, sign-extended.
                24 => i64::from(i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8),
                _ => i64::from(i32::from_le_bytes([s[0], s[1], s[2], s[3]])),
            };
            value.abs() <= limit
        })
    }
}

impl Default for SampleFormat {
    /// snapserver's default, `48000:16:2`.
    fn default() -> Self {
        Self {
            rate: 48000,
            bits: 16,
            channels: 2,
        }
    }
}

impl FromStr for SampleFormat {
    type Err = SampleFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || SampleFormatError::Syntax(s.to_owned());
        let mut parts = s.trim().split(':');
        let (Some(rate), Some(bits), Some(channels), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(syntax());
        };
        let rate = rate.trim().parse().map_err(|_| syntax())?;
        let bits = bits.trim().parse().map_err(|_| syntax())?;
        let channels = channels.trim().parse().map_err(|_| syntax())?;
        Self::new(rate, bits, channels)
    }
}

impl fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.rate, self.bits, self.channels)
    }
}

impl serde::Serialize for SampleFormat {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SampleFormat {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_exact_zeros_or_below_a_threshold() {
        let format = SampleFormat::default();
        let quiet: Vec<u8> = [50i16, -60, 0, 327]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert!(format.is_silent(&[0; 8], 0.0));
        assert!(!format.is_silent(&quiet, 0.0));
        assert!(format.is_silent(&quiet, 1.0), "327 is 1 % of 32768");
        assert!(!format.is_silent(&quiet, 0.5));
        let wide = SampleFormat::new(48000, 24, 2).unwrap();
        let low: Vec<u8> = (-80_000i32).to_le_bytes().to_vec();
        assert!(wide.is_silent(&low, 1.0) && !wide.is_silent(&low, 0.5));
    }

    #[test]
    fn parses_and_prints_snapserver_default() {
        let format: SampleFormat = "48000:16:2".parse().unwrap();
        assert_eq!(format, SampleFormat::default());
        assert_eq!(format.to_string(), "48000:16:2");
        assert_eq!(format.frame_size(), 4);
        assert_eq!(format.frames_in(Duration::from_millis(20)), 960);
    }

    #[test]
    fn twenty_four_bit_uses_four_byte_containers() {
        let format: SampleFormat = "96000:24:6".parse().unwrap();
        assert_eq!(format.sample_size(), 4);
        assert_eq!(format.frame_size(), 24);
    }

    #[test]
    fn rejects_each_bad_field_naming_it() {
        assert_eq!(
            "48000:16".parse::<SampleFormat>(),
            Err(SampleFormatError::Syntax("48000:16".into()))
        );
        assert_eq!(
            "48000:16:2:1".parse::<SampleFormat>(),
            Err(SampleFormatError::Syntax("48000:16:2:1".into()))
        );
        assert_eq!(
            "abc:16:2".parse::<SampleFormat>(),
            Err(SampleFormatError::Syntax("abc:16:2".into()))
        );
        assert_eq!(
            "12345:16:2".parse::<SampleFormat>(),
            Err(SampleFormatError::Rate(12345))
        );
        assert_eq!(
            "48000:12:2".parse::<SampleFormat>(),
            Err(SampleFormatError::Bits(12))
        );
        assert_eq!(
            "48000:16:0".parse::<SampleFormat>(),
            Err(SampleFormatError::Channels(0))
        );
        assert_eq!(
            "48000:16:9".parse::<SampleFormat>(),
            Err(SampleFormatError::Channels(9))
        );
        let message = "44100:20:2"
            .parse::<SampleFormat>()
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("20") && message.contains("16, 24"),
            "{message}"
        );
    }

    #[test]
    fn duration_and_frames_agree() {
        let format: SampleFormat = "44100:16:2".parse().unwrap();
        let frames = format.frames_in(Duration::from_millis(20));
        assert_eq!(frames, 882);
        assert_eq!(format.duration_of(frames), Duration::from_millis(20));
    }
}
