//! Snapcast's binary stream protocol (snapcast-protocol.md §1): every message type, encoded to
//! and decoded from byte slices. No I/O and no clock reads here: callers pass times in.
//!
//! Every length a peer supplies is checked before it is used, and payloads are capped at
//! [`MAX_PAYLOAD_SIZE`] as both upstream ends do.

mod header;
mod messages;

pub use header::{Header, MessageType, HEADER_SIZE};
pub use messages::{
    ClientInfo, CodecHeader, ErrorMessage, Hello, Message, ServerSettings, Time, WireChunk,
};

/// Largest payload either upstream end accepts; anything larger drops the connection (§0).
pub const MAX_PAYLOAD_SIZE: usize = 1_000_000;

/// Checks a message header read from a peer before anything is allocated for its payload:
/// the 26 bytes parse, the type id is one the protocol defines (§1.3), and `size` is within
/// `max_payload` (and the protocol's own [`MAX_PAYLOAD_SIZE`]). The session reader and the
/// stream fuzz target (`fuzz/`, issue 10) both frame through this, so what is fuzzed is what
/// runs.
///
/// # Errors
/// [`DecodeError::Truncated`], [`DecodeError::UnknownType`] or
/// [`DecodeError::MessageTooLarge`].
pub fn check_incoming(head: &[u8], max_payload: usize) -> Result<Header, DecodeError> {
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
/// Those of [`check_incoming`], once the header is complete.
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

/// A `(seconds, microseconds)` time value as the protocol carries it (§1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Tv {
    /// Whole seconds; may be negative in a Time reply's latency.
    pub sec: i32,
    /// Microseconds, normalised into 0..1_000_000.
    pub usec: i32,
}

impl Tv {
    /// Builds a normalised value from signed microseconds, saturating at the i32 range.
    pub fn from_micros(micros: i64) -> Self {
        let sec = micros.div_euclid(1_000_000);
        let usec = micros.rem_euclid(1_000_000);
        Self {
            sec: sec.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            usec: usec as i32,
        }
    }

    /// Signed microseconds.
    pub fn as_micros(self) -> i64 {
        i64::from(self.sec) * 1_000_000 + i64::from(self.usec)
    }

    fn encode(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sec.to_le_bytes());
        out.extend_from_slice(&self.usec.to_le_bytes());
    }
}

/// A bounds-checked little-endian cursor over peer bytes.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < len {
            return Err(DecodeError::Truncated {
                needed: len - self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn tv(&mut self) -> Result<Tv, DecodeError> {
        Ok(Tv {
            sec: self.i32()?,
            usec: self.i32()?,
        })
    }

    /// A u32-length-prefixed blob; the length is checked against what is actually there.
    fn blob(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn remaining(&self) -> usize {
        self.buf.len()
    }
}

/// Appends a u32-length-prefixed blob.
fn put_blob(out: &mut Vec<u8>, blob: &[u8]) {
    out.extend_from_slice(&(blob.len() as u32).to_le_bytes());
    out.extend_from_slice(blob);
}
