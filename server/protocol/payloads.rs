//! The typed payload of every message (docs/PROTOCOL.md §1.4–1.5): what each message
//! carries, with the JSON objects and defaults of the JSON ones. Their bytes are `messages.rs`'s
//! business.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[cfg(test)]
use super::MessageType;
use super::Tv;

/// Codec name plus the codec's own header bytes (§1.4, §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecHeader {
    /// `pcm`, `flac`, `ogg` or `opus`.
    pub codec: String,
    /// Codec-specific header (a 44-byte WAV header for pcm).
    pub header: Bytes,
}

/// One encoded audio unit stamped with the capture time of its first sample (§1.4, §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireChunk {
    /// Server-clock capture time of the first sample.
    pub timestamp: Tv,
    /// Encoded audio.
    pub data: Bytes,
}

/// The client's settings as the server pushes them (§1.5). Field order is the wire's
/// (alphabetical) key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSettings {
    /// End-to-end buffer in ms.
    #[serde(rename = "bufferMs", default)]
    pub buffer_ms: i32,
    /// This client's extra latency in ms.
    #[serde(default)]
    pub(crate) latency: i32,
    /// Client muted OR its group muted.
    #[serde(default)]
    pub(crate) muted: bool,
    /// 0..=100.
    #[serde(default = "full_volume")]
    pub volume: u16,
}

fn full_volume() -> u16 {
    100
}

/// A time-sync request or reply (§1.4, §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    /// In a reply: server receive time minus the request's `sent`.
    pub latency: Tv,
}

/// What a client says about itself when it connects (§1.5). Missing keys take upstream's
/// defaults rather than failing (upstream indexes them unsafely).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// MAC of the client's interface.
    #[serde(rename = "MAC", default)]
    pub(crate) mac: String,
    /// Host name.
    #[serde(rename = "HostName", default)]
    pub(crate) host_name: String,
    /// Client version, e.g. `0.26.0`.
    #[serde(rename = "Version", default)]
    pub(crate) version: String,
    /// Client program, e.g. `Snapclient`.
    #[serde(rename = "ClientName", default)]
    pub(crate) client_name: String,
    /// Operating system.
    #[serde(rename = "OS", default)]
    pub(crate) os: String,
    /// CPU architecture.
    #[serde(rename = "Arch", default)]
    pub(crate) arch: String,
    /// `--instance`, default 1.
    #[serde(rename = "Instance", default = "default_instance")]
    pub(crate) instance: u32,
    /// Host id: `--hostID`, else the MAC.
    #[serde(rename = "ID", default)]
    pub(crate) id: String,
    /// Stream protocol version (2 for current clients).
    #[serde(rename = "SnapStreamProtocolVersion", default = "default_instance")]
    pub(crate) protocol_version: u32,
}

fn default_instance() -> u32 {
    1
}

impl Hello {
    /// The highest message type this client's version understands: 0.26 treats anything
    /// above 7 as fatal; 0.32 added Error (8) (§1.3).
    #[cfg(test)]
    pub(crate) fn max_message_type(&self) -> MessageType {
        let mut parts = self
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let major = parts.next().unwrap_or(0);
        let minor = parts.next().unwrap_or(0);
        if (major, minor) >= (0, 32) {
            MessageType::Error
        } else {
            MessageType::ClientInfo
        }
    }
}

/// Volume and mute reported by the client's local mixer (§1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Muted locally.
    #[serde(default)]
    pub(crate) muted: bool,
    /// 0..=100.
    #[serde(default = "full_volume")]
    pub(crate) volume: u16,
}

/// Auth failure (0.32+ clients only, §1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMessage {
    /// 401 or 403 upstream.
    pub(crate) code: u32,
    /// Short error.
    pub(crate) error: String,
    /// Human explanation.
    pub(crate) message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_missing_keys_take_defaults() {
        let hello: Hello = serde_json::from_str(r#"{"MAC":"00:11"}"#).unwrap();
        assert_eq!(hello.instance, 1);
        assert_eq!(hello.protocol_version, 1);
        assert_eq!(hello.mac, "00:11");
        let newer: Hello = serde_json::from_str(r#"{"Version":"0.32.1"}"#).unwrap();
        assert_eq!(newer.max_message_type(), MessageType::Error);
    }
}
