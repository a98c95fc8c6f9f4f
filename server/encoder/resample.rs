//! Resampling in front of a codec that needs another rate (opus takes 48000 Hz only; librespot
//! and AirPlay sources are 44100 Hz), as snapserver does. It runs on the stream's encoder
//! thread, once per stream, never per client. An FFT resampler (rubato) with a fixed ratio;
//! its delay is taken off the timestamps, so every output sample keeps the capture time of
//! the input it came from. A jump in the input's timeline (the pacer restarted it) starts the
//! resampler afresh rather than blending two moments.

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};
use tracing::warn;

use super::{push_samples_i32, Encoder, EncoderError, Unit};
use crate::sample_format::SampleFormat;

/// Resamples `from` to the inner encoder's format, then encodes.
pub(super) struct Resampling {
    inner: Box<dyn Encoder>,
    resampler: PcmResampler,
}

impl std::fmt::Debug for Resampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampling")
            .field("resampler", &self.resampler)
            .finish_non_exhaustive()
    }
}

impl Resampling {
    /// `inner` encodes `to` (16-bit); input comes in `from` (any bits; the same channels,
    /// or mono to or from any).
    pub(super) fn new(
        inner: Box<dyn Encoder>,
        from: SampleFormat,
        to: SampleFormat,
    ) -> Result<Self, EncoderError> {
        let resampler =
            PcmResampler::new(from, to.rate, to.channels).map_err(|reason| EncoderError::Init {
                codec: inner.name().to_owned(),
                reason,
            })?;
        Ok(Self { inner, resampler })
    }
}

impl Encoder for Resampling {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn header(&self) -> &[u8] {
        self.inner.header()
    }

    fn encode(&mut self, timestamp_us: i64, pcm: &[u8], emit: &mut dyn FnMut(Unit<'_>)) {
        let inner = &mut self.inner;
        self.resampler.process(timestamp_us, pcm, &mut |ts, out| {
            inner.encode(ts, out, emit)
        });
    }
}

/// Interleaved PCM in one format to 16-bit PCM at another rate and channel count, with each
/// output block's capture time.
pub(crate) struct PcmResampler {
    from: SampleFormat,
    to_rate: u32,
    /// Output channels; mono is spread to every one, several are mixed down to mono.
    to_channels: usize,
    fft: Fft<f32>,
    /// Interleaved input not yet resampled, as floats in [-1, 1].
    pending: Vec<f32>,
    /// Capture time of the first frame since the last (re)start, and the frames consumed
    /// since: `pending`'s first frame is at `origin + consumed / rate`, computed whole each
    /// time so that no rounding accumulates.
    origin: Option<(i64, u64)>,
    /// The resampler's delay, µs.
    delay_us: i64,
    samples: Vec<i32>,
    output: Vec<f32>,
    pcm: Vec<u8>,
}

impl std::fmt::Debug for PcmResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcmResampler")
            .field("from", &self.from)
            .field("to_rate", &self.to_rate)
            .finish_non_exhaustive()
    }
}

impl PcmResampler {
    /// From `from` to 16-bit at `to_rate` with `to_channels`.
    ///
    /// # Errors
    ///
    /// The channels cannot be mapped (only the same count, from mono, or to mono), or the
    /// resampler cannot be built for these rates (what rubato said).
    pub(crate) fn new(from: SampleFormat, to_rate: u32, to_channels: u16) -> Result<Self, String> {
        if from.channels != to_channels && from.channels != 1 && to_channels != 1 {
            return Err(format!(
                "{} channels cannot be mapped to {to_channels} (only from or to mono)",
                from.channels
            ));
        }
        let (rate_in, rate_out) = (from.rate as usize, to_rate as usize);
        // The smallest whole-ratio block at or above 20 ms of input.
        let step = rate_in / gcd(rate_in, rate_out);
        let chunk = (rate_in / 50).div_ceil(step) * step;
        let channels = usize::from(to_channels);
        let fft = Fft::<f32>::new(rate_in, rate_out, chunk, channels, FixedSync::Input)
            .map_err(|err| format!("resampler {rate_in} → {rate_out} Hz: {err}"))?;
        let delay_us = fft.output_delay() as i64 * 1_000_000 / rate_out as i64;
        let output = vec![0.0; fft.output_frames_max() * channels];
        Ok(Self {
            from,
            to_rate,
            to_channels: channels,
            fft,
            pending: Vec::new(),
            origin: None,
            delay_us,
            samples: Vec::new(),
            output,
            pcm: Vec::new(),
        })
    }

