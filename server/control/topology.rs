//! Clients and groups in their API form, read from the state plus the live sessions.

use crate::pb;
use crate::relay::Relay;
use crate::state::{Client, Group, Model};

/// One client as the API shows it; `sessions_notified` is left 0 for the caller to fill.
pub(crate) fn client(relay: &Relay, group: &Group, client: &Client) -> pb::Client {
    let mut session_ids: Vec<u64> = relay
        .sessions
        .of_client(&client.id)
        .iter()
        .map(|session| session.id)
        .collect();
    session_ids.sort_unstable();
    pb::Client {
        client_id: client.id.clone(),
        name: client.config.name.clone(),
        volume_percent: u32::from(client.config.volume.percent),
        muted: client.config.volume.muted,
        latency_ms: client.config.latency,
        session_ids,
        sessions_notified: 0,
        connected: client.connected,
        group_id: group.id.clone(),
        stream: group.stream_id.clone(),
        host_name: client.host.name.clone(),
        ip: client.host.ip.clone(),
        client_version: client.snapclient.version.clone(),
        last_seen_us: client.last_seen.sec * 1_000_000 + client.last_seen.usec,
    }
}

/// One group with its members.
pub(crate) fn group(relay: &Relay, group: &Group) -> pb::Group {
    pb::Group {
        group_id: group.id.clone(),
        name: group.name.clone(),
        stream: group.stream_id.clone(),
        muted: group.muted,
        clients: group
            .clients
            .iter()
            .map(|c| client(relay, group, c))
            .collect(),
    }
}

/// The client with `id` from a model snapshot.
pub(crate) fn find_client(relay: &Relay, model: &Model, id: &str) -> Option<pb::Client> {
    let group = model.group_of(id)?;
    let member = group.clients.iter().find(|c| c.id == id)?;
    Some(client(relay, group, member))
}
