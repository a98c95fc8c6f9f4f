//! The `ogg` codec (docs/PROTOCOL.md §3.5): Ogg/Vorbis. The header is the Ogg pages of
//! the three Vorbis header packets, flushed so audio starts on a new page; the comment
//! packet carries `SAMPLE_FORMAT=rate:bits:channels`, from which the client takes its output
//! bit depth. Each read's packets are flushed into whole pages and sent as one chunk,
//! stamped with the capture time of the page's first sample (the previous granule position).
//!
//! A client that joins mid-stream starts a fresh Vorbis decoder, which outputs nothing for
//! the first packet it sees (that packet only primes the overlap with the next). Its first
//! chunk therefore plays from the end of that packet (its granule position), up to a
//! half-block later than the page's stamp says; each chunk also carries that time, and a
//! session sends its first chunk after a CodecHeader stamped with it, so a joining client plays
//! in sync from its first sample instead of one block early until its drift control jumps.
//!
//! libvorbis (aoTuV) and libogg are compiled from the sources bundled in their `-sys` crates
//! with the `cc` crate, so a fresh machine needs only a C compiler. Every FFI call is in
//! this file; the C structs live in one boxed [`State`] because libvorbis keeps pointers
//! between them (the DSP state points at the info, the block at the DSP state), so they must
//! never move after initialisation.

use std::ffi::CString;
use std::hash::{BuildHasher, Hasher};
use std::os::raw::c_int;

use aotuv_lancer_vorbis_sys::{
    vorbis_analysis, vorbis_analysis_blockout, vorbis_analysis_buffer, vorbis_analysis_headerout,
    vorbis_analysis_init, vorbis_analysis_wrote, vorbis_bitrate_addblock,
    vorbis_bitrate_flushpacket, vorbis_block, vorbis_block_clear, vorbis_block_init,
    vorbis_comment, vorbis_comment_add_tag, vorbis_comment_clear, vorbis_comment_init,
    vorbis_dsp_clear, vorbis_dsp_state, vorbis_encode_init_vbr, vorbis_info, vorbis_info_clear,
    vorbis_info_init,
};
use ogg_next_sys::{
    ogg_packet, ogg_page, ogg_page_granulepos, ogg_stream_clear, ogg_stream_flush, ogg_stream_init,
    ogg_stream_packetin, ogg_stream_state,
};

use super::timeline::Timeline;
use super::{full_scale, sample_at, Encoder, EncoderError, Unit};
use crate::sample_format::SampleFormat;

/// snapserver's default quality (§3.5).
const DEFAULT_QUALITY: f32 = 0.9;

/// The libvorbis and libogg state of one stream. Boxed by the encoder and never moved.
struct State {
    info: vorbis_info,
    comment: vorbis_comment,
    dsp: vorbis_dsp_state,
    block: vorbis_block,
    ogg: ogg_stream_state,
    /// Which of the structs above were initialised, so `Drop` clears exactly those.
    initialised: Initialised,
}

#[derive(Default)]
struct Initialised {
    info: bool,
    comment: bool,
    dsp: bool,
    block: bool,
    ogg: bool,
}

impl Drop for State {
    fn drop(&mut self) {
        // SAFETY: each struct is cleared once, only if its init succeeded, dependents first
        // (block before DSP before info), as libvorbis documents.
        unsafe {
            if self.initialised.ogg {
                ogg_stream_clear(&mut self.ogg);
            }
            if self.initialised.block {
                vorbis_block_clear(&mut self.block);
            }
            if self.initialised.dsp {
                vorbis_dsp_clear(&mut self.dsp);
            }
            if self.initialised.comment {
                vorbis_comment_clear(&mut self.comment);
            }
            if self.initialised.info {
                vorbis_info_clear(&mut self.info);
            }
        }
    }
}

/// Streams PCM into Ogg/Vorbis pages.
pub(crate) struct OggEncoder {
    header: Vec<u8>,
    /// Boxed so the C structs keep their addresses (see the module doc).
    state: Box<State>,
    format: SampleFormat,
    scale: f32,
    timeline: Timeline,
    /// Granule position (sample index) at the end of the last page sent.
    granule: u64,
    out: Vec<u8>,
}

// SAFETY: `State` is plain C memory with no thread affinity, owned exclusively by this
// encoder: its raw pointers point only into the box itself or into libvorbis allocations it
// owns, nothing else references them, and it is only touched through `&mut self`.
unsafe impl Send for OggEncoder {}

