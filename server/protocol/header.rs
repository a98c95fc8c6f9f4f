//! The 26-byte base header every Snapcast message starts with (docs/PROTOCOL.md §1.2) and
//! the message type ids (§1.3).

use super::{DecodeError, Tv, MAX_PAYLOAD_SIZE};

/// Length of the base header on the wire.
pub const HEADER_SIZE: usize = 26;

/// Message type ids (§1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MessageType {
    /// Header only; never sent on its own.
    Base = 0,
    /// Codec name and codec-specific header, server → client.
    CodecHeader = 1,
    /// One encoded audio unit with its capture timestamp, server → client.
    WireChunk = 2,
    /// Buffer, latency, volume and mute for a client, server → client.
    ServerSettings = 3,
    /// Time-sync request (client) and reply (server).
    Time = 4,
    /// The client's introduction, client → server.
    Hello = 5,
    /// Defined only up to 0.26 and never used; read and ignored.
    StreamTags = 6,
    /// Volume/mute reported by the client's mixer, client → server.
    ClientInfo = 7,
    /// Auth failure, server → client; only clients ≥ 0.32 know it.
    Error = 8,
}

impl MessageType {
    /// Maps a wire id to a type, if any version of the protocol defines it.
    pub(crate) fn from_id(id: u16) -> Option<Self> {
        Some(match id {
            0 => Self::Base,
            1 => Self::CodecHeader,
            2 => Self::WireChunk,
            3 => Self::ServerSettings,
            4 => Self::Time,
            5 => Self::Hello,
            6 => Self::StreamTags,
            7 => Self::ClientInfo,
            8 => Self::Error,
            _ => return None,
        })
    }

    /// The wire id.
    pub(crate) fn id(self) -> u16 {
        self as u16
    }
}

/// The fields of the base header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Raw type id; kept raw so a header with an unknown type can still be reported.
    pub type_id: u16,
    /// Request id (clients number Hello/Time requests; server-initiated messages use 0).
    pub id: u16,
    /// The request id this message answers, or 0.
    pub refers_to: u16,
    /// Sender's monotonic clock when the message was sent.
    pub sent: Tv,
    /// Receiver's clock on arrival; set locally, whatever the peer wrote.
    pub(crate) received: Tv,
    /// Payload length after the header.
    pub size: u32,
}

impl Header {
    /// Parses the header from the first [`HEADER_SIZE`] bytes of `buf`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer bytes are present,
    /// [`DecodeError::MessageTooLarge`] when `size` exceeds `MAX_PAYLOAD_SIZE`.
    /// The type id is not checked here: see `Header::message_type`.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() < HEADER_SIZE {
            return Err(DecodeError::Truncated {
                needed: HEADER_SIZE - buf.len(),
            });
        }
        let mut r = super::wire::Reader::new(buf);
        let header = Self {
            type_id: r.u16()?,
            id: r.u16()?,
            refers_to: r.u16()?,
            sent: r.tv()?,
            received: r.tv()?,
            size: r.u32()?,
        };
        if header.size as usize > MAX_PAYLOAD_SIZE {
            return Err(DecodeError::MessageTooLarge {
                size: header.size as usize,
                max: MAX_PAYLOAD_SIZE,
            });
        }
        Ok(header)
    }

    /// The message type; an id above the highest one a 0.26 client or we know is fatal for the
    /// connection on both ends (§1.3).
    pub(crate) fn message_type(&self) -> Result<MessageType, DecodeError> {
        MessageType::from_id(self.type_id).ok_or(DecodeError::UnknownType(self.type_id))
    }

    /// Writes the header's 26 bytes into `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.type_id.to_le_bytes());
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.refers_to.to_le_bytes());
        self.sent.encode(out);
        self.received.encode(out);
        out.extend_from_slice(&self.size.to_le_bytes());
    }
}
