//! The generated `snaprelay.v1` gRPC code and its descriptor set (for server reflection).
//!
//! Only `control/` (the server side) and `snapctl` use these types; the rest of the server
//! never imports them, so the wire API can change without touching the relay.

#[rustfmt::skip]
#[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/snaprelay.v1.rs"));
}

pub use generated::*;

/// The encoded `FileDescriptorSet` of `proto/snaprelay/v1`, served by reflection.
pub(crate) const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/snaprelay_v1_descriptor.bin"));

/// Serializers that write enum fields by their proto names (`SEND_MODE_ZEROCOPY` →
/// `"zerocopy"`) rather than numbers, for `snapctl --json`.
pub(crate) mod enum_names {
    use super::{ConfigOrigin, LoopStatus, PlaybackStatus, SendMode, StreamState};

    fn name<S: serde::Serializer>(
        serializer: S,
        name: Option<&str>,
        prefix: &str,
    ) -> Result<S::Ok, S::Error> {
        let text = name
            .map(|n| n.strip_prefix(prefix).unwrap_or(n).to_ascii_lowercase())
            .unwrap_or_else(|| "unspecified".to_owned());
        serializer.serialize_str(&text)
    }

    pub(crate) fn config_origin<S: serde::Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        let n = ConfigOrigin::try_from(*v).ok().map(|e| e.as_str_name());
        name(s, n, "CONFIG_ORIGIN_")
    }

    pub(crate) fn send_mode<S: serde::Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        let n = SendMode::try_from(*v).ok().map(|e| e.as_str_name());
        name(s, n, "SEND_MODE_")
    }

    pub(crate) fn stream_state<S: serde::Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        let n = StreamState::try_from(*v).ok().map(|e| e.as_str_name());
        name(s, n, "STREAM_STATE_")
    }

    pub(crate) fn playback_status<S: serde::Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        let n = PlaybackStatus::try_from(*v).ok().map(|e| e.as_str_name());
        name(s, n, "PLAYBACK_STATUS_")
    }

    pub(crate) fn loop_status<S: serde::Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        let n = LoopStatus::try_from(*v).ok().map(|e| e.as_str_name());
        name(s, n, "LOOP_STATUS_")
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    #[test]
    fn descriptor_set_decodes_and_names_the_service() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        assert!(set
            .file
            .iter()
            .flat_map(|file| &file.service)
            .any(|service| service.name() == "Control"));
    }

    #[test]
    fn enums_serialize_by_name() {
        let entry = super::ConfigEntry {
            origin: super::ConfigOrigin::Runtime as i32,
            ..Default::default()
        };
        let json = serde_json::to_value(&entry).expect("serializes");
        assert_eq!(json["origin"], "runtime");
    }
}
