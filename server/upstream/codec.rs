//! Snapcast frames on an upstream connection, for `tokio_util`'s framed reader and writer: a
//! 26-byte header and its payload in, whole encoded messages out.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::protocol::{DecodeError, Header, HEADER_SIZE, MAX_PAYLOAD_SIZE};

/// The frame codec.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Frames;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum FrameError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] DecodeError),
}

impl Decoder for Frames {
    type Item = (Header, Bytes);
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if buf.len() < HEADER_SIZE {
            return Ok(None);
        }
        // Checks the size against the protocol's cap before anything is buffered for it.
        let header = Header::decode(&buf[..HEADER_SIZE])?;
        let size = header.size as usize;
        debug_assert!(size <= MAX_PAYLOAD_SIZE);
        if buf.len() < HEADER_SIZE + size {
            buf.reserve(HEADER_SIZE + size - buf.len());
            return Ok(None);
        }
        buf.advance(HEADER_SIZE);
        let payload = buf.split_to(size).freeze();
        Ok(Some((header, payload)))
    }
}

impl Encoder<Vec<u8>> for Frames {
    type Error = FrameError;

    fn encode(&mut self, message: Vec<u8>, buf: &mut BytesMut) -> Result<(), Self::Error> {
        buf.extend_from_slice(&message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Message, Time, Tv};

    #[test]
    fn frames_split_across_reads_come_out_whole() {
        let message = Message::Time(Time {
            latency: Tv::from_micros(1500),
        })
        .encode(7, 3, Tv::from_micros(42));
        let mut buf = BytesMut::new();
        let mut frames = Frames;
        buf.extend_from_slice(&message[..10]);
        assert!(frames.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&message[10..30]);
        assert!(frames.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&message[30..]);
        buf.extend_from_slice(&message[..5]);
        let (header, payload) = frames.decode(&mut buf).unwrap().unwrap();
        assert_eq!((header.id, header.refers_to), (7, 3));
        assert_eq!(
            Message::decode(&header, &payload).unwrap(),
            Message::Time(Time {
                latency: Tv::from_micros(1500)
            })
        );
        assert_eq!(buf.len(), 5, "the next frame's start stays");
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_buffered() {
        let mut header = Message::Time(Time {
            latency: Tv::default(),
        })
        .encode(1, 0, Tv::default());
        header[22..26].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut buf = BytesMut::from(&header[..HEADER_SIZE]);
        assert!(Frames.decode(&mut buf).is_err());
    }
}
