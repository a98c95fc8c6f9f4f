//! Every change that can be made to clients and groups (docs/JSONRPC.md §3, §4;
//! docs/PROTOCOL.md §4.4): the behaviour of the [`Model`], its errors, and what sessions hand
//! in and get back.
//! Pure logic: no I/O, no clock reads (callers pass times in), no sessions.
//!
//! The records themselves live in [`super::records`]; they are re-exported here so
//! `state::model::{Host, Snapclient, ...}` keep working.

pub(crate) use super::records::{
    Client, ClientConfig, Group, Host, LastSeen, Model, Snapclient, Volume,
};

use super::rules;

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StateError {
    /// No such client.
    #[error("client '{0}' not found")]
    ClientNotFound(String),
    /// No such group.
    #[error("group '{0}' not found")]
    GroupNotFound(String),
    /// No such stream.
    #[error("stream '{0}' not found")]
    StreamNotFound(String),
    /// The client is connected, so it cannot be deleted.
    #[error("client '{0}' is connected; only disconnected clients can be deleted")]
    ClientConnected(String),
    /// A value out of range.
    #[error("invalid {field} '{value}': expected {allowed}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
        /// What is allowed.
        allowed: String,
    },
}

/// The id snapserver gives a client: `ID`, or `ID#instance` (docs/PROTOCOL.md §1.5), with `_`
/// replaced by `-` because Home Assistant splits entity ids on `_` (docs/JSONRPC.md §7.1).
pub(crate) fn client_id(host_id: &str, instance: u32) -> String {
    let base = host_id.replace('_', "-");
    if instance == 1 {
        base
    } else {
        format!("{base}#{instance}")
    }
}

/// What a session of a client needs to know: its settings and its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Playback {
    /// Volume percent.
    pub(crate) volume: u16,
    /// Client muted OR group muted (docs/PROTOCOL.md §1.5).
    pub(crate) muted: bool,
    /// Extra latency in ms.
    pub(crate) latency: i32,
    /// The stream to play.
    pub(crate) stream_id: String,
}

/// Facts from a Hello, as the model records them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Arrival {
    /// Unique client id.
    pub(crate) id: String,
    /// Host facts.
    pub(crate) host: Host,
    /// Program facts.
    pub(crate) snapclient: Snapclient,
    /// `--instance`.
    pub(crate) instance: u32,
    /// Wall-clock now, µs since the epoch.
    pub(crate) now_us: i64,
}

impl Model {
    fn locate(&self, client_id: &str) -> Option<(usize, usize)> {
        self.groups.iter().enumerate().find_map(|(g, group)| {
            group
                .clients
                .iter()
                .position(|c| c.id == client_id)
                .map(|c| (g, c))
        })
    }

    /// The client with this id.
    pub(crate) fn client(&self, client_id: &str) -> Option<&Client> {
        self.locate(client_id)
            .map(|(g, c)| &self.groups[g].clients[c])
    }

    fn client_mut(&mut self, client_id: &str) -> Result<&mut Client, StateError> {
        let (g, c) = self
            .locate(client_id)
            .ok_or_else(|| StateError::ClientNotFound(client_id.to_owned()))?;
        Ok(&mut self.groups[g].clients[c])
    }

    /// The group a client belongs to.
    pub(crate) fn group_of(&self, client_id: &str) -> Option<&Group> {
        self.locate(client_id).map(|(g, _)| &self.groups[g])
    }

