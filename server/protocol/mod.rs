//! Snapcast's binary stream protocol (docs/PROTOCOL.md §1): every message type, encoded to
//! and decoded from byte slices. No I/O and no clock reads here: callers pass times in.
//!
//! Every length a peer supplies is checked before it is used, and payloads are capped at
//! `MAX_PAYLOAD_SIZE` as both upstream ends do.
//!
//! Layout: `header` (the 26-byte base header and type ids), `payloads` (what each message
//! carries), `messages` (the [`Message`] codec), `wire` (time values, the bounds-checked
//! reader, blobs); framing a byte stream and the decode errors are here.

mod header;
mod messages;
mod payloads;
mod wire;

pub use header::{Header, MessageType, HEADER_SIZE};
pub use messages::Message;
pub use payloads::{ClientInfo, CodecHeader, ErrorMessage, Hello, ServerSettings, Time, WireChunk};
pub use wire::Tv;

/// Largest payload either upstream end accepts; anything larger drops the connection (§1.3).
pub(crate) const MAX_PAYLOAD_SIZE: usize = 1_000_000;

/// Checks a message header read from a peer before anything is allocated for its payload:
/// the 26 bytes parse, the type id is one the protocol defines (§1.3), and `size` is within
/// `max_payload` (and the protocol's own [`MAX_PAYLOAD_SIZE`]). The session reader and the
/// stream fuzz target (`fuzz/`, issue 10) both frame through this, so what is fuzzed is what
/// runs.
///
/// # Errors
/// [`DecodeError::Truncated`], [`DecodeError::UnknownType`] or
/// [`DecodeError::MessageTooLarge`].
pub(crate) fn check_incoming(head: &[u8], max_payload: usize) -> Result<Header, DecodeError> {
    let header = Header::decode(head)?;
    header.message_type()?;
    let size = header.size as usize;
    if size > max_payload {
        return Err(DecodeError::MessageTooLarge {
            size,
            max: max_payload,
        });
    }
    Ok(header)
}

/// Frames a byte stream: the first whole message in `buf`, as its checked header and total
/// length (header plus payload), or `None` while more bytes are needed. Pure, so a stream cut
/// at any boundary frames the same as the whole.
///
/// # Errors
/// Those of `check_incoming`, once the header is complete.
pub fn next_frame(buf: &[u8], max_payload: usize) -> Result<Option<(Header, usize)>, DecodeError> {
    let Some(head) = buf.get(..HEADER_SIZE) else {
        return Ok(None);
    };
    let header = check_incoming(head, max_payload)?;
    // Cannot overflow: size is at most MAX_PAYLOAD_SIZE after the check.
    let total = HEADER_SIZE + header.size as usize;
    Ok((buf.len() >= total).then_some((header, total)))
}

/// Why bytes could not be decoded into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before a field it promised.
    #[error("message truncated: needed {needed} more bytes")]
    Truncated {
        /// Bytes missing.
        needed: usize,
    },
    /// The header's `size` exceeds the 1,000,000-byte cap.
    #[error("message payload of {size} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Announced size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// A type id no version of the protocol defines.
    #[error("unknown message type {0}")]
    UnknownType(u16),
    /// The payload does not have the length its type requires.
    #[error("{kind} payload has {actual} bytes, expected {expected}")]
    BadLength {
        /// Message type.
        kind: &'static str,
        /// Bytes present.
        actual: usize,
        /// Bytes required.
        expected: usize,
    },
    /// A JSON message whose text is not the JSON we expect.
    #[error("invalid {kind} JSON: {reason}")]
    Json {
        /// Message type.
        kind: &'static str,
        /// serde_json's explanation.
        reason: String,
    },
    /// A string field that is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
}
