//! The whole-message codec (docs/PROTOCOL.md §1.2–1.5): [`Message`], any message of the
//! protocol, encoded behind its header and decoded from header and payload bytes. The
//! payload types themselves are in `payloads.rs`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::wire::{put_blob, Reader};
use super::{
    ClientInfo, CodecHeader, DecodeError, ErrorMessage, Header, Hello, MessageType, ServerSettings,
    Time, Tv, WireChunk, HEADER_SIZE,
};

/// Any message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Type 1.
    CodecHeader(CodecHeader),
    /// Type 2.
    WireChunk(WireChunk),
    /// Type 3.
    ServerSettings(ServerSettings),
    /// Type 4.
    Time(Time),
    /// Type 5.
    Hello(Hello),
    /// Type 7.
    ClientInfo(ClientInfo),
    /// Type 8.
    Error(ErrorMessage),
    /// A defined type nobody acts on (Base, StreamTags): skipped with a warning, as upstream
    /// does (§1.3).
    Ignored(MessageType),
}

impl Message {
    /// The message's type.
    pub(crate) fn message_type(&self) -> MessageType {
        match self {
            Self::CodecHeader(_) => MessageType::CodecHeader,
            Self::WireChunk(_) => MessageType::WireChunk,
            Self::ServerSettings(_) => MessageType::ServerSettings,
            Self::Time(_) => MessageType::Time,
            Self::Hello(_) => MessageType::Hello,
            Self::ClientInfo(_) => MessageType::ClientInfo,
            Self::Error(_) => MessageType::Error,
            Self::Ignored(kind) => *kind,
        }
    }

    /// Decodes the payload that followed `header`.
    ///
    /// # Errors
    /// Unknown type, a payload shorter or longer than its fields say, or bad JSON.
    pub fn decode(header: &Header, payload: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with(header, payload, Bytes::copy_from_slice)
    }

    /// [`Message::decode`] for a payload already in shared [`Bytes`]: the audio and codec
    /// header are slices of it, not copies (an edge relay's per-chunk path).
    ///
    /// # Errors
    /// As [`Message::decode`].
    pub fn decode_shared(header: &Header, payload: &Bytes) -> Result<Self, DecodeError> {
        Self::decode_with(header, payload, |blob| payload.slice_ref(blob))
    }

    /// Decodes `payload`; `keep` turns a blob of it into the [`Bytes`] a message holds.
    fn decode_with(
        header: &Header,
        payload: &[u8],
        keep: impl Fn(&[u8]) -> Bytes,
    ) -> Result<Self, DecodeError> {
        let kind = header.message_type()?;
        if payload.len() != header.size as usize {
            return Err(DecodeError::BadLength {
                kind: kind_name(kind),
                actual: payload.len(),
                expected: header.size as usize,
            });
        }
        let mut r = Reader::new(payload);
        let message = match kind {
            MessageType::Base | MessageType::StreamTags => return Ok(Self::Ignored(kind)),
            MessageType::CodecHeader => {
                let codec = std::str::from_utf8(r.blob()?)
                    .map_err(|_| DecodeError::Utf8("codec name"))?
                    .to_owned();
                let header = keep(r.blob()?);
                Self::CodecHeader(CodecHeader { codec, header })
            }
            MessageType::WireChunk => {
                let timestamp = r.tv()?;
                let data = keep(r.blob()?);
                Self::WireChunk(WireChunk { timestamp, data })
            }
            MessageType::Time => Self::Time(Time { latency: r.tv()? }),
            MessageType::ServerSettings => Self::ServerSettings(json(&mut r, kind)?),
            MessageType::Hello => Self::Hello(json(&mut r, kind)?),
            MessageType::ClientInfo => Self::ClientInfo(json(&mut r, kind)?),
            MessageType::Error => {
                let code = r.u32()?;
                let error = text(&mut r, "error text")?;
                let message = text(&mut r, "error message")?;
                Self::Error(ErrorMessage {
                    code,
                    error,
                    message,
                })
            }
        };
        if r.remaining() != 0 {
            return Err(DecodeError::BadLength {
                kind: kind_name(kind),
                actual: payload.len(),
                expected: payload.len() - r.remaining(),
            });
        }
        Ok(message)
    }

