//! The `pcm` codec: raw frames behind a canonical 44-byte RIFF/WAVE header
//! (docs/PROTOCOL.md §3.2). Snapclient exits on a malformed header, so its layout is
//! tested byte for byte.

use super::{Encoder, Unit};
use crate::sample_format::SampleFormat;

/// Passes PCM through unchanged.
pub(crate) struct PcmEncoder {
    header: [u8; 44],
}

impl PcmEncoder {
    pub(crate) fn new(format: SampleFormat) -> Self {
        Self {
            header: wav_header(format),
        }
    }
}

impl Encoder for PcmEncoder {
    fn name(&self) -> &'static str {
        "pcm"
    }

    fn header(&self) -> &[u8] {
        &self.header
    }

    fn encode(&mut self, timestamp_us: i64, pcm: &[u8], emit: &mut dyn FnMut(Unit<'_>)) {
        emit(Unit::new(timestamp_us, pcm));
    }
}

/// The 44-byte header of §3.2. Block align uses ceil(bits/8) (3 for 24-bit) as upstream
/// does, even though 24-bit data travels in 4 bytes; clients read only rate, bits, channels.
fn wav_header(format: SampleFormat) -> [u8; 44] {
    let channels = format.channels;
    let bits = format.bits;
    let byte_rate = format.rate * u32::from(bits) * u32::from(channels) / 8;
    let block_align = channels * bits.div_ceil(8);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&36u32.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&format.rate.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&bits.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_fact_sheet_example() {
        let expected = [
            0x52, 0x49, 0x46, 0x46, 0x24, 0x00, 0x00, 0x00, 0x57, 0x41, 0x56, 0x45, 0x66, 0x6d,
            0x74, 0x20, 0x10, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x80, 0xbb, 0x00, 0x00,
            0x00, 0xee, 0x02, 0x00, 0x04, 0x00, 0x10, 0x00, 0x64, 0x61, 0x74, 0x61, 0x00, 0x00,
            0x00, 0x00,
        ];
        assert_eq!(wav_header(SampleFormat::default()), expected);
    }

    #[test]
    fn twenty_four_bit_block_align_is_three_per_channel() {
        let h = wav_header(SampleFormat::new(96000, 24, 2).unwrap());
        assert_eq!(u16::from_le_bytes([h[32], h[33]]), 6);
        assert_eq!(u16::from_le_bytes([h[34], h[35]]), 24);
        assert_eq!(u32::from_le_bytes([h[24], h[25], h[26], h[27]]), 96000);
    }

    #[test]
    fn passes_chunks_through_with_their_timestamp() {
        let mut encoder = PcmEncoder::new(SampleFormat::default());
        let data = [1u8, 2, 3, 4];
        let mut seen = Vec::new();
        encoder.encode(42, &data, &mut |unit| {
            seen.push((unit.timestamp_us, unit.data.to_vec()))
        });
        assert_eq!(seen, vec![(42, data.to_vec())]);
    }
}
