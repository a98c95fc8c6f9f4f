//! `WatchEvents`: the state's announcements (what JSON-RPC notifies) as typed protobuf
//! events, each read from the state as it is when it is sent.

use std::time::SystemTime;

use crate::pb;
use crate::pb::event::Kind;
use crate::relay::{Relay, StreamView};
use crate::session::unix_micros;
use crate::state::Event;

use super::topology;

/// The events an announcement becomes (none when what it names is already gone).
pub(crate) fn kinds(relay: &Relay, event: &Event) -> Vec<Kind> {
    let client = |id: &str| relay.state.read(|m| topology::find_client(relay, m, id));
    let group = |id: &str| {
        relay
            .state
            .read(|m| m.group(id).map(|g| topology::group(relay, g)))
    };
    let topology = || {
        Kind::Topology(pb::Topology {
            groups: relay
                .state
                .read(|m| m.groups.iter().map(|g| topology::group(relay, g)).collect()),
        })
    };
    let stream = |name: &str| {
        relay
            .stream(name)
            .map(|s| pb::StreamStats::from(&StreamView::of(&s)))
    };
    let one = |kind: Option<Kind>| kind.into_iter().collect();
    match event {
        Event::ClientConnected { id, new_group } => {
            let mut kinds: Vec<Kind> = client(id).map(Kind::ClientConnected).into_iter().collect();
            if *new_group {
                kinds.push(topology());
            }
            kinds
        }
        Event::ClientDisconnected(id) => one(client(id).map(Kind::ClientDisconnected)),
        Event::ClientVolume(id) => one(client(id).map(Kind::ClientVolume)),
        Event::ClientLatency(id) => one(client(id).map(Kind::ClientLatency)),
        Event::ClientName(id) => one(client(id).map(Kind::ClientName)),
        Event::GroupMute(id) => one(group(id).map(Kind::GroupMute)),
        Event::GroupStream(id) => one(group(id).map(Kind::GroupStream)),
        Event::GroupName(id) => one(group(id).map(Kind::GroupName)),
        Event::Topology => vec![topology()],
        Event::StreamState(name) => one(stream(name).map(Kind::StreamState)),
        Event::StreamProperties(name) => one(relay.stream(name).map(|s| {
            Kind::StreamProperties(pb::StreamPropertiesChange {
                stream: name.clone(),
                properties: Some(pb::StreamProperties::from(&*s.control().properties())),
            })
        })),
        Event::StreamAdded(name) => one(stream(name).map(Kind::StreamAdded)),
        Event::StreamRemoved(name) => vec![Kind::StreamRemoved(name.clone())],
    }
}

/// An event stamped now.
pub(crate) fn stamped(kind: Kind) -> pb::Event {
    pb::Event {
        at_us: unix_micros(SystemTime::now()),
        kind: Some(kind),
    }
}
