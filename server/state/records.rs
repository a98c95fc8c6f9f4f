//! The persisted records: clients, groups and the [`Model`] that holds them, exactly as
//! snapserver's `server.json` (and its JSON-RPC objects) spell them, so a state file written by
//! snapserver loads here and the JSON-RPC front end can serialize these directly.
//!
//! Data only: what can be done to them lives in [`super::model`].

use serde::{Deserialize, Serialize};

/// `{"muted", "percent"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Volume {
    /// Client muted.
    #[serde(default)]
    pub(crate) muted: bool,
    /// 0..=100.
    #[serde(default = "full")]
    pub(crate) percent: u16,
}

fn full() -> u16 {
    100
}

impl Default for Volume {
    fn default() -> Self {
        Self {
            muted: false,
            percent: 100,
        }
    }
}

/// `host` of a client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Host {
    /// CPU architecture.
    pub(crate) arch: String,
    /// Last peer address.
    pub(crate) ip: String,
    /// MAC address.
    pub(crate) mac: String,
    /// Host name.
    pub(crate) name: String,
    /// Operating system.
    pub(crate) os: String,
}

/// `snapclient` of a client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Snapclient {
    /// Client program name.
    pub(crate) name: String,
    /// Stream protocol version.
    #[serde(rename = "protocolVersion")]
    pub(crate) protocol_version: u32,
    /// Client version.
    pub(crate) version: String,
}

/// `config` of a client: what users set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ClientConfig {
    /// `--instance`.
    pub(crate) instance: u32,
    /// Extra latency in ms.
    pub(crate) latency: i32,
    /// Display name.
    pub(crate) name: String,
    /// Volume and mute.
    pub(crate) volume: Volume,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            instance: 1,
            latency: 0,
            name: String::new(),
            volume: Volume::default(),
        }
    }
}

/// `{"sec", "usec"}` wall-clock time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LastSeen {
    /// Seconds since the Unix epoch.
    pub(crate) sec: i64,
    /// Microseconds.
    pub(crate) usec: i64,
}

impl LastSeen {
    /// From microseconds since the Unix epoch.
    pub(crate) fn from_unix_micros(micros: i64) -> Self {
        Self {
            sec: micros.div_euclid(1_000_000),
            usec: micros.rem_euclid(1_000_000),
        }
    }
}

/// A client as snapserver stores and reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Client {
    /// Unique id (see [`client_id`](super::model::client_id)).
    pub(crate) id: String,
    /// Host facts from its Hello.
    #[serde(default)]
    pub(crate) host: Host,
    /// Program facts from its Hello.
    #[serde(default)]
    pub(crate) snapclient: Snapclient,
    /// User settings.
    #[serde(default)]
    pub(crate) config: ClientConfig,
    /// When it was last connected or seen.
    #[serde(rename = "lastSeen", default)]
    pub(crate) last_seen: LastSeen,
    /// Whether a session of it is live.
    #[serde(default)]
    pub(crate) connected: bool,
}

/// A set of clients playing one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Group {
    /// Random UUID.
    pub(crate) id: String,
    /// Display name.
    #[serde(default)]
    pub(crate) name: String,
    /// The stream its clients play.
    #[serde(default)]
    pub(crate) stream_id: String,
    /// Group mute (adds to each client's own).
    #[serde(default)]
    pub(crate) muted: bool,
    /// Members.
    #[serde(default)]
    pub(crate) clients: Vec<Client>,
}

/// Everything that persists: the groups and their clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Model {
    /// Groups in creation order.
    #[serde(rename = "Groups", default)]
    pub(crate) groups: Vec<Group>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_snapserver_server_json() {
        let text = r#"{"ConfigVersion":2,"Groups":[{"clients":[{"config":{"instance":1,"latency":20,"name":"Kitchen","volume":{"muted":false,"percent":42}},"connected":true,"host":{"arch":"x86_64","ip":"10.0.0.2","mac":"00:11:22:33:44:55","name":"pi","os":"Debian"},"id":"00:11:22:33:44:55","lastSeen":{"sec":1700000000,"usec":5},"snapclient":{"name":"Snapclient","protocolVersion":2,"version":"0.26.0"}}],"id":"4dcc4e3b-c699-a04b-7f0e-8a1b6b71d8b9","muted":false,"name":"","stream_id":"default"}]}"#;
        let mut model: Model = serde_json::from_str(text).unwrap();
        model.mark_all_disconnected();
        let client = model.client("00:11:22:33:44:55").unwrap();
        assert_eq!(client.config.name, "Kitchen");
        assert_eq!(client.config.volume.percent, 42);
        assert!(!client.connected);
    }
}