    fn pending_frames(&self) -> usize {
        self.pending.len() / self.to_channels
    }

    /// Capture time of the frame `frames` after the origin.
    fn at(&self, origin_us: i64, frames: u64) -> i64 {
        origin_us + (i128::from(frames) * 1_000_000 / i128::from(self.from.rate)) as i64
    }

    fn restart(&mut self) {
        self.fft.reset();
        self.pending.clear();
        self.origin = None;
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl PcmResampler {
    /// Takes a block of input captured from `timestamp_us`; hands each resampled block and
    /// its capture time to `out`.
    pub(crate) fn process(
        &mut self,
        timestamp_us: i64,
        pcm: &[u8],
        out: &mut dyn FnMut(i64, &[u8]),
    ) {
        if let Some((origin_us, consumed)) = self.origin {
            let expected = self.at(origin_us, consumed + self.pending_frames() as u64);
            if (timestamp_us - expected).abs() > 1_000 {
                self.restart(); // the timeline jumped
            }
        }
        if self.origin.is_none() {
            self.origin = Some((timestamp_us, 0));
        }
        self.samples.clear();
        push_samples_i32(pcm, self.from, &mut self.samples);
        let scale = 1.0 / (1u64 << (self.from.bits - 1)) as f32;
        let (from_channels, channels) = (usize::from(self.from.channels), self.to_channels);
        if from_channels == channels {
            self.pending
                .extend(self.samples.iter().map(|s| *s as f32 * scale));
        } else if from_channels == 1 {
            for sample in &self.samples {
                let value = *sample as f32 * scale;
                self.pending.extend(std::iter::repeat_n(value, channels));
            }
        } else {
            let mix = scale / from_channels as f32;
            for frame in self.samples.chunks_exact(from_channels) {
                self.pending
                    .push(frame.iter().map(|s| *s as f32).sum::<f32>() * mix);
            }
        }

        while self.pending_frames() >= self.fft.input_frames_next() {
            let frames = self.pending_frames();
            let capacity = self.output.len() / channels;
            let processed = match (
                InterleavedSlice::new(&self.pending[..], channels, frames),
                InterleavedSlice::new_mut(&mut self.output[..], channels, capacity),
            ) {
                (Ok(input), Ok(mut output)) => {
                    self.fft.process_into_buffer(&input, &mut output, None)
                }
                _ => {
                    warn!("resampler buffers do not fit; starting afresh");
                    self.restart();
                    return;
                }
            };
            let (used, made) = match processed {
                Ok(counts) => counts,
                Err(err) => {
                    warn!(error = %err, "resampling failed; starting afresh");
                    self.restart();
                    return;
                }
            };
            let (origin_us, consumed) = self.origin.unwrap_or((timestamp_us, 0));
            let start = self.at(origin_us, consumed);
            self.pcm.clear();
            for sample in &self.output[..made * channels] {
                let value = (sample * 32767.0).round().clamp(-32768.0, 32767.0) as i16;
                self.pcm.extend_from_slice(&value.to_le_bytes());
            }
            out(start - self.delay_us, &self.pcm);
            self.pending.drain(..used * channels);
            self.origin = Some((origin_us, consumed + used as u64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the inner encoder was given: (timestamp, 16-bit samples) per call.
    type Calls = std::sync::Arc<std::sync::Mutex<Vec<(i64, Vec<i16>)>>>;

    /// Collects what it is given.
    struct Capture(Calls);

    impl Encoder for Capture {
        fn name(&self) -> &'static str {
            "capture"
        }
        fn header(&self) -> &[u8] {
            &[]
        }
        fn encode(&mut self, timestamp_us: i64, pcm: &[u8], _emit: &mut dyn FnMut(Unit<'_>)) {
            let samples = pcm
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            self.0.lock().unwrap().push((timestamp_us, samples));
        }
    }

    fn sine(rate: u32, hz: f64, from: usize, frames: usize) -> Vec<u8> {
        let mut pcm = Vec::new();
        for i in from..from + frames {
            let v =
                (12000.0 * (std::f64::consts::TAU * hz * i as f64 / f64::from(rate)).sin()) as i16;
            pcm.extend_from_slice(&v.to_le_bytes());
            pcm.extend_from_slice(&v.to_le_bytes());
        }
        pcm
    }

    #[test]
    fn a_44100_hz_tone_comes_out_at_48000_hz_with_its_capture_times() {
        let got = std::sync::Arc::default();
        let from = SampleFormat::new(44100, 16, 2).unwrap();
        let to = SampleFormat::new(48000, 16, 2).unwrap();
        let mut resampling =
            Resampling::new(Box::new(Capture(std::sync::Arc::clone(&got))), from, to).unwrap();
        let t0 = 1_000_000_000;
        // 2 s in 20 ms chunks (882 frames).
        for chunk in 0..100 {
            let ts = t0 + chunk * 20_000;
            let pcm = sine(44100, 1000.0, chunk as usize * 882, 882);
            resampling.encode(ts, &pcm, &mut |_| {});
        }
        let got = got.lock().unwrap();
        let frames: usize = got.iter().map(|(_, s)| s.len() / 2).sum();
        assert!(
            (95_000..=96_000).contains(&frames),
            "{frames} frames out for 2 s in"
        );
        // Contiguous stamps, 48000-frame based, shifted back by the delay.
        assert_eq!(got[0].0, t0 - resampling.resampler.delay_us);
        for pair in got.windows(2) {
            let frames = (pair[0].1.len() / 2) as i64;
            assert!((pair[1].0 - pair[0].0 - frames * 1_000_000 / 48_000).abs() <= 1);
        }
        // The tone: 1000 Hz at 48000 Hz is 48 samples per period; count zero crossings over
        // the last second.
        let left: Vec<i16> = got
            .iter()
            .flat_map(|(_, s)| s.chunks(2).map(|f| f[0]).collect::<Vec<_>>())
            .collect();
        let last = &left[left.len() - 48_000..];
        let crossings = last.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        assert!(
            (999..=1001).contains(&crossings),
            "{crossings} periods in a second"
        );
        assert!(last.iter().map(|s| s.unsigned_abs()).max().unwrap() > 11_000);
    }

    #[test]
    fn a_jump_in_the_timeline_starts_afresh() {
        let got = std::sync::Arc::default();
        let from = SampleFormat::new(44100, 16, 2).unwrap();
        let to = SampleFormat::new(48000, 16, 2).unwrap();
        let mut resampling =
            Resampling::new(Box::new(Capture(std::sync::Arc::clone(&got))), from, to).unwrap();
        resampling.encode(0, &sine(44100, 440.0, 0, 882), &mut |_| {});
        resampling.encode(5_000_000, &sine(44100, 440.0, 0, 882), &mut |_| {});
        let got = got.lock().unwrap();
        assert_eq!(
            got.last().unwrap().0,
            5_000_000 - resampling.resampler.delay_us
        );
    }

    /// Whole 16-bit output frames of `pcm` resampled once it all went in.
    fn run(resampler: &mut PcmResampler, pcm: &[u8], frame_bytes: usize) -> Vec<i16> {
        let mut out = Vec::new();
        for (i, block) in pcm.chunks(frame_bytes * 960).enumerate() {
            resampler.process(i as i64 * 20_000, block, &mut |_, pcm| {
                out.extend(
                    pcm.chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]])),
                );
            });
        }
        out
    }

    #[test]
    fn mono_is_spread_to_both_channels_and_stereo_mixed_down_to_mono() {
        let mono_format = SampleFormat::new(48000, 16, 1).unwrap();
        let mono: Vec<u8> = sine(48000, 1000.0, 0, 48_000)
            .chunks_exact(4)
            .flat_map(|f| [f[0], f[1]])
            .collect();
        let mut spread = PcmResampler::new(mono_format, 48000, 2).unwrap();
        let stereo = run(&mut spread, &mono, 2);
        assert!(stereo.len() > 40_000 * 2);
        assert!(stereo.chunks_exact(2).all(|f| f[0] == f[1]));
        assert!(stereo.iter().any(|s| s.abs() > 10_000), "the tone is there");

        // Left a tone, right silent: mono is their average, half as loud.
        let stereo_format = SampleFormat::new(44100, 16, 2).unwrap();
        let left_only: Vec<u8> = sine(44100, 1000.0, 0, 44_100)
            .chunks_exact(4)
            .flat_map(|f| [f[0], f[1], 0, 0])
            .collect();
        let mut mix = PcmResampler::new(stereo_format, 48000, 1).unwrap();
        let mixed = run(&mut mix, &left_only, 4);
        let peak = mixed[mixed.len() / 2..]
            .iter()
            .map(|s| s.abs())
            .max()
            .unwrap();
        assert!((5_500..=6_500).contains(&peak), "peak {peak}");

        let four = SampleFormat::new(48000, 16, 4).unwrap();
        assert!(PcmResampler::new(four, 48000, 2).is_err());
    }
}