    /// The group with this id.
    pub(crate) fn group(&self, group_id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == group_id)
    }

    fn group_mut(&mut self, group_id: &str) -> Result<&mut Group, StateError> {
        self.groups
            .iter_mut()
            .find(|g| g.id == group_id)
            .ok_or_else(|| StateError::GroupNotFound(group_id.to_owned()))
    }

    /// What a client's sessions should play and how.
    pub(crate) fn playback(&self, client_id: &str) -> Option<Playback> {
        let (g, c) = self.locate(client_id)?;
        let group = &self.groups[g];
        let client = &group.clients[c];
        Some(Playback {
            volume: client.config.volume.percent,
            muted: client.config.volume.muted || group.muted,
            latency: client.config.latency,
            stream_id: group.stream_id.clone(),
        })
    }

    /// Records a client's Hello (docs/PROTOCOL.md §2.1): a new client gets `initial_volume` and
    /// its own new group on `default_stream`; a group whose stream no longer exists falls back
    /// to it. Returns whether a new group was created.
    pub(crate) fn arrive(
        &mut self,
        arrival: Arrival,
        streams: &[&str],
        default_stream: &str,
        initial_volume: u16,
    ) -> bool {
        let new_group = match self.locate(&arrival.id) {
            Some((g, c)) => {
                let client = &mut self.groups[g].clients[c];
                client.host = arrival.host;
                client.snapclient = arrival.snapclient;
                client.config.instance = arrival.instance;
                client.connected = true;
                client.last_seen = LastSeen::from_unix_micros(arrival.now_us);
                false
            }
            None => {
                let client = Client {
                    id: arrival.id,
                    host: arrival.host,
                    snapclient: arrival.snapclient,
                    config: ClientConfig {
                        instance: arrival.instance,
                        volume: Volume {
                            muted: false,
                            percent: initial_volume,
                        },
                        ..ClientConfig::default()
                    },
                    last_seen: LastSeen::from_unix_micros(arrival.now_us),
                    connected: true,
                };
                self.groups.push(Group {
                    id: uuid::Uuid::new_v4().to_string(),
                    name: String::new(),
                    stream_id: default_stream.to_owned(),
                    muted: false,
                    clients: vec![client],
                });
                true
            }
        };
        for group in &mut self.groups {
            if !streams.contains(&group.stream_id.as_str()) {
                group.stream_id = default_stream.to_owned();
            }
        }
        new_group
    }

    /// Marks a client disconnected (when its last session ends, docs/PROTOCOL.md §2.7).
    pub(crate) fn depart(&mut self, client_id: &str, now_us: i64) {
        if let Ok(client) = self.client_mut(client_id) {
            client.connected = false;
            client.last_seen = LastSeen::from_unix_micros(now_us);
        }
    }

    /// Sets volume and/or mute; partial updates allowed (docs/JSONRPC.md §4).
    pub(crate) fn set_volume(
        &mut self,
        client_id: &str,
        percent: Option<i64>,
        muted: Option<bool>,
    ) -> Result<Volume, StateError> {
        let percent = percent.map(rules::volume_percent).transpose()?;
        let client = self.client_mut(client_id)?;
        if let Some(percent) = percent {
            client.config.volume.percent = percent;
        }
        if let Some(muted) = muted {
            client.config.volume.muted = muted;
        }
        Ok(client.config.volume)
    }

    /// Sets a client's latency, which must lie in [-10000, buffer_ms]; snapserver clamps other
    /// values, we refuse them (docs/PROTOCOL.md §2.5).
    pub(crate) fn set_latency(
        &mut self,
        client_id: &str,
        latency: i64,
        buffer_ms: u32,
    ) -> Result<i32, StateError> {
        let latency = rules::latency(latency, buffer_ms)?;
        self.client_mut(client_id)?.config.latency = latency;
        Ok(latency)
    }

    /// Renames a client.
    pub(crate) fn set_client_name(
        &mut self,
        client_id: &str,
        name: &str,
    ) -> Result<String, StateError> {
        let name = rules::name(name)?;
        self.client_mut(client_id)?.config.name = name.clone();
        Ok(name)
    }

    /// Points a group at another stream; returns its member ids.
    pub(crate) fn set_group_stream(
        &mut self,
        group_id: &str,
        stream_id: &str,
        streams: &[&str],
    ) -> Result<Vec<String>, StateError> {
        if !streams.contains(&stream_id) {
            return Err(StateError::StreamNotFound(stream_id.to_owned()));
        }
        let group = self.group_mut(group_id)?;
        group.stream_id = stream_id.to_owned();
        Ok(group.clients.iter().map(|c| c.id.clone()).collect())
    }

    /// Mutes or unmutes a group; returns its member ids.
    pub(crate) fn set_group_mute(
        &mut self,
        group_id: &str,
        mute: bool,
    ) -> Result<Vec<String>, StateError> {
        let group = self.group_mut(group_id)?;
        group.muted = mute;
        Ok(group.clients.iter().map(|c| c.id.clone()).collect())
    }

    /// Renames a group.
    pub(crate) fn set_group_name(
        &mut self,
        group_id: &str,
        name: &str,
    ) -> Result<String, StateError> {
        let name = rules::name(name)?;
        self.group_mut(group_id)?.name = name.clone();
        Ok(name)
    }

    /// Makes `client_ids` the members of a group (`Group.SetClients`, docs/JSONRPC.md §4):
    /// members not listed move to new one-client groups keeping the old stream, listed clients
    /// are pulled out of their groups, emptied groups are deleted (the target too, if it ends
    /// up empty). Returns every client whose group changed.
    pub(crate) fn set_group_clients(
        &mut self,
        group_id: &str,
        client_ids: &[String],
    ) -> Result<Vec<String>, StateError> {
        let target = self
            .groups
            .iter()
            .position(|g| g.id == group_id)
            .ok_or_else(|| StateError::GroupNotFound(group_id.to_owned()))?;
        if let Some(unknown) = client_ids.iter().find(|id| self.locate(id).is_none()) {
            return Err(StateError::ClientNotFound(unknown.clone()));
        }
        let stream_id = self.groups[target].stream_id.clone();
        let mut moved = Vec::new();
        // Members not in the list leave for a group of their own, keeping the stream.
        let (stay, leave): (Vec<Client>, Vec<Client>) =
            std::mem::take(&mut self.groups[target].clients)
                .into_iter()
                .partition(|c| client_ids.contains(&c.id));
        self.groups[target].clients = stay;
        for client in leave {
            moved.push(client.id.clone());
            self.groups.push(Group {
                id: uuid::Uuid::new_v4().to_string(),
                name: String::new(),
                stream_id: stream_id.clone(),
                muted: false,
                clients: vec![client],
            });
        }
        // Listed clients from other groups join.
        for id in client_ids {
            let Some((g, c)) = self.locate(id) else {
                continue;
            };
            if self.groups[g].id == group_id {
                continue;
            }
            let client = self.groups[g].clients.remove(c);
            moved.push(client.id.clone());
            if let Some(target) = self.groups.iter_mut().find(|g| g.id == group_id) {
                target.clients.push(client);
            }
        }
        self.groups.retain(|g| !g.clients.is_empty());
        Ok(moved)
    }

    /// Removes a disconnected client, and its group if that empties (docs/JSONRPC.md §4).
    pub(crate) fn delete_client(&mut self, client_id: &str) -> Result<(), StateError> {
        let (g, c) = self
            .locate(client_id)
            .ok_or_else(|| StateError::ClientNotFound(client_id.to_owned()))?;
        if self.groups[g].clients[c].connected {
            return Err(StateError::ClientConnected(client_id.to_owned()));
        }
        self.groups[g].clients.remove(c);
        self.groups.retain(|g| !g.clients.is_empty());
        Ok(())
    }

    /// Every client marked disconnected (after loading a state file, docs/PROTOCOL.md §4.4).
    pub(crate) fn mark_all_disconnected(&mut self) {
        for group in &mut self.groups {
            for client in &mut group.clients {
                client.connected = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAMS: &[&str] = &["default", "radio"];

    fn arrive(model: &mut Model, id: &str) -> bool {
        model.arrive(
            Arrival {
                id: id.into(),
                instance: 1,
                now_us: 1_700_000_000_000_000,
                ..Arrival::default()
            },
            STREAMS,
            "default",
            80,
        )
    }

    #[test]
    fn ids_follow_snapserver_without_underscores() {
        assert_eq!(client_id("aa:bb", 1), "aa:bb");
        assert_eq!(client_id("kitchen_pi", 2), "kitchen-pi#2");
    }

    #[test]
    fn a_new_client_gets_its_own_group_on_the_default_stream() {
        let mut model = Model::default();
        assert!(arrive(&mut model, "a"));
        assert!(!arrive(&mut model, "a"), "a known client keeps its group");
        assert_eq!(model.groups.len(), 1);
        let playback = model.playback("a").unwrap();
        assert_eq!(
            playback,
            Playback {
                volume: 80,
                muted: false,
                latency: 0,
                stream_id: "default".into()
            }
        );
        assert!(model.client("a").unwrap().connected);
        model.depart("a", 5);
        assert!(!model.client("a").unwrap().connected);
    }

    #[test]
    fn muted_is_client_or_group() {
        let mut model = Model::default();
        arrive(&mut model, "a");
        let group = model.group_of("a").unwrap().id.clone();
        model.set_group_mute(&group, true).unwrap();
        assert!(model.playback("a").unwrap().muted);
        model.set_group_mute(&group, false).unwrap();
        model.set_volume("a", None, Some(true)).unwrap();
        assert!(model.playback("a").unwrap().muted);
        assert_eq!(model.set_volume("a", Some(30), None).unwrap().percent, 30);
        assert!(model.set_volume("a", Some(101), None).is_err());
        assert!(model.set_volume("zz", Some(1), None).is_err());
    }

    #[test]
    fn latency_out_of_range_is_refused_and_changes_nothing() {
        let mut model = Model::default();
        arrive(&mut model, "a");
        assert_eq!(model.set_latency("a", 250, 1000).unwrap(), 250);
        assert!(model.set_latency("a", 5000, 1000).is_err());
        assert!(model.set_latency("a", -20000, 1000).is_err());
        assert_eq!(model.client("a").unwrap().config.latency, 250);
    }

    #[test]
    fn group_stream_must_exist_and_a_vanished_stream_falls_back() {
        let mut model = Model::default();
        arrive(&mut model, "a");
        let group = model.group_of("a").unwrap().id.clone();
        assert_eq!(
            model.set_group_stream(&group, "nope", STREAMS),
            Err(StateError::StreamNotFound("nope".into()))
        );
        model.set_group_stream(&group, "radio", STREAMS).unwrap();
        assert_eq!(model.playback("a").unwrap().stream_id, "radio");
        // After a restart without the radio stream, the next Hello falls back.
        model.arrive(
            Arrival {
                id: "a".into(),
                instance: 1,
                ..Arrival::default()
            },
            &["default"],
            "default",
            100,
        );
        assert_eq!(model.playback("a").unwrap().stream_id, "default");
    }

    #[test]
    fn set_clients_moves_members_like_snapserver() {
        let mut model = Model::default();
        for id in ["a", "b", "c"] {
            arrive(&mut model, id);
        }
        let ga = model.group_of("a").unwrap().id.clone();
        model.set_group_stream(&ga, "radio", STREAMS).unwrap();
        // Pull b and c into a's group.
        let moved = model
            .set_group_clients(&ga, &["a".into(), "b".into(), "c".into()])
            .unwrap();
        assert_eq!(moved, vec!["b".to_string(), "c".to_string()]);
        assert_eq!(model.groups.len(), 1, "emptied groups are deleted");
        assert_eq!(model.playback("c").unwrap().stream_id, "radio");
        // Drop a: it gets a new group with the same stream.
        model
            .set_group_clients(&ga, &["b".into(), "c".into()])
            .unwrap();
        assert_eq!(model.groups.len(), 2);
        assert_ne!(model.group_of("a").unwrap().id, ga);
        assert_eq!(model.playback("a").unwrap().stream_id, "radio");
        assert!(model.set_group_clients(&ga, &["x".into()]).is_err());
    }

    #[test]
    fn only_disconnected_clients_are_deleted() {
        let mut model = Model::default();
        arrive(&mut model, "a");
        assert_eq!(
            model.delete_client("a"),
            Err(StateError::ClientConnected("a".into()))
        );
        model.depart("a", 1);
        model.delete_client("a").unwrap();
        assert!(model.groups.is_empty());
    }
}
