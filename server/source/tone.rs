//! Built-in sine generator (`tone:///?name=test&freq=440,660`): a source that needs no
//! player, for demos and tests. One frequency per channel; the last one repeats.

use std::f64::consts::TAU;

use crate::sample_format::SampleFormat;

/// Produces an endless sine per channel in the stream's sample format.
#[derive(Debug)]
pub(crate) struct ToneReader {
    format: SampleFormat,
    frequencies: Vec<f64>,
    amplitude: f64,
    /// Frames produced so far; phases derive from it, so no error accumulates.
    frame: u64,
}

impl ToneReader {
    pub(crate) fn new(format: SampleFormat, frequencies: Vec<f64>, amplitude: f64) -> Self {
        Self {
            format,
            frequencies,
            amplitude,
            frame: 0,
        }
    }

    /// Fills as many whole frames of `buf` as fit; always ready.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> usize {
        let sample_size = self.format.sample_size();
        let frame_size = self.format.frame_size();
        let frames = buf.len() / frame_size;
        let full_scale = match self.format.bits {
            8 => f64::from(i8::MAX),
            16 => f64::from(i16::MAX),
            24 => f64::from((1i32 << 23) - 1),
            _ => f64::from(i32::MAX),
        };
        let rate = f64::from(self.format.rate);
        for (i, frame) in buf[..frames * frame_size]
            .chunks_exact_mut(frame_size)
            .enumerate()
        {
            let t = (self.frame + i as u64) as f64 / rate;
            for (channel, sample) in frame.chunks_exact_mut(sample_size).enumerate() {
                let freq = self
                    .frequencies
                    .get(channel)
                    .or(self.frequencies.last())
                    .copied()
                    .unwrap_or(440.0);
                let value = ((TAU * freq * t).sin() * self.amplitude * full_scale).round() as i32;
                sample.copy_from_slice(&value.to_le_bytes()[..sample_size]);
            }
        }
        self.frame += frames as u64;
        frames * frame_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_frequencies_in_16_bit() {
        let format = SampleFormat::new(48000, 16, 2).unwrap();
        let mut tone = ToneReader::new(format, vec![1000.0, 2000.0], 0.5);
        let mut buf = vec![0u8; 48 * 4 + 3];
        assert_eq!(tone.read(&mut buf), 48 * 4);
        let left: Vec<i16> = buf[..192]
            .chunks_exact(4)
            .map(|f| i16::from_le_bytes([f[0], f[1]]))
            .collect();
        let right: Vec<i16> = buf[..192]
            .chunks_exact(4)
            .map(|f| i16::from_le_bytes([f[2], f[3]]))
            .collect();
        // 1 kHz at 48 kHz: a quarter period is 12 frames.
        assert_eq!(left[0], 0);
        assert!((i32::from(left[12]) - 16384).abs() <= 1);
        // 2 kHz: a quarter period is 6 frames.
        assert!((i32::from(right[6]) - 16384).abs() <= 1);
    }

    #[test]
    fn twenty_four_bit_sign_extends_in_four_bytes() {
        let format = SampleFormat::new(48000, 24, 1).unwrap();
        let mut tone = ToneReader::new(format, vec![1000.0], 1.0);
        let mut buf = vec![0u8; 4 * 48];
        tone.read(&mut buf);
        let trough = i32::from_le_bytes(buf[36 * 4..37 * 4].try_into().unwrap());
        assert_eq!(trough, -((1 << 23) - 1));
    }
}