impl OggEncoder {
    /// Parses `options` (`VBR:<quality -0.1..1.0>`, empty for 0.9) and sets up libvorbis for
    /// `format`, producing the header pages.
    pub(crate) fn new(options: &str, format: SampleFormat) -> Result<Self, EncoderError> {
        let quality = parse_options(options)?;
        // SAFETY: all-zero bytes are a valid "not yet initialised" value for these C structs
        // (integers, floats and null pointers); each is initialised by its init call below
        // before any other use.
        let mut state: Box<State> = Box::new(unsafe {
            State {
                info: std::mem::zeroed(),
                comment: std::mem::zeroed(),
                dsp: std::mem::zeroed(),
                block: std::mem::zeroed(),
                ogg: std::mem::zeroed(),
                initialised: Initialised::default(),
            }
        });
        let s = &mut *state;
        let fail = |what: &str, code: c_int| EncoderError::Init {
            codec: "ogg".into(),
            reason: format!("{what} failed with libvorbis/libogg error {code}"),
        };
        // SAFETY: the structs are boxed (stable addresses) and each init precedes its use;
        // strings passed to libvorbis are NUL-terminated and outlive the calls (libvorbis
        // copies them).
        unsafe {
            vorbis_info_init(&mut s.info);
            s.initialised.info = true;
            let code = vorbis_encode_init_vbr(
                &mut s.info,
                std::os::raw::c_long::from(format.channels),
                std::os::raw::c_long::from(format.rate),
                quality,
            );
            if code != 0 {
                return Err(EncoderError::unsupported(
                    "ogg",
                    format,
                    format!(
                        "libvorbis has no quality-{quality} mode for this rate and channel count \
                         (error {code})"
                    ),
                ));
            }
            vorbis_comment_init(&mut s.comment);
            s.initialised.comment = true;
            let version = env!("CARGO_PKG_VERSION");
            let sample_format = format!("{}:{}:{}", format.rate, format.bits, format.channels);
            for (tag, value) in [
                ("TITLE", "SnapStream"),
                ("VERSION", version),
                ("SAMPLE_FORMAT", sample_format.as_str()),
            ] {
                let tag = CString::new(tag).expect("tag names have no NUL");
                let value = CString::new(value).expect("tag values have no NUL");
                vorbis_comment_add_tag(&mut s.comment, tag.as_ptr(), value.as_ptr());
            }
            let code = vorbis_analysis_init(&mut s.dsp, &mut s.info);
            if code != 0 {
                return Err(fail("vorbis_analysis_init", code));
            }
            s.initialised.dsp = true;
            let code = vorbis_block_init(&mut s.dsp, &mut s.block);
            if code != 0 {
                return Err(fail("vorbis_block_init", code));
            }
            s.initialised.block = true;
            // The Ogg spec asks for a random serial number; the std hasher's random keys
            // are a good enough source without another dependency.
            let serial = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish() as c_int;
            let code = ogg_stream_init(&mut s.ogg, serial);
            if code != 0 {
                return Err(fail("ogg_stream_init", code));
            }
            s.initialised.ogg = true;

            let mut id: ogg_packet = std::mem::zeroed();
            let mut comment: ogg_packet = std::mem::zeroed();
            let mut code_book: ogg_packet = std::mem::zeroed();
            let code = vorbis_analysis_headerout(
                &mut s.dsp,
                &mut s.comment,
                &mut id,
                &mut comment,
                &mut code_book,
            );
            if code != 0 {
                return Err(fail("vorbis_analysis_headerout", code));
            }
            for packet in [&mut id, &mut comment, &mut code_book] {
                if ogg_stream_packetin(&mut s.ogg, packet) != 0 {
                    return Err(fail("ogg_stream_packetin", -1));
                }
            }
        }
        let mut encoder = Self {
            header: Vec::new(),
            state,
            format,
            scale: 1.0 / full_scale(format),
            timeline: Timeline::new(format.rate),
            granule: 0,
            out: Vec::new(),
        };
        // Flush so that the header packets end their pages and audio starts on a new one.
        encoder.flush_pages();
        encoder.header = std::mem::take(&mut encoder.out);
        Ok(encoder)
    }