    /// Decodes one whole message (header and payload) from the start of `buf`.
    ///
    /// # Returns
    /// The header, the message, and the number of bytes consumed.
    pub fn decode_frame(buf: &[u8]) -> Result<(Header, Self, usize), DecodeError> {
        let header = Header::decode(buf)?;
        let end = HEADER_SIZE + header.size as usize;
        let payload = buf.get(HEADER_SIZE..end).ok_or(DecodeError::Truncated {
            needed: end.saturating_sub(buf.len()),
        })?;
        Ok((header, Self::decode(&header, payload)?, end))
    }

    /// Serialises the whole message (header and payload) onto `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>, id: u16, refers_to: u16, sent: Tv) {
        let start = out.len();
        Header {
            type_id: self.message_type().id(),
            id,
            refers_to,
            sent,
            received: Tv::default(),
            size: 0,
        }
        .encode(out);
        match self {
            Self::CodecHeader(m) => {
                put_blob(out, m.codec.as_bytes());
                put_blob(out, &m.header);
            }
            Self::WireChunk(m) => WireChunk::encode_payload(out, m.timestamp, &m.data),
            Self::ServerSettings(m) => put_json(out, m),
            Self::Time(m) => m.latency.encode(out),
            Self::Hello(m) => put_json(out, m),
            Self::ClientInfo(m) => put_json(out, m),
            Self::Error(m) => {
                out.extend_from_slice(&m.code.to_le_bytes());
                put_blob(out, m.error.as_bytes());
                put_blob(out, m.message.as_bytes());
            }
            Self::Ignored(_) => {}
        }
        set_size(out, start);
    }

    /// Serialises the whole message into a new buffer.
    pub fn encode(&self, id: u16, refers_to: u16, sent: Tv) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_SIZE + 64);
        self.encode_into(&mut out, id, refers_to, sent);
        out
    }
}

impl WireChunk {
    /// Bytes a serialised WireChunk message with `data_len` bytes of audio occupies.
    pub(crate) fn message_len(data_len: usize) -> usize {
        HEADER_SIZE + 12 + data_len
    }

    /// Serialises a WireChunk message straight from borrowed audio, so the hot path never
    /// builds an intermediate [`Message`].
    pub(crate) fn encode_message(out: &mut Vec<u8>, sent: Tv, timestamp: Tv, data: &[u8]) {
        let start = out.len();
        Header {
            type_id: MessageType::WireChunk.id(),
            id: 0,
            refers_to: 0,
            sent,
            received: Tv::default(),
            size: 0,
        }
        .encode(out);
        Self::encode_payload(out, timestamp, data);
        set_size(out, start);
    }

    /// A copy of a serialized WireChunk message with another capture timestamp (for the
    /// one chunk a fresh decoder starts with; never on the per-chunk path).
    pub(crate) fn restamped(message: &[u8], timestamp: Tv) -> Vec<u8> {
        let mut copy = message.to_vec();
        let mut stamp = Vec::with_capacity(8);
        timestamp.encode(&mut stamp);
        if let Some(field) = copy.get_mut(HEADER_SIZE..HEADER_SIZE + stamp.len()) {
            field.copy_from_slice(&stamp);
        }
        copy
    }

    fn encode_payload(out: &mut Vec<u8>, timestamp: Tv, data: &[u8]) {
        timestamp.encode(out);
        put_blob(out, data);
    }
}

/// Patches the header's `size` field once the payload is written.
fn set_size(out: &mut [u8], start: usize) {
    let size = (out.len() - start - HEADER_SIZE) as u32;
    out[start + 22..start + 26].copy_from_slice(&size.to_le_bytes());
}

fn put_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no I/O.
    let text = serde_json::to_vec(value).expect("protocol JSON structs always serialise");
    put_blob(out, &text);
}

