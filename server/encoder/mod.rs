//! Encoders: PCM chunk in, encoded units plus the codec header out (snapcast-protocol.md §3).
//! Each stream has exactly one encoder, so every chunk is encoded once whatever the number
//! of clients.

mod pcm;

use crate::sample_format::SampleFormat;
use crate::source::pacer::PcmChunk;

/// Codecs a stream may use.
pub const SUPPORTED_CODECS: &[&str] = &["pcm"];

/// Why an encoder could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncoderError {
    /// A codec name we do not implement.
    #[error("codec '{0}' is not supported (supported: {list})", list = SUPPORTED_CODECS.join(", "))]
    UnknownCodec(String),
    /// Options the codec does not take.
    #[error("codec '{codec}' does not accept options '{options}'")]
    BadOptions {
        /// Codec name.
        codec: String,
        /// The option string.
        options: String,
    },
}

/// Turns PCM chunks into the units a codec sends per WireChunk.
pub(crate) trait Encoder: Send {
    /// The codec name clients see in the CodecHeader.
    fn name(&self) -> &'static str;

    /// The codec-specific header bytes, produced once at init (§2.6).
    fn header(&self) -> &[u8];

    /// Encodes one chunk, handing each finished unit and the capture time of its first
    /// sample to `emit`. A codec that buffers may emit nothing for a chunk (§7.11).
    fn encode(&mut self, chunk: &PcmChunk<'_>, emit: &mut dyn FnMut(i64, &[u8]));
}

/// Builds the encoder for `codec` with `options`.
pub(crate) fn new_encoder(
    codec: &str,
    options: &str,
    format: SampleFormat,
) -> Result<Box<dyn Encoder>, EncoderError> {
    match codec {
        "pcm" if options.is_empty() => Ok(Box::new(pcm::PcmEncoder::new(format))),
        "pcm" => Err(EncoderError::BadOptions {
            codec: codec.into(),
            options: options.into(),
        }),
        other => Err(EncoderError::UnknownCodec(other.into())),
    }
}