    /// Moves every complete or partial page out of the Ogg stream into `out`, and returns the
    /// granule position of the last page, if any page came out.
    fn flush_pages(&mut self) -> Option<i64> {
        let mut granule = None;
        // SAFETY: `page` is filled by libogg and its header/body pointers are valid for the
        // given lengths until the next call on the stream, which comes after we copied them.
        unsafe {
            let mut page: ogg_page = std::mem::zeroed();
            while ogg_stream_flush(&mut self.state.ogg, &mut page) != 0 {
                let header =
                    std::slice::from_raw_parts(page.header, page.header_len.max(0) as usize);
                let body = std::slice::from_raw_parts(page.body, page.body_len.max(0) as usize);
                self.out.extend_from_slice(header);
                self.out.extend_from_slice(body);
                granule = Some(ogg_page_granulepos(&page));
            }
        }
        granule
    }
}

impl Encoder for OggEncoder {
    fn name(&self) -> &'static str {
        "ogg"
    }

    fn header(&self) -> &[u8] {
        &self.header
    }

    fn encode(&mut self, timestamp_us: i64, pcm: &[u8], emit: &mut dyn FnMut(Unit<'_>)) {
        let frames = pcm.len() / self.format.frame_size();
        if frames == 0 {
            return;
        }
        self.timeline.push(timestamp_us, frames);
        let channels = usize::from(self.format.channels);
        // Where the first packet of this chunk ends: a decoder that starts with this chunk
        // outputs nothing for that packet, so it plays from there.
        let mut first_packet_granule = None;
        let s = &mut *self.state;
        // SAFETY: the state is initialised (constructor succeeded). `vorbis_analysis_buffer`
        // returns `channels` pointers, each to room for at least `frames` floats, valid until
        // `vorbis_analysis_wrote`. Packets returned by flushpacket stay valid until the next
        // libvorbis call, and `ogg_stream_packetin` copies them before that.
        unsafe {
            let buffers = vorbis_analysis_buffer(&mut s.dsp, frames as c_int);
            if buffers.is_null() {
                return;
            }
            let buffers = std::slice::from_raw_parts(buffers, channels);
            for (ch, &buffer) in buffers.iter().enumerate() {
                let buffer = std::slice::from_raw_parts_mut(buffer, frames);
                for (frame, out) in buffer.iter_mut().enumerate() {
                    *out = sample_at(pcm, self.format, frame * channels + ch) as f32 * self.scale;
                }
            }
            vorbis_analysis_wrote(&mut s.dsp, frames as c_int);
            while vorbis_analysis_blockout(&mut s.dsp, &mut s.block) == 1 {
                vorbis_analysis(&mut s.block, std::ptr::null_mut());
                vorbis_bitrate_addblock(&mut s.block);
                let mut packet: ogg_packet = std::mem::zeroed();
                while vorbis_bitrate_flushpacket(&mut s.dsp, &mut packet) == 1 {
                    first_packet_granule.get_or_insert(packet.granulepos);
                    ogg_stream_packetin(&mut s.ogg, &mut packet);
                }
            }
        }
        self.out.clear();
        if let Some(granule) = self.flush_pages() {
            let first = self.granule;
            self.granule = u64::try_from(granule).unwrap_or(first);
            let timestamp_us = self.timeline.timestamp_of(first);
            let fresh_decoder_timestamp_us = first_packet_granule
                .and_then(|granule| u64::try_from(granule).ok())
                .filter(|&granule| granule > first)
                .map(|granule| self.timeline.timestamp_of(granule));
            emit(Unit {
                timestamp_us,
                data: &self.out,
                fresh_decoder_timestamp_us,
            });
        }
    }
}

