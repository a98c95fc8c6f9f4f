//! The sample format a codec header describes, read back out of it: a relayed stream passes
//! its upstream's header on unchanged and shows the format the upstream encodes, not its own
//! defaults. Any bytes are an answer (`None` when they do not say), never a panic: the header
//! comes from the network.

use crate::sample_format::SampleFormat;

/// The sample format in `header`, the payload of a CodecHeader for `codec`.
pub fn header_format(codec: &str, header: &[u8]) -> Option<SampleFormat> {
    match codec {
        "pcm" => wav(header),
        "flac" => flac(header),
        "opus" => opus(header),
        "ogg" => ogg(header),
        _ => None,
    }
}

fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// RIFF/WAVE: channels, rate and bits in the `fmt ` chunk, which leads.
fn wav(header: &[u8]) -> Option<SampleFormat> {
    if header.get(0..4)? != b"RIFF" || header.get(8..16)? != b"WAVEfmt " {
        return None;
    }
    SampleFormat::new(
        le_u32(header, 24)?,
        le_u16(header, 34)?,
        le_u16(header, 22)?,
    )
    .ok()
}

/// `fLaC`, then STREAMINFO: 20 bits of rate, 3 of channels − 1, 5 of bits − 1.
fn flac(header: &[u8]) -> Option<SampleFormat> {
    if header.get(0..4)? != b"fLaC" || header.get(4)? & 0x7F != 0 {
        return None;
    }
    let packed = u64::from_be_bytes(header.get(18..26)?.try_into().ok()?);
    let rate = (packed >> 44) as u32;
    let channels = ((packed >> 41) & 0x7) as u16 + 1;
    let bits = ((packed >> 36) & 0x1F) as u16 + 1;
    SampleFormat::new(rate, bits, channels).ok()
}

/// Snapcast's 12-byte pseudo-header: `SUPO`, rate, bits, channels.
fn opus(header: &[u8]) -> Option<SampleFormat> {
    if le_u32(header, 0)? != 0x4F50_5553 {
        return None;
    }
    SampleFormat::new(le_u32(header, 4)?, le_u16(header, 8)?, le_u16(header, 10)?).ok()
}

/// Ogg/Vorbis: the `SAMPLE_FORMAT=rate:bits:channels` comment Snapcast servers write (the
/// only place bits are), else the identification header's rate and channels at 16 bits.
fn ogg(header: &[u8]) -> Option<SampleFormat> {
    if header.get(0..4)? != b"OggS" {
        return None;
    }
    let comment = b"SAMPLE_FORMAT=";
    if let Some(at) = find(header, comment) {
        let text: String = header[at + comment.len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b':')
            .map(|b| char::from(*b))
            .collect();
        if let Ok(format) = text.parse() {
            return Some(format);
        }
    }
    let ident = find(header, b"\x01vorbis")?;
    let channels = u16::from(*header.get(ident + 11)?);
    SampleFormat::new(le_u32(header, ident + 12)?, 16, channels).ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::new_encoder;

    #[test]
    fn every_encoders_header_tells_its_format() {
        for (codec, format, told) in [
            ("pcm", "44100:24:2", "44100:24:2"),
            ("pcm", "48000:16:1", "48000:16:1"),
            ("flac", "96000:24:2", "96000:24:2"),
            ("flac", "44100:16:1", "44100:16:1"),
            ("ogg", "44100:24:2", "44100:24:2"),
            ("opus", "48000:16:2", "48000:16:2"),
            // Opus is resampled to what it encodes: the header says so.
            ("opus", "44100:16:2", "48000:16:2"),
        ] {
            let format: SampleFormat = format.parse().unwrap();
            let encoder = new_encoder(codec, "", format).unwrap();
            assert_eq!(
                header_format(codec, encoder.header()).map(|f| f.to_string()),
                Some(told.to_owned()),
                "{codec} {format}"
            );
        }
    }

    #[test]
    fn vorbis_without_the_comment_is_read_from_its_identification_header() {
        let mut header = b"OggS".to_vec();
        header.extend_from_slice(&[0; 24]);
        header.extend_from_slice(b"\x01vorbis\0\0\0\0\x01");
        header.extend_from_slice(&22050u32.to_le_bytes());
        assert_eq!(
            header_format("ogg", &header).map(|f| f.to_string()),
            Some("22050:16:1".to_owned())
        );
    }

    #[test]
    fn garbage_and_truncated_headers_say_nothing() {
        let encoder = new_encoder("flac", "", "48000:16:2".parse().unwrap()).unwrap();
        let flac = encoder.header();
        for cut in 0..26 {
            assert_eq!(header_format("flac", &flac[..cut]), None, "cut at {cut}");
        }
        for codec in ["pcm", "flac", "opus", "ogg", "mp3", ""] {
            assert_eq!(header_format(codec, b""), None);
            assert_eq!(header_format(codec, &[0xFF; 64]), None, "{codec}");
        }
        // A WAVE header claiming 0 channels is not a format.
        let mut wav = new_encoder("pcm", "", "48000:16:2".parse().unwrap())
            .unwrap()
            .header()
            .to_vec();
        wav[22..24].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(header_format("pcm", &wav), None);
    }
}
