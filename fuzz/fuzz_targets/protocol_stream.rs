//! The Snapcast message decoder over a byte stream cut at arbitrary boundaries, the way TCP
//! delivers it to a session (docs/PROTOCOL.md §1.1).
//!
//! Input: one byte `n` (number of cuts, up to 15), `n` bytes of piece lengths, then the
//! stream. Properties checked, beyond "never panics":
//! - framing is split-invariant: the pieces frame into exactly the messages (or the error)
//!   that the whole stream does;
//! - a message that decodes re-encodes into bytes that decode to the same message;
//! - decoding from shared `Bytes` (slices, as an edge relay does) gives what copying does;
//! - a CodecHeader's payload is read for its sample format (as an edge relay does with its
//!   upstream's) without a panic, and what it says is a valid format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snaprelay::encoder::header_format;
use snaprelay::protocol::{next_frame, DecodeError, Header, Message, Tv};
use snaprelay::sample_format::SampleFormat;

/// The session reader's cap on client messages (`session::reader::MAX_CLIENT_PAYLOAD`).
const MAX_CLIENT_PAYLOAD: usize = 64 * 1024;

#[derive(Debug, PartialEq)]
enum Outcome {
    Message(Header, Message),
    BadPayload(Header, DecodeError),
    BadFrame(DecodeError),
}

/// Frames everything buffered so far; stops at the first framing error, as a session does.
fn drain(buf: &mut Vec<u8>, out: &mut Vec<Outcome>) -> bool {
    loop {
        match next_frame(buf, MAX_CLIENT_PAYLOAD) {
            Ok(None) => return true,
            Ok(Some((header, total))) => {
                let payload = &buf[snaprelay::protocol::HEADER_SIZE..total];
                let shared = bytes::Bytes::copy_from_slice(payload);
                assert_eq!(
                    Message::decode_shared(&header, &shared),
                    Message::decode(&header, payload),
                    "slicing and copying decodes differ"
                );
                out.push(match Message::decode(&header, payload) {
                    Ok(message) => Outcome::Message(header, message),
                    Err(err) => Outcome::BadPayload(header, err),
                });
                buf.drain(..total);
            }
            Err(err) => {
                out.push(Outcome::BadFrame(err));
                return false;
            }
        }
    }
}

fn frame_all(pieces: &[&[u8]]) -> Vec<Outcome> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        if !drain(&mut buf, &mut out) {
            break;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let cuts = usize::from(cuts % 16).min(rest.len());
    let (lengths, stream) = rest.split_at(cuts);
    let mut pieces = Vec::new();
    let mut tail = stream;
    for &len in lengths {
        let (piece, after) = tail.split_at(usize::from(len).min(tail.len()));
        pieces.push(piece);
        tail = after;
    }
    pieces.push(tail);

    let whole = frame_all(&[stream]);
    let split = frame_all(&pieces);
    assert_eq!(whole, split, "framing depends on where the stream was cut");

    for outcome in &whole {
        if let Outcome::Message(header, message) = outcome {
            let sent = Tv::from_micros(header.sent.as_micros());
            let bytes = message.encode(header.id, header.refers_to, sent);
            let (_, again, used) = Message::decode_frame(&bytes).expect("our own encoding decodes");
            assert_eq!(used, bytes.len());
            assert_eq!(&again, message, "decode(encode(m)) != m");
            if let Message::CodecHeader(codec) = message {
                if let Some(format) = header_format(&codec.codec, &codec.header) {
                    let shown = format.to_string();
                    assert_eq!(shown.parse::<SampleFormat>().ok(), Some(format), "{shown}");
                }
            }
        }
    }
});