fn parse_options(options: &str) -> Result<f32, EncoderError> {
    if options.is_empty() {
        return Ok(DEFAULT_QUALITY);
    }
    let quality = options
        .split_once(':')
        .filter(|(key, _)| key.eq_ignore_ascii_case("VBR"))
        .and_then(|(_, value)| value.parse::<f32>().ok())
        .filter(|q| (-0.1..=1.0).contains(q));
    quality.ok_or_else(|| {
        EncoderError::bad_options(
            "ogg",
            options,
            "expected VBR:<quality -0.1..1.0> (default VBR:0.9)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_tone as tone;
    use super::*;

    #[test]
    fn options_take_vbr_quality() {
        assert_eq!(parse_options("").unwrap(), 0.9);
        assert_eq!(parse_options("VBR:0.7").unwrap(), 0.7);
        for bad in ["VBR:2", "BR:0.5", "0.5", "VBR:x"] {
            let err = parse_options(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn header_holds_the_three_vorbis_packets_with_sample_format() {
        let encoder = OggEncoder::new("", SampleFormat::new(44100, 24, 2).unwrap()).unwrap();
        let header = encoder.header();
        assert_eq!(&header[..4], b"OggS");
        assert_eq!(header[5] & 0x02, 0x02, "first page begins the stream");
        let mut reader =
            lewton::inside_ogg::OggStreamReader::new(std::io::Cursor::new(header.to_vec()))
                .expect("lewton reads all three header packets");
        assert_eq!(reader.ident_hdr.audio_sample_rate, 44100);
        assert_eq!(reader.ident_hdr.audio_channels, 2);
        let comments = &reader.comment_hdr.comment_list;
        assert!(
            comments.contains(&("SAMPLE_FORMAT".into(), "44100:24:2".into())),
            "{comments:?}"
        );
        assert!(comments.contains(&("TITLE".into(), "SnapStream".into())));
        assert!(
            reader.read_dec_packet_itl().unwrap().is_none(),
            "no audio in the header"
        );
    }

    /// Pages from 20 ms reads: whole pages per chunk, timestamps from the granule positions,
    /// and the stream decodes (with lewton, an independent decoder) back to the tone.
    #[test]
    fn reads_become_whole_pages_that_decode_to_the_tone() {
        let mut encoder = OggEncoder::new("", SampleFormat::default()).unwrap();
        let mut stream = encoder.header().to_vec();
        let mut chunks = Vec::new();
        for n in 0..100 {
            encoder.encode(n as i64 * 20_000, &tone(960, n * 960), &mut |unit| {
                assert_eq!(&unit.data[..4], b"OggS", "chunks start with a page");
                chunks.push(unit.timestamp_us);
                stream.extend_from_slice(unit.data);
            });
        }
        assert!(chunks.len() > 50, "{} chunks for 100 reads", chunks.len());
        assert!(chunks.windows(2).all(|w| w[0] < w[1]), "{chunks:?}");
        assert_eq!(chunks[0], 0);

        let mut reader =
            lewton::inside_ogg::OggStreamReader::new(std::io::Cursor::new(stream)).unwrap();
        let mut left = Vec::new();
        let mut right = Vec::new();
        while let Some(samples) = reader.read_dec_packet_itl().unwrap() {
            for f in samples.chunks_exact(2) {
                left.push(f[0]);
                right.push(f[1]);
            }
        }
        assert!(left.len() > 80_000, "decoded {} frames", left.len());
        let hz = |channel: &[i16]| {
            let tail = &channel[4800..];
            let crossings = tail.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
            crossings as f64 / 2.0 / (tail.len() as f64 / 48000.0)
        };
        assert!((hz(&left) - 440.0).abs() < 10.0, "left at {} Hz", hz(&left));
        assert!(
            (hz(&right) - 1000.0).abs() < 10.0,
            "right at {} Hz",
            hz(&right)
        );
    }

    /// A decoder that starts with a mid-stream chunk (lewton, like libvorbis, outputs nothing
    /// for its first packet) plays from the chunk's fresh-decoder timestamp: what it plays
    /// of the chunk ends exactly where the next chunk begins.
    #[test]
    fn a_decoder_joining_mid_stream_plays_from_the_fresh_decoder_timestamp() {
        let mut encoder = OggEncoder::new("", SampleFormat::default()).unwrap();
        let header = encoder.header().to_vec();
        let mut units = Vec::new();
        for n in 0..100 {
            encoder.encode(n as i64 * 20_000, &tone(960, n * 960), &mut |unit| {
                units.push((
                    unit.timestamp_us,
                    unit.fresh_decoder_timestamp_us,
                    unit.data.to_vec(),
                ));
            });
        }
        for k in [10, 37, 60] {
            let (ts, fresh, bytes) = &units[k];
            let fresh = fresh.expect("a mid-stream chunk says where a fresh decoder starts");
            assert!(fresh > *ts, "chunk {k}: fresh start {fresh} vs {ts}");
            let mut stream = header.clone();
            stream.extend_from_slice(bytes);
            let mut reader =
                lewton::inside_ogg::OggStreamReader::new(std::io::Cursor::new(stream)).unwrap();
            let mut frames = 0;
            while let Some(samples) = reader.read_dec_packet_itl().unwrap() {
                frames += samples.len() / 2;
            }
            let end = fresh + (frames as u64 * 1_000_000 / 48_000) as i64;
            let next = units[k + 1].0;
            assert!(
                (end - next).abs() <= 1,
                "chunk {k}: a fresh decoder plays {frames} frames from {fresh} µs, ending at \
                 {end}; the next chunk starts at {next}"
            );
        }
    }
}