fn json<T: for<'de> Deserialize<'de>>(
    r: &mut Reader<'_>,
    kind: MessageType,
) -> Result<T, DecodeError> {
    let text = r.blob()?;
    serde_json::from_slice(text).map_err(|err| DecodeError::Json {
        kind: kind_name(kind),
        reason: err.to_string(),
    })
}

fn text(r: &mut Reader<'_>, what: &'static str) -> Result<String, DecodeError> {
    std::str::from_utf8(r.blob()?)
        .map(str::to_owned)
        .map_err(|_| DecodeError::Utf8(what))
}

fn kind_name(kind: MessageType) -> &'static str {
    match kind {
        MessageType::Base => "Base",
        MessageType::CodecHeader => "CodecHeader",
        MessageType::WireChunk => "WireChunk",
        MessageType::ServerSettings => "ServerSettings",
        MessageType::Time => "Time",
        MessageType::Hello => "Hello",
        MessageType::StreamTags => "StreamTags",
        MessageType::ClientInfo => "ClientInfo",
        MessageType::Error => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::super::MAX_PAYLOAD_SIZE;
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .filter(|t| *t != "|")
            .map(|t| u8::from_str_radix(t, 16).unwrap())
            .collect()
    }

    /// The worked example of §1.2, byte for byte.
    #[test]
    fn server_settings_matches_fact_sheet_example() {
        let settings = ServerSettings {
            buffer_ms: 1000,
            latency: 0,
            muted: false,
            volume: 100,
        };
        let sent = Tv {
            sec: 100,
            usec: 250_000,
        };
        let bytes = Message::ServerSettings(settings).encode(0, 5, sent);
        let mut expected = hex(
            "03 00 | 00 00 | 05 00 | 64 00 00 00 | 90 d0 03 00 | 00 00 00 00 | 00 00 00 00 | 3c 00 00 00 \
             38 00 00 00",
        );
        expected.extend_from_slice(br#"{"bufferMs":1000,"latency":0,"muted":false,"volume":100}"#);
        assert_eq!(bytes, expected);

        let (header, decoded, used) = Message::decode_frame(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(header.refers_to, 5);
        assert_eq!(header.sent, sent);
        assert_eq!(decoded, Message::ServerSettings(settings));
    }

    #[test]
    fn shared_decoding_slices_the_audio_instead_of_copying_it() {
        let encoded = Message::WireChunk(WireChunk {
            timestamp: Tv::from_micros(1_500_000),
            data: Bytes::from_static(b"encoded audio"),
        })
        .encode(0, 0, Tv::default());
        let header = Header::decode(&encoded[..HEADER_SIZE]).unwrap();
        let payload = Bytes::from(encoded[HEADER_SIZE..].to_vec());
        let shared = Message::decode_shared(&header, &payload).unwrap();
        assert_eq!(shared, Message::decode(&header, &payload).unwrap());
        let Message::WireChunk(chunk) = shared else {
            panic!("a WireChunk")
        };
        let within = payload.as_ptr_range();
        assert!(within.contains(&chunk.data.as_ptr()), "the same buffer");
        // Errors are the same too.
        assert_eq!(
            Message::decode_shared(&header, &payload.slice(..payload.len() - 1)),
            Message::decode(&header, &payload[..payload.len() - 1])
        );
    }

    #[test]
    fn codec_header_layout() {
        let message = Message::CodecHeader(CodecHeader {
            codec: "pcm".into(),
            header: Bytes::from_static(&[1, 2, 3]),
        });
        let bytes = message.encode(0, 0, Tv::default());
        assert_eq!(&bytes[0..2], &[1, 0]);
        assert_eq!(&bytes[22..26], &(4 + 3 + 4 + 3u32).to_le_bytes());
        assert_eq!(
            &bytes[26..],
            &hex("03 00 00 00 70 63 6d 03 00 00 00 01 02 03")[..]
        );
        assert_eq!(Message::decode_frame(&bytes).unwrap().1, message);
    }

    #[test]
    fn wire_chunk_layout_and_direct_encoder_agree() {
        let chunk = WireChunk {
            timestamp: Tv { sec: 7, usec: 20 },
            data: Bytes::from_static(&[9, 8, 7, 6]),
        };
        let via_message = Message::WireChunk(chunk.clone()).encode(0, 0, Tv { sec: 1, usec: 2 });
        let mut direct = Vec::new();
        WireChunk::encode_message(
            &mut direct,
            Tv { sec: 1, usec: 2 },
            chunk.timestamp,
            &chunk.data,
        );
        assert_eq!(via_message, direct);
        assert_eq!(direct.len(), WireChunk::message_len(4));
        assert_eq!(
            &direct[26..],
            &hex("07 00 00 00 14 00 00 00 04 00 00 00 09 08 07 06")[..]
        );
        assert_eq!(&direct[22..26], &16u32.to_le_bytes());
        assert_eq!(
            Message::decode_frame(&direct).unwrap().1,
            Message::WireChunk(chunk)
        );
    }

    #[test]
    fn a_restamped_wire_chunk_differs_only_in_its_timestamp() {
        let mut original = Vec::new();
        WireChunk::encode_message(
            &mut original,
            Tv { sec: 1, usec: 2 },
            Tv { sec: 7, usec: 20 },
            &[9, 8, 7],
        );
        let restamped = WireChunk::restamped(
            &original,
            Tv {
                sec: 7,
                usec: 21_353,
            },
        );
        let (_, message, _) = Message::decode_frame(&restamped).unwrap();
        assert_eq!(
            message,
            Message::WireChunk(WireChunk {
                timestamp: Tv {
                    sec: 7,
                    usec: 21_353
                },
                data: Bytes::from_static(&[9, 8, 7]),
            })
        );
        assert_eq!(restamped[..26], original[..26], "header untouched");
        assert_eq!(restamped[34..], original[34..], "payload untouched");
    }

    #[test]
    fn time_round_trip_with_negative_latency() {
        let message = Message::Time(Time {
            latency: Tv::from_micros(-1_500_000),
        });
        let bytes = message.encode(3, 3, Tv::default());
        assert_eq!(bytes.len(), HEADER_SIZE + 8);
        assert_eq!(&bytes[26..], &hex("fe ff ff ff 20 a1 07 00")[..]);
        assert_eq!(Message::decode_frame(&bytes).unwrap().1, message);
    }

    #[test]
    fn hello_from_snapclient_and_client_id() {
        let json = br#"{"Arch":"x86_64","ClientName":"Snapclient","HostName":"kitchen","ID":"aa:bb","Instance":2,"MAC":"aa:bb","OS":"Debian","SnapStreamProtocolVersion":2,"Version":"0.26.0"}"#;
        let mut bytes = Vec::new();
        Header {
            type_id: 5,
            id: 2,
            refers_to: 0,
            sent: Tv::default(),
            received: Tv::default(),
            size: 4 + json.len() as u32,
        }
        .encode(&mut bytes);
        bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
        bytes.extend_from_slice(json);
        let (header, message, _) = Message::decode_frame(&bytes).unwrap();
        assert_eq!(header.id, 2);
        let Message::Hello(hello) = message else {
            panic!("not a hello: {message:?}")
        };
        assert_eq!((hello.id.as_str(), hello.instance), ("aa:bb", 2));
        assert_eq!(hello.host_name, "kitchen");
        assert_eq!(hello.protocol_version, 2);
        assert_eq!(hello.max_message_type(), MessageType::ClientInfo);
    }

    #[test]
    fn client_info_and_error_round_trip() {
        for message in [
            Message::ClientInfo(ClientInfo {
                muted: true,
                volume: 42,
            }),
            Message::Error(ErrorMessage {
                code: 401,
                error: "Unauthorized".into(),
                message: "no".into(),
            }),
            Message::Hello(Hello {
                mac: "m".into(),
                host_name: "h".into(),
                version: "0.26.0".into(),
                client_name: "c".into(),
                os: "o".into(),
                arch: "a".into(),
                instance: 1,
                id: "i".into(),
                protocol_version: 2,
            }),
        ] {
            let bytes = message.encode(2, 0, Tv::default());
            assert_eq!(Message::decode_frame(&bytes).unwrap().1, message);
        }
    }

    #[test]
    fn stream_tags_and_base_are_ignored_not_fatal() {
        for type_id in [0u16, 6] {
            let mut bytes = Vec::new();
            Header {
                type_id,
                id: 0,
                refers_to: 0,
                sent: Tv::default(),
                received: Tv::default(),
                size: 2,
            }
            .encode(&mut bytes);
            bytes.extend_from_slice(b"{}");
            let (_, message, used) = Message::decode_frame(&bytes).unwrap();
            assert_eq!(used, 28);
            assert!(matches!(message, Message::Ignored(_)));
        }
    }

    #[test]
    fn truncated_header_and_payload_are_reported() {
        assert_eq!(
            Header::decode(&[0; 10]),
            Err(DecodeError::Truncated { needed: 16 })
        );
        let bytes = Message::Time(Time {
            latency: Tv::default(),
        })
        .encode(1, 0, Tv::default());
        assert_eq!(
            Message::decode_frame(&bytes[..30]).unwrap_err(),
            DecodeError::Truncated { needed: 4 }
        );
    }

    #[test]
    fn oversized_payload_is_refused_before_reading_it() {
        let mut bytes = Vec::new();
        Header {
            type_id: 2,
            id: 0,
            refers_to: 0,
            sent: Tv::default(),
            received: Tv::default(),
            size: MAX_PAYLOAD_SIZE as u32 + 1,
        }
        .encode(&mut bytes);
        assert_eq!(
            Header::decode(&bytes),
            Err(DecodeError::MessageTooLarge {
                size: MAX_PAYLOAD_SIZE + 1,
                max: MAX_PAYLOAD_SIZE
            })
        );
    }

    #[test]
    fn unknown_type_is_fatal() {
        let mut bytes = Vec::new();
        Header {
            type_id: 9,
            id: 0,
            refers_to: 0,
            sent: Tv::default(),
            received: Tv::default(),
            size: 0,
        }
        .encode(&mut bytes);
        assert_eq!(
            Message::decode_frame(&bytes).unwrap_err(),
            DecodeError::UnknownType(9)
        );
    }

    #[test]
    fn garbage_json_and_lying_inner_lengths_are_rejected() {
        // JSON text that is not JSON.
        let mut bytes = Vec::new();
        Header {
            type_id: 5,
            id: 2,
            refers_to: 0,
            sent: Tv::default(),
            received: Tv::default(),
            size: 4 + 3,
        }
        .encode(&mut bytes);
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(b"{x}");
        assert!(matches!(
            Message::decode_frame(&bytes).unwrap_err(),
            DecodeError::Json { kind: "Hello", .. }
        ));
        // Inner length larger than the payload.
        let len_at = HEADER_SIZE;
        bytes[len_at..len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Message::decode_frame(&bytes).unwrap_err(),
            DecodeError::Truncated { .. }
        ));
        // Inner length shorter than the payload: trailing bytes.
        bytes[len_at..len_at + 4].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            Message::decode_frame(&bytes).unwrap_err(),
            DecodeError::BadLength { .. } | DecodeError::Json { .. }
        ));
        // A Time payload of the wrong size.
        let mut time = Vec::new();
        Header {
            type_id: 4,
            id: 2,
            refers_to: 0,
            sent: Tv::default(),
            received: Tv::default(),
            size: 9,
        }
        .encode(&mut time);
        time.extend_from_slice(&[0; 9]);
        assert!(matches!(
            Message::decode_frame(&time).unwrap_err(),
            DecodeError::BadLength { kind: "Time", .. }
        ));
    }
}
